-- Faces the gates saw and did not decide (hub/facereview, the only writer):
-- tracks that ended without an event ('unrecognised') and pupils accepted
-- by one vote that the M of K rule did not corroborate ('near_miss'), kept
-- for a teacher to name or dismiss. Rows are deleted, crop and all, after
-- review.retention (hub clock); nothing here is sent to the city database.
CREATE TABLE unrecognised_faces (
  id               INTEGER PRIMARY KEY,
  capture_id       TEXT NOT NULL UNIQUE,          -- the gate's UUIDv7: a redelivery is ignored
  school_id        TEXT NOT NULL,
  gate_id          TEXT NOT NULL,
  direction        TEXT NOT NULL CHECK (direction IN ('in', 'out')),
  kind             TEXT NOT NULL CHECK (kind IN ('unrecognised', 'near_miss')),
  captured_at      INTEGER NOT NULL,              -- gate clock, Unix ms
  received_at      INTEGER NOT NULL,              -- hub clock, Unix ms
  quality          TEXT NOT NULL DEFAULT '{}',    -- JSON match.Quality of the crop
  candidates       TEXT NOT NULL DEFAULT '[]',    -- JSON [{student_id, distance, margin}], nearest first
  vote             TEXT,                          -- JSON {student_id, distance, margin}; near_miss only
  frames_described INTEGER NOT NULL,
  model            TEXT NOT NULL,                 -- name@version
  gallery_version  INTEGER NOT NULL DEFAULT 0,
  crop             BLOB NOT NULL,                 -- the JPEG sealed with AES-256-GCM (template key; AD binds school and capture_id)
  status           TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'assigned')),
  pupil_id         TEXT,                          -- set by "this is <pupil>"
  decided_by       TEXT NOT NULL DEFAULT '',
  decided_at       INTEGER                        -- hub clock, Unix ms
);
CREATE INDEX unrecognised_faces_school_time ON unrecognised_faces(school_id, captured_at);
CREATE INDEX unrecognised_faces_received ON unrecognised_faces(received_at);

-- "Not my pupil": a face hidden from one class. Deleted with its face.
CREATE TABLE unrecognised_dismissals (
  face_id  INTEGER NOT NULL REFERENCES unrecognised_faces(id) ON DELETE CASCADE,
  class_id TEXT NOT NULL,
  actor    TEXT NOT NULL,
  at       INTEGER NOT NULL,                      -- hub clock, Unix ms
  PRIMARY KEY (face_id, class_id)
);
