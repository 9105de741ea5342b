// Package citysync keeps a school hub and the city shared database
// (PostgreSQL, schema in deploy/citydb) in step.
//
// Pull: the school's roster (staff, classes, pupils, guardians) from the
// records module. Only rows the city changed since the last pull are applied
// (a hash per city row is kept in citysync_roster); a pupil who left is
// deactivated and the gallery version is bumped so the gates drop them.
//
// Push: recognised gate events and daily statuses (idempotent upserts keyed by
// event_id and by (pupil, day)), nutrition headcounts per class, day and meal
// once the class's morning cut-off has passed (with corrections later), and
// transcript absence totals per pupil and term. Hub-side triggers feed a
// change log (citysync_changes); the cursor lives in the hub database, so a
// restart resumes where it stopped and an outage of days is caught up.
//
// The Worker follows litestream's Replica.monitor: a ticker plus a notify
// channel (woken by ingest), capped exponential backoff, one log line when an
// outage starts and one when it ends, Prometheus metrics, and SyncOnce for
// tests. Bad rows from the city are reported (citysync_issues, logs) and
// skipped one by one; they never fail the sync.
package citysync
