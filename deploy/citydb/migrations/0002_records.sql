-- records: schools, staff, classes, pupils, guardians, enrolment history.
-- Distributed by school_id. The data comes from the records module and is sometimes
-- dirty (a pupil without a valid personal ID, the same
-- personal ID twice, a class with no homeroom teacher): the schema accepts it
-- so the department can see and fix it; the hubs report and skip such rows.

CREATE TABLE records.schools (
  school_id     text PRIMARY KEY,
  name          text NOT NULL,
  district_code text NOT NULL REFERENCES records.districts(code),
  level         text NOT NULL CHECK (level IN ('preschool', 'primary', 'lower_secondary', 'upper_secondary', 'multi_level')),
  timezone      text NOT NULL DEFAULT 'Asia/Ho_Chi_Minh',
  updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE records.staff (
  school_id  text NOT NULL REFERENCES records.schools(school_id),
  staff_id   text NOT NULL,
  full_name  text NOT NULL,
  email      text NOT NULL DEFAULT '',
  phone      text NOT NULL DEFAULT '',
  role       text NOT NULL DEFAULT 'teacher',
  active     boolean NOT NULL DEFAULT true,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (school_id, staff_id)
);

CREATE TABLE records.classes (
  school_id           text NOT NULL REFERENCES records.schools(school_id),
  class_id            text NOT NULL,
  name                text NOT NULL,
  grade               smallint NOT NULL CHECK (grade BETWEEN 0 AND 12),
  homeroom_teacher_id text,              -- NULL happens: reported by the hubs
  school_year         text NOT NULL DEFAULT '',
  active              boolean NOT NULL DEFAULT true,
  updated_at          timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (school_id, class_id),
  FOREIGN KEY (school_id, homeroom_teacher_id) REFERENCES records.staff(school_id, staff_id)
);

CREATE TABLE records.pupils (
  school_id     text NOT NULL REFERENCES records.schools(school_id),
  pupil_code    text NOT NULL,           -- the records module's own key (mã học sinh)
  personal_id   text,                    -- mã định danh cá nhân, 12 digits; NULL or malformed happens
  class_id      text,
  full_name     text NOT NULL,
  date_of_birth date,
  gender        text NOT NULL DEFAULT '',
  status        text NOT NULL DEFAULT 'enrolled' CHECK (status IN ('enrolled', 'left', 'transferred', 'graduated')),
  updated_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (school_id, pupil_code),
  FOREIGN KEY (school_id, class_id) REFERENCES records.classes(school_id, class_id)
);
CREATE INDEX pupils_personal_id ON records.pupils (school_id, personal_id);

CREATE TABLE records.guardians (
  school_id   text NOT NULL,
  pupil_code  text NOT NULL,
  guardian_no smallint NOT NULL,
  full_name   text NOT NULL,
  phone       text NOT NULL DEFAULT '',
  email       text NOT NULL DEFAULT '',
  relation    text NOT NULL DEFAULT '',
  updated_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (school_id, pupil_code, guardian_no),
  FOREIGN KEY (school_id, pupil_code) REFERENCES records.pupils(school_id, pupil_code) ON DELETE CASCADE
);

CREATE TABLE records.enrolments (
  school_id   text NOT NULL,
  pupil_code  text NOT NULL,
  starts_on   date NOT NULL,
  class_id    text,
  school_year text NOT NULL DEFAULT '',
  ends_on     date,
  reason      text NOT NULL DEFAULT '',  -- admitted, moved class, transferred out, left
  updated_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (school_id, pupil_code, starts_on),
  FOREIGN KEY (school_id, pupil_code) REFERENCES records.pupils(school_id, pupil_code) ON DELETE CASCADE
);

-- updated_at follows every change, so a hub can tell cheaply whether its roster changed.
CREATE FUNCTION records.touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.updated_at := now();
  RETURN NEW;
END $$;
CREATE TRIGGER schools_touch BEFORE UPDATE ON records.schools FOR EACH ROW EXECUTE FUNCTION records.touch_updated_at();
CREATE TRIGGER staff_touch BEFORE UPDATE ON records.staff FOR EACH ROW EXECUTE FUNCTION records.touch_updated_at();
CREATE TRIGGER classes_touch BEFORE UPDATE ON records.classes FOR EACH ROW EXECUTE FUNCTION records.touch_updated_at();
CREATE TRIGGER pupils_touch BEFORE UPDATE ON records.pupils FOR EACH ROW EXECUTE FUNCTION records.touch_updated_at();
CREATE TRIGGER guardians_touch BEFORE UPDATE ON records.guardians FOR EACH ROW EXECUTE FUNCTION records.touch_updated_at();
CREATE TRIGGER enrolments_touch BEFORE UPDATE ON records.enrolments FOR EACH ROW EXECUTE FUNCTION records.touch_updated_at();
