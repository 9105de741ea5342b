// Package sync is `hub bench-sync`: hub/citysync's push rate into
// PostgreSQL, a one-day catch-up and a city-peak simulation. It lives
// outside hub/citysync because it starts PostgreSQL through the test
// harness deploy/citydb/pgtest, which no production package may import.
package sync

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/diemdanh/diemdanh/deploy/citydb"
	"github.com/diemdanh/diemdanh/deploy/citydb/pgtest"
	"github.com/diemdanh/diemdanh/hub/citysync"
	"github.com/diemdanh/diemdanh/hub/store"
	"github.com/diemdanh/diemdanh/models/benchutil"
	"github.com/jackc/pgx/v5"
)

// BenchResult is what `hub bench-sync --json` prints.
type BenchResult struct {
	Postgres string `json:"postgres"`
	// Single hub: N recognised events pushed from the change log.
	Rows     int     `json:"rows"`
	PushS    float64 `json:"push_s"`
	RowsPerS float64 `json:"rows_per_s"`
	// Catch-up after a one-day backlog of a 2,000-pupil school
	// (events in and out, daily statuses, headcounts, absence totals).
	CatchupPupils int     `json:"catchup_pupils"`
	CatchupRows   int     `json:"catchup_rows"`
	CatchupS      float64 `json:"catchup_s"`
	RSSMB         float64 `json:"rss_mb"`
	// City peak: concurrent hub workers pushing a morning's events.
	PeakHubs       int     `json:"peak_hubs"`
	PeakOffered    float64 `json:"peak_offered_events_per_s"`
	PeakEvents     int     `json:"peak_events"`
	PeakRows       int     `json:"peak_rows"`
	PeakS          float64 `json:"peak_s"`
	PeakEventsPerS float64 `json:"peak_events_per_s"`
	PeakRowsPerS   float64 `json:"peak_rows_per_s"`
	PeakP50Ms      float64 `json:"peak_p50_commit_ms"`
	PeakP95Ms      float64 `json:"peak_p95_commit_ms"`
	PeakRSSMB      float64 `json:"peak_rss_mb"`
	// Saturation: the same hubs syncing back to back (closed loop): the
	// most the city database takes on this machine, and the latency then.
	SatEventsPerS float64 `json:"saturation_events_per_s"`
	SatP95Ms      float64 `json:"saturation_p95_commit_ms"`
	TargetsMet    bool    `json:"targets_met"`
}

// BenchSyncMain is `hub bench-sync`: it measures the push rate into a local
// PostgreSQL (a throwaway durable cluster unless --dsn or $CITYDB_TEST_DSN
// names a server where it may create a database and roles).
func BenchSyncMain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := benchutil.FlagSet("bench-sync", stderr)
	rows := fs.Int("rows", 100000, "events in the single-hub push")
	pupils := fs.Int("pupils", 2000, "pupils of the catch-up school")
	hubs := fs.Int("hubs", 200, "concurrent hub workers in the city-peak simulation (0: skip)")
	perHub := fs.Int("events-per-hub", 300, "events each hub pushes in the city-peak simulation")
	rate := fs.Float64("peak-rate", 2200, "offered events/s across all hubs in the city-peak simulation (the target is 2000: twice the real city peak)")
	every := fs.Duration("sync-every", time.Second, "how often each simulated hub syncs (the worker's debounce)")
	chunk := fs.Int("chunk", 10, "events per sync per hub in the saturation run (as fast as possible)")
	satPerHub := fs.Int("saturation-events-per-hub", 100, "events each hub pushes in the saturation run (0: skip)")
	dsn := fs.String("dsn", os.Getenv(pgtest.EnvDSN), "admin DSN of an existing PostgreSQL 15 (default: a throwaway cluster)")
	asJSON := benchutil.JSONFlag(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *rows < 1 || *pupils < 1 || *hubs < 0 || *perHub < 1 || *chunk < 1 || *rate <= 0 || *every <= 0 || *satPerHub < 0 {
		return errors.New("bench-sync: --rows, --pupils, --events-per-hub and --chunk must be positive")
	}
	b := &bench{stderr: stderr}
	res := BenchResult{Rows: *rows, CatchupPupils: *pupils, PeakHubs: *hubs}
	if *dsn != "" {
		os.Setenv(pgtest.EnvDSN, *dsn)
		res.Postgres = "external"
	} else {
		os.Unsetenv(pgtest.EnvDSN)
		res.Postgres = "throwaway cluster, fsync on"
	}
	cl, err := pgtest.Open(pgtest.Options{Durable: true, MaxConnections: *hubs + 50})
	if err != nil {
		return fmt.Errorf("bench-sync: %w", err)
	}
	defer cl.Close()
	b.cl = cl
	tmp, err := os.MkdirTemp("", "bench-sync-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	b.tmp = tmp
	if err := b.setupCity(ctx, *hubs); err != nil {
		return err
	}
	defer b.cleanup(*hubs)

	if res.PushS, err = b.single(ctx, *rows); err != nil {
		return err
	}
	res.RowsPerS = float64(*rows) / res.PushS
	if res.CatchupRows, res.CatchupS, err = b.catchup(ctx, *pupils); err != nil {
		return err
	}
	res.RSSMB = benchutil.PeakRSSMB()
	if *hubs > 0 {
		lat, events, rowsN, secs, err := b.peak(ctx, *hubs, *perHub, 0, *rate/float64(*hubs), *every)
		if err != nil {
			return err
		}
		res.PeakOffered = *rate
		res.PeakEvents, res.PeakRows, res.PeakS = events, rowsN, secs
		res.PeakEventsPerS = float64(events) / secs
		res.PeakRowsPerS = float64(rowsN) / secs
		res.PeakP50Ms = benchutil.Percentile(lat, 0.50)
		res.PeakP95Ms = benchutil.Percentile(lat, 0.95)
		res.PeakRSSMB = benchutil.PeakRSSMB()
		if *satPerHub > 0 {
			lat, events, _, secs, err := b.peak(ctx, *hubs, *satPerHub, *chunk, 0, 0)
			if err != nil {
				return err
			}
			res.SatEventsPerS = float64(events) / secs
			res.SatP95Ms = benchutil.Percentile(lat, 0.95)
		}
	}
	res.TargetsMet = res.RowsPerS >= 20000 && (*hubs == 0 || (res.PeakEventsPerS >= 2000 && res.PeakP95Ms <= 1000))
	if *asJSON {
		return benchutil.PrintJSON(stdout, res)
	}
	fmt.Fprintf(stdout, "single hub: %d events in %.2fs = %.0f rows/s (target ≥ 20000)\n", res.Rows, res.PushS, res.RowsPerS)
	fmt.Fprintf(stdout, "catch-up: one-day backlog of a %d-pupil school, %d rows in %.2fs\n", res.CatchupPupils, res.CatchupRows, res.CatchupS)
	fmt.Fprintf(stdout, "rss: %.0f MB\n", res.RSSMB)
	if *hubs > 0 {
		fmt.Fprintf(stdout, "city peak: %d hubs, %d events (%d rows) in %.2fs = %.0f events/s, %.0f rows/s, commit p50 %.0f ms p95 %.0f ms (target ≥ 2000 events/s, p95 ≤ 1000 ms), rss %.0f MB\n",
			res.PeakHubs, res.PeakEvents, res.PeakRows, res.PeakS, res.PeakEventsPerS, res.PeakRowsPerS, res.PeakP50Ms, res.PeakP95Ms, res.PeakRSSMB)
		fmt.Fprintf(stdout, "saturation: %.0f events/s, commit p95 %.0f ms\n", res.SatEventsPerS, res.SatP95Ms)
	}
	return nil
}

type bench struct {
	cl     *pgtest.Cluster
	dbName string
	tmp    string
	stderr io.Writer
	run    int
}

func benchRole(i int) string { return fmt.Sprintf("bench_hub_%d", i) }

func (b *bench) setupCity(ctx context.Context, hubs int) error {
	name, err := b.cl.CreateDatabase(ctx, "bench_sync")
	if err != nil {
		return err
	}
	b.dbName = name
	conn, err := pgx.Connect(ctx, b.cl.AdminDSN(name))
	if err != nil {
		return fmt.Errorf("bench-sync: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := citydb.Migrate(ctx, conn); err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, `INSERT INTO records.districts VALUES ('Q1', 'Quận 1')`); err != nil {
		return err
	}
	for i := 0; i <= hubs+1; i++ { // 0: single hub, 1: catch-up school, 2..: peak hubs
		if _, err := conn.Exec(ctx, `INSERT INTO records.schools (school_id, name, district_code, level) VALUES ($1, $1, 'Q1', 'primary')`,
			benchSchool(i)); err != nil {
			return err
		}
		if err := citydb.ProvisionSchool(ctx, conn, benchSchool(i), benchRole(i), "bench-"+strconv.Itoa(i)); err != nil {
			return err
		}
	}
	return nil
}

func (b *bench) cleanup(hubs int) {
	if b.cl.Managed() || b.dbName == "" {
		return // the throwaway cluster goes away whole
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, b.cl.AdminDSN(""))
	if err != nil {
		return
	}
	defer conn.Close(ctx)
	_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{b.dbName}.Sanitize()+" WITH (FORCE)")
	for i := 0; i <= hubs+1; i++ {
		_, _ = conn.Exec(ctx, "DROP ROLE IF EXISTS "+pgx.Identifier{benchRole(i)}.Sanitize())
	}
}

func benchSchool(i int) string { return fmt.Sprintf("B%04d", i) }

// hub opens a fresh hub database for school i with classes × perClass pupils.
func (b *bench) hub(ctx context.Context, i, classes, perClass int) (*store.DB, error) {
	return b.hubAt(ctx, fmt.Sprintf("hub-%d.db", i), i, classes, perClass)
}

func (b *bench) hubAt(ctx context.Context, file string, i, classes, perClass int) (*store.DB, error) {
	db, err := store.Open(ctx, filepath.Join(b.tmp, file), nil)
	if err != nil {
		return nil, err
	}
	err = db.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO schools (id, name) VALUES (?, ?)`, benchSchool(i), benchSchool(i)); err != nil {
			return err
		}
		for c := 0; c < classes; c++ {
			if _, err := tx.ExecContext(ctx, `INSERT INTO classes (id, school_id, name, grade) VALUES (?, ?, ?, 1)`,
				fmt.Sprintf("C%d", c), benchSchool(i), fmt.Sprintf("%dA", c)); err != nil {
				return err
			}
			for p := 0; p < perClass; p++ {
				if _, err := tx.ExecContext(ctx, `INSERT INTO pupils (id, school_id, class_id, full_name) VALUES (?, ?, ?, 'x')`,
					benchPupil(c*perClass+p), benchSchool(i), fmt.Sprintf("C%d", c)); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("bench-sync: hub %d: %w", i, err)
	}
	return db, nil
}

func benchPupil(i int) string { return fmt.Sprintf("0791%08d", i) }

func (b *bench) worker(db *store.DB, i int, now func() time.Time) (*citysync.Worker, error) {
	cfg := citysync.Default()
	cfg.DSN = b.cl.DSN(benchRole(i), "bench-"+strconv.Itoa(i), b.dbName)
	cfg.SchoolID = benchSchool(i)
	cfg.RosterInterval = 24 * time.Hour
	return citysync.New(cfg, db, slog.New(slog.DiscardHandler), now)
}

var benchDay = time.Date(2025, 10, 6, 0, 0, 0, 0, time.FixedZone("ICT", 7*3600))

// storeEvents writes n recognised events (and, with daily, the arrival
// status of each pupil's first event) for pupils 0..pupils-1, from offset.
func storeEvents(ctx context.Context, db *store.DB, school, idPrefix string, from, n, pupils int, daily bool) error {
	return db.Tx(ctx, func(tx *sql.Tx) error {
		ev, err := tx.PrepareContext(ctx, `INSERT INTO events (event_id, school_id, gate_id, direction, student_id, captured_at,
			received_at, distance, margin, frames_used, model) VALUES (?, ?, 'G1', ?, ?, ?, ?, 0.35, 0.1, 3, 'dlib@1')`)
		if err != nil {
			return err
		}
		defer ev.Close()
		st, err := tx.PrepareContext(ctx, `INSERT INTO daily_attendance (pupil_id, day, status, arrived_at, arrival_event_id, updated_at)
			VALUES (?, '2025-10-06', 'present', ?, ?, ?) ON CONFLICT DO NOTHING`)
		if err != nil {
			return err
		}
		defer st.Close()
		for k := from; k < from+n; k++ {
			p := k % pupils
			dir := "in"
			if (k/pupils)%2 == 1 {
				dir = "out"
			}
			at := benchDay.Add(6*time.Hour + 30*time.Minute + time.Duration(k)*100*time.Millisecond).UnixMilli()
			id := fmt.Sprintf("%s-%09d", idPrefix, k)
			if _, err := ev.ExecContext(ctx, id, school, dir, benchPupil(p), at, at+200); err != nil {
				return err
			}
			if daily && dir == "in" {
				if _, err := st.ExecContext(ctx, benchPupil(p), at, id, at); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// single: one hub, rows events in its change log, one SyncOnce.
func (b *bench) single(ctx context.Context, rows int) (float64, error) {
	db, err := b.hub(ctx, 0, 1, 2000)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	if err := storeEvents(ctx, db, benchSchool(0), benchSchool(0), 0, rows, 2000, false); err != nil {
		return 0, err
	}
	w, err := b.worker(db, 0, func() time.Time { return benchDay.Add(7 * time.Hour) })
	if err != nil {
		return 0, err
	}
	defer w.Close()
	if err := w.PrepareSync(ctx); err != nil { // connect outside the timing
		return 0, fmt.Errorf("bench-sync: %w", err)
	}
	start := time.Now()
	rep, err := w.SyncOnce(ctx)
	if err != nil {
		return 0, err
	}
	secs := time.Since(start).Seconds()
	if rep.Events != rows || rep.LagRows != 0 {
		return 0, fmt.Errorf("bench-sync: pushed %d of %d events, lag %d", rep.Events, rows, rep.LagRows)
	}
	return secs, nil
}

// catchup: a 2,000-pupil school whose hub was cut off for a whole day:
// every pupil in and out, daily statuses, then one SyncOnce after the cut-off.
func (b *bench) catchup(ctx context.Context, pupils int) (int, float64, error) {
	perClass := 35
	classes := (pupils + perClass - 1) / perClass
	db, err := b.hub(ctx, 1, classes, perClass)
	if err != nil {
		return 0, 0, err
	}
	defer db.Close()
	if err := storeEvents(ctx, db, benchSchool(1), benchSchool(1), 0, 2*pupils, pupils, true); err != nil {
		return 0, 0, err
	}
	var backlog int
	if err := db.R.QueryRowContext(ctx, `SELECT count(*) FROM citysync_changes`).Scan(&backlog); err != nil {
		return 0, 0, err
	}
	w, err := b.worker(db, 1, func() time.Time { return benchDay.Add(20 * time.Hour) })
	if err != nil {
		return 0, 0, err
	}
	defer w.Close()
	if err := w.Ping(ctx); err != nil {
		return 0, 0, fmt.Errorf("bench-sync: %w", err)
	}
	start := time.Now()
	rep, err := w.SyncOnce(ctx)
	if err != nil {
		return 0, 0, err
	}
	secs := time.Since(start).Seconds()
	if rep.LagRows != 0 {
		return 0, 0, fmt.Errorf("bench-sync: catch-up left %d rows", rep.LagRows)
	}
	return rep.Events + rep.Daily + rep.Headcounts + rep.Totals, secs, nil
}

// peak runs hubs concurrent workers, each with its own hub database and
// city role. Paced (perHubRate > 0): each hub receives perHubRate events/s
// in real time and syncs every `every` (the worker's debounce), like a
// morning at the gate. Saturation (perHubRate == 0): each hub stores chunk
// events and syncs, back to back. Latency is one SyncOnce: read the change
// log, commit to the city, advance the cursor. Each run uses fresh hubs.
func (b *bench) peak(ctx context.Context, hubs, perHub, chunk int, perHubRate float64, every time.Duration) ([]float64, int, int, float64, error) {
	b.run++
	hs, err := b.openPeakHubs(ctx, hubs, perHub)
	defer closePeakHubs(hs)
	if err != nil {
		return nil, 0, 0, 0, err
	}
	var mu sync.Mutex
	var lat []float64
	var rows int
	errc := make(chan error, hubs)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range hs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			mine, n, err := b.runPeakHub(ctx, hs[i], i, hubs, perHub, chunk, perHubRate, every)
			if err != nil {
				errc <- err
				return
			}
			mu.Lock()
			lat = append(lat, mine...)
			rows += n
			mu.Unlock()
		}(i)
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	close(errc)
	if err := <-errc; err != nil {
		return nil, 0, 0, 0, fmt.Errorf("bench-sync: peak: %w", err)
	}
	return lat, hubs * perHub, rows, secs, nil
}

// peakHub is one hub of a peak run.
type peakHub struct {
	db *store.DB
	w  *citysync.Worker
}

// openPeakHubs makes the run's fresh hubs, each synced once (connect,
// roster check). On an error it returns the hubs opened so far with it.
func (b *bench) openPeakHubs(ctx context.Context, hubs, pupils int) ([]peakHub, error) {
	hs := make([]peakHub, hubs)
	for i := range hs {
		db, err := b.hubAt(ctx, fmt.Sprintf("hub-%d-%d.db", b.run, i), i+2, 1, pupils)
		if err != nil {
			return hs, err
		}
		hs[i].db = db
		w, err := b.worker(db, i+2, func() time.Time { return benchDay.Add(7 * time.Hour) })
		if err != nil {
			return hs, err
		}
		hs[i].w = w
		if _, err := w.SyncOnce(ctx); err != nil { // connect, roster check
			return hs, err
		}
	}
	return hs, nil
}

// closePeakHubs closes the hubs' workers and databases.
func closePeakHubs(hs []peakHub) {
	for _, h := range hs {
		if h.w != nil {
			h.w.Close()
		}
		if h.db != nil {
			h.db.Close()
		}
	}
}

// runPeakHub is hub i's part of a peak run (see peak): it stores its
// perHub events, paced or in chunks, syncing after each batch, and
// returns each sync's latency (ms) and the rows synced.
func (b *bench) runPeakHub(ctx context.Context, h peakHub, i, hubs, perHub, chunk int, perHubRate float64, every time.Duration) ([]float64, int, error) {
	school := benchSchool(i + 2)
	prefix := fmt.Sprintf("%s-r%d", school, b.run)
	pupils := perHub // a morning: each pupil arrives once
	var mine []float64
	n := 0
	syncOnce := func() error {
		t0 := time.Now()
		rep, err := h.w.SyncOnce(ctx)
		if err != nil {
			return err
		}
		mine = append(mine, float64(time.Since(t0).Microseconds())/1000)
		n += rep.Events + rep.Daily
		return nil
	}
	if perHubRate <= 0 {
		for done := 0; done < perHub; done += chunk {
			k := min(chunk, perHub-done)
			if err := storeEvents(ctx, h.db, school, prefix, done, k, pupils, true); err != nil {
				return nil, 0, err
			}
			if err := syncOnce(); err != nil {
				return nil, 0, err
			}
		}
		return mine, n, nil
	}
	// Stagger the hubs across one sync period.
	time.Sleep(time.Duration(i) * every / time.Duration(hubs))
	t0 := time.Now()
	done := 0
	for done < perHub {
		due := min(perHub, int(time.Since(t0).Seconds()*perHubRate)+1)
		if due > done {
			if err := storeEvents(ctx, h.db, school, prefix, done, due-done, pupils, true); err != nil {
				return nil, 0, err
			}
			done = due
			if err := syncOnce(); err != nil {
				return nil, 0, err
			}
		}
		if done < perHub { // next tick on a fixed schedule (no drift)
			next := t0.Add((time.Since(t0)/every + 1) * every)
			time.Sleep(time.Until(next))
		}
	}
	return mine, n, nil
}
