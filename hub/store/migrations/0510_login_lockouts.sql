-- Failed-login counters (hub/loginlock, the only writer), so a lockout
-- holds across a restart. One row per scope (which login: mqtt, http-gate,
-- ...) and key (a username or an address). Times are hub clock, Unix ms.
-- Rows whose lock ended and whose failures are forgiven are pruned.
CREATE TABLE login_lockouts (
  scope    TEXT NOT NULL,
  key      TEXT NOT NULL,
  failures INTEGER NOT NULL,
  last_at  INTEGER NOT NULL,              -- the latest failure
  until_at INTEGER NOT NULL DEFAULT 0,    -- locked before this instant
  PRIMARY KEY (scope, key)
) WITHOUT ROWID;
CREATE INDEX login_lockouts_last ON login_lockouts(last_at);
