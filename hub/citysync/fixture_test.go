package citysync_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/deploy/citydb"
	"github.com/diemdanh/diemdanh/deploy/citydb/pgtest"
	"github.com/diemdanh/diemdanh/hub/citysync"
	"github.com/diemdanh/diemdanh/hub/store"
	"github.com/jackc/pgx/v5"
)

var cluster *pgtest.Cluster

func TestMain(m *testing.M) {
	var err error
	cluster, err = pgtest.Open(pgtest.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "citysync tests need PostgreSQL 15:", err)
		os.Exit(1)
	}
	code := m.Run()
	if err := cluster.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "stop cluster:", err)
	}
	os.Exit(code)
}

var hcm = time.FixedZone("ICT", 7*3600)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

// syncBuf is a goroutine-safe log sink.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

type fixture struct {
	t      *testing.T
	ctx    context.Context
	cl     *pgtest.Cluster
	dbName string
	admin  *pgx.Conn
	hub    *store.DB
	clock  *clock
	logs   *syncBuf
	cfg    citysync.Config
	w      *citysync.Worker
}

const school = "S1"

// newFixture: a fresh city database (migrated, school S1 with role hub_s1)
// and a fresh hub SQLite; the worker is built by f.worker().
func newFixture(t *testing.T, cl *pgtest.Cluster) *fixture {
	t.Helper()
	ctx := context.Background()
	name, err := cl.CreateDatabase(ctx, t.Name())
	if err != nil {
		t.Fatal(err)
	}
	admin, err := pgx.Connect(ctx, cl.AdminDSN(name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close(context.Background()) })
	if _, err := citydb.Migrate(ctx, admin); err != nil {
		t.Fatal(err)
	}
	mustExec(t, admin, `INSERT INTO records.districts VALUES ('Q1', 'Quận 1')`)
	mustExec(t, admin, `INSERT INTO records.schools (school_id, name, district_code, level) VALUES ('S1', 'Trường Tiểu học Lê Ngọc Hân', 'Q1', 'primary')`)
	if err := citydb.ProvisionSchool(ctx, admin, school, "hub_s1", "pw-hub-s1"); err != nil {
		t.Fatal(err)
	}
	hub, err := store.Open(ctx, filepath.Join(t.TempDir(), "hub.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hub.Close() })
	f := &fixture{t: t, ctx: ctx, cl: cl, dbName: name, admin: admin, hub: hub,
		clock: &clock{t: time.Date(2025, 10, 6, 7, 0, 0, 0, hcm)}, logs: &syncBuf{}}
	f.cfg = citysync.Default()
	f.cfg.DSN = cl.DSN("hub_s1", "pw-hub-s1", name)
	f.cfg.SchoolID = school
	return f
}

func (f *fixture) worker() *citysync.Worker {
	f.t.Helper()
	log := slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	w, err := citysync.New(f.cfg, f.hub, log, f.clock.Now)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(w.Close)
	f.w = w
	return w
}

func mustExec(t *testing.T, c *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := c.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func (f *fixture) hubExec(sql string, args ...any) {
	f.t.Helper()
	if _, err := f.hub.W.ExecContext(f.ctx, sql, args...); err != nil {
		f.t.Fatalf("%s: %v", sql, err)
	}
}

func (f *fixture) hubInt(sql string, args ...any) int {
	f.t.Helper()
	var n int
	if err := f.hub.R.QueryRowContext(f.ctx, sql, args...).Scan(&n); err != nil {
		f.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func (f *fixture) cityInt(sql string, args ...any) int {
	f.t.Helper()
	var n int
	if err := f.admin.QueryRow(f.ctx, sql, args...).Scan(&n); err != nil {
		f.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func (f *fixture) sync() citysync.Report {
	f.t.Helper()
	rep, err := f.w.SyncOnce(f.ctx)
	if err != nil {
		f.t.Fatalf("SyncOnce: %v", err)
	}
	return rep
}

func pid(i int) string { return fmt.Sprintf("0790%08d", i) }

// seedRoster puts classes × perClass valid pupils in the city records.
func (f *fixture) seedRoster(classes, perClass int) {
	f.t.Helper()
	for c := 1; c <= classes; c++ {
		mustExec(f.t, f.admin, `INSERT INTO records.staff (school_id, staff_id, full_name) VALUES ('S1', $1, $2)`,
			fmt.Sprintf("T%d", c), fmt.Sprintf("Giáo viên %d", c))
		mustExec(f.t, f.admin, `INSERT INTO records.classes (school_id, class_id, name, grade, homeroom_teacher_id) VALUES ('S1', $1, $2, 1, $3)`,
			fmt.Sprintf("C%d", c), fmt.Sprintf("1A%d", c), fmt.Sprintf("T%d", c))
		for p := 1; p <= perClass; p++ {
			i := c*1000 + p
			mustExec(f.t, f.admin, `INSERT INTO records.pupils (school_id, pupil_code, personal_id, class_id, full_name, date_of_birth)
				VALUES ('S1', $1, $2, $3, $4, '2018-05-01')`, fmt.Sprintf("HS%d", i), pid(i), fmt.Sprintf("C%d", c), fmt.Sprintf("Học sinh %d", i))
		}
	}
}

// ingest stores one recognised event the way hub/ingest does.
func (f *fixture) ingest(eventID, pupil string, at time.Time) {
	f.hubExec(`INSERT INTO events (event_id, school_id, gate_id, direction, student_id, captured_at, received_at,
		distance, margin, frames_used, model) VALUES (?, 'S1', 'G1', 'in', ?, ?, ?, 0.35, 0.1, 3, 'dlib@1')`,
		eventID, pupil, at.UnixMilli(), at.UnixMilli()+150)
}

// setDaily writes a daily status the way hub/attendance does.
func (f *fixture) setDaily(pupil, day, status, source string) {
	f.hubExec(`INSERT INTO daily_attendance (pupil_id, day, status, source, updated_at) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT(pupil_id, day) DO UPDATE SET status = excluded.status, source = excluded.source, updated_at = excluded.updated_at`,
		pupil, day, status, source, time.Now().UnixMilli())
}

// reconnectAdmin replaces the admin connection (after a server restart).
func (f *fixture) reconnectAdmin() {
	f.t.Helper()
	c, err := pgx.Connect(f.ctx, f.cl.AdminDSN(f.dbName))
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { c.Close(context.Background()) })
	f.admin = c
}
