-- Encrypted face templates (hub/facetemplates). Descriptors and photos are
-- AES-256-GCM ciphertexts (12-byte nonce || sealed bytes); the key lives in a
-- key file or the environment, never in this database.
CREATE TABLE face_templates (
  id          INTEGER PRIMARY KEY,
  pupil_id    TEXT NOT NULL REFERENCES pupils(id) ON DELETE CASCADE,
  model       TEXT NOT NULL,                 -- match.ModelID name@version
  descriptor  BLOB NOT NULL,                 -- encrypted little-endian float32s
  quality     TEXT NOT NULL DEFAULT '{}',    -- JSON match.Quality
  photo       BLOB,                          -- encrypted JPEG; NULL unless consent allows keeping photos
  status      TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'review', 'excluded')),
  note        TEXT NOT NULL DEFAULT '',      -- why it is in review or excluded
  created_at  INTEGER NOT NULL
);
CREATE INDEX face_templates_pupil ON face_templates(pupil_id, status);

-- Gallery version per school: bumped by every change that alters what the
-- gates must hold (template added/excluded/deleted, consent withdrawn).
CREATE TABLE gallery_versions (
  school_id  TEXT PRIMARY KEY,
  version    INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);

-- Pupils whose templates were made by an older model and whose photos were
-- not kept: they must be photographed again.
ALTER TABLE pupils ADD COLUMN needs_reenrol INTEGER NOT NULL DEFAULT 0;
