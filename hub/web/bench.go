package web

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
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
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/procstat"
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
	fs := flag.NewFlagSet("bench-live", flag.ContinueOnError)
	fs.SetOutput(stderr)
	clients := fs.Int("clients", 500, "concurrent SSE clients on one class board")
	events := fs.Int("events", 400, "events to stream")
	rate := fs.Float64("rate", 50, "events per second streamed into ingest")
	asJSON := fs.Bool("json", false, "print one JSON object")
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
		return json.NewEncoder(stdout).Encode(r)
	}
	fmt.Fprintf(stdout, "clients %d, events %d at %.0f/s: %.1f events/s, %.0f deliveries/s, lost %d, push latency p50 %.1f ms, p95 %.1f ms, max %.1f ms, RSS %.0f MB\n",
		r.Clients, r.Events, r.Rate, r.EventsPerS, r.DeliveriesPerS, r.Lost, r.P50, r.P95, r.Max, r.RSSMB)
	return nil
}

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
	const pupils = 40
	err = db.Tx(ctx, func(tx *sql.Tx) error {
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
		for i := 0; i < pupils; i++ {
			if _, err := tx.ExecContext(ctx, `INSERT INTO pupils(id, school_id, class_id, full_name) VALUES (?, 'bench', 'c1', ?)`,
				fmt.Sprintf("%012d", 100000+i), fmt.Sprintf("Học sinh %d", i)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("bench-live: seed: %w", err)
	}
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
	tok, _, err := au.Login(ctx, "teacher", "bench-password-1", "127.0.0.1")
	if err != nil {
		return nil, err
	}
	cfg := Default()
	cfg.SSEClientBuffer = 1024
	w, err := New(cfg, Deps{DB: db, Log: log, Sessions: au, Audit: al})
	if err != nil {
		return nil, err
	}
	w.Start(ctx)
	ing, err := ingest.New(db, ingest.Default(), log, time.Now)
	if err != nil {
		return nil, err
	}
	ing.AddListener(w)
	ing.Start(ctx)
	defer ing.Close()

	gin.SetMode(gin.ReleaseMode)
	eng := gin.New()
	eng.Use(au.Middleware())
	w.Routes(eng)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: eng, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	url := "http://" + ln.Addr().String() + "/teacher/class/c1/live"

	// Clients.
	var (
		mu        sync.Mutex
		lat       = make([]float64, 0, nClients*nEvents)
		got       atomic.Int64
		connected sync.WaitGroup
		done      sync.WaitGroup
	)
	tr := &http.Transport{MaxIdleConnsPerHost: nClients + 10, MaxConnsPerHost: 0, DisableCompression: true}
	hc := &http.Client{Transport: tr}
	counts := make([]int, nClients)
	connected.Add(nClients)
	done.Add(nClients)
	var connErr atomic.Value
	for i := 0; i < nClients; i++ {
		go func(i int) {
			defer done.Done()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			req.AddCookie(&http.Cookie{Name: SessionCookie, Value: tok})
			resp, err := hc.Do(req)
			if err != nil || resp.StatusCode != http.StatusOK {
				if err == nil {
					err = fmt.Errorf("HTTP %d", resp.StatusCode)
				}
				connErr.Store(err)
				connected.Done()
				return
			}
			defer resp.Body.Close()
			br := bufio.NewReaderSize(resp.Body, 16<<10)
			first := true
			local := make([]float64, 0, nEvents)
			defer func() {
				mu.Lock()
				lat = append(lat, local...)
				mu.Unlock()
			}()
			for {
				line, err := br.ReadString('\n')
				if err != nil {
					return
				}
				if first && strings.HasPrefix(line, ": ok") {
					first = false
					connected.Done()
					continue
				}
				if !strings.HasPrefix(line, "data: ") {
					continue
				}
				now := time.Now().UnixMilli()
				// Only received_at is needed; avoid a full decode per frame.
				i1 := strings.Index(line, `"received_at":`)
				if i1 < 0 {
					continue
				}
				rest := line[i1+len(`"received_at":`):]
				j := strings.IndexAny(rest, ",}")
				ra, err := strconv.ParseInt(rest[:j], 10, 64)
				if err != nil {
					continue
				}
				local = append(local, float64(now-ra))
				counts[i]++
				if got.Add(1) == int64(nClients*nEvents) {
					cancel()
				}
			}
		}(i)
	}
	connected.Wait()
	if v := connErr.Load(); v != nil {
		return nil, fmt.Errorf("bench-live: client: %v", v)
	}
	for w.live.Subscribers("c1") < nClients {
		time.Sleep(10 * time.Millisecond)
	}

	// Stream events at the target rate.
	start := time.Now()
	interval := time.Duration(float64(time.Second) / rate)
	for k := 0; k < nEvents; k++ {
		if d := time.Until(start.Add(time.Duration(k) * interval)); d > 0 {
			time.Sleep(d)
		}
		ev := wire.Event{Schema: wire.SchemaVersion, EventID: wire.NewEventID(), SchoolID: "bench", GateID: "g1",
			Direction: wire.DirectionIn, StudentID: fmt.Sprintf("%012d", 100000+k%pupils), CapturedAt: time.Now().UnixMilli(),
			Distance: 0.3, Margin: 0.1, FramesUsed: 3, Model: match.ModelID{Name: "bench", Version: "1"}}
		b, _ := ev.Encode()
		ing.Submit(ingest.Message{Topic: wire.EventTopic("bench", "g1"), Payload: b, ClientID: "g1"}, nil)
	}
	sent := time.Since(start)
	select {
	case <-ctx.Done():
	case <-time.After(30 * time.Second):
		fmt.Fprintln(stderr, "bench-live: timed out waiting for deliveries")
		cancel()
	}
	elapsed := time.Since(start)
	cancel()
	srv.Close()
	done.Wait()

	r := &BenchLiveResult{Clients: nClients, Events: nEvents, Rate: rate, Deliveries: got.Load(),
		DurationS: elapsed.Seconds(), RSSMB: peakRSSMB()}
	r.Lost = int64(nClients*nEvents) - r.Deliveries
	r.EventsPerS = float64(nEvents) / elapsed.Seconds()
	if sent > 0 && elapsed < sent {
		r.EventsPerS = float64(nEvents) / sent.Seconds()
	}
	r.DeliveriesPerS = float64(r.Deliveries) / elapsed.Seconds()
	sort.Float64s(lat)
	if n := len(lat); n > 0 {
		r.P50 = lat[n*50/100]
		r.P95 = lat[n*95/100]
		r.Max = lat[n-1]
	}
	if r.Lost > 0 {
		return r, errors.New("bench-live: some clients missed events")
	}
	return r, nil
}

// peakRSSMB reads the peak resident set size (VmHWM) of this process.
func peakRSSMB() float64 {
	return procstat.StatusMB("VmHWM")
}
