package citydb_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/diemdanh/diemdanh/deploy/citydb"
	"github.com/diemdanh/diemdanh/deploy/citydb/pgtest"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

var cluster *pgtest.Cluster

func TestMain(m *testing.M) {
	var err error
	cluster, err = pgtest.Open(pgtest.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "citydb tests need PostgreSQL 15:", err)
		os.Exit(1)
	}
	code := m.Run()
	if err := cluster.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "stop cluster:", err)
	}
	os.Exit(code)
}

func freshDB(t *testing.T) (string, *pgx.Conn) {
	t.Helper()
	ctx := context.Background()
	name, err := cluster.CreateDatabase(ctx, t.Name())
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, cluster.AdminDSN(name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return name, conn
}

func TestMigrateFromEmptyIdempotent(t *testing.T) {
	ctx := context.Background()
	name, conn := freshDB(t)
	ms, err := citydb.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	// Two runners at once on an empty database: the advisory lock serialises them.
	var wg sync.WaitGroup
	results := make([][]string, 2)
	errs := make([]error, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := pgx.Connect(ctx, cluster.AdminDSN(name))
			if err != nil {
				errs[i] = err
				return
			}
			defer c.Close(ctx)
			results[i], errs[i] = citydb.Migrate(ctx, c)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := len(results[0]) + len(results[1]); got != len(ms) {
		t.Fatalf("applied %d migrations in total across two runners, want %d", got, len(ms))
	}
	again, err := citydb.Migrate(ctx, conn)
	if err != nil || len(again) != 0 {
		t.Fatalf("second run applied %v, err %v; want nothing", again, err)
	}
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM public.schema_migrations`).Scan(&n); err != nil || n != len(ms) {
		t.Fatalf("schema_migrations has %d rows (err %v), want %d", n, err, len(ms))
	}
	for _, tbl := range append(schoolTables(), "records.districts", "records.terms", "nutrition.meal_types", "records.school_roles") {
		var ok bool
		if err := conn.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, tbl).Scan(&ok); err != nil || !ok {
			t.Errorf("table %s missing after migrate", tbl)
		}
	}
}

// writeOps: one INSERT per school-owned table ($1 = school id) and the column an UPDATE touches.
var writeOps = map[string]struct{ insert, col string }{
	"records.schools":           {`INSERT INTO records.schools (school_id, name, district_code, level) VALUES ($1 || 'x', 'x', 'Q1', 'primary')`, "name"},
	"records.staff":             {`INSERT INTO records.staff (school_id, staff_id, full_name) VALUES ($1, 'T9', 'x')`, "full_name"},
	"records.classes":           {`INSERT INTO records.classes (school_id, class_id, name, grade) VALUES ($1, 'C9', 'x', 1)`, "name"},
	"records.pupils":            {`INSERT INTO records.pupils (school_id, pupil_code, full_name) VALUES ($1, 'P9', 'x')`, "full_name"},
	"records.guardians":         {`INSERT INTO records.guardians (school_id, pupil_code, guardian_no, full_name) VALUES ($1, 'P1', 9, 'x')`, "full_name"},
	"records.enrolments":        {`INSERT INTO records.enrolments (school_id, pupil_code, starts_on) VALUES ($1, 'P1', '2031-01-01')`, "reason"},
	"attendance.events":         {`INSERT INTO attendance.events (school_id, event_id, pupil_id, gate_id, direction, captured_at, received_at, distance) VALUES ($1, 'e9', '079000000009', 'g', 'in', now(), now(), 0.3)`, "rejected"},
	"attendance.daily_status":   {`INSERT INTO attendance.daily_status (school_id, pupil_id, day, status, source, hub_updated_at) VALUES ($1, '079000000009', '2031-01-01', 'present', 'auto', now())`, "status"},
	"attendance.sync_status":    {`INSERT INTO attendance.sync_status (school_id, last_sync_at) VALUES ($1, now()) ON CONFLICT (school_id) DO UPDATE SET lag_rows = 1`, "lag_rows"},
	"nutrition.headcounts":      {`INSERT INTO nutrition.headcounts (school_id, class_id, day, meal_code, headcount, enrolled, computed_at) VALUES ($1, 'C9', '2031-01-01', 'lunch', 1, 1, now())`, "headcount"},
	"transcript.absence_totals": {`INSERT INTO transcript.absence_totals (school_id, pupil_id, school_year, term, excused, unexcused, computed_at) VALUES ($1, '079000000009', '2030-2031', 1, 0, 0, now())`, "excused"},
}

func schoolTables() []string {
	return []string{"records.schools", "records.staff", "records.classes", "records.pupils", "records.guardians",
		"records.enrolments", "attendance.events", "attendance.daily_status", "attendance.sync_status",
		"nutrition.headcounts", "transcript.absence_totals"}
}

func seed(t *testing.T, conn *pgx.Conn) {
	t.Helper()
	ctx := context.Background()
	if _, err := citydb.Migrate(ctx, conn); err != nil {
		t.Fatal(err)
	}
	_, err := conn.Exec(ctx, `
INSERT INTO records.districts VALUES ('Q1', 'Quận 1'), ('Q3', 'Quận 3');
INSERT INTO records.schools (school_id, name, district_code, level) VALUES
  ('A', 'Trường A', 'Q1', 'primary'), ('B', 'Trường B', 'Q3', 'preschool');`)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range []string{"A", "B"} {
		pid := fmt.Sprintf("07900000000%d", i)
		stmts := []string{
			`INSERT INTO records.staff (school_id, staff_id, full_name) VALUES ($1, 'T1', 'Cô Lan')`,
			`INSERT INTO records.classes (school_id, class_id, name, grade, homeroom_teacher_id) VALUES ($1, 'C1', '1A', 1, 'T1')`,
			`INSERT INTO records.pupils (school_id, pupil_code, personal_id, class_id, full_name) VALUES ($1, 'P1', $2, 'C1', 'Bé An')`,
			`INSERT INTO records.guardians (school_id, pupil_code, guardian_no, full_name) VALUES ($1, 'P1', 1, 'Mẹ An')`,
			`INSERT INTO records.enrolments (school_id, pupil_code, starts_on, class_id) VALUES ($1, 'P1', '2025-09-05', 'C1')`,
			`INSERT INTO attendance.events (school_id, event_id, pupil_id, gate_id, direction, captured_at, received_at, distance)
			  VALUES ($1, 'e1', $2, 'g1', 'in', now(), now(), 0.35)`,
			`INSERT INTO attendance.daily_status (school_id, pupil_id, day, class_id, status, source, hub_updated_at)
			  VALUES ($1, $2, records.city_today(), 'C1', 'present', 'auto', now())`,
			`INSERT INTO attendance.sync_status (school_id, last_sync_at) VALUES ($1, now())`,
			`INSERT INTO nutrition.headcounts (school_id, class_id, day, meal_code, headcount, enrolled, computed_at)
			  VALUES ($1, 'C1', records.city_today(), 'lunch', 1, 1, now())`,
			`INSERT INTO transcript.absence_totals (school_id, pupil_id, school_year, term, excused, unexcused, computed_at)
			  VALUES ($1, $2, '2025-2026', 1, 0, 0, now())`,
		}
		for _, q := range stmts {
			args := []any{s}
			if strings.Contains(q, "$2") {
				args = append(args, pid)
			}
			if _, err := conn.Exec(ctx, q, args...); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, r := range []struct{ school, role string }{{"A", "hub_a"}, {"B", "hub_b"}} {
		if err := citydb.ProvisionSchool(ctx, conn, r.school, r.role, "pw-"+r.role); err != nil {
			t.Fatal(err)
		}
	}
	if err := citydb.ProvisionAnalyst(ctx, conn, "city_analyst", "pw-analyst"); err != nil {
		t.Fatal(err)
	}
}

func sqlState(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// attempt runs fn in a transaction that is always rolled back.
func attempt(ctx context.Context, conn *pgx.Conn, fn func(pgx.Tx) (int64, error)) (int64, error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(ctx) //nolint:errcheck
	return fn(tx)
}

func exec(sql string, args ...any) func(pgx.Tx) (int64, error) {
	return func(tx pgx.Tx) (int64, error) {
		tag, err := tx.Exec(context.Background(), sql, args...)
		return tag.RowsAffected(), err
	}
}

func TestRowLevelSecurity(t *testing.T) {
	ctx := context.Background()
	name, admin := freshDB(t)
	seed(t, admin)
	hubA, err := pgx.Connect(ctx, cluster.DSN("hub_a", "pw-hub_a", name))
	if err != nil {
		t.Fatal(err)
	}
	defer hubA.Close(ctx)
	analyst, err := pgx.Connect(ctx, cluster.DSN("city_analyst", "pw-analyst", name))
	if err != nil {
		t.Fatal(err)
	}
	defer analyst.Close(ctx)
	if _, err := pgx.Connect(ctx, cluster.DSN("hub_a", "wrong", name)); err == nil {
		t.Fatal("hub_a logged in with a wrong password")
	}

	for _, tbl := range schoolTables() {
		op := writeOps[tbl]
		records := tbl[:8] == "records."
		t.Run(tbl, func(t *testing.T) {
			// Read: A sees its own rows and none of B's.
			var own, foreign, all int
			if err := hubA.QueryRow(ctx, `SELECT count(*) FILTER (WHERE school_id = 'A'), count(*) FILTER (WHERE school_id = 'B'), count(*) FROM `+tbl).Scan(&own, &foreign, &all); err != nil {
				t.Fatal(err)
			}
			if own == 0 || foreign != 0 || all != own {
				t.Fatalf("school A reads own=%d foreign=%d all=%d; want own>0, foreign=0", own, foreign, all)
			}
			// Write B's rows: insert refused, update touches nothing (or is refused), delete refused.
			if _, err := attempt(ctx, hubA, exec(op.insert, "B")); sqlState(err) != "42501" {
				t.Errorf("A inserting a B row: err %v, want insufficient_privilege/RLS violation (42501)", err)
			}
			n, err := attempt(ctx, hubA, exec(fmt.Sprintf(`UPDATE %s SET %s = %s WHERE school_id = 'B'`, tbl, op.col, op.col)))
			if records {
				if sqlState(err) != "42501" {
					t.Errorf("A updating B's records: err %v, want 42501", err)
				}
			} else if err != nil || n != 0 {
				t.Errorf("A updating B's rows: %d rows, err %v; want 0 rows", n, err)
			}
			if _, err := attempt(ctx, hubA, exec(`DELETE FROM `+tbl+` WHERE school_id = 'B'`)); sqlState(err) != "42501" {
				t.Errorf("A deleting B's rows: err %v, want 42501", err)
			}
			// Own rows: writable except records (read-only for hubs); moving a row to B is refused.
			_, err = attempt(ctx, hubA, exec(op.insert, "A"))
			if records {
				if sqlState(err) != "42501" {
					t.Errorf("A inserting into records: err %v, want 42501 (records are read-only for hubs)", err)
				}
			} else {
				if err != nil {
					t.Errorf("A inserting its own row: %v", err)
				}
				if _, err := attempt(ctx, hubA, exec(`UPDATE `+tbl+` SET school_id = 'B' WHERE school_id = 'A'`)); sqlState(err) != "42501" {
					t.Errorf("A moving its row to B: err %v, want 42501", err)
				}
			}
			// Analyst: reads every school, writes nothing.
			var seen int
			if err := analyst.QueryRow(ctx, `SELECT count(DISTINCT school_id) FROM `+tbl).Scan(&seen); err != nil || seen != 2 {
				t.Errorf("analyst sees %d schools (err %v), want 2", seen, err)
			}
			for _, w := range []string{op.insert, fmt.Sprintf(`UPDATE %s SET %s = %s`, tbl, op.col, op.col), `DELETE FROM ` + tbl} {
				args := []any{}
				if w == op.insert {
					args = append(args, "A")
				}
				if _, err := attempt(ctx, analyst, exec(w, args...)); sqlState(err) != "42501" {
					t.Errorf("analyst write %q: err %v, want 42501", w[:20], err)
				}
			}
		})
	}
	// Reference tables: readable, not writable by hubs or the analyst.
	for _, c := range []*pgx.Conn{hubA, analyst} {
		for _, w := range []string{`INSERT INTO records.districts VALUES ('X', 'x')`, `UPDATE records.terms SET term = term`,
			`INSERT INTO nutrition.meal_types VALUES ('x', 'x')`} {
			if _, err := attempt(ctx, c, exec(w)); sqlState(err) != "42501" {
				t.Errorf("%s on a reference table: err %v, want 42501", w, err)
			}
		}
	}
	if _, err := attempt(ctx, hubA, exec(`INSERT INTO records.school_roles VALUES ('hub_a', 'B')`)); sqlState(err) != "42501" {
		t.Errorf("hub remapping its own role: err %v, want 42501", err)
	}
}

func TestCityViews(t *testing.T) {
	ctx := context.Background()
	name, admin := freshDB(t)
	seed(t, admin)
	_, err := admin.Exec(ctx, `-- multi-statement, no arguments (simple protocol)

INSERT INTO records.schools (school_id, name, district_code, level) VALUES ('C', 'Trường C', 'Q1', 'primary'), ('D', 'Trường D', 'Q1', 'primary');
DELETE FROM attendance.daily_status WHERE school_id = 'B';
INSERT INTO records.pupils (school_id, pupil_code, personal_id, full_name) VALUES
  ('A', 'P2', NULL, 'Không mã'), ('A', 'P3', '07912345', 'Mã ngắn'), ('B', 'P4', '079x00000001', 'Mã sai'),
  ('A', 'P5', '079000000005', 'Đúng');
INSERT INTO records.pupils (school_id, pupil_code, personal_id, full_name, status) VALUES ('A', 'P6', NULL, 'Đã nghỉ', 'left');
INSERT INTO attendance.daily_status (school_id, pupil_id, day, status, source, hub_updated_at) VALUES
  ('A', '079000000005', records.city_today(), 'absent', 'auto', now()),
  ('A', '079000000006', records.city_today(), 'late', 'auto', now()),
  ('A', '079000000007', records.city_today(), 'not_yet', 'auto', now()),
  ('C', '079000000008', records.city_today(), 'excused', 'manual', now());
UPDATE attendance.sync_status SET last_sync_at = now() - interval '25 hours' WHERE school_id = 'B';`)
	if err != nil {
		t.Fatal(err)
	}
	analyst, err := pgx.Connect(ctx, cluster.DSN("city_analyst", "pw-analyst", name))
	if err != nil {
		t.Fatal(err)
	}
	defer analyst.Close(ctx)

	var schools, reporting int
	var share float64
	if err := analyst.QueryRow(ctx, `SELECT schools, reporting, share FROM attendance.v_reporting_today`).Scan(&schools, &reporting, &share); err != nil {
		t.Fatal(err)
	}
	if schools != 4 || reporting != 2 || share != 0.5 {
		t.Errorf("reporting today = %d/%d share %v, want 2/4 0.5", reporting, schools, share)
	}

	var present, expected int
	var rate float64
	if err := analyst.QueryRow(ctx, `SELECT present, expected, rate FROM attendance.v_rate_by_district_level
		WHERE day = records.city_today() AND district_code = 'Q1' AND level = 'primary'`).Scan(&present, &expected, &rate); err != nil {
		t.Fatal(err)
	}
	// Q1 primary today: A present, A absent, A late, (A not_yet ignored), C excused → 2 of 4.
	if present != 2 || expected != 4 || rate != 0.5 {
		t.Errorf("Q1 primary: present %d expected %d rate %v, want 2 4 0.5", present, expected, rate)
	}

	rows, err := analyst.Query(ctx, `SELECT school_id || '/' || pupil_code || '/' || problem FROM records.v_pupils_without_personal_id ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"A/P2/missing", "A/P3/malformed", "B/P4/malformed"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("pupils without personal id = %v, want %v", got, want)
	}

	rows, err = analyst.Query(ctx, `SELECT school_id FROM attendance.v_sync_lagging ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	lag, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(lag) != "[B C D]" { // B synced 25 h ago, C and D never
		t.Errorf("lagging schools = %v, want [B C D]", lag)
	}

	// A school's role sees the same views restricted to itself.
	hubA, err := pgx.Connect(ctx, cluster.DSN("hub_a", "pw-hub_a", name))
	if err != nil {
		t.Fatal(err)
	}
	defer hubA.Close(ctx)
	if err := hubA.QueryRow(ctx, `SELECT schools, reporting FROM attendance.v_reporting_today`).Scan(&schools, &reporting); err != nil {
		t.Fatal(err)
	}
	if schools != 1 || reporting != 1 {
		t.Errorf("school A's view of reporting = %d/%d, want 1/1", reporting, schools)
	}
}
