package ingest_test

import (
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/hub/ingest"
	"github.com/diemdanh/diemdanh/models/wire"
)

// FuzzCheckEvent feeds arbitrary topics and payloads to the ingest decode
// path. It must never panic, and whatever it accepts must satisfy the
// contract and the topic/clock checks. Seeds: testdata/fuzz/FuzzCheckEvent.
func FuzzCheckEvent(f *testing.F) {
	now := time.Date(2026, 11, 20, 7, 0, 0, 0, time.UTC)
	f.Add("diemdanh/v1/thcs-a/gate/gate1/events", []byte(`{"schema":1}`))
	cfg := ingest.Default()
	f.Fuzz(func(t *testing.T, topic string, payload []byte) {
		ev, reason := ingest.CheckEvent(cfg, topic, payload, now)
		if (ev == nil) == (reason == "") {
			t.Fatalf("exactly one of event and reason must be set: %v %q", ev, reason)
		}
		if ev == nil {
			return
		}
		if err := ev.Validate(); err != nil {
			t.Fatalf("accepted an invalid event: %v", err)
		}
		s, g, k, ok := wire.ParseGateTopic(topic)
		if !ok || k != "events" || s != ev.SchoolID || g != ev.GateID {
			t.Fatalf("accepted event does not match topic %q", topic)
		}
		if ev.CapturedAt > now.Add(cfg.FutureTolerance).UnixMilli() || ev.CapturedAt < now.Add(-cfg.MaxAge).UnixMilli() {
			t.Fatalf("accepted out-of-window captured_at %d", ev.CapturedAt)
		}
		if _, err := ev.Encode(); err != nil {
			t.Fatalf("accepted event does not re-encode: %v", err)
		}
	})
}
