package roster

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/diemdanh/diemdanh/hub/audit"
)

// Writes inside another component's transaction.
//
// The roster owns the writes to pupils, classes, guardians and staff
// (deploy/archcheck's TestRosterTablesWrittenByRosterOnly fails on SQL
// that writes them anywhere else). A component whose own transaction
// changes one of those rows calls a helper here (or in tx_city.go) with
// its *sql.Tx: the write keeps that transaction's atomicity, and its audit
// entry and gallery report come with it.
//
//   - Audit: every helper records an entry in tx as the actor of ctx
//     (WithActor). The city roster's writes (tx_city.go) record the
//     roster's own actions with the names of the fields changed; the
//     helpers below record the caller's Entry.
//   - Gallery: Change.Gallery says the write may have changed who is in
//     the school's gallery, by PutPupil's rule (a stored pupil activated or
//     deactivated, put on or taken off manual attendance), or a class's
//     sessions. The caller then bumps the gallery version in tx
//     (facetemplates.Store.BumpTx) and notifies after the commit.

// Change is what a helper's write did.
type Change struct {
	School  string // the school of the record written; "" when there is no such record
	Changed bool   // the row changed
	Gallery bool   // who is in School's gallery may have changed
}

// Entry is the audit entry of a write a helper makes for another
// component: that component's action about the record (consent_given,
// not_this_pupil, class_sessions, …) and its detail, which the helper
// records in the write's transaction.
type Entry struct {
	Action string
	Detail any
	// byCaller: the caller records the entry itself (RecordedBy).
	byCaller bool
}

// RecordedBy is the Entry of a write whose audit entry the caller records
// itself under action, about the same pupil, outside the write's
// transaction: the helper records none. It is for enrolment bookkeeping
// (needs_reenrol), which hub/enrol audits as the enrolment or the
// re-embedding that caused it.
func RecordedBy(action string) Entry { return Entry{Action: action, byCaller: true} }

var errNoEntry = errors.New("roster: a write for another component needs its audit entry")

// recordEntry records e about subject in tx as the actor of ctx, at now.
func recordEntry(ctx context.Context, tx *sql.Tx, now time.Time, subject string, e Entry) error {
	if e.byCaller {
		return nil
	}
	return recordTx(ctx, tx, now, e.Action, subject, e.Detail)
}

// recordTx appends an audit entry inside tx as the actor of ctx, at now:
// what Store.record does, for the helpers that have no Store.
func recordTx(ctx context.Context, tx *sql.Tx, now time.Time, action, subject string, detail any) error {
	a := ActorFrom(ctx)
	l := audit.New(nil, nil, func() time.Time { return now })
	return l.RecordTx(ctx, tx, a.ID, action, subject, detail, a.IP)
}

// recordPutTx records a create (existed false) or an update with the JSON
// names of the fields that differ between old and x (Store.recordPut's
// entry); extra goes into the detail as well (IDs only).
func recordPutTx(ctx context.Context, tx *sql.Tx, now time.Time, create, update, subject string, existed bool, old, x any, extra map[string]any) error {
	detail := map[string]any{}
	for k, v := range extra {
		detail[k] = v
	}
	action := create
	if existed {
		action = update
		detail["fields"] = changedFields(old, x)
	}
	return recordTx(ctx, tx, now, action, subject, detail)
}

// pupilFlags reads a stored pupil's school and flags in tx; ok is false
// when there is no such pupil.
func pupilFlags(ctx context.Context, tx *sql.Tx, id string) (school string, active, manual, reenrol bool, ok bool, err error) {
	var a, m, r int
	ok, err = found(tx.QueryRowContext(ctx, `SELECT school_id, active, manual_attendance, needs_reenrol FROM pupils WHERE id = ?`, id).
		Scan(&school, &a, &m, &r))
	return school, a == 1, m == 1, r == 1, ok, err
}

// SetManualAttendanceTx puts pupil id on manual attendance (on) or back on
// face attendance in tx, sets its updated_at to now and records e about
// the pupil (also when the flag was already so, or there is no such pupil:
// then nothing else changes). Changing the flag changes the gallery.
func SetManualAttendanceTx(ctx context.Context, tx *sql.Tx, id string, on bool, now time.Time, e Entry) (Change, error) {
	if e.Action == "" {
		return Change{}, errNoEntry
	}
	school, _, manual, _, ok, err := pupilFlags(ctx, tx, id)
	if err != nil {
		return Change{}, err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE pupils SET manual_attendance = ?, updated_at = ? WHERE id = ?`, b2i(on), now.UnixMilli(), id); err != nil {
		return Change{}, err
	}
	c := Change{School: school, Changed: ok && manual != on}
	c.Gallery = c.Changed
	return c, recordEntry(ctx, tx, now, "pupil:"+id, e)
}

// MarkReenrolTx sets (on) or clears pupil id's needs_reenrol flag in tx
// and records e about the pupil. The flag asks for new photos; it does not
// change the gallery (the pupil's templates do).
func MarkReenrolTx(ctx context.Context, tx *sql.Tx, id string, on bool, now time.Time, e Entry) (Change, error) {
	if e.Action == "" {
		return Change{}, errNoEntry
	}
	school, _, _, reenrol, ok, err := pupilFlags(ctx, tx, id)
	if err != nil {
		return Change{}, err
	}
	c := Change{School: school, Changed: ok && reenrol != on}
	if c.Changed {
		if _, err := tx.ExecContext(ctx, `UPDATE pupils SET needs_reenrol = ? WHERE id = ?`, b2i(on), id); err != nil {
			return Change{}, err
		}
	}
	return c, recordEntry(ctx, tx, now, "pupil:"+id, e)
}

// SetClassSessionsTx stores class id's sessions (match.Sessions' names,
// comma-separated; "" = every session) in tx, sets its updated_at to now
// and records e about the class. Changed sessions change which pupils the
// school's gates expect, so they change the gallery.
func SetClassSessionsTx(ctx context.Context, tx *sql.Tx, id, sessions string, now time.Time, e Entry) (Change, error) {
	if e.Action == "" {
		return Change{}, errNoEntry
	}
	var c Change
	var old string
	ok, err := found(tx.QueryRowContext(ctx, `SELECT school_id, sessions FROM classes WHERE id = ?`, id).Scan(&c.School, &old))
	if err != nil {
		return Change{}, err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE classes SET sessions = ?, updated_at = ? WHERE id = ?`, sessions, now.UnixMilli(), id); err != nil {
		return Change{}, err
	}
	c.Changed = ok && old != sessions
	c.Gallery = c.Changed
	return c, recordEntry(ctx, tx, now, "class:"+id, e)
}
