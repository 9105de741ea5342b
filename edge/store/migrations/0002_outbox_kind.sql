-- The outbox carries every message a gate queues for its hub: attendance
-- events and unrecognised faces. kind is the last level of the message's
-- gate topic (wire.TopicKindEvents, wire.TopicKindUnrecognised); rows
-- written before this column existed are events. event_id holds the
-- message's ID (an event's event_id, an unrecognised face's capture_id).
ALTER TABLE outbox ADD COLUMN kind TEXT NOT NULL DEFAULT 'events';
