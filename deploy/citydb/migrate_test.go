package citydb_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/deploy/citydb"
	"github.com/jackc/pgx/v5"
)

// columns lists every column of the city schemas and of
// public.schema_migrations: schema.table.column type nullability default.
func columns(t *testing.T, conn *pgx.Conn) []string {
	t.Helper()
	rows, err := conn.Query(context.Background(), `SELECT table_schema || '.' || table_name || '.' || column_name || ' ' ||
		data_type || ' ' || is_nullable || ' ' || COALESCE(column_default, '')
		FROM information_schema.columns
		WHERE table_schema IN ('records', 'attendance', 'nutrition', 'transcript')
		   OR (table_schema = 'public' AND table_name = 'schema_migrations')
		ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestMigrateKeepsExistingDatabases: a city database whose first
// migrations were applied and recorded the way apply.sh and earlier
// releases did (their own schema_migrations statement, the default
// applied_at) is completed without re-running them and ends with the
// schema of a fresh one; schema_migrations keeps its definition.
func TestMigrateKeepsExistingDatabases(t *testing.T) {
	ctx := context.Background()
	ms, err := citydb.Migrations()
	if err != nil || len(ms) < 3 {
		t.Fatalf("%d migrations, %v", len(ms), err)
	}
	_, old := freshDB(t)
	if _, err := old.Exec(ctx, `CREATE TABLE IF NOT EXISTS public.schema_migrations (
  version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms[:2] {
		if _, err := old.Exec(ctx, m.SQL); err != nil {
			t.Fatal(err)
		}
		if _, err := old.Exec(ctx, `INSERT INTO public.schema_migrations (version, name, applied_at) VALUES ($1, $2, '2025-01-01T00:00:00Z')`,
			m.Version, m.Name); err != nil {
			t.Fatal(err)
		}
	}
	applied, err := citydb.Migrate(ctx, old)
	var want []string
	for _, m := range ms[2:] {
		want = append(want, m.Name)
	}
	if err != nil || !slices.Equal(applied, want) {
		t.Fatalf("applied %v (err %v), want %v", applied, err, want)
	}
	var kept, recent int
	if err := old.QueryRow(ctx, `SELECT count(*) FILTER (WHERE applied_at = '2025-01-01T00:00:00Z'),
		count(*) FILTER (WHERE applied_at > now() - interval '10 minutes') FROM public.schema_migrations`).Scan(&kept, &recent); err != nil {
		t.Fatal(err)
	}
	if kept != 2 || recent != len(ms)-2 {
		t.Fatalf("%d old records kept (want 2), %d new ones now (want %d)", kept, recent, len(ms)-2)
	}
	if again, err := citydb.Migrate(ctx, old); err != nil || len(again) != 0 {
		t.Fatalf("again: applied %v, err %v", again, err)
	}

	_, fresh := freshDB(t)
	if _, err := citydb.Migrate(ctx, fresh); err != nil {
		t.Fatal(err)
	}
	got, wantCols := columns(t, old), columns(t, fresh)
	if !slices.Equal(got, wantCols) || len(got) == 0 {
		t.Fatalf("columns after completing an existing database:\n%v\nfresh:\n%v", got, wantCols)
	}
	for _, c := range []string{
		"public.schema_migrations.applied_at timestamp with time zone NO now()",
		"public.schema_migrations.name text NO ",
		"public.schema_migrations.version integer NO ",
	} {
		if !slices.Contains(got, c) {
			t.Errorf("schema_migrations has no column %q", c)
		}
	}
	var at time.Time
	if err := fresh.QueryRow(ctx, `SELECT max(applied_at) FROM public.schema_migrations`).Scan(&at); err != nil || time.Since(at) > 10*time.Minute {
		t.Fatalf("fresh applied_at %v %v", at, err)
	}
}
