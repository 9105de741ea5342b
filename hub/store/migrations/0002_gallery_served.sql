-- Gallery versions served to gates (hub/gallerysrv): the version bumps
-- whenever the digest of the school's active descriptors changes.
CREATE TABLE gallery_served (
  school_id  TEXT PRIMARY KEY,
  version    INTEGER NOT NULL,
  digest     TEXT NOT NULL,                  -- SHA-256 of model + sorted (pupil, descriptors)
  people     INTEGER NOT NULL DEFAULT 0,
  updated_at INTEGER NOT NULL
);
