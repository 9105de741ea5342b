package live

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"testing"
)

// TestBenchLiveSmoke runs bench-live small: every client must get every
// event (the command fails on a lost frame). Speed is not asserted here.
func TestBenchLiveSmoke(t *testing.T) {
	var out bytes.Buffer
	if err := BenchLiveMain(context.Background(), []string{"--clients", "20", "--events", "30", "--rate", "200", "--json"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	var r BenchLiveResult
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if r.Deliveries != 600 || r.Lost != 0 || r.P95 <= 0 && r.Max < 0 || r.RSSMB <= 0 {
		t.Errorf("result %+v", r)
	}
}
