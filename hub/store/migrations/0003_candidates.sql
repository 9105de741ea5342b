-- Candidate restriction (hub/gallerysrv): which pupils a gate is served.
-- A class's sessions (ca học): '' = every session, else a comma list of
-- match session names ('morning', 'afternoon').
ALTER TABLE classes ADD COLUMN sessions TEXT NOT NULL DEFAULT '';

-- Classes a gate serves. A gate with no row here serves every class of its
-- school (and pupils without a class); with rows, only those classes.
CREATE TABLE gate_classes (
  gate_id  TEXT NOT NULL REFERENCES gates(id) ON DELETE CASCADE,
  class_id TEXT NOT NULL REFERENCES classes(id) ON DELETE CASCADE,
  PRIMARY KEY (gate_id, class_id)
);
CREATE INDEX gate_classes_class ON gate_classes(class_id);
