// Package live is `hub bench-live`: live class-board fan-out (SSE push
// latency, RSS) through hub/web, hub/auth and hub/ingest. It lives
// outside hub/web so the production package carries no benchmark harness.
package live

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/crypto/bcrypt"

	"github.com/diemdanh/diemdanh/hub/audit"
	"github.com/diemdanh/diemdanh/hub/auth"
	"github.com/diemdanh/diemdanh/hub/ingest"
	"github.com/diemdanh/diemdanh/hub/store"
	"github.com/diemdanh/diemdanh/hub/web"
	"github.com/diemdanh/diemdanh/models/benchutil"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/wire"
)

// BenchLiveResult is what `hub bench-live --json` prints.
type BenchLiveResult struct {
	Clients        int     `json:"clients"`
	Events         int     `json:"events"`
	Rate           float64 `json:"rate_target_per_s"`
	EventsPerS     float64 `json:"events_per_s"`     // events ingested and fanned out per second
	DeliveriesPerS float64 `json:"deliveries_per_s"` // SSE frames received by all clients per second
	Deliveries     int64   `json:"deliveries"`
	Lost           int64   `json:"lost"` // frames a client never received
	P50            float64 `json:"push_latency_ms_p50"`
	P95            float64 `json:"push_latency_ms_p95"`
	Max            float64 `json:"push_latency_ms_max"`
	RSSMB          float64 `json:"rss_mb"`
	DurationS      float64 `json:"duration_s"`
}

// BenchLiveMain is `hub bench-live --clients 500 --json`: a fresh hub
// slice (SQLite file, hub/auth session, hub/ingest, the web UI on
// loopback) holds N Server-Sent-Events clients on one class board while
// events stream into ingest at a fixed rate. Latency is from the moment
// ingest accepted the event (its hub received_at) to the client reading
// the row update; every client must receive every event.
func BenchLiveMain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := benchutil.FlagSet("bench-live", stderr)
	clients := fs.Int("clients", 500, "concurrent SSE clients on one class board")
	events := fs.Int("events", 400, "events to stream")
	rate := fs.Float64("rate", 50, "events per second streamed into ingest")
	asJSON := benchutil.JSONFlag(fs)
	dir := fs.String("dir", "", "work directory (default: a temporary one, removed)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *clients < 1 || *events < 1 || *rate <= 0 {
		return fmt.Errorf("bench-live: --clients, --events and --rate must be positive")
	}
	r, err := benchLive(ctx, *clients, *events, *rate, *dir, stderr)
	if err != nil {
		return err
	}
	if *asJSON {
		return benchutil.PrintJSON(stdout, r)
	}
	fmt.Fprintf(stdout, "clients %d, events %d at %.0f/s: %.1f events/s, %.0f deliveries/s, lost %d, push latency p50 %.1f ms, p95 %.1f ms, max %.1f ms, RSS %.0f MB\n",
		r.Clients, r.Events, r.Rate, r.EventsPerS, r.DeliveriesPerS, r.Lost, r.P50, r.P95, r.Max, r.RSSMB)
	return nil
}

// benchLivePupils is how many pupils the bench's class has.
const benchLivePupils = 40

// benchLive runs the bench: seed a hub slice, start it, connect the
// clients, stream the events, wait for every delivery (at most 30 s
// after the last event), and measure.
func benchLive(ctx context.Context, nClients, nEvents int, rate float64, dir string, stderr io.Writer) (*BenchLiveResult, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if dir == "" {
		d, err := os.MkdirTemp("", "diemdanh-bench-live-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	log := slog.New(slog.DiscardHandler)
	db, err := store.Open(ctx, filepath.Join(dir, "hub.db"), log)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	if err := seedLive(ctx, db); err != nil {
		return nil, fmt.Errorf("bench-live: seed: %w", err)
	}
	h, err := startLiveHub(ctx, db, log)
	if err != nil {
		return nil, err
	}
	defer h.ing.Close()
	defer h.srv.Close()
	cl := newLiveClients(nClients, nEvents, cancel)
	if err := cl.connect(ctx, h); err != nil {
		return nil, err
	}
	start := time.Now()
	streamLive(h.ing, start, nEvents, rate)
	sent := time.Since(start)
	select {
	case <-ctx.Done():
	case <-time.After(30 * time.Second):
		fmt.Fprintln(stderr, "bench-live: timed out waiting for deliveries")
		cancel()
	}
	elapsed := time.Since(start)
	cancel()
	h.srv.Close()
	cl.done.Wait()
	return cl.result(rate, sent, elapsed)
}

// seedLive creates the bench's school, teacher, class, gate and pupils.
func seedLive(ctx context.Context, db *store.DB) error {
	return db.Tx(ctx, func(tx *sql.Tx) error {
		stmts := []string{
			`INSERT INTO schools(id, name) VALUES ('bench', 'Trường Bench')`,
			`INSERT INTO staff(id, school_id, full_name, role) VALUES ('t1', 'bench', 'Cô Giáo', 'teacher')`,
			`INSERT INTO classes(id, school_id, name, grade, homeroom_teacher_id, start_time, late_after_min, absent_cutoff)
				VALUES ('c1', 'bench', '1A', 1, 't1', '00:00', 1439, '23:59')`,
		}
		for _, s := range stmts {
			if _, err := tx.ExecContext(ctx, s); err != nil {
				return err
			}
		}
		h, _ := bcrypt.GenerateFromPassword([]byte("gate-pass"), bcrypt.MinCost)
		if _, err := tx.ExecContext(ctx, `INSERT INTO gates(id, school_id, name, username, password_hash) VALUES ('g1', 'bench', 'Cổng', 'g1', ?)`, string(h)); err != nil {
			return err
		}
		for i := 0; i < benchLivePupils; i++ {
			if _, err := tx.ExecContext(ctx, `INSERT INTO pupils(id, school_id, class_id, full_name) VALUES (?, 'bench', 'c1', ?)`,
				fmt.Sprintf("%012d", 100000+i), fmt.Sprintf("Học sinh %d", i)); err != nil {
				return err
			}
		}
		return nil
	})
}

// liveHub is the running hub slice: the web UI behind hub/auth on
// loopback, fed by ingest.
type liveHub struct {
	w   *web.Server
	ing *ingest.Ingester
	srv *http.Server
	url string // the class board's live stream
	tok string // the teacher's session
}

// startLiveHub logs the teacher in and starts the web UI, ingest and the
// HTTP server.
func startLiveHub(ctx context.Context, db *store.DB, log *slog.Logger) (*liveHub, error) {
	al := audit.New(db, log, time.Now)
	acfg := auth.DefaultConfig()
	acfg.BcryptCost = bcrypt.MinCost
	au, err := auth.New(db, al, acfg, log, time.Now)
	if err != nil {
		return nil, err
	}
	if _, _, err := au.CreateAccount(ctx, "bench", auth.NewAccount{Username: "teacher", Password: "bench-password-1", Role: auth.RoleTeacher, SchoolID: "bench", StaffID: "t1"}); err != nil {
		return nil, err
	}
	h := &liveHub{}
	if h.tok, _, err = au.Login(ctx, "teacher", "bench-password-1", "127.0.0.1"); err != nil {
		return nil, err
	}
	cfg := web.Default()
	cfg.SSEClientBuffer = 1024
	if h.w, err = web.New(cfg, web.Deps{DB: db, Log: log, Sessions: au, Audit: al}); err != nil {
		return nil, err
	}
	h.w.Start(ctx)
	if h.ing, err = ingest.New(db, ingest.Default(), log, time.Now); err != nil {
		return nil, err
	}
	h.ing.AddListener(h.w)
	h.ing.Start(ctx)

	gin.SetMode(gin.ReleaseMode)
	eng := gin.New()
	eng.Use(au.Middleware())
	h.w.Routes(eng)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		h.ing.Close()
		return nil, err
	}
	h.srv = &http.Server{Handler: eng, ReadHeaderTimeout: 5 * time.Second}
	go h.srv.Serve(ln)
	h.url = "http://" + ln.Addr().String() + "/teacher/class/c1/live"
	return h, nil
}

// liveClients are the SSE clients on the class board and what they
// received. The last delivery cancels the bench's context.
type liveClients struct {
	n, events int
	cancel    context.CancelFunc
	hc        *http.Client

	mu        sync.Mutex
	lat       []float64 // push latencies, ms
	got       atomic.Int64
	counts    []int // deliveries per client
	connected sync.WaitGroup
	done      sync.WaitGroup
	connErr   atomic.Value
}

func newLiveClients(n, events int, cancel context.CancelFunc) *liveClients {
	tr := &http.Transport{MaxIdleConnsPerHost: n + 10, MaxConnsPerHost: 0, DisableCompression: true}
	return &liveClients{n: n, events: events, cancel: cancel, hc: &http.Client{Transport: tr},
		lat: make([]float64, 0, n*events), counts: make([]int, n)}
}

// connect starts the clients and waits until the hub holds all of them.
func (cl *liveClients) connect(ctx context.Context, h *liveHub) error {
	cl.connected.Add(cl.n)
	cl.done.Add(cl.n)
	for i := 0; i < cl.n; i++ {
		go cl.run(ctx, i, h.url, h.tok)
	}
	cl.connected.Wait()
	if v := cl.connErr.Load(); v != nil {
		return fmt.Errorf("bench-live: client: %v", v)
	}
	for h.w.LiveSubscribers("c1") < cl.n {
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// run is client i: it opens the stream and records each row update's
// latency until the stream ends.
func (cl *liveClients) run(ctx context.Context, i int, url, tok string) {
	defer cl.done.Done()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	req.AddCookie(&http.Cookie{Name: web.SessionCookie, Value: tok})
	resp, err := cl.hc.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		if err == nil {
			err = fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		cl.connErr.Store(err)
		cl.connected.Done()
		return
	}
	defer resp.Body.Close()
	br := bufio.NewReaderSize(resp.Body, 16<<10)
	first := true
	local := make([]float64, 0, cl.events)
	defer func() {
		cl.mu.Lock()
		cl.lat = append(cl.lat, local...)
		cl.mu.Unlock()
	}()
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		if first && strings.HasPrefix(line, ": ok") {
			first = false
			cl.connected.Done()
			continue
		}
		ms, ok := liveLatency(line)
		if !ok {
			continue
		}
		local = append(local, ms)
		cl.counts[i]++
		if cl.got.Add(1) == int64(cl.n*cl.events) {
			cl.cancel()
		}
	}
}

// liveLatency is the latency of an SSE data line: now less its row's
// received_at (only that field is read; no full decode per frame).
func liveLatency(line string) (float64, bool) {
	if !strings.HasPrefix(line, "data: ") {
		return 0, false
	}
	now := time.Now().UnixMilli()
	i1 := strings.Index(line, `"received_at":`)
	if i1 < 0 {
		return 0, false
	}
	rest := line[i1+len(`"received_at":`):]
	j := strings.IndexAny(rest, ",}")
	ra, err := strconv.ParseInt(rest[:j], 10, 64)
	if err != nil {
		return 0, false
	}
	return float64(now - ra), true
}

// streamLive submits nEvents events to ingest at rate per second from
// start.
func streamLive(ing *ingest.Ingester, start time.Time, nEvents int, rate float64) {
	interval := time.Duration(float64(time.Second) / rate)
	for k := 0; k < nEvents; k++ {
		if d := time.Until(start.Add(time.Duration(k) * interval)); d > 0 {
			time.Sleep(d)
		}
		ev := wire.Event{Schema: wire.SchemaVersion, EventID: wire.NewEventID(), SchoolID: "bench", GateID: "g1",
			Direction: wire.DirectionIn, StudentID: fmt.Sprintf("%012d", 100000+k%benchLivePupils), CapturedAt: time.Now().UnixMilli(),
			Distance: 0.3, Margin: 0.1, FramesUsed: 3, Model: match.ModelID{Name: "bench", Version: "1"}}
		b, _ := ev.Encode()
		ing.Submit(ingest.Message{Topic: wire.EventTopic("bench", "g1"), Payload: b, ClientID: "g1"}, nil)
	}
}

// result measures the run once every client has stopped; a lost
// delivery is an error (returned with the result).
func (cl *liveClients) result(rate float64, sent, elapsed time.Duration) (*BenchLiveResult, error) {
	r := &BenchLiveResult{Clients: cl.n, Events: cl.events, Rate: rate, Deliveries: cl.got.Load(),
		DurationS: elapsed.Seconds(), RSSMB: benchutil.PeakRSSMB()}
	r.Lost = int64(cl.n*cl.events) - r.Deliveries
	r.EventsPerS = float64(cl.events) / elapsed.Seconds()
	if sent > 0 && elapsed < sent {
		r.EventsPerS = float64(cl.events) / sent.Seconds()
	}
	r.DeliveriesPerS = float64(r.Deliveries) / elapsed.Seconds()
	sort.Float64s(cl.lat)
	r.P50 = benchutil.Percentile(cl.lat, 0.50)
	r.P95 = benchutil.Percentile(cl.lat, 0.95)
	r.Max = benchutil.Percentile(cl.lat, 1)
	if r.Lost > 0 {
		return r, errors.New("bench-live: some clients missed events")
	}
	return r, nil
}
