package gatefault

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/diemdanh/diemdanh/edge/publish/brokertest"
	"github.com/diemdanh/diemdanh/edge/sim"
	"github.com/diemdanh/diemdanh/hub/attendance"
	"github.com/diemdanh/diemdanh/hub/audit"
	"github.com/diemdanh/diemdanh/hub/broker"
	"github.com/diemdanh/diemdanh/hub/ingest"
	"github.com/diemdanh/diemdanh/hub/store"
	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/faceengine"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/wire"
	_ "github.com/mattn/go-sqlite3" // SQLite driver
)

const school, gate = "thcs-a", "gate-1"

// TestMain lets the test binary act as the hub helper.
func TestMain(m *testing.M) {
	if os.Getenv("E2E_HELPER") == "hub" {
		os.Exit(hubMain())
	}
	os.Exit(m.Run())
}

// proc is a helper child process (the test binary re-executed).
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	log  string
}

func startHelper(t *testing.T, mode string, env ...string) *proc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), append([]string{"E2E_HELPER=" + mode}, env...)...)
	p := &proc{cmd: cmd, done: make(chan struct{}), log: filepath.Join(t.TempDir(), mode+".log")}
	logf, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait(); logf.Close(); close(p.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Signal(syscall.SIGKILL)
			<-p.done
		}
		if t.Failed() {
			b, _ := os.ReadFile(p.log)
			t.Logf("%s helper log:\n%s", mode, b)
		}
	})
	return p
}

// buildEdge compiles the real bin/edge into dir.
func buildEdge(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "edge")
	if err := conf.BuildBinary("./edge", bin); err != nil {
		t.Fatal(err)
	}
	return bin
}

// looseThreshold is the default embedder's VoteCap: these tests are about
// faults, not recognition accuracy (edge bench).
func looseThreshold(t *testing.T) float64 {
	p, ok := faceengine.ProfileOf(match.DefaultEmbedder)
	if !ok {
		t.Fatalf("no distance profile for %s", match.DefaultEmbedder)
	}
	return p.VoteCap
}

// waitFor polls cond every 200 ms until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// The fault tests' hub: the hub's real store, ingest (with the audit log),
// attendance and embedded broker in a helper process (E2E_HELPER=hub),
// over a database the test seeds.
const (
	faultClass   = "thcs-a-6a"
	gateUser     = "thcs-a.gate-1"
	gatePassword = "gate-1-fault-test-secret"
)

// hubMain runs the hub helper on E2E_HUBDB, its broker on E2E_ADDR, until
// SIGTERM.
func hubMain() int {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	db, err := store.Open(ctx, os.Getenv("E2E_HUBDB"), log)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer db.Close()
	ing, err := ingest.New(db, ingest.Default(), log.With("component", "ingest"), time.Now)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ing.SetAudit(audit.New(db, log, time.Now))
	acfg := attendance.Default()
	acfg.SchoolDays = []int{0, 1, 2, 3, 4, 5, 6}
	att := attendance.New(db, acfg, log.With("component", "attendance"), time.Now)
	ing.AddListener(att)
	attDone := make(chan error, 1)
	go func() { attDone <- att.Run(ctx) }()
	ing.Start(ctx)
	bcfg := broker.Default()
	bcfg.Listen = os.Getenv("E2E_ADDR")
	hub, err := broker.Start(ctx, bcfg, db, ing, log.With("component", "broker"), time.Now)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	<-ctx.Done()
	hub.Close()
	ing.Close()
	<-attDone
	return 0
}

// faultHub is a running hub helper and its database.
type faultHub struct {
	addr, db string
	p        *proc
}

// seedHub creates the hub database at path: school thcs-a, class 6A
// starting at start (HH:MM, late after lateAfter minutes), the gate
// gate-1 and one pupil per person of the galleries.
func seedHub(t *testing.T, path, start string, lateAfter int, galleries ...string) {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	hash, err := bcrypt.GenerateFromPassword([]byte(gatePassword), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Tx(ctx, func(tx *sql.Tx) error {
		stmts := []struct {
			q    string
			args []any
		}{
			{`INSERT INTO schools(id, name) VALUES (?, 'THCS A')`, []any{school}},
			{`INSERT INTO classes(id, school_id, name, grade, start_time, late_after_min) VALUES (?, ?, '6A', 6, ?, ?)`, []any{faultClass, school, start, lateAfter}},
			{`INSERT INTO gates(id, school_id, name, username, password_hash) VALUES (?, ?, 'Cổng 1', ?, ?)`, []any{gate, school, gateUser, string(hash)}},
		}
		for _, g := range galleries {
			doc, _, err := wire.LoadGalleryFile(g)
			if err != nil {
				return err
			}
			for _, p := range doc.People {
				stmts = append(stmts, struct {
					q    string
					args []any
				}{`INSERT OR IGNORE INTO pupils(id, school_id, class_id, full_name) VALUES (?, ?, ?, ?)`, []any{p.StudentID, school, faultClass, p.StudentID}})
			}
		}
		for _, s := range stmts {
			if _, err := tx.Exec(s.q, s.args...); err != nil {
				return fmt.Errorf("%s: %w", s.q, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// startHub starts the hub helper over db with its broker on a free port.
func startHub(t *testing.T, db string) *faultHub {
	t.Helper()
	addr, err := brokertest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return startHubAt(t, db, addr)
}

// startHubAt starts the hub helper over db with its broker on addr.
func startHubAt(t *testing.T, db, addr string) *faultHub {
	t.Helper()
	h := &faultHub{addr: addr, db: db}
	h.p = startHelper(t, "hub", "E2E_HUBDB="+db, "E2E_ADDR="+addr)
	if err := brokertest.WaitListening(addr, 20*time.Second); err != nil {
		t.Fatalf("hub helper: %v", err)
	}
	return h
}

// query reads the hub's database (read-only, while the hub runs).
func (h *faultHub) query(t *testing.T, q string, args ...any) *sql.Rows {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+h.db+"?mode=ro&_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	rows, err := db.Query(q, args...)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return rows
}

// hubEvent is a stored event at the hub.
type hubEvent struct {
	id, student                  string
	captured, gateCaptured, recv int64
}

func (h *faultHub) events(t *testing.T) []hubEvent {
	t.Helper()
	rows := h.query(t, `SELECT event_id, COALESCE(student_id, ''), captured_at, COALESCE(gate_captured_at, 0), received_at FROM events ORDER BY received_at`)
	defer rows.Close()
	var out []hubEvent
	for rows.Next() {
		var e hubEvent
		if err := rows.Scan(&e.id, &e.student, &e.captured, &e.gateCaptured, &e.recv); err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

func (h *faultHub) count(t *testing.T, q string, args ...any) int {
	t.Helper()
	rows := h.query(t, q, args...)
	defer rows.Close()
	n := 0
	if rows.Next() {
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

// gateVideo generates a short synthetic gate video of people from the
// shared photo folder set (under ATTENDANCE_TESTDATA) into dir/name.*.
func gateVideo(t *testing.T, dir, name, set string, people int, seed int64, duration float64) (sim.Options, *sim.Summary) {
	t.Helper()
	td, err := conf.TestDataDir()
	if err != nil {
		t.Fatal(err)
	}
	ec := faceengine.DefaultEngineConfig()
	ec.ModelsDir = conf.TestModelsDir()
	ec.Workers = 2
	eng, err := faceengine.NewEngine(ec, nil)
	if err != nil {
		t.Fatalf("face engine (set MODELS_DIR): %v", err)
	}
	defer eng.Close()
	so := sim.DefaultOptions()
	so.Photos = []string{filepath.Join(td, set)}
	so.Out, so.TruthOut, so.GalleryOut = filepath.Join(dir, name+".avi"), filepath.Join(dir, name+".truth.json"), filepath.Join(dir, name+".gallery.json")
	so.Seed, so.People, so.Visitors, so.School, so.Duration = seed, people, 0, school, duration
	sum, err := sim.Generate(context.Background(), so, eng, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("video %s: %+v", name, *sum)
	return so, sum
}

// edgeRun is one run of the real bin/edge.
type edgeRun struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	http string
	log  string
}

// startEdge runs bin/edge on video (in real time or as fast as possible) with its
// data in dataDir, the broker at addr and extra YAML lines appended.
func startEdge(t *testing.T, bin, dir, name, dataDir, video string, realtime bool, gallery, addr, extra string) *edgeRun {
	t.Helper()
	httpAddr, err := brokertest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	y := fmt.Sprintf(`school_id: %s
gate_id: %s
data_dir: %s
log: {level: info, format: text}
camera: {source: %s, realtime: %v}
engine: {models_dir: %s, workers: 2}
pipeline: {use_gallery_operating_point: false, calibrate_far: 0, vote: {threshold: %g, min_margin: 0.01}}
gallery: {path: %s}
mqtt: {broker: "tcp://%s", username: %s, password: %s, retry_min: 100ms, retry_max: 500ms, poll: 50ms}
http: {listen: "%s"}
heartbeat_interval: 1s
%s`, school, gate, dataDir, video, realtime, conf.TestModelsDir(), looseThreshold(t), gallery, addr, gateUser, gatePassword, httpAddr, extra)
	cfg := filepath.Join(dir, name+".yaml")
	if err := os.WriteFile(cfg, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	r := &edgeRun{cmd: exec.Command(bin, "run", "--config", cfg), done: make(chan struct{}), http: httpAddr, log: filepath.Join(dir, name+".log")}
	logf, err := os.Create(r.log)
	if err != nil {
		t.Fatal(err)
	}
	r.cmd.Stdout, r.cmd.Stderr = logf, logf
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { r.err = r.cmd.Wait(); logf.Close(); close(r.done) }()
	t.Cleanup(func() {
		_ = r.cmd.Process.Signal(syscall.SIGKILL)
		<-r.done
		if t.Failed() {
			b, _ := os.ReadFile(r.log)
			t.Logf("%s log:\n%s", name, b)
		}
	})
	return r
}

// logText is the edge run's log so far.
func (r *edgeRun) logText() string {
	b, _ := os.ReadFile(r.log)
	return string(b)
}

// metric reads one sample of the edge's /metrics (name with labels as
// printed, e.g. `edge_outbox_refused_total{reason="disk_full"}`); -1 when
// absent.
func (r *edgeRun) metric(name string) float64 {
	resp, err := http.Get("http://" + r.http + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			var f float64
			if _, err := fmt.Sscan(v, &f); err == nil {
				return f
			}
		}
	}
	return -1
}

// waitExit waits for the edge to end by itself (a video played to its
// end with the outbox empty).
func (r *edgeRun) waitExit(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case <-r.done:
		if r.err != nil {
			t.Fatalf("edge exited with %v", r.err)
		}
	case <-time.After(d):
		t.Fatalf("edge did not exit within %s", d)
	}
}
