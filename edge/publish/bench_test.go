package publish

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/edge/publish/brokertest"
	"github.com/diemdanh/diemdanh/edge/store"
)

// BenchmarkDrain measures outbox → embedded broker throughput on loopback:
// each op is one event published with QoS 1, PUBACKed and deleted.
func BenchmarkDrain(b *testing.B) {
	addr, _ := brokertest.FreePort()
	srv, err := brokertest.StartMochi(addr, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer brokertest.CloseMochi(srv, 3*time.Second)
	db, err := store.Open(filepath.Join(b.TempDir(), "edge.db"), store.Options{MaxOutbox: 1 << 30}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	for i := 0; i < b.N; i++ {
		if err := db.Enqueue(context.Background(), newEvent(i)); err != nil {
			b.Fatal(err)
		}
	}
	p, err := New(testConfig(addr), db, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.ResetTimer()
	done := make(chan error)
	go func() { done <- p.Run(ctx) }()
	for db.Depth() > 0 {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	cancel()
	<-done
}
