-- City database sync (hub/citysync). Triggers append to a change log every
-- change the city must receive (a recognised event stored or re-attributed,
-- a daily status created or changed); the sync worker pushes the log in
-- order, keeps its cursor in citysync_state and prunes what it pushed, so a
-- restart resumes exactly where it stopped. created_at is the wall clock
-- (Unix ms) for the lag metric. The triggers record nothing until the worker
-- has been enabled once (citysync_state 'enabled', set together with a
-- backfill of what was stored before), so a hub without city sync keeps no log.
CREATE TABLE citysync_changes (
  seq        INTEGER PRIMARY KEY AUTOINCREMENT,
  kind       TEXT NOT NULL CHECK (kind IN ('event', 'daily')),
  k1         TEXT NOT NULL,               -- event_id, or pupil_id
  k2         TEXT NOT NULL DEFAULT '',    -- day for 'daily'
  created_at INTEGER NOT NULL
);

-- enabled, cursor, roster fingerprint, last success.
CREATE TABLE citysync_state (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
);

CREATE TRIGGER citysync_events_ins AFTER INSERT ON events
WHEN NEW.student_id IS NOT NULL AND EXISTS (SELECT 1 FROM citysync_state WHERE key = 'enabled')
BEGIN
  INSERT INTO citysync_changes (kind, k1, created_at)
  VALUES ('event', NEW.event_id, CAST(unixepoch('subsec') * 1000 AS INTEGER));
END;

CREATE TRIGGER citysync_events_upd AFTER UPDATE OF rejected, student_id ON events
WHEN NEW.student_id IS NOT NULL AND (OLD.rejected IS NOT NEW.rejected OR OLD.student_id IS NOT NEW.student_id)
  AND EXISTS (SELECT 1 FROM citysync_state WHERE key = 'enabled')
BEGIN
  INSERT INTO citysync_changes (kind, k1, created_at)
  VALUES ('event', NEW.event_id, CAST(unixepoch('subsec') * 1000 AS INTEGER));
END;

CREATE TRIGGER citysync_daily_ins AFTER INSERT ON daily_attendance
WHEN EXISTS (SELECT 1 FROM citysync_state WHERE key = 'enabled')
BEGIN
  INSERT INTO citysync_changes (kind, k1, k2, created_at)
  VALUES ('daily', NEW.pupil_id, NEW.day, CAST(unixepoch('subsec') * 1000 AS INTEGER));
END;

CREATE TRIGGER citysync_daily_upd AFTER UPDATE ON daily_attendance
WHEN (OLD.status IS NOT NEW.status OR OLD.arrived_at IS NOT NEW.arrived_at
  OR OLD.departed_at IS NOT NEW.departed_at OR OLD.source IS NOT NEW.source)
  AND EXISTS (SELECT 1 FROM citysync_state WHERE key = 'enabled')
BEGIN
  INSERT INTO citysync_changes (kind, k1, k2, created_at)
  VALUES ('daily', NEW.pupil_id, NEW.day, CAST(unixepoch('subsec') * 1000 AS INTEGER));
END;

-- What the last roster pull applied, per city row: a hash of the city's
-- fields, so only rows the city changed are applied again (local edits
-- survive until the city changes that row).
CREATE TABLE citysync_roster (
  kind     TEXT NOT NULL CHECK (kind IN ('staff', 'class', 'pupil')),
  city_key TEXT NOT NULL,                 -- staff_id, class_id, pupil_code
  local_id TEXT NOT NULL,                 -- staff.id, classes.id, pupils.id (personal ID)
  hash     TEXT NOT NULL,
  seen_at  INTEGER NOT NULL,
  PRIMARY KEY (kind, city_key)
);

-- Nutrition headcounts as last pushed, to push only corrections.
CREATE TABLE citysync_headcounts (
  class_id  TEXT NOT NULL,
  day       TEXT NOT NULL,
  meal      TEXT NOT NULL,
  headcount INTEGER NOT NULL,
  enrolled  INTEGER NOT NULL,
  revision  INTEGER NOT NULL,
  pushed_at INTEGER NOT NULL,
  PRIMARY KEY (class_id, day, meal)
);

-- Bad rows from the city (or refused by it), reported and skipped.
-- Roster issues are replaced on every roster pull (what is listed is current).
CREATE TABLE citysync_issues (
  id         INTEGER PRIMARY KEY,
  kind       TEXT NOT NULL,               -- staff, class, pupil, push_event, push_daily
  city_key   TEXT NOT NULL,
  reason     TEXT NOT NULL,
  first_seen INTEGER NOT NULL,
  last_seen  INTEGER NOT NULL,
  UNIQUE (kind, city_key, reason)
);
