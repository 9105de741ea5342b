-- Gate templates (hub/facetemplates) and the consent scope for them
-- (hub/consent).

-- Where a template came from: 'enrolment' (a photo at enrolment),
-- 'teacher' (a gate capture a teacher confirmed) or 'automatic' (a gate
-- capture the hub added on its own). event_id is the event or capture a
-- gate template came from and expires_at when it is deleted (Unix ms);
-- both are NULL for enrolment templates. Existing templates are enrolment
-- templates.
ALTER TABLE face_templates ADD COLUMN source TEXT NOT NULL DEFAULT 'enrolment'
  CHECK (source IN ('enrolment', 'teacher', 'automatic'));
ALTER TABLE face_templates ADD COLUMN event_id TEXT;
ALTER TABLE face_templates ADD COLUMN expires_at INTEGER;
CREATE INDEX face_templates_source ON face_templates(pupil_id, source, created_at);
CREATE INDEX face_templates_event ON face_templates(event_id) WHERE event_id IS NOT NULL;
CREATE INDEX face_templates_expiry ON face_templates(expires_at) WHERE expires_at IS NOT NULL;

-- "Not this pupil" on an event pauses automatic gate templates for the
-- pupil the gate named until `until` (Unix ms).
CREATE TABLE gate_template_pauses (
  pupil_id   TEXT PRIMARY KEY REFERENCES pupils(id) ON DELETE CASCADE,
  until      INTEGER NOT NULL,
  event_id   TEXT NOT NULL,                  -- the event marked "not this pupil"
  actor      TEXT NOT NULL,
  created_at INTEGER NOT NULL
);

-- Whether gate captures may be kept as templates of the pupil. Consents
-- recorded before this scope existed do not allow it until renewed.
ALTER TABLE consents ADD COLUMN scope_gate_templates INTEGER NOT NULL DEFAULT 0;

-- A school's consent policy: the scope new consents get when the request
-- leaves it out (hub/consent). No row: gate templates off.
CREATE TABLE consent_policies (
  school_id      TEXT PRIMARY KEY REFERENCES schools(id) ON DELETE CASCADE,
  gate_templates INTEGER NOT NULL DEFAULT 0,
  updated_at     INTEGER NOT NULL,
  updated_by     TEXT NOT NULL
);
