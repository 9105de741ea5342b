-- Both clocks of each event: captured_at is the capture time on the hub's
-- clock (the gate's reading corrected by the gate's measured clock offset,
-- hub/ingest), gate_captured_at the gate's own reading (NULL for events
-- stored before this column). clock_measured_at is the hub clock when a
-- live message of the gate (its online status or a heartbeat) last
-- measured clock_skew_ms (0: only estimated from events); clock_warn is 1
-- while that offset is beyond ingest.clock_skew_warn.
ALTER TABLE events ADD COLUMN gate_captured_at INTEGER;
ALTER TABLE gates ADD COLUMN clock_measured_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE gates ADD COLUMN clock_warn INTEGER NOT NULL DEFAULT 0;
