-- Row-level security. A school's hub logs in with its own role (member of
-- citydb_school, mapped to its school in records.school_roles) and sees and
-- changes only rows whose school_id is its own. It may only read records (the
-- records module owns them) and may insert/update attendance, nutrition and
-- transcript rows of its own school; nobody but the owner deletes.
-- citydb_analyst reads every row and writes nothing.

GRANT USAGE ON SCHEMA records, attendance, nutrition, transcript TO citydb_school, citydb_analyst;
GRANT EXECUTE ON FUNCTION records.school_of_role(name) TO citydb_school, citydb_analyst;

-- Reference tables: readable by all, no RLS (nothing school-specific in them).
GRANT SELECT ON records.districts, records.terms, nutrition.meal_types TO citydb_school, citydb_analyst;
GRANT SELECT ON records.school_roles TO citydb_analyst;

DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY[
    'records.schools', 'records.staff', 'records.classes', 'records.pupils',
    'records.guardians', 'records.enrolments',
    'attendance.events', 'attendance.daily_status', 'attendance.sync_status',
    'nutrition.headcounts', 'transcript.absence_totals']
  LOOP
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('CREATE POLICY own_school ON %s TO citydb_school
                      USING (school_id = (SELECT records.school_of_role(current_user)))
                      WITH CHECK (school_id = (SELECT records.school_of_role(current_user)))', t);
    EXECUTE format('CREATE POLICY analyst_read ON %s FOR SELECT TO citydb_analyst USING (true)', t);
    EXECUTE format('GRANT SELECT ON %s TO citydb_school, citydb_analyst', t);
    IF t NOT LIKE 'records.%' THEN
      EXECUTE format('GRANT INSERT, UPDATE ON %s TO citydb_school', t);
    END IF;
  END LOOP;
END $$;
