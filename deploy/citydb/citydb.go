// Package citydb holds the city shared database schema (PostgreSQL 15,
// Citus-ready) as embedded, numbered SQL migrations, and applies them.
//
// One schema per module: records (roster), attendance (events, daily status,
// hub sync status), nutrition (headcounts per class and meal) and transcript
// (absence totals per pupil and term). Every school-owned table is keyed by
// school_id first so it distributes by school_id on Citus; see deploy/README.md.
// Row-level security lets a school's hub role see only its own school and the
// citydb_analyst role read everything.
package citydb

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

//go:embed migrations/*.sql
var migrationsFS embed.FS

// DB is what the migration runner needs: a *pgx.Conn or a *pgxpool.Pool.
type DB interface {
	Begin(ctx context.Context) (pgx.Tx, error)
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Migration is one numbered SQL file.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// Migrations returns the embedded migrations in order.
func Migrations() ([]Migration, error) {
	ents, err := fs.ReadDir(migrationsFS, "migrations")
	if err != nil {
		return nil, err
	}
	var out []Migration
	seen := map[int]string{}
	for _, e := range ents {
		name := e.Name()
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || !strings.HasSuffix(name, ".sql") {
			return nil, fmt.Errorf("citydb: bad migration file name %q (want NNNN_name.sql)", name)
		}
		if prev, dup := seen[v]; dup {
			return nil, fmt.Errorf("citydb: migrations %q and %q share version %d", prev, name, v)
		}
		seen[v] = name
		b, err := migrationsFS.ReadFile("migrations/" + name)
		if err != nil {
			return nil, err
		}
		out = append(out, Migration{v, name, string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out, nil
}

// lockKey serialises concurrent runners on the same database.
const lockKey = 0x63697479 // "city"

// Migrate applies every migration not yet recorded in public.schema_migrations,
// each in its own transaction under an advisory lock. It returns the names applied.
// Running it again is a no-op.
func Migrate(ctx context.Context, db DB) ([]string, error) {
	ms, err := Migrations()
	if err != nil {
		return nil, err
	}
	var applied []string
	for _, m := range ms {
		done, err := applyOne(ctx, db, m)
		if err != nil {
			return applied, err
		}
		if done {
			applied = append(applied, m.Name)
		}
	}
	return applied, nil
}

func applyOne(ctx context.Context, db DB, m Migration) (bool, error) {
	tx, err := db.Begin(ctx)
	if err != nil {
		return false, fmt.Errorf("citydb: migration %s: %w", m.Name, err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after commit
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(lockKey)); err != nil {
		return false, fmt.Errorf("citydb: lock: %w", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS public.schema_migrations (
		version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return false, fmt.Errorf("citydb: migrations table: %w", err)
	}
	var n int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM public.schema_migrations WHERE version = $1`, m.Version).Scan(&n); err != nil {
		return false, fmt.Errorf("citydb: migration %s: %w", m.Name, err)
	}
	if n > 0 {
		return false, nil
	}
	if _, err := tx.Exec(ctx, m.SQL); err != nil {
		return false, fmt.Errorf("citydb: migration %s: %w", m.Name, err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO public.schema_migrations (version, name) VALUES ($1, $2)`, m.Version, m.Name); err != nil {
		return false, fmt.Errorf("citydb: migration %s: %w", m.Name, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return false, fmt.Errorf("citydb: migration %s: %w", m.Name, err)
	}
	return true, nil
}

var roleRe = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// ErrBadRole is returned for a role name that is not a plain lower-case identifier.
var ErrBadRole = errors.New("citydb: role name must match [a-z_][a-z0-9_]*")

// ProvisionSchool creates (or updates the password of) the login role of one
// school's hub, makes it a member of citydb_school and maps it to schoolID.
// Run it as the database owner. Idempotent.
func ProvisionSchool(ctx context.Context, db DB, schoolID, role, password string) error {
	if !roleRe.MatchString(role) {
		return ErrBadRole
	}
	if schoolID == "" {
		return errors.New("citydb: empty school id")
	}
	if err := ensureLoginRole(ctx, db, role, password, "citydb_school"); err != nil {
		return err
	}
	_, err := db.Exec(ctx, `INSERT INTO records.school_roles (role_name, school_id) VALUES ($1, $2)
		ON CONFLICT (role_name) DO UPDATE SET school_id = EXCLUDED.school_id`, role, schoolID)
	if err != nil {
		return fmt.Errorf("citydb: map role %s: %w", role, err)
	}
	return nil
}

// ProvisionAnalyst creates (or updates) a read-only analyst login role.
func ProvisionAnalyst(ctx context.Context, db DB, role, password string) error {
	if !roleRe.MatchString(role) {
		return ErrBadRole
	}
	return ensureLoginRole(ctx, db, role, password, "citydb_analyst")
}

func ensureLoginRole(ctx context.Context, db DB, role, password, group string) error {
	ident := pgx.Identifier{role}.Sanitize()
	lit := quoteLiteral(password)
	_, err := db.Exec(ctx, fmt.Sprintf(`DO $do$ BEGIN
		IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = %s) THEN
			CREATE ROLE %s LOGIN PASSWORD %s;
		ELSE
			ALTER ROLE %s LOGIN PASSWORD %s;
		END IF;
	EXCEPTION WHEN duplicate_object OR unique_violation THEN
		ALTER ROLE %s LOGIN PASSWORD %s;
	END $do$`, quoteLiteral(role), ident, lit, ident, lit, ident, lit))
	if err != nil {
		return fmt.Errorf("citydb: role %s: %w", role, err)
	}
	if _, err := db.Exec(ctx, fmt.Sprintf(`GRANT %s TO %s`, group, ident)); err != nil {
		return fmt.Errorf("citydb: grant %s to %s: %w", group, role, err)
	}
	return nil
}

func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}
