package facereview_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/hub/audit"
	"github.com/diemdanh/diemdanh/hub/facereview"
)

// TestPurgeRemovesOldRowsOnly: faces that reached the hub more than the
// retention ago are deleted with their crops and dismissals, whatever
// their status; younger ones stay; each school's purge is audited once.
func TestPurgeRemovesOldRowsOnly(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	ret := facereview.Default().Retention
	// Received (hub clock) at these ages when the purge runs.
	ages := []struct {
		name string
		age  time.Duration
		gate int // fixture gate: 0, 1 thcs-a; 2 thcs-b
		keep bool
	}{
		{"two retentions old", 2 * ret, 0, false},
		{"a minute past the retention", ret + time.Minute, 2, false},
		{"a minute short of the retention", ret - time.Minute, 1, true},
		{"fresh", time.Minute, 0, true},
	}
	start := f.clock()
	ids := make([]int64, len(ages))
	for i := range ages { // oldest first, the clock moving forward
		f.mu.Lock()
		f.now = start.Add(2*ret - ages[i].age)
		f.mu.Unlock()
		ids[i] = f.ingest(t, f.capture(t, f.gates[ages[i].gate], f.clock().Add(-time.Second)))
	}
	if _, err := f.st.Dismiss(ctx, ids[0], "thcs-a-1a", "teacher:lan"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.st.Assign(ctx, ids[1], f.pupils["thcs-b"][0], "teacher:nam"); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.now = start.Add(2 * ret)
	f.mu.Unlock()
	n, err := f.st.PurgeOnce(ctx)
	if err != nil || n != 2 {
		t.Fatalf("purged %d, %v; want 2", n, err)
	}
	for i, a := range ages {
		_, err := f.st.Get(ctx, ids[i])
		if kept := err == nil; kept != a.keep {
			t.Errorf("%s: kept %v, want %v (%v)", a.name, kept, a.keep, err)
		}
	}
	if c := f.count(t, `SELECT count(*) FROM unrecognised_dismissals`); c != 0 {
		t.Errorf("%d dismissals of purged faces remain", c)
	}
	if c := f.count(t, `SELECT count(*) FROM unrecognised_faces WHERE received_at < ?`, f.clock().Add(-ret).UnixMilli()); c != 0 {
		t.Errorf("%d rows older than the retention remain", c)
	}
	entries, err := f.audit.List(ctx, audit.Filter{Scope: audit.Scope{All: true}, Action: audit.ActionRetention})
	if err != nil {
		t.Fatal(err)
	}
	per := map[string]int64{}
	for _, e := range entries {
		var d struct {
			Table   string `json:"table"`
			Deleted int64  `json:"deleted"`
		}
		if err := json.Unmarshal(e.Detail, &d); err != nil || d.Table != "unrecognised_faces" {
			t.Fatalf("retention entry %+v: %v", e, err)
		}
		per[e.School] += d.Deleted
	}
	if len(entries) != 2 || per["thcs-a"] != 1 || per["thcs-b"] != 1 {
		t.Fatalf("audited purges %v in %d entries, want 1 per school", per, len(entries))
	}
	if n, err := f.st.PurgeOnce(ctx); err != nil || n != 0 {
		t.Fatalf("second purge: %d, %v; want nothing", n, err)
	}
	if es, _ := f.audit.List(ctx, audit.Filter{Scope: audit.Scope{All: true}, Action: audit.ActionRetention}); len(es) != 2 {
		t.Fatalf("an empty purge was audited: %d entries", len(es))
	}
}

// TestRunPurgesOnNotify: the worker purges at start and when notified,
// without waiting for its interval, and stops with its context.
func TestRunPurgesOnNotify(t *testing.T) {
	f := newFixture(t)
	ret := facereview.Default().Retention
	old := f.ingest(t, f.capture(t, f.gates[0], f.clock().Add(-time.Second)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.st.Run(ctx) }()
	f.advance(ret + time.Hour)
	f.st.Notify()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := f.st.Get(context.Background(), old); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the notified worker did not purge (interval is an hour)")
		}
		time.Sleep(10 * time.Millisecond)
		f.st.Notify()
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not stop with its context")
	}
}
