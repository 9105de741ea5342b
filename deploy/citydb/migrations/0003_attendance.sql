-- attendance, nutrition, transcript: what the hubs push. Keys are the hub's
-- natural keys so every push is an idempotent upsert:
--   events by (school_id, event_id), daily status by (school_id, pupil_id, day),
--   headcounts by (school_id, class_id, day, meal_code),
--   absence totals by (school_id, pupil_id, school_year, term).
-- pupil_id is the 12-digit personal ID (the hub's pupil key). No face images,
-- descriptors or quality data ever leave the hub.

-- attendance.events is the high-volume log (≈ 2 rows per pupil per day): no
-- foreign key to records.schools (a per-row lookup that halves the insert
-- rate); row-level security already pins school_id to the hub's own school.
CREATE TABLE attendance.events (
  school_id   text NOT NULL,
  event_id    text NOT NULL,             -- the gate's UUIDv7
  pupil_id    text NOT NULL,
  gate_id     text NOT NULL,
  direction   text NOT NULL CHECK (direction IN ('in', 'out')),
  captured_at timestamptz NOT NULL,      -- gate clock
  received_at timestamptz NOT NULL,      -- hub clock
  distance    real NOT NULL,
  rejected    boolean NOT NULL DEFAULT false, -- staff marked "not this pupil"
  stored_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (school_id, event_id)
);
CREATE INDEX events_pupil_time ON attendance.events (school_id, pupil_id, captured_at);

CREATE TABLE attendance.daily_status (
  school_id      text NOT NULL REFERENCES records.schools(school_id),
  pupil_id       text NOT NULL,
  day            date NOT NULL,          -- school-local day
  class_id       text,
  status         text NOT NULL CHECK (status IN ('present', 'late', 'absent', 'not_yet', 'excused')),
  arrived_at     timestamptz,
  departed_at    timestamptz,
  source         text NOT NULL CHECK (source IN ('auto', 'manual')),
  hub_updated_at timestamptz NOT NULL,   -- when the hub last changed it
  stored_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (school_id, pupil_id, day)
);
CREATE INDEX daily_status_day ON attendance.daily_status (day, school_id);

-- One row per hub, written after every successful sync.
CREATE TABLE attendance.sync_status (
  school_id     text PRIMARY KEY REFERENCES records.schools(school_id),
  last_sync_at  timestamptz NOT NULL,
  lag_rows      bigint NOT NULL DEFAULT 0,
  lag_seconds   double precision NOT NULL DEFAULT 0,
  roster_issues integer NOT NULL DEFAULT 0,
  hub_version   text NOT NULL DEFAULT ''
);

CREATE TABLE nutrition.headcounts (
  school_id   text NOT NULL REFERENCES records.schools(school_id),
  class_id    text NOT NULL,
  day         date NOT NULL,
  meal_code   text NOT NULL REFERENCES nutrition.meal_types(code),
  headcount   integer NOT NULL CHECK (headcount >= 0),  -- present + late
  enrolled    integer NOT NULL CHECK (enrolled >= 0),
  revision    integer NOT NULL DEFAULT 1,               -- 1 at the cut-off, +1 per correction
  computed_at timestamptz NOT NULL,
  stored_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (school_id, class_id, day, meal_code)
);

CREATE TABLE transcript.absence_totals (
  school_id   text NOT NULL REFERENCES records.schools(school_id),
  pupil_id    text NOT NULL,
  school_year text NOT NULL,
  term        smallint NOT NULL CHECK (term IN (1, 2)),
  excused     integer NOT NULL CHECK (excused >= 0),     -- có phép
  unexcused   integer NOT NULL CHECK (unexcused >= 0),   -- không phép
  computed_at timestamptz NOT NULL,
  stored_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (school_id, pupil_id, school_year, term)
);
