package broker_test

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/diemdanh/diemdanh/hub/broker"
	"github.com/diemdanh/diemdanh/hub/ingest"
	"github.com/diemdanh/diemdanh/hub/ingest/ingesttest"
	"github.com/diemdanh/diemdanh/hub/store"
	"github.com/diemdanh/diemdanh/models/wire"
)

// TestMain doubles as the hub child process of TestKill9MidStream: with
// HUBB_CHILD_DB set, it runs a real broker + ingest on that database and
// address until SIGTERM (or SIGKILL).
func TestMain(m *testing.M) {
	if db := os.Getenv("HUBB_CHILD_DB"); db != "" {
		if err := childHub(db, os.Getenv("HUBB_CHILD_ADDR")); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func childHub(path, addr string) error {
	ctx := context.Background()
	db, err := store.Open(ctx, path, nil)
	if err != nil {
		return err
	}
	ing, err := ingest.New(db, ingest.Default(), nil, nil)
	if err != nil {
		return err
	}
	ing.Start(ctx)
	cfg := broker.Default()
	cfg.Listen = addr
	if base := os.Getenv("HUBB_CHILD_LOCKOUT_BASE"); base != "" {
		d, err := time.ParseDuration(base)
		if err != nil {
			return err
		}
		cfg.Lockout = broker.LockoutConfig{FreeFailures: 3, Base: d, Max: 10 * d}
	}
	if url := os.Getenv("HUBB_CHILD_EXTERNAL"); url != "" {
		cfg.Mode = broker.ModeExternal
		cfg.External = broker.ExternalConfig{URL: url, Username: hubUser, Password: hubPass, ClientID: "diemdanh-hub-crash"}
	}
	emb, err := broker.Start(ctx, cfg, db, ing, nil, nil)
	if err != nil {
		return err
	}
	fmt.Println("READY", emb.Addr())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	<-sig
	// Shutdown order: stop accepting, drain ingest, close the database.
	emb.Close()
	ing.Close()
	return db.Close()
}

type child struct {
	cmd *exec.Cmd
}

func startChild(t *testing.T, dbPath, addr, externalURL string, env ...string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "HUBB_CHILD_DB="+dbPath, "HUBB_CHILD_ADDR="+addr, "HUBB_CHILD_EXTERNAL="+externalURL)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "READY") {
				ready <- sc.Text()
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatal("child hub did not start")
	}
	return &child{cmd: cmd}
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestKill9MidStream: gates stream events (each event once, some twice,
// shuffled) into a real hub process; the hub is killed with SIGKILL in the
// middle and restarted on the same data. Publishers use QoS 1, a
// persistent session and resend what was not acknowledged, like the edge
// outbox. The stored set must equal the sent set: nothing lost, nothing twice.
func TestKill9MidStream(t *testing.T) {
	t.Run("embedded", func(t *testing.T) { kill9MidStream(t, false) })
	// External: the gates publish to a real mosquitto that stays up; the
	// hub consuming from it is killed and restarted, and mosquitto
	// redelivers what the hub had not acknowledged (= not committed).
	t.Run("external", func(t *testing.T) { kill9MidStream(t, true) })
}

func kill9MidStream(t *testing.T, external bool) {
	ctx := context.Background()
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "hub.db")
	db, err := store.Open(ctx, dbPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	gates, pupils, err := ingesttest.Seed(ctx, db, []string{"thcs-a"}, 3, 20)
	if err != nil {
		t.Fatal(err)
	}
	addr, extURL := freeAddr(t), ""
	if external {
		acl, err := broker.MosquittoACL(ctx, db, hubUser)
		if err != nil {
			t.Fatal(err)
		}
		users := map[string]string{hubUser: hubPass}
		for _, g := range gates {
			users[g.Username] = g.Password
		}
		extURL = startMosquitto(t, acl, users)
		addr = strings.TrimPrefix(extURL, "tcp://")
	}
	db.Close()
	ch := startChild(t, dbPath, addr, extURL)
	defer func() {
		if ch.cmd.ProcessState == nil {
			ch.cmd.Process.Kill()
			ch.cmd.Wait()
		}
	}()

	const perGate = 1500
	sent := map[string]bool{}
	var mu sync.Mutex
	var acked sync.WaitGroup
	progress := make(chan struct{}, 100000)
	var ackedIDs sync.Map
	var wg sync.WaitGroup
	for gi, g := range gates {
		// Build this gate's stream: every event, then 20% again, shuffled.
		var evs []wire.Event
		base := time.Now().Add(-time.Hour)
		for i := 0; i < perGate; i++ {
			evs = append(evs, ingesttest.Event(g, pupils["thcs-a"][i%20], base.Add(time.Duration(i)*time.Second)))
		}
		rng := rand.New(rand.NewSource(int64(gi)))
		for i := 0; i < perGate/5; i++ {
			evs = append(evs, evs[rng.Intn(perGate)])
		}
		rng.Shuffle(len(evs), func(i, j int) { evs[i], evs[j] = evs[j], evs[i] })
		mu.Lock()
		for _, e := range evs {
			sent[e.EventID] = true
		}
		mu.Unlock()
		o := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("gate-" + g.ID).
			SetUsername(g.Username).SetPassword(g.Password).SetCleanSession(false).
			SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(100 * time.Millisecond).
			SetMaxReconnectInterval(200 * time.Millisecond).SetOrderMatters(false)
		c := paho.NewClient(o)
		if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("connect: %v", tok.Error())
		}
		defer c.Disconnect(100)
		wg.Add(1)
		go func(g ingesttest.Gate, evs []wire.Event) {
			defer wg.Done()
			topic := wire.EventTopic(g.School, g.ID)
			sem := make(chan struct{}, 64) // in-flight window, like the edge's outbox sender
			for _, e := range evs {
				sem <- struct{}{}
				acked.Add(1)
				go func(e wire.Event) {
					defer acked.Done()
					defer func() { <-sem }()
					p := ingesttest.Payload(e)
					for {
						tok := c.Publish(topic, 1, false, p)
						if tok.WaitTimeout(20*time.Second) && tok.Error() == nil {
							ackedIDs.Store(e.EventID, true)
							progress <- struct{}{}
							return
						}
						time.Sleep(50 * time.Millisecond) // not acked: resend
					}
				}(e)
				time.Sleep(200 * time.Microsecond)
			}
		}(g, evs)
	}
	// Kill -9 once about a third of the stream is acknowledged.
	total := len(gates) * (perGate + perGate/5)
	for i := 0; i < total/3; i++ {
		<-progress
	}
	if err := ch.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ch.cmd.Wait()
	// Embedded: every event a gate got a PUBACK for was committed before
	// the kill (the PUBACK follows the commit).
	db, err = store.Open(ctx, dbPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	var atKill, ackedN, missing int
	db.R.QueryRow(`SELECT count(*) FROM events`).Scan(&atKill)
	ackedIDs.Range(func(k, _ any) bool {
		ackedN++
		var n int
		db.R.QueryRow(`SELECT count(*) FROM events WHERE event_id = ?`, k).Scan(&n)
		if n == 0 {
			missing++
		}
		return true
	})
	db.Close()
	t.Logf("killed hub: %d distinct events acked by the broker, %d stored", ackedN, atKill)
	if !external && missing > 0 {
		t.Fatalf("%d acknowledged events were not committed at the kill", missing)
	}
	time.Sleep(300 * time.Millisecond)
	ch = startChild(t, dbPath, addr, extURL)
	wg.Wait()
	done := make(chan struct{})
	go func() { acked.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(90 * time.Second):
		t.Fatal("publishers did not finish")
	}
	if external {
		// The gates' PUBACKs came from mosquitto: wait until the hub has
		// consumed its queue before stopping it.
		waitStored(t, dbPath, len(sent))
	}
	ch.cmd.Process.Signal(syscall.SIGTERM)
	if err := ch.cmd.Wait(); err != nil {
		t.Fatalf("child exit: %v", err)
	}

	db, err = store.Open(ctx, dbPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.R.Query(`SELECT event_id FROM events`)
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]int{}
	for rows.Next() {
		var id string
		rows.Scan(&id)
		stored[id]++
	}
	rows.Close()
	lost, extra := 0, 0
	for id := range sent {
		if stored[id] == 0 {
			lost++
		}
	}
	for id := range stored {
		if !sent[id] {
			extra++
		}
	}
	if lost != 0 || extra != 0 || len(stored) != len(sent) {
		t.Fatalf("sent %d distinct, stored %d: lost %d, unexpected %d", len(sent), len(stored), lost, extra)
	}
	var q int
	db.R.QueryRow(`SELECT count(*) FROM quarantine`).Scan(&q)
	if q != 0 {
		t.Fatalf("%d messages quarantined", q)
	}
	t.Logf("sent %d distinct events (%d publishes), stored %d", len(sent), total, len(stored))
}

func waitStored(t *testing.T, dbPath string, want int) {
	t.Helper()
	r, err := sql.Open("sqlite3", store.DSN(dbPath, true))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	deadline := time.Now().Add(60 * time.Second)
	var n int
	for time.Now().Before(deadline) {
		if err := r.QueryRow(`SELECT count(*) FROM events`).Scan(&n); err == nil && n >= want {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("hub stored %d of %d within 60 s", n, want)
}
