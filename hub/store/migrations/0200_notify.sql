-- Notifications (hub/notify): durable outbox, per-guardian preferences,
-- Web Push subscriptions and per-class "not arrived by cut-off" settings.

-- One row per message to one recipient on one channel. dedupe_key is
-- UNIQUE: "arrival:<pupil>:<day>:<guardian>:<channel>:<target>" makes an
-- arrival message go out at most once per child per day per recipient.
CREATE TABLE notify_outbox (
  id          INTEGER PRIMARY KEY,
  dedupe_key  TEXT NOT NULL UNIQUE,
  rule        TEXT NOT NULL CHECK (rule IN ('arrival', 'departure', 'not_arrived', 'test')),
  pupil_id    TEXT NOT NULL,
  guardian_id INTEGER NOT NULL,
  channel     TEXT NOT NULL CHECK (channel IN ('push', 'email', 'webhook')),
  target      TEXT NOT NULL,                 -- e-mail address, push subscription id, phone for webhook
  lang        TEXT NOT NULL DEFAULT 'vi',
  subject     TEXT NOT NULL,
  body        TEXT NOT NULL,
  payload     TEXT NOT NULL DEFAULT '{}',    -- JSON handed to push/webhook
  event_at    INTEGER NOT NULL,              -- hub clock (ms) when the causing event reached the hub
  created_at  INTEGER NOT NULL,
  status      TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed', 'dropped')),
  attempts    INTEGER NOT NULL DEFAULT 0,
  next_at     INTEGER NOT NULL,              -- earliest next attempt (hub clock, ms)
  last_error  TEXT NOT NULL DEFAULT '',
  sent_at     INTEGER
);
CREATE INDEX notify_outbox_due ON notify_outbox(status, next_at);

-- Per guardian and channel: on/off. No row = the default (on when the
-- channel has an address for this guardian).
CREATE TABLE notify_prefs (
  guardian_id INTEGER NOT NULL REFERENCES guardians(id) ON DELETE CASCADE,
  channel     TEXT NOT NULL CHECK (channel IN ('push', 'email', 'webhook')),
  enabled     INTEGER NOT NULL,
  updated_at  INTEGER NOT NULL,
  PRIMARY KEY (guardian_id, channel)
);

-- Message language per guardian (default vi).
CREATE TABLE notify_guardian_lang (
  guardian_id INTEGER PRIMARY KEY REFERENCES guardians(id) ON DELETE CASCADE,
  lang        TEXT NOT NULL CHECK (lang IN ('vi', 'en'))
);

-- Web Push subscriptions made from the parents' portal.
CREATE TABLE push_subscriptions (
  id          INTEGER PRIMARY KEY,
  guardian_id INTEGER NOT NULL REFERENCES guardians(id) ON DELETE CASCADE,
  endpoint    TEXT NOT NULL UNIQUE,
  p256dh      TEXT NOT NULL,
  auth        TEXT NOT NULL,
  created_at  INTEGER NOT NULL
);
CREATE INDEX push_subscriptions_guardian ON push_subscriptions(guardian_id);

-- "Not arrived by cut-off" per class; no row = on, at classes.absent_cutoff.
CREATE TABLE notify_class_rules (
  class_id            TEXT PRIMARY KEY REFERENCES classes(id) ON DELETE CASCADE,
  not_arrived_enabled INTEGER NOT NULL DEFAULT 1,
  cutoff              TEXT NOT NULL DEFAULT ''  -- HH:MM local; '' = classes.absent_cutoff
);
