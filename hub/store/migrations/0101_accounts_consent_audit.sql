-- Accounts and sessions (hub/auth), consent (hub/consent), audit log
-- (hub/audit), negative feedback and bulk-enrolment state (hub/enrol).

-- Login accounts. Teachers and admins link to their staff row; parents to
-- guardian rows (account_guardians). Gate devices authenticate with the
-- gates table's own credentials.
CREATE TABLE accounts (
  id            TEXT PRIMARY KEY,
  username      TEXT NOT NULL UNIQUE COLLATE NOCASE,
  role          TEXT NOT NULL CHECK (role IN ('admin', 'teacher', 'parent')),
  school_id     TEXT NOT NULL DEFAULT '',        -- '' = every school on this hub (admins only)
  staff_id      TEXT REFERENCES staff(id),
  full_name     TEXT NOT NULL DEFAULT '',
  password_hash TEXT NOT NULL,                   -- bcrypt
  must_change   INTEGER NOT NULL DEFAULT 0,      -- one-time password: change at first login
  active        INTEGER NOT NULL DEFAULT 1,
  created_at    INTEGER NOT NULL,
  updated_at    INTEGER NOT NULL
);

CREATE TABLE account_guardians (
  account_id  TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
  guardian_id INTEGER NOT NULL REFERENCES guardians(id) ON DELETE CASCADE,
  PRIMARY KEY (account_id, guardian_id)
);

-- Classes a teacher is assigned to besides the homeroom class.
CREATE TABLE teacher_classes (
  staff_id TEXT NOT NULL REFERENCES staff(id) ON DELETE CASCADE,
  class_id TEXT NOT NULL REFERENCES classes(id) ON DELETE CASCADE,
  PRIMARY KEY (staff_id, class_id)
);

CREATE TABLE sessions (
  token_hash TEXT PRIMARY KEY,                    -- sha256 of the cookie value; the value itself is never stored
  account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
  csrf       TEXT NOT NULL,                       -- synchroniser token for state-changing requests
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  ip         TEXT NOT NULL DEFAULT ''
);
CREATE INDEX sessions_account ON sessions(account_id);

-- Consent to face attendance, per pupil. A row is valid while withdrawn_at
-- is NULL; withdrawal is recorded on the row, never by deleting it.
CREATE TABLE consents (
  id                INTEGER PRIMARY KEY,
  pupil_id          TEXT NOT NULL REFERENCES pupils(id) ON DELETE CASCADE,
  guardian_id       INTEGER REFERENCES guardians(id) ON DELETE SET NULL,
  guardian_name     TEXT NOT NULL DEFAULT '',      -- who signed for the family
  pupil_consented   INTEGER NOT NULL DEFAULT 0,    -- the pupil's own consent (required from age 7)
  scope_face        INTEGER NOT NULL DEFAULT 1,    -- face attendance
  scope_photos      INTEGER NOT NULL DEFAULT 0,    -- keep enrolment photos (encrypted) for re-embedding
  scope_snapshots   INTEGER NOT NULL DEFAULT 0,    -- keep gate face crops of arrivals
  document_ref      TEXT NOT NULL,                 -- paper form number / scan reference
  given_at          INTEGER NOT NULL,
  recorded_by       TEXT NOT NULL,
  withdrawn_at      INTEGER,
  withdrawn_by      TEXT,
  withdrawal_reason TEXT NOT NULL DEFAULT ''
);
CREATE INDEX consents_pupil ON consents(pupil_id);

-- Append-only audit log: who did what, when. Triggers refuse changes.
CREATE TABLE audit_log (
  id      INTEGER PRIMARY KEY,
  at      INTEGER NOT NULL,
  actor   TEXT NOT NULL,
  action  TEXT NOT NULL,
  subject TEXT NOT NULL DEFAULT '',
  detail  TEXT NOT NULL DEFAULT '{}',
  ip      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_at ON audit_log(at);
CREATE INDEX audit_subject ON audit_log(subject);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;

-- "Not this pupil" marks on recognitions and what was done about them.
CREATE TABLE recognition_feedback (
  id          INTEGER PRIMARY KEY,
  event_id    TEXT NOT NULL UNIQUE,
  pupil_id    TEXT NOT NULL,                     -- the pupil the gate wrongly named
  actor       TEXT NOT NULL,
  reason      TEXT NOT NULL DEFAULT '',
  action      TEXT NOT NULL,                     -- excluded_template, needs_reenrol, recorded
  template_id INTEGER,
  distance    REAL,
  created_at  INTEGER NOT NULL
);

-- Bulk enrolment progress, so `hub enrol` resumes where it stopped.
CREATE TABLE enrol_items (
  run_key     TEXT NOT NULL,                     -- sha256 of roster file path + photos dir
  pupil_id    TEXT NOT NULL,
  file        TEXT NOT NULL,
  status      TEXT NOT NULL,                     -- enrolled, rejected, review, error
  reasons     TEXT NOT NULL DEFAULT '[]',
  template_id INTEGER,
  at          INTEGER NOT NULL,
  PRIMARY KEY (run_key, pupil_id, file)
);
