// Package ingest is `hub bench-ingest`: MQTT → SQLite ingest rate and
// latency through the hub's broker (embedded, or Debian's mosquitto in
// external mode). It lives outside hub/broker so the production package
// carries no benchmark harness.
package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/diemdanh/diemdanh/hub/broker"
	"github.com/diemdanh/diemdanh/hub/ingest"
	"github.com/diemdanh/diemdanh/hub/ingest/ingesttest"
	"github.com/diemdanh/diemdanh/hub/store"
	"github.com/diemdanh/diemdanh/models/benchutil"
	"github.com/diemdanh/diemdanh/models/wire"
)

// BenchResult is one bench-ingest run.
type BenchResult struct {
	Mode         string  `json:"mode"`
	Events       int     `json:"events"`
	Publishers   int     `json:"publishers"`
	Window       int     `json:"window"`
	EventsPerS   float64 `json:"events_per_s"`
	LatencyP50   float64 `json:"latency_ms_p50"`
	LatencyP95   float64 `json:"latency_ms_p95"`
	LatencyP99   float64 `json:"latency_ms_p99"`
	Lost         int     `json:"lost"`
	Duplicated   int     `json:"duplicated"`
	Batches      int64   `json:"batches"`
	RSSMB        float64 `json:"rss_mb"`       // peak resident set of the process (VmHWM)
	RSSStartMB   float64 `json:"rss_start_mb"` // before the run: the hub binary alone (cgo libraries included)
	ElapsedS     float64 `json:"elapsed_s"`
	ExternalURL  string  `json:"external_url,omitempty"`
	BrokerBinary string  `json:"broker_binary,omitempty"`
}

// BenchIngestMain is `hub bench-ingest --events N --publishers P [--window W] [--external] --json`:
// it publishes N real events over MQTT on loopback from P paho clients
// (QoS 1, persistent sessions) into a fresh hub (temporary SQLite,
// embedded broker) and prints events_per_s, latency_ms_p50/p95 (publish →
// committed row), lost, duplicated and rss_mb. With --external it runs the
// same against Debian's mosquitto (started on a free loopback port) with
// the hub in external mode, and reports external_ratio =
// external events_per_s / embedded events_per_s.
func BenchIngestMain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := benchutil.FlagSet("bench-ingest", stderr)
	n := fs.Int("events", 20000, "events to publish")
	p := fs.Int("publishers", 8, "concurrent MQTT publishers (one gate each)")
	w := fs.Int("window", 16, "unacknowledged events in flight per publisher (edge mqtt.window default: 16)")
	ext := fs.Bool("external", false, "also run against Debian's mosquitto in external mode and report the ratio")
	mosq := fs.String("mosquitto", "/usr/sbin/mosquitto", "mosquitto binary for --external")
	asJSON := benchutil.JSONFlag(fs)
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the run to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if *n < 1 || *p < 1 || *w < 2 {
		return fmt.Errorf("bench-ingest: --events and --publishers must be positive, --window at least 2: %w", flag.ErrHelp)
	}
	rssStart := peakRSSMB()
	emb, err := benchIngest(ctx, broker.ModeEmbedded, *n, *p, *w, *mosq, rssStart)
	if err != nil {
		return err
	}
	out := map[string]any{}
	b, _ := json.Marshal(emb)
	_ = json.Unmarshal(b, &out)
	if *ext {
		x, err := benchIngest(ctx, broker.ModeExternal, *n, *p, *w, *mosq, rssStart)
		if err != nil {
			return err
		}
		out["external"] = x
		if emb.EventsPerS > 0 {
			out["external_ratio"] = round(x.EventsPerS/emb.EventsPerS, 3)
		}
	}
	if *asJSON {
		return benchutil.PrintJSON(stdout, out)
	}
	keys := make([]string, 0, len(out))
	for k := range out {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(stdout, "%-16s %v\n", k, out[k])
	}
	return nil
}

type commitClock struct {
	mu   sync.Mutex
	at   map[string]time.Time
	dups int
}

func (c *commitClock) EventStored(_ context.Context, ev ingest.StoredEvent) {
	now := time.Now()
	c.mu.Lock()
	if _, ok := c.at[ev.EventID]; ok {
		c.dups++
	} else {
		c.at[ev.EventID] = now
	}
	c.mu.Unlock()
}

// benchIngest runs one measurement: seed a hub, start ingest and the
// broker, pre-encode the events, connect the publishers, publish, wait
// for the commits, and measure.
func benchIngest(ctx context.Context, mode string, n, pubs, window int, mosqBin string, rssStartMB float64) (*BenchResult, error) {
	dir, err := os.MkdirTemp("", "diemdanh-bench-ingest-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	db, err := store.Open(ctx, filepath.Join(dir, "hub.db"), nil)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	gates, pupils, err := ingesttest.Seed(ctx, db, []string{"bench"}, pubs, 200)
	if err != nil {
		return nil, err
	}
	ing, err := ingest.New(db, ingest.Default(), nil, nil)
	if err != nil {
		return nil, err
	}
	clock := &commitClock{at: make(map[string]time.Time, n)}
	ing.AddListener(clock)
	ing.Start(ctx)
	defer ing.Close()

	res := &BenchResult{Mode: mode, Events: n, Publishers: pubs, Window: window, RSSStartMB: rssStartMB}
	url, stop, err := startBenchBroker(ctx, mode, db, ing, gates, dir, mosqBin, res)
	if err != nil {
		return nil, err
	}
	defer stop()
	per := encodeBenchEvents(gates, pupils["bench"], n, pubs)
	clients, err := connectPublishers(url, gates, pubs)
	defer disconnectAll(clients)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	sentAt, pubErrs := publishAll(clients, per, window)
	// Everything acknowledged is committed; wait for the listener fan-out.
	clock.wait(n, 30*time.Second)
	lat, last := clock.latencies(per, sentAt, res)
	elapsed := last.Sub(start)
	var rows int
	if err := db.R.QueryRowContext(ctx, `SELECT count(*) FROM events`).Scan(&rows); err != nil {
		return nil, err
	}
	res.Lost = n - rows
	if rows > n {
		res.Duplicated += rows - n
	}
	res.LatencyP50, res.LatencyP95, res.LatencyP99 = pct(lat, 0.50), pct(lat, 0.95), pct(lat, 0.99)
	res.ElapsedS = round(elapsed.Seconds(), 3)
	if elapsed > 0 {
		res.EventsPerS = round(float64(rows)/elapsed.Seconds(), 0)
	}
	res.Batches = ing.Stats().Batches
	res.RSSMB = peakRSSMB()
	if pubErrs > 0 {
		slog.Default().Warn("bench-ingest: publishes not acknowledged", "count", pubErrs)
	}
	return res, nil
}

// startBenchBroker starts the hub's broker of mode: the embedded one, or
// a mosquitto with the gates' accounts and the hub's bridge to it. stop
// closes what started.
func startBenchBroker(ctx context.Context, mode string, db *store.DB, ing *ingest.Ingester, gates []ingesttest.Gate,
	dir, mosqBin string, res *BenchResult) (url string, stop func(), err error) {
	switch mode {
	case broker.ModeEmbedded:
		cfg := broker.Default()
		cfg.Listen = "127.0.0.1:0"
		e, err := broker.NewEmbedded(cfg, db, ing, nil, nil)
		if err != nil {
			return "", nil, err
		}
		if err := e.Start(); err != nil {
			return "", nil, err
		}
		return "tcp://" + e.Addr(), func() { e.Close() }, nil
	case broker.ModeExternal:
		users := map[string]string{"diemdanh-hub": "bench-hub-secret"}
		for _, g := range gates {
			users[g.Username] = g.Password
		}
		acl, err := broker.MosquittoACL(ctx, db, "diemdanh-hub")
		if err != nil {
			return "", nil, err
		}
		u, stopMosq, err := runMosquitto(mosqBin, dir, acl, users)
		if err != nil {
			return "", nil, err
		}
		cfg := broker.Default()
		cfg.Mode = broker.ModeExternal
		cfg.External = broker.ExternalConfig{URL: u, Username: "diemdanh-hub", Password: "bench-hub-secret", ClientID: "diemdanh-hub-bench"}
		x, err := broker.NewExternal(ctx, cfg, ing, nil)
		if err != nil {
			stopMosq()
			return "", nil, err
		}
		stop = func() { x.Close(); stopMosq() }
		if !x.Connected() {
			stop()
			return "", nil, errors.New("bench-ingest: hub could not connect to mosquitto")
		}
		res.ExternalURL, res.BrokerBinary = u, mosqBin
		return u, stop, nil
	}
	return "", func() {}, nil
}

// benchMsg is one pre-encoded event.
type benchMsg struct {
	id      string
	topic   string
	payload []byte
}

// encodeBenchEvents pre-encodes the n events, per publisher, so the
// publishers measure the pipeline, not JSON.
func encodeBenchEvents(gates []ingesttest.Gate, pupils []string, n, pubs int) [][]benchMsg {
	per := make([][]benchMsg, pubs)
	now := time.Now()
	for i := 0; i < n; i++ {
		g := gates[i%pubs]
		ev := ingesttest.Event(g, pupils[i%len(pupils)], now.Add(-time.Duration(n-i)*time.Millisecond))
		per[i%pubs] = append(per[i%pubs], benchMsg{ev.EventID, wire.EventTopic(g.School, g.ID), ingesttest.Payload(ev)})
	}
	return per
}

// connectPublishers connects one MQTT client per gate. On an error the
// clients connected so far are returned for disconnectAll.
func connectPublishers(url string, gates []ingesttest.Gate, pubs int) ([]paho.Client, error) {
	clients := make([]paho.Client, pubs)
	for i, g := range gates {
		o := paho.NewClientOptions().AddBroker(url).SetClientID("bench-" + g.ID).SetUsername(g.Username).
			SetPassword(g.Password).SetCleanSession(false).SetOrderMatters(false).SetAutoReconnect(true).
			SetWriteTimeout(10 * time.Second)
		c := paho.NewClient(o)
		if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			return clients, fmt.Errorf("bench-ingest: publisher connect: %v", tok.Error())
		}
		clients[i] = c
	}
	return clients, nil
}

// disconnectAll disconnects the connected clients, last first.
func disconnectAll(clients []paho.Client) {
	for i := len(clients) - 1; i >= 0; i-- {
		if clients[i] != nil {
			clients[i].Disconnect(100)
		}
	}
}

// publishAll publishes each publisher's events at QoS 1 with at most
// window in flight, recording when each was sent; it returns once every
// publish is acknowledged (or timed out: counted in errs).
func publishAll(clients []paho.Client, per [][]benchMsg, window int) (sentAt [][]time.Time, errs int64) {
	sentAt = make([][]time.Time, len(per))
	var pubErrs atomic.Int64
	var wg sync.WaitGroup
	for pi := range per {
		sentAt[pi] = make([]time.Time, len(per[pi]))
		wg.Add(1)
		go func(pi int) {
			defer wg.Done()
			// The broker acknowledges in order, so one waiter per publisher
			// takes the tokens in order; the channel bounds the window.
			inflight := make(chan paho.Token, window-1)
			waited := make(chan struct{})
			go func() {
				defer close(waited)
				for tok := range inflight {
					if !tok.WaitTimeout(60*time.Second) || tok.Error() != nil {
						pubErrs.Add(1)
					}
				}
			}()
			for j, m := range per[pi] {
				sentAt[pi][j] = time.Now()
				inflight <- clients[pi].Publish(m.topic, 1, false, m.payload)
			}
			close(inflight)
			<-waited
		}(pi)
	}
	wg.Wait()
	return sentAt, pubErrs.Load()
}

// wait waits (up to timeout) until n events are committed.
func (c *commitClock) wait(n int, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for {
		c.mu.Lock()
		got := len(c.at)
		c.mu.Unlock()
		if got >= n || time.Now().After(deadline) {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// latencies are the send-to-commit times of the committed events, and
// the last commit; the duplicates seen go to res.
func (c *commitClock) latencies(per [][]benchMsg, sentAt [][]time.Time, res *BenchResult) (lat []float64, last time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	lat = make([]float64, 0, len(c.at))
	for pi := range per {
		for j, m := range per[pi] {
			if at, ok := c.at[m.id]; ok {
				lat = append(lat, float64(at.Sub(sentAt[pi][j]).Microseconds())/1000)
				if at.After(last) {
					last = at
				}
			}
		}
	}
	res.Duplicated = c.dups
	return lat, last
}

// pct is the q-quantile of the latencies, in ms to 2 decimals.
func pct(lat []float64, q float64) float64 { return round(benchutil.Percentile(lat, q), 2) }

// peakRSSMB is the process's peak resident set (VmHWM) in MB.
func peakRSSMB() float64 { return round(benchutil.PeakRSSMB(), 1) }

var round = benchutil.Round

// runMosquitto starts mosquitto on a free loopback port with the settings
// of deploy/mosquitto/mosquitto.conf, a password file made with
// mosquitto_passwd and the given ACL. stop kills it.
func runMosquitto(bin, dir, acl string, users map[string]string) (url string, stop func(), err error) {
	passwdBin, err := exec.LookPath("mosquitto_passwd")
	if err != nil {
		return "", nil, fmt.Errorf("bench-ingest: %w (apt-get install mosquitto)", err)
	}
	pw := filepath.Join(dir, "passwd")
	names := make([]string, 0, len(users))
	for u := range users {
		names = append(names, u)
	}
	sort.Strings(names)
	for i, u := range names {
		args := []string{"-b", pw, u, users[u]}
		if i == 0 {
			args = []string{"-b", "-c", pw, u, users[u]}
		}
		if out, err := exec.Command(passwdBin, args...).CombinedOutput(); err != nil {
			return "", nil, fmt.Errorf("bench-ingest: mosquitto_passwd: %v: %s", err, out)
		}
	}
	aclPath := filepath.Join(dir, "acl")
	if err := os.WriteFile(aclPath, []byte(acl), 0o600); err != nil {
		return "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	_, port, _ := net.SplitHostPort(addr)
	conf := []string{"per_listener_settings false", "listener " + port + " 127.0.0.1", "allow_anonymous false",
		"password_file " + pw, "acl_file " + aclPath, "persistence true", "persistence_location " + dir + "/",
		"autosave_interval 5", "max_queued_messages 1000000", "max_inflight_messages 1000",
		"max_packet_size 1048576", "log_dest file " + filepath.Join(dir, "mosquitto.log")}
	if os.Geteuid() == 0 {
		conf = append(conf, "user root")
	}
	confPath := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(confPath, []byte(strings.Join(conf, "\n")+"\n"), 0o600); err != nil {
		return "", nil, err
	}
	cmd := exec.Command(bin, "-c", confPath)
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("bench-ingest: start mosquitto: %w", err)
	}
	stop = func() { cmd.Process.Kill(); cmd.Wait() }
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return "tcp://" + addr, stop, nil
		}
		if time.Now().After(deadline) {
			stop()
			b, _ := os.ReadFile(filepath.Join(dir, "mosquitto.log"))
			return "", nil, fmt.Errorf("bench-ingest: mosquitto did not start: %v: %s", err, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
