package broker_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/diemdanh/diemdanh/hub/broker"
	"github.com/diemdanh/diemdanh/hub/ingest"
	"github.com/diemdanh/diemdanh/hub/ingest/ingesttest"
	"github.com/diemdanh/diemdanh/hub/store"
)

type hubFixture struct {
	db     *store.DB
	ing    *ingest.Ingester
	emb    *broker.Embedded
	gates  []ingesttest.Gate
	pupils map[string][]string
}

func openDB(t *testing.T) *store.DB {
	t.Helper()
	db, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "hub.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// startHub runs a real embedded broker + ingest on 127.0.0.1:0 over a
// fresh SQLite file with two schools of two gates each.
func startHub(t *testing.T, mut func(*broker.Config), now func() time.Time) *hubFixture {
	t.Helper()
	ctx := context.Background()
	f := &hubFixture{db: openDB(t)}
	var err error
	f.gates, f.pupils, err = ingesttest.Seed(ctx, f.db, []string{"thcs-a", "thcs-b"}, 2, 10)
	if err != nil {
		t.Fatal(err)
	}
	f.ing, err = ingest.New(f.db, ingest.Default(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.ing.Start(ctx)
	cfg := broker.Default()
	cfg.Listen = "127.0.0.1:0"
	if mut != nil {
		mut(&cfg)
	}
	f.emb, err = broker.NewEmbedded(cfg, f.db, f.ing, testLog, now)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.emb.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f.emb.Close()
		f.ing.Close()
	})
	return f
}

func clientOpts(url, id, user, pass string) *paho.ClientOptions {
	return paho.NewClientOptions().AddBroker(url).SetClientID(id).SetUsername(user).SetPassword(pass).
		SetCleanSession(false).SetAutoReconnect(false).SetConnectTimeout(5 * time.Second).
		SetOrderMatters(false).SetConnectRetry(false).
		SetProtocolVersion(4) // else paho retries a refused login with MQTT 3.1, counting twice
}

func connect(t *testing.T, o *paho.ClientOptions) (paho.Client, error) {
	t.Helper()
	c := paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		t.Fatal("connect timed out")
	}
	if tok.Error() == nil {
		t.Cleanup(func() { c.Disconnect(50) })
	}
	return c, tok.Error()
}

func (f *hubFixture) count(t *testing.T, q string, args ...any) int {
	t.Helper()
	var n int
	if err := f.db.R.QueryRow(q, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

var testLog = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
