-- Recognition operating points the hub calibrated for the galleries it
-- serves (hub/gallerysrv): one row per computed point, kept as history.
-- gate_id '' is a school's whole gallery (a gate id when a gate is served
-- its own candidate subset). threshold is the calibrated real-L2 distance
-- (0 when the gallery could not be calibrated: reason says why);
-- served_threshold is what the gallery document carried (an admin
-- override wins over the calibrated value; 0 = the gate's own).
CREATE TABLE gallery_operating_points (
  id               INTEGER PRIMARY KEY AUTOINCREMENT,
  school_id        TEXT NOT NULL REFERENCES schools(id) ON DELETE CASCADE,
  gate_id          TEXT NOT NULL DEFAULT '',
  gallery_version  INTEGER NOT NULL,
  digest           TEXT NOT NULL,          -- SHA-256 of the calibrated descriptor set
  embedder         TEXT NOT NULL,          -- model name@version
  pupils           INTEGER NOT NULL,
  templates        INTEGER NOT NULL,
  target_far       REAL NOT NULL,
  threshold        REAL NOT NULL,
  per_identity_far REAL NOT NULL DEFAULT 0,
  expected_far     REAL NOT NULL DEFAULT 0,
  expected_frr     REAL NOT NULL DEFAULT -1, -- -1: no pupil has two templates
  identities       INTEGER NOT NULL DEFAULT 0,
  impostor_scores  INTEGER NOT NULL DEFAULT 0,
  method           TEXT NOT NULL DEFAULT '', -- empirical | gaussian-tail | '' (not calibrated)
  reason           TEXT NOT NULL DEFAULT '', -- why not calibrated
  served_threshold REAL NOT NULL,
  served_min_margin REAL NOT NULL DEFAULT 0,
  override         INTEGER NOT NULL DEFAULT 0,
  computed_at      INTEGER NOT NULL          -- Unix ms, hub clock
);
CREATE INDEX gallery_operating_points_by_school ON gallery_operating_points(school_id, gate_id, id);
