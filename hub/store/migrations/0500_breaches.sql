-- The breach register (hub/breach, the only writer): each personal-data
-- breach the school found, whose data it touched, what was done, and when
-- the authority and the data subjects were notified. Law 91/2025 and
-- Decree 13/2023 give 72 hours from discovery to notify the authority.
-- Times are hub clock, Unix ms.
CREATE TABLE breaches (
  id                   INTEGER PRIMARY KEY,
  school_id            TEXT NOT NULL DEFAULT '',      -- '' = the whole hub
  what                 TEXT NOT NULL,                 -- what happened
  occurred_at          INTEGER,                       -- when it happened, if known
  found_at             INTEGER NOT NULL,              -- when it was found: the 72-hour clock starts here
  scope                TEXT NOT NULL CHECK (scope IN ('pupils', 'classes', 'all')),
  subjects             TEXT NOT NULL DEFAULT '',      -- which pupils or classes (IDs or names), free text
  affected_count       INTEGER NOT NULL DEFAULT 0 CHECK (affected_count >= 0),
  actions              TEXT NOT NULL DEFAULT '',      -- actions taken, appended
  authority_notified_at INTEGER,
  authority_name       TEXT NOT NULL DEFAULT '',      -- to whom (e.g. A05, Bộ Công an)
  subjects_notified_at INTEGER,
  closed_at            INTEGER,
  created_by           TEXT NOT NULL,
  created_at           INTEGER NOT NULL,
  updated_at           INTEGER NOT NULL
);
CREATE INDEX breaches_open ON breaches(closed_at, found_at);
