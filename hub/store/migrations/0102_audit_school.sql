-- The school an audit entry is about (hub/audit), so an admin of one
-- school reads only their school's part of the log. Filled by the
-- recorder from the entry's subject (pupil, class, gate, staff, account,
-- school, event) or else its actor's account or gate. NULL: no school
-- (older entries, the system's, a hub-wide admin's on nothing
-- school-bound) — visible to hub-wide admins only. Adding a column is not
-- an UPDATE, so the append-only triggers stay as they are.
ALTER TABLE audit_log ADD COLUMN school_id TEXT;
CREATE INDEX audit_school ON audit_log(school_id, id);
