-- City shared database (cơ sở dữ liệu dùng chung): schemas, roles, reference tables.
-- Every table that holds a school's rows carries school_id first in its primary key,
-- and every foreign key between such tables includes school_id, so each table can be
-- distributed by school_id on Citus without change (see README.md).
-- Roles are cluster-wide; creating them is idempotent and tolerant of a concurrent creator.

CREATE SCHEMA IF NOT EXISTS records;
CREATE SCHEMA IF NOT EXISTS attendance;
CREATE SCHEMA IF NOT EXISTS nutrition;
CREATE SCHEMA IF NOT EXISTS transcript;

DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'citydb_school') THEN
    CREATE ROLE citydb_school NOLOGIN;
  END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$;

DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'citydb_analyst') THEN
    CREATE ROLE citydb_analyst NOLOGIN;
  END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$;

-- Reference tables (replicated to every node on Citus).
CREATE TABLE records.districts (
  code text PRIMARY KEY,                 -- e.g. Q1, TD (Thủ Đức)
  name text NOT NULL
);

CREATE TABLE records.terms (
  school_year text     NOT NULL CHECK (school_year ~ '^[0-9]{4}-[0-9]{4}$'), -- 2025-2026
  term        smallint NOT NULL CHECK (term IN (1, 2)),
  starts_on   date     NOT NULL,
  ends_on     date     NOT NULL CHECK (ends_on >= starts_on),
  PRIMARY KEY (school_year, term)
);

CREATE TABLE nutrition.meal_types (
  code text PRIMARY KEY,                 -- breakfast, lunch, snack
  name text NOT NULL
);
INSERT INTO nutrition.meal_types (code, name) VALUES
  ('breakfast', 'Bữa sáng'), ('lunch', 'Bữa trưa'), ('snack', 'Bữa xế')
ON CONFLICT (code) DO NOTHING;

-- Which login role is which school's hub. One row per hub role.
CREATE TABLE records.school_roles (
  role_name text PRIMARY KEY,
  school_id text NOT NULL
);

-- The school mapped to a role, or NULL. SECURITY DEFINER so hubs need no
-- access to the mapping table; the policies call it as
-- (SELECT records.school_of_role(current_user)) so it runs once per statement
-- with the caller's role name.
CREATE FUNCTION records.school_of_role(role_name name) RETURNS text
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, records
  AS $$ SELECT school_id FROM records.school_roles WHERE school_roles.role_name = $1 $$;
REVOKE ALL ON FUNCTION records.school_of_role(name) FROM PUBLIC;
