package ingest_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/hub/ingest"
	"github.com/diemdanh/diemdanh/hub/ingest/ingesttest"
	"github.com/diemdanh/diemdanh/hub/store"
	"github.com/diemdanh/diemdanh/models/wire"
)

// BenchmarkIngestGroupCommit measures the ingest path without MQTT:
// 64 concurrent submitters, each waiting for its commit (as the broker's
// ack does). Reports events/s.
func BenchmarkIngestGroupCommit(b *testing.B) {
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(b.TempDir(), "hub.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	gates, pupils, err := ingesttest.Seed(ctx, db, []string{"bench"}, 8, 200)
	if err != nil {
		b.Fatal(err)
	}
	in, err := ingest.New(db, ingest.Default(), nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	in.Start(ctx)
	defer in.Close()
	msgs := make([]ingest.Message, b.N)
	now := time.Now()
	for i := range msgs {
		g := gates[i%len(gates)]
		ev := ingesttest.Event(g, pupils["bench"][i%200], now)
		msgs[i] = ingest.Message{Topic: wire.EventTopic(g.School, g.ID), Payload: ingesttest.Payload(ev)}
	}
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	const workers = 64
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < len(msgs); i += workers {
				if r, err := in.Handle(ctx, msgs[i]); err != nil || r != ingest.Stored {
					b.Errorf("%v %v", r, err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
}
