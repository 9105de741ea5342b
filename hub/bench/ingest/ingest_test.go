package ingest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"testing"

	"github.com/diemdanh/diemdanh/hub/bench/ingest"
)

// The bench command runs end to end on a small load, in both modes, and
// reports a complete, loss-free result. (Speed is measured by running
// `hub bench-ingest`, not asserted here.)
func TestBenchIngestCommand(t *testing.T) {
	var out bytes.Buffer
	err := ingest.BenchIngestMain(context.Background(),
		[]string{"--events", "600", "--publishers", "3", "--external", "--json"}, &out, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var r map[string]any
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	ext, _ := r["external"].(map[string]any)
	for name, m := range map[string]map[string]any{"embedded": r, "external": ext} {
		if m == nil {
			t.Fatalf("%s result missing: %s", name, out.String())
		}
		for _, k := range []string{"events_per_s", "latency_ms_p50", "latency_ms_p95", "rss_mb"} {
			if v, ok := m[k].(float64); !ok || v <= 0 {
				t.Fatalf("%s %s = %v", name, k, m[k])
			}
		}
		if m["lost"].(float64) != 0 || m["duplicated"].(float64) != 0 {
			t.Fatalf("%s lost %v duplicated %v", name, m["lost"], m["duplicated"])
		}
	}
	if v, ok := r["external_ratio"].(float64); !ok || v <= 0 {
		t.Fatalf("external_ratio = %v", r["external_ratio"])
	}
	err = ingest.BenchIngestMain(context.Background(), []string{"--events", "0"}, io.Discard, io.Discard)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("bad flag: got %v", err)
	}
}
