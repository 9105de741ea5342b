package attendance

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/diemdanh/diemdanh/hub/ingest"
	"github.com/diemdanh/diemdanh/models/wire"
)

// TestOnChangeHook: the hook fires when the service's own work changes a
// stored day (worker recompute after an event, a new row, the cut-off,
// an override), and not when nothing changed or when another package
// calls Recompute directly.
func TestOnChangeHook(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	var mu sync.Mutex
	var got []string
	f.svc.OnChange(func(_ context.Context, d Day) {
		mu.Lock()
		got = append(got, d.PupilID[len(d.PupilID)-1:]+"="+d.Status)
		mu.Unlock()
	})
	take := func(want string) {
		t.Helper()
		mu.Lock()
		defer mu.Unlock()
		if s := strings.Join(got, ","); s != want {
			t.Fatalf("hook calls %q, want %q", s, want)
		}
		got = nil
	}
	const an, binh = "001234567890", "001234567891"
	if err := f.svc.SyncOnce(ctx); err != nil { // 06:00: both rows new, not_yet
		t.Fatal(err)
	}
	take("0=not_yet,1=not_yet")
	if err := f.svc.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	take("")
	when := at("07:20")
	f.event(t, an, wire.DirectionIn, when, false)
	f.svc.EventStored(ctx, ingest.StoredEvent{Event: wire.Event{StudentID: an, SchoolID: "thcs-a", CapturedAt: when.UnixMilli()}})
	if _, err := f.svc.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	take("0=late")
	if _, err := f.svc.Recompute(ctx, an, "2026-09-07"); err != nil {
		t.Fatal(err)
	}
	take("")
	if _, err := f.svc.AddOverride(ctx, an, "2026-09-07", Excused, "ốm", "teacher:lan"); err != nil {
		t.Fatal(err)
	}
	take("0=excused")
	f.now.Store(at("09:30").UnixMilli())
	if err := f.svc.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	take("1=absent")
	_ = binh
}
