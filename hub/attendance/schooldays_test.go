package attendance

import (
	"context"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/models/wire"
)

// TestNoAbsenceOnDaysWithoutClasses: weekends and holidays must never count
// as absences (they would end up in the transcript's days absent and the
// nutrition headcounts), while a pupil who does come in is still recorded.
func TestNoAbsenceOnDaysWithoutClasses(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	const an, binh = "001234567890", "001234567891"
	sunday := time.Date(2026, 9, 13, 10, 0, 0, 0, ict) // after the 09:00 cut-off
	if sunday.Weekday() != time.Sunday {
		t.Fatal("fixture date is not a Sunday")
	}
	f.now.Store(sunday.UnixMilli())
	if err := f.svc.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	var n int
	_ = f.db.R.QueryRow(`SELECT count(*) FROM daily_attendance WHERE day = '2026-09-13'`).Scan(&n)
	if n != 0 {
		t.Fatalf("%d rows on a Sunday, want none", n)
	}
	d, err := f.svc.Recompute(ctx, binh, "2026-09-13")
	if err != nil || d.Status == Absent {
		t.Fatalf("Sunday recompute: %+v %v", d, err)
	}
	// A pupil who comes in on a Sunday (a club, a make-up day) is recorded,
	// and a class view computes that day at once (nobody else gets a row).
	f.event(t, an, wire.DirectionIn, sunday.Add(-2*time.Hour), false)
	days, err := f.svc.ClassDay(ctx, "6a", "2026-09-13")
	if err != nil || len(days) != 1 || days[0].PupilID != an || days[0].ArrivedAt == nil {
		t.Fatalf("Sunday class view: %+v %v", days, err)
	}
	if d, err := f.svc.Recompute(ctx, an, "2026-09-13"); err != nil || d.Status == Absent || d.ArrivedAt == nil {
		t.Fatalf("Sunday arrival: %+v %v", d, err)
	}
	// A configured holiday behaves like a weekend; the next school day does not.
	cfg := Default()
	cfg.Holidays = []string{"2026-09-02"}
	if cfg.SchoolDay("2026-09-02") || cfg.SchoolDay("2026-09-13") || !cfg.SchoolDay("2026-09-14") {
		t.Fatal("SchoolDay: holiday, Sunday, Monday")
	}
	monday := time.Date(2026, 9, 14, 10, 0, 0, 0, ict)
	f.now.Store(monday.UnixMilli())
	if err := f.svc.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	var s string
	if err := f.db.R.QueryRow(`SELECT status FROM daily_attendance WHERE pupil_id = ? AND day = '2026-09-14'`, binh).Scan(&s); err != nil || s != Absent {
		t.Fatalf("Monday after the cut-off: %q %v, want absent", s, err)
	}
	if err := (Config{Tick: time.Minute, DefaultStart: "07:00", DefaultCutoff: "09:00", SchoolDays: []int{7}}).Validate("attendance"); err == nil {
		t.Fatal("weekday 7 accepted")
	}
}
