package attendance

import (
	"context"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/models/wire"
)

// TestClassPupilDays: the class day as the board reads it. Each pupil's
// state, the latest override's reason (manual days only), the arrival
// gate's name (else its ID), crop and receipt time, the no-consent flag;
// a day without classes leaves pupils who did not come unstored; the
// one-pupil form gives the same row and nothing for a pupil of another
// class.
func TestClassPupilDays(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	const an, binh, chi = "001234567890", "001234567891", "001234567892"
	for _, q := range []string{
		`INSERT INTO pupils(id, school_id, class_id, full_name, manual_attendance) VALUES ('` + chi + `', 'thcs-a', '6a', 'Chi', 1)`,
		`INSERT INTO classes(id, school_id, name, grade, start_time, late_after_min, absent_cutoff) VALUES ('6b', 'thcs-a', '6B', 6, '07:00', 15, '09:00')`,
		`INSERT INTO pupils(id, school_id, class_id, full_name) VALUES ('001234567899', 'thcs-a', '6b', 'Dung')`,
		`INSERT INTO pupils(id, school_id, class_id, full_name, active) VALUES ('001234567898', 'thcs-a', '6a', 'Em', 0)`,
		`INSERT INTO gates(id, school_id, name, username, password_hash) VALUES ('gate-in', 'thcs-a', 'Cổng chính', 'gate-in', 'x')`,
	} {
		if _, err := f.db.W.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	anIn := f.event(t, an, wire.DirectionIn, at("06:50"), false) // at the named gate, with a crop
	f.event(t, binh, wire.DirectionOut, at("06:40"), false)
	binhLate := f.event(t, binh, wire.DirectionIn, at("07:20"), false) // at a gate without a row: its ID
	for _, q := range []string{
		`UPDATE events SET face_jpeg = x'ffd8' WHERE event_id = '` + anIn + `'`,
		`UPDATE events SET gate_id = 'gate-side' WHERE event_id = '` + binhLate + `'`,
	} {
		if _, err := f.db.W.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	f.now.Store(at("10:00").UnixMilli())
	if _, err := f.svc.AddOverride(ctx, chi, "2026-09-07", Excused, "ốm", "gv-lan"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.AddOverride(ctx, chi, "2026-09-07", Excused, "ốm, có giấy", "gv-lan"); err != nil {
		t.Fatal(err)
	}
	type want struct {
		id, status, reason, gate string
		manualOnly, crop, stored bool
		event                    string
	}
	wants := []want{
		{id: an, status: Present, gate: "Cổng chính", crop: true, stored: true, event: anIn},
		{id: binh, status: Late, gate: "gate-side", stored: true, event: binhLate},
		{id: chi, status: Excused, reason: "ốm, có giấy", manualOnly: true, stored: true},
	}
	check := func(t *testing.T, got PupilDay, w want) {
		t.Helper()
		if got.PupilID != w.id || got.Status != w.status || got.OverrideReason != w.reason || got.ArrivalGate != w.gate ||
			got.ManualOnly != w.manualOnly || got.ArrivalCrop != w.crop || got.Stored != w.stored || got.ArrivalEventID != w.event {
			t.Errorf("got %+v, want %+v", got, w)
		}
		if w.event != "" && got.ArrivalReceivedAt == 0 {
			t.Errorf("%s: no receipt time", w.id)
		}
	}
	all, err := f.svc.ClassPupilDays(ctx, "6a", "2026-09-07", "")
	if err != nil || len(all) != len(wants) {
		t.Fatalf("class day: %d rows %v, want %d", len(all), err, len(wants))
	}
	for i, w := range wants {
		check(t, all[i], w)
		one, err := f.svc.ClassPupilDays(ctx, "6a", "2026-09-07", w.id)
		if err != nil || len(one) != 1 {
			t.Fatalf("pupil %s: %d rows %v", w.id, len(one), err)
		}
		check(t, one[0], w)
	}
	if got, err := f.svc.ClassPupilDays(ctx, "6a", "2026-09-07", "001234567899"); err != nil || len(got) != 0 {
		t.Fatalf("another class's pupil: %+v %v", got, err)
	}
	if _, err := f.svc.ClassPupilDays(ctx, "6z", "2026-09-07", ""); err == nil {
		t.Fatal("unknown class: no error")
	}
	if _, err := f.svc.ClassPupilDays(ctx, "6a", "07/09/2026", ""); err == nil {
		t.Fatal("bad day: no error")
	}
	// Sunday: only the pupil who came is stored; the others are not_yet.
	sunday := time.Date(2026, 9, 13, 10, 0, 0, 0, ict)
	f.now.Store(sunday.UnixMilli())
	f.event(t, binh, wire.DirectionIn, sunday.Add(-2*time.Hour), false)
	for _, pupil := range []string{"", an} {
		days, err := f.svc.ClassPupilDays(ctx, "6a", "2026-09-13", pupil)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range days {
			if d.Stored != (d.PupilID == binh) || (d.PupilID != binh && (d.Status != NotYet || d.Source != "")) {
				t.Errorf("Sunday (pupil %q): %+v", pupil, d)
			}
		}
	}
	stored, err := f.svc.ClassDay(ctx, "6a", "2026-09-13")
	if err != nil || len(stored) != 1 || stored[0].PupilID != binh {
		t.Fatalf("Sunday ClassDay: %+v %v", stored, err)
	}
}
