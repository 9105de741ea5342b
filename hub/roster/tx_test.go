package roster

import (
	"context"
	"database/sql"
	"errors"
	"reflect"
	"testing"
	"time"
)

// txAt is the clock of the helpers' writes in these tests.
var txAt = time.Date(2026, 9, 8, 8, 30, 0, 0, time.UTC)

// inTx runs fn in one transaction of s's database.
func inTx(t *testing.T, s *Store, fn func(tx *sql.Tx) error) error {
	t.Helper()
	return s.db.Tx(context.Background(), fn)
}

// putPupil stores a pupil of thcs-a's class 6a with the given flags.
func putPupil(t *testing.T, s *Store, id string, active, manual bool) {
	t.Helper()
	if _, err := s.PutPupil(context.Background(), Pupil{ID: id, SchoolID: "thcs-a", ClassID: "6a", FullName: "Nguyễn Văn An",
		Active: active, ManualAttendance: manual}); err != nil {
		t.Fatal(err)
	}
}

// pupilRow reads a stored pupil's flags and updated_at.
func pupilRow(t *testing.T, s *Store, id string) (active, manual, reenrol int, updated int64) {
	t.Helper()
	if err := s.db.R.QueryRow(`SELECT active, manual_attendance, needs_reenrol, updated_at FROM pupils WHERE id = ?`, id).
		Scan(&active, &manual, &reenrol, &updated); err != nil {
		t.Fatal(err)
	}
	return
}

// wantEntries checks the audit rows after id: exactly want, each with its
// actor, action, subject, school, address and detail.
func wantEntries(t *testing.T, s *Store, after int64, want []auditRow) {
	t.Helper()
	got, _ := auditSince(t, s, after)
	if len(got) != len(want) {
		t.Fatalf("audit entries %+v, want %+v", got, want)
	}
	for i := range want {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("audit entry %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

// TestComponentHelpersWriteAuditAndReport: SetManualAttendanceTx,
// MarkReenrolTx and SetClassSessionsTx write their column, record the
// caller's entry as the actor of the context (none for RecordedBy), and
// report whether the row and the gallery changed.
func TestComponentHelpersWriteAuditAndReport(t *testing.T) {
	s := newStore(t)
	const p = "001234567890"
	putPupil(t, s, p, true, false)
	ctx := WithActor(context.Background(), "admin:lan", "10.0.0.7")
	entry := Entry{Action: "consent_withdrawn", Detail: map[string]any{"templates_deleted": 2}}
	row := func(action, subject string, detail map[string]any) auditRow {
		return auditRow{actor: "admin:lan", action: action, subject: subject, school: "thcs-a", ip: "10.0.0.7", detail: detail}
	}
	cases := []struct {
		name    string
		write   func(tx *sql.Tx) (Change, error)
		want    Change
		entries []auditRow
		check   func(t *testing.T)
	}{
		{"manual attendance on", func(tx *sql.Tx) (Change, error) { return SetManualAttendanceTx(ctx, tx, p, true, txAt, entry) },
			Change{School: "thcs-a", Changed: true, Gallery: true}, []auditRow{row("consent_withdrawn", "pupil:"+p, map[string]any{"templates_deleted": float64(2)})},
			func(t *testing.T) {
				if _, manual, _, updated := pupilRow(t, s, p); manual != 1 || updated != txAt.UnixMilli() {
					t.Errorf("manual_attendance %d, updated_at %d; want 1, %d", manual, updated, txAt.UnixMilli())
				}
			}},
		{"manual attendance already on", func(tx *sql.Tx) (Change, error) {
			return SetManualAttendanceTx(ctx, tx, p, true, txAt, Entry{Action: "consent_given"})
		}, Change{School: "thcs-a"}, []auditRow{row("consent_given", "pupil:"+p, map[string]any{})}, nil},
		{"manual attendance off", func(tx *sql.Tx) (Change, error) {
			return SetManualAttendanceTx(ctx, tx, p, false, txAt, Entry{Action: "consent_given"})
		}, Change{School: "thcs-a", Changed: true, Gallery: true}, []auditRow{row("consent_given", "pupil:"+p, map[string]any{})},
			func(t *testing.T) {
				if _, manual, _, _ := pupilRow(t, s, p); manual != 0 {
					t.Errorf("manual_attendance %d, want 0", manual)
				}
			}},
		{"re-enrolment flagged", func(tx *sql.Tx) (Change, error) {
			return MarkReenrolTx(ctx, tx, p, true, txAt, Entry{Action: "not_this_pupil", Detail: map[string]any{"event_id": "e1"}})
		}, Change{School: "thcs-a", Changed: true}, []auditRow{row("not_this_pupil", "pupil:"+p, map[string]any{"event_id": "e1"})},
			func(t *testing.T) {
				if _, _, reenrol, _ := pupilRow(t, s, p); reenrol != 1 {
					t.Errorf("needs_reenrol %d, want 1", reenrol)
				}
			}},
		{"re-enrolment cleared, audited by the caller", func(tx *sql.Tx) (Change, error) {
			return MarkReenrolTx(ctx, tx, p, false, txAt, RecordedBy("enrol"))
		}, Change{School: "thcs-a", Changed: true}, nil,
			func(t *testing.T) {
				if _, _, reenrol, _ := pupilRow(t, s, p); reenrol != 0 {
					t.Errorf("needs_reenrol %d, want 0", reenrol)
				}
			}},
		{"class sessions", func(tx *sql.Tx) (Change, error) {
			return SetClassSessionsTx(ctx, tx, "6a", "morning", txAt, Entry{Action: "class_sessions", Detail: map[string]any{"to": []string{"morning"}}})
		}, Change{School: "thcs-a", Changed: true, Gallery: true}, []auditRow{row("class_sessions", "class:6a", map[string]any{"to": []any{"morning"}})},
			func(t *testing.T) {
				var got string
				if err := s.db.R.QueryRow(`SELECT sessions FROM classes WHERE id = '6a'`).Scan(&got); err != nil || got != "morning" {
					t.Errorf("sessions %q (%v), want morning", got, err)
				}
			}},
		{"class sessions unchanged", func(tx *sql.Tx) (Change, error) {
			return SetClassSessionsTx(ctx, tx, "6a", "morning", txAt, Entry{Action: "class_sessions"})
		}, Change{School: "thcs-a"}, []auditRow{row("class_sessions", "class:6a", map[string]any{})}, nil},
		{"no such pupil", func(tx *sql.Tx) (Change, error) {
			return SetManualAttendanceTx(ctx, tx, "009999999999", true, txAt, Entry{Action: "consent_given"})
		}, Change{}, []auditRow{{actor: "admin:lan", action: "consent_given", subject: "pupil:009999999999", ip: "10.0.0.7", detail: map[string]any{}}}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			last := lastAuditID(t, s)
			var got Change
			if err := inTx(t, s, func(tx *sql.Tx) (err error) { got, err = c.write(tx); return err }); err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Errorf("change %+v, want %+v", got, c.want)
			}
			wantEntries(t, s, last, c.entries)
			if c.check != nil {
				c.check(t)
			}
		})
	}
}

// TestComponentHelpersNeedAnEntry: a write without its audit entry is
// refused and, with its transaction, leaves the pupil as it was.
func TestComponentHelpersNeedAnEntry(t *testing.T) {
	s := newStore(t)
	const p = "001234567890"
	putPupil(t, s, p, true, false)
	ctx := context.Background()
	writes := map[string]func(tx *sql.Tx) (Change, error){
		"manual attendance": func(tx *sql.Tx) (Change, error) { return SetManualAttendanceTx(ctx, tx, p, true, txAt, Entry{}) },
		"re-enrolment":      func(tx *sql.Tx) (Change, error) { return MarkReenrolTx(ctx, tx, p, true, txAt, Entry{}) },
		"recorded by none":  func(tx *sql.Tx) (Change, error) { return MarkReenrolTx(ctx, tx, p, true, txAt, RecordedBy("")) },
		"class sessions":    func(tx *sql.Tx) (Change, error) { return SetClassSessionsTx(ctx, tx, "6a", "morning", txAt, Entry{}) },
	}
	for name, write := range writes {
		t.Run(name, func(t *testing.T) {
			last := lastAuditID(t, s)
			err := inTx(t, s, func(tx *sql.Tx) error { _, err := write(tx); return err })
			if !errors.Is(err, errNoEntry) {
				t.Fatalf("error %v, want errNoEntry", err)
			}
			wantEntries(t, s, last, nil)
			if _, manual, reenrol, _ := pupilRow(t, s, p); manual != 0 || reenrol != 0 {
				t.Errorf("manual_attendance %d, needs_reenrol %d after a refused write; want 0, 0", manual, reenrol)
			}
		})
	}
}

// TestHelperWriteRollsBackWithItsTransaction: a helper's write and its
// audit entry commit or roll back with the caller's transaction.
func TestHelperWriteRollsBackWithItsTransaction(t *testing.T) {
	s := newStore(t)
	const p = "001234567890"
	putPupil(t, s, p, true, false)
	ctx := WithActor(context.Background(), "admin:lan", "")
	last := lastAuditID(t, s)
	boom := errors.New("a later step failed")
	err := inTx(t, s, func(tx *sql.Tx) error {
		if _, err := SetManualAttendanceTx(ctx, tx, p, true, txAt, Entry{Action: "consent_withdrawn"}); err != nil {
			return err
		}
		if _, err := SetPupilActiveTx(ctx, tx, p, false, txAt); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("error %v, want %v", err, boom)
	}
	if active, manual, _, _ := pupilRow(t, s, p); active != 1 || manual != 0 {
		t.Errorf("active %d, manual_attendance %d after a rollback; want 1, 0", active, manual)
	}
	wantEntries(t, s, last, nil)
}
