// Package ingest validates gate messages arriving over MQTT and stores
// each attendance event exactly once in the hub's SQLite database, keyed
// by the edge's event_id.
//
// Every event is committed BEFORE the MQTT acknowledgement (PUBACK) goes
// back to the gate, because the gate deletes the event from its durable
// outbox on PUBACK. Commits are grouped: concurrent messages wait on the
// same transaction (group commit), so throughput is bounded by SQLite's
// commit rate per batch, not per event.
//
// An event's face crop (face_jpeg) is stored only when the pupil's
// consent in force allows snapshots (audit.SnapshotsAllowed), decided in
// the same transaction as the insert; otherwise the event is stored
// without it. Crops of unknown faces (no pupil) are stored and deleted by
// the retention job after audit.retention_days.
//
// A payload that fails validation is written to the quarantine table with
// the reason and acknowledged, without its face crop or any face
// descriptor; it never blocks or crashes the stream. After commit,
// registered Listeners are told about each new event. An event's offered
// template (wire.Event.Template) is not stored with it: listeners get it
// (hub/learn's Updater may keep it as an automatic gate template).
//
// Further gate topic kinds (unrecognised faces, wire.TopicKindUnrecognised)
// are stored by the package that owns their table, through a TopicHandler
// registered with AddTopic: after the same gate checks, in the same
// transaction, with the same quarantine.
package ingest
