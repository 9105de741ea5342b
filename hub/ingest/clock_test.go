package ingest_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/hub/audit"
	"github.com/diemdanh/diemdanh/hub/ingest"
	"github.com/diemdanh/diemdanh/hub/ingest/ingesttest"
	"github.com/diemdanh/diemdanh/hub/store"
	"github.com/diemdanh/diemdanh/models/wire"
)

// clockFixture is an ingester with the audit log, on a hub clock the test moves.
type clockFixture struct {
	*fixture
}

func newClockFixture(t *testing.T) clockFixture {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "hub.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	f := &fixture{db: db, now: time.Date(2026, 12, 7, 7, 0, 0, 0, time.UTC)}
	if f.gates, f.pupils, err = ingesttest.Seed(ctx, db, []string{"thcs-a"}, 1, 3); err != nil {
		t.Fatal(err)
	}
	now := func() time.Time { return f.now }
	in, err := ingest.New(db, ingest.Default(), nil, now)
	if err != nil {
		t.Fatal(err)
	}
	in.SetAudit(audit.New(db, nil, now))
	in.AddListener(f)
	in.Start(ctx)
	t.Cleanup(in.Close)
	f.in = in
	return clockFixture{f}
}

func (f clockFixture) send(t *testing.T, topic string, v any) ingest.Result {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	r, err := f.in.Handle(context.Background(), ingest.Message{Topic: topic, Payload: b})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestClockSkewCorrected: a gate whose clock is off has its offset
// measured from its online status (sent before its outbox) or a
// heartbeat; its events are stored with captured_at on the hub's clock
// and gate_captured_at as sent, listeners get the corrected time, the
// ingest window is applied to the corrected time (a gate 10 min fast is
// not quarantined), small offsets are left alone, and an offset beyond
// clock_skew_warn (2 min) sets clock_warn and is audited once, as is its
// return.
func TestClockSkewCorrected(t *testing.T) {
	cases := []struct {
		name      string
		offset    time.Duration // gate clock minus hub clock
		measure   string        // "status", "heartbeat" or "" (never measured)
		stored    bool
		corrected bool
		warn      bool
	}{
		{"10 min fast, measured by status", 10 * time.Minute, "status", true, true, true},
		{"7 min slow, measured by heartbeat", -7 * time.Minute, "heartbeat", true, true, true},
		{"90 s fast: corrected, no warning", 90 * time.Second, "heartbeat", true, true, false},
		{"3 s fast: left alone", 3 * time.Second, "heartbeat", true, false, false},
		{"10 min fast, never measured: quarantined", 10 * time.Minute, "", false, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newClockFixture(t)
			g := f.gates[0]
			gateNow := f.now.Add(tc.offset)
			switch tc.measure {
			case "status":
				f.send(t, wire.StatusTopic(g.School, g.ID), wire.Status{Schema: 1, GateID: g.ID, Online: true, At: gateNow.UnixMilli()})
			case "heartbeat":
				f.send(t, wire.HeartbeatTopic(g.School, g.ID), wire.Heartbeat{Schema: 1, GateID: g.ID, At: gateNow.UnixMilli()})
			}
			capturedGate := gateNow.Add(-30 * time.Second) // passed 30 s before it was received
			ev := ingesttest.Event(g, f.pupils[g.School][0], capturedGate)
			r := f.send(t, wire.EventTopic(g.School, g.ID), ev)
			if (r == ingest.Stored) != tc.stored {
				t.Fatalf("result %v, want stored=%v", r, tc.stored)
			}
			if !tc.stored {
				return
			}
			want := capturedGate.UnixMilli()
			if tc.corrected {
				want = f.now.Add(-30 * time.Second).UnixMilli()
			}
			var capt, gateCapt, recv int64
			if err := f.db.R.QueryRow(`SELECT captured_at, gate_captured_at, received_at FROM events WHERE event_id = ?`, ev.EventID).
				Scan(&capt, &gateCapt, &recv); err != nil {
				t.Fatal(err)
			}
			if capt != want || gateCapt != capturedGate.UnixMilli() || recv != f.now.UnixMilli() {
				t.Fatalf("captured_at %d (want %d), gate_captured_at %d (want %d), received_at %d",
					capt, want, gateCapt, capturedGate.UnixMilli(), recv)
			}
			f.in.Close() // listeners told
			if len(f.seen) != 1 || f.seen[0].CapturedAt != want || f.seen[0].GateCapturedAt != capturedGate.UnixMilli() {
				t.Fatalf("listener got %+v", f.seen)
			}
			if n := f.count(t, `SELECT count(*) FROM gates WHERE id = ? AND clock_warn = 1`, g.ID); (n == 1) != tc.warn {
				t.Fatalf("clock_warn %d, want %v", n, tc.warn)
			}
			if n := f.count(t, `SELECT count(*) FROM audit_log WHERE action = ? AND subject = ?`, ingest.ActionGateClockSkew, "gate:"+g.ID); (n == 1) != tc.warn {
				t.Fatalf("%d clock-skew audit entries, want warn=%v", n, tc.warn)
			}
		})
	}
}

// TestGateAlarmsAuditedOnChange: heartbeats that keep a gate's clock
// off, or its disk full, audit the alarm once; the heartbeat that clears
// it audits the return once.
func TestGateAlarmsAuditedOnChange(t *testing.T) {
	f := newClockFixture(t)
	g := f.gates[0]
	beats := []struct {
		offset   time.Duration
		diskFull bool
	}{{0, false}, {5 * time.Minute, true}, {5 * time.Minute, true}, {-4 * time.Minute, true}, {time.Second, false}, {time.Second, false}}
	for i, b := range beats {
		f.now = f.now.Add(time.Minute)
		hb := wire.Heartbeat{Schema: 1, GateID: g.ID, At: f.now.Add(b.offset).UnixMilli(), DiskFull: b.diskFull, OutboxDepth: i, OutboxRefused: int64(i)}
		if r := f.send(t, wire.HeartbeatTopic(g.School, g.ID), hb); r != ingest.Updated {
			t.Fatalf("heartbeat %d: %v", i, r)
		}
	}
	want := map[string]int{ingest.ActionGateClockSkew: 1, ingest.ActionGateClockOK: 1, ingest.ActionGateDiskFull: 1, ingest.ActionGateDiskOK: 1}
	for action, n := range want {
		if got := f.count(t, `SELECT count(*) FROM audit_log WHERE action = ? AND subject = ? AND school_id = ?`, action, "gate:"+g.ID, g.School); got != n {
			t.Errorf("%s: %d audit entries, want %d", action, got, n)
		}
	}
	if n := f.count(t, `SELECT clock_warn FROM gates WHERE id = ?`, g.ID); n != 0 {
		t.Errorf("clock_warn %d after the clock came back", n)
	}
}
