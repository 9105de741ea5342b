-- Core hub schema: roster, gates, events, quarantine, daily attendance.
-- Times are Unix milliseconds (INTEGER) unless named *_date/day (TEXT YYYY-MM-DD, school-local).

CREATE TABLE meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
);

CREATE TABLE schools (
  id         TEXT PRIMARY KEY,            -- short ASCII id, used in MQTT topics
  name       TEXT NOT NULL,
  district   TEXT NOT NULL DEFAULT '',
  level      TEXT NOT NULL DEFAULT '',    -- preschool, primary, lower_secondary, upper_secondary
  timezone   TEXT NOT NULL DEFAULT 'Asia/Ho_Chi_Minh',
  updated_at INTEGER NOT NULL DEFAULT 0
);

-- Teachers and admins (login accounts come with the accounts migrations).
CREATE TABLE staff (
  id         TEXT PRIMARY KEY,
  school_id  TEXT NOT NULL REFERENCES schools(id),
  full_name  TEXT NOT NULL,
  email      TEXT NOT NULL DEFAULT '',
  phone      TEXT NOT NULL DEFAULT '',
  role       TEXT NOT NULL CHECK (role IN ('teacher', 'admin')),
  active     INTEGER NOT NULL DEFAULT 1,
  updated_at INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE classes (
  id                  TEXT PRIMARY KEY,
  school_id           TEXT NOT NULL REFERENCES schools(id),
  name                TEXT NOT NULL,               -- e.g. 1A, Lá 2
  grade               INTEGER NOT NULL,            -- 0 preschool, 1..12
  homeroom_teacher_id TEXT REFERENCES staff(id),
  start_time          TEXT NOT NULL DEFAULT '07:00', -- HH:MM local
  late_after_min      INTEGER NOT NULL DEFAULT 15,   -- arriving later than start+this is late
  absent_cutoff       TEXT NOT NULL DEFAULT '09:00', -- not arrived by then = absent
  active              INTEGER NOT NULL DEFAULT 1,
  updated_at          INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX classes_school ON classes(school_id);

CREATE TABLE pupils (
  id                TEXT PRIMARY KEY CHECK (length(id) = 12 AND id NOT GLOB '*[^0-9]*'), -- mã định danh
  school_id         TEXT NOT NULL REFERENCES schools(id),
  class_id          TEXT REFERENCES classes(id),
  full_name         TEXT NOT NULL,
  date_of_birth     TEXT NOT NULL DEFAULT '',      -- YYYY-MM-DD
  gender            TEXT NOT NULL DEFAULT '',
  active            INTEGER NOT NULL DEFAULT 1,    -- 0: left the school; out of the gallery
  manual_attendance INTEGER NOT NULL DEFAULT 0,    -- 1: no face attendance (no consent); teacher marks by hand
  source            TEXT NOT NULL DEFAULT 'local', -- local or city
  updated_at        INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX pupils_class ON pupils(class_id);
CREATE INDEX pupils_school ON pupils(school_id);

CREATE TABLE guardians (
  id         INTEGER PRIMARY KEY,
  pupil_id   TEXT NOT NULL REFERENCES pupils(id) ON DELETE CASCADE,
  full_name  TEXT NOT NULL,
  phone      TEXT NOT NULL DEFAULT '',
  email      TEXT NOT NULL DEFAULT '',
  relation   TEXT NOT NULL DEFAULT '',             -- mother, father, grandparent, guardian
  updated_at INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX guardians_pupil ON guardians(pupil_id);

CREATE TABLE gates (
  id              TEXT PRIMARY KEY,
  school_id       TEXT NOT NULL REFERENCES schools(id),
  name            TEXT NOT NULL DEFAULT '',
  direction       TEXT NOT NULL DEFAULT 'in' CHECK (direction IN ('in', 'out')),
  username        TEXT NOT NULL UNIQUE,          -- MQTT and HTTP basic auth user
  password_hash   TEXT NOT NULL,                 -- bcrypt
  online          INTEGER NOT NULL DEFAULT 0,
  last_seen_at    INTEGER NOT NULL DEFAULT 0,    -- hub clock
  last_heartbeat  TEXT NOT NULL DEFAULT '',      -- JSON of the last wire.Heartbeat
  clock_skew_ms   INTEGER NOT NULL DEFAULT 0,    -- hub clock - edge clock, from the last heartbeat/event
  active          INTEGER NOT NULL DEFAULT 1,
  updated_at      INTEGER NOT NULL DEFAULT 0
);

-- Every accepted gate event, exactly once (event_id is the edge's UUIDv7).
CREATE TABLE events (
  event_id        TEXT PRIMARY KEY,
  school_id       TEXT NOT NULL,
  gate_id         TEXT NOT NULL,
  direction       TEXT NOT NULL,
  student_id      TEXT,                          -- NULL for an unknown face
  captured_at     INTEGER NOT NULL,              -- edge clock
  received_at     INTEGER NOT NULL,              -- hub clock
  distance        REAL NOT NULL,
  margin          REAL NOT NULL,
  frames_used     INTEGER NOT NULL,
  quality         TEXT NOT NULL DEFAULT '{}',    -- JSON
  model           TEXT NOT NULL,                 -- name@version
  gallery_version INTEGER NOT NULL DEFAULT 0,
  face_jpeg       BLOB,                          -- deleted after the retention period
  rejected        INTEGER NOT NULL DEFAULT 0     -- 1: marked "not this pupil" by staff
);
CREATE INDEX events_student_time ON events(student_id, captured_at);
CREATE INDEX events_received ON events(received_at);
CREATE INDEX events_gate_time ON events(gate_id, captured_at);

-- Payloads refused by ingest, with the reason; never block the stream.
CREATE TABLE quarantine (
  id          INTEGER PRIMARY KEY,
  received_at INTEGER NOT NULL,
  topic       TEXT NOT NULL,
  client_id   TEXT NOT NULL DEFAULT '',
  reason      TEXT NOT NULL,
  payload     BLOB NOT NULL                      -- truncated to 64 KiB
);
CREATE INDEX quarantine_time ON quarantine(received_at);

-- One row per pupil per school day, recomputed from events and overrides.
CREATE TABLE daily_attendance (
  pupil_id         TEXT NOT NULL REFERENCES pupils(id) ON DELETE CASCADE,
  day              TEXT NOT NULL,                -- YYYY-MM-DD school-local
  status           TEXT NOT NULL CHECK (status IN ('present', 'late', 'absent', 'not_yet', 'excused')),
  arrived_at       INTEGER,                      -- edge clock of the first "in" event
  departed_at      INTEGER,                      -- last "out" event
  arrival_event_id TEXT,
  arrival_gate_id  TEXT,
  source           TEXT NOT NULL DEFAULT 'auto' CHECK (source IN ('auto', 'manual')),
  updated_at       INTEGER NOT NULL,
  PRIMARY KEY (pupil_id, day)
);
CREATE INDEX daily_day ON daily_attendance(day);

-- Manual changes to daily attendance: append-only, who and why.
CREATE TABLE attendance_overrides (
  id         INTEGER PRIMARY KEY,
  pupil_id   TEXT NOT NULL REFERENCES pupils(id) ON DELETE CASCADE,
  day        TEXT NOT NULL,
  status     TEXT NOT NULL CHECK (status IN ('present', 'late', 'absent', 'excused')),
  reason     TEXT NOT NULL,
  actor      TEXT NOT NULL,                      -- account id of who made it
  created_at INTEGER NOT NULL
);
CREATE INDEX overrides_pupil_day ON attendance_overrides(pupil_id, day);
