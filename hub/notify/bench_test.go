package notify

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/models/wire"
)

// BenchmarkNotifyLatency measures, for b.N arrivals streamed at 200
// events/s (a whole school arriving in a few minutes is < 5/s), the time
// from the event reaching the hub (its received_at) to the message being
// handed to its channel (a signed webhook on loopback, answered 200).
// Run: go test ./hub/notify -run ^$ -bench NotifyLatency -benchtime 2000x
func BenchmarkNotifyLatency(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	defer srv.Close()
	db := openFixture(b, "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// One pupil per event, each with a guardian reachable by webhook.
	tx, _ := db.W.Begin()
	for i := 0; i < b.N; i++ {
		id := fmt.Sprintf("77%010d", i)
		tx.Exec(`INSERT INTO pupils(id, school_id, class_id, full_name) VALUES (?, 's1', 'c1', ?)`, id, fmt.Sprintf("Học sinh %d", i))
		tx.Exec(`INSERT INTO guardians(pupil_id, full_name, phone) VALUES (?, 'PH', '0900000000')`, id)
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
	cfg := Default()
	cfg.Push.Enabled = false
	cfg.Webhook = WebhookConfig{URL: srv.URL, Secret: "bench-secret-0123456789"}
	n, err := New(ctx, cfg, db, nil, time.Now)
	if err != nil {
		b.Fatal(err)
	}
	go n.Run(ctx)
	b.ResetTimer()
	start := time.Now()
	interval := time.Second / 200
	for i := 0; i < b.N; i++ {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		now := time.Now()
		_, err := db.W.Exec(`INSERT INTO events(event_id, school_id, gate_id, direction, student_id, captured_at, received_at,
			distance, margin, frames_used, model) VALUES (?, 's1', 'g1', 'in', ?, ?, ?, 0.3, 0.1, 3, 'dlib@1')`,
			wire.NewEventID(), fmt.Sprintf("77%010d", i), now.UnixMilli(), now.UnixMilli())
		if err != nil {
			b.Fatal(err)
		}
		n.Poke() // what ingest's EventStored does
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		var sent int
		db.R.QueryRow(`SELECT COUNT(*) FROM notify_outbox WHERE status = 'sent'`).Scan(&sent)
		if sent == b.N {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("only %d of %d sent", sent, b.N)
		}
		time.Sleep(5 * time.Millisecond)
	}
	b.StopTimer()
	rows, err := db.R.Query(`SELECT sent_at - event_at FROM notify_outbox WHERE status = 'sent'`)
	if err != nil {
		b.Fatal(err)
	}
	var lat []float64
	for rows.Next() {
		var d float64
		rows.Scan(&d)
		lat = append(lat, d)
	}
	rows.Close()
	sort.Float64s(lat)
	b.ReportMetric(lat[len(lat)*50/100], "p50_ms")
	b.ReportMetric(lat[len(lat)*95/100], "p95_ms")
	b.ReportMetric(lat[len(lat)-1], "max_ms")
}
