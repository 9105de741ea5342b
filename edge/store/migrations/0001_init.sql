-- Outbox: every event is committed here before it is published, and the
-- row is deleted only after the broker's PUBACK. seq gives the send order.
CREATE TABLE outbox (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id   TEXT    NOT NULL UNIQUE,
    payload    BLOB    NOT NULL,
    created_at INTEGER NOT NULL -- Unix ms, edge clock
);

-- Debounce keys: one arrival per pupil per day per direction (the caller
-- builds the key). last_at is the Unix ms of the last enqueued event.
CREATE TABLE debounce (
    key     TEXT    PRIMARY KEY,
    last_at INTEGER NOT NULL
) WITHOUT ROWID;

-- Small key/value settings (gallery version, counters).
CREATE TABLE kv (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
