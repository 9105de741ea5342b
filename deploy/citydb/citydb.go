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
	"strconv"
	"strings"

	"github.com/diemdanh/diemdanh/hub/store/migrate"
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
type Migration = migrate.Migration

// Migrations returns the embedded migrations in order.
func Migrations() ([]Migration, error) {
	sub, err := fs.Sub(migrationsFS, "migrations")
	if err != nil {
		return nil, fmt.Errorf("citydb: %w", err)
	}
	ms, err := migrate.Load(sub)
	if err != nil {
		return nil, fmt.Errorf("citydb: %w", err)
	}
	return ms, nil
}

// lockKey serialises concurrent runners on the same database.
const lockKey = 0x63697479 // "city"

// dialect is how the city database keeps public.schema_migrations (the
// table apply.sh uses too): applied_at is the transaction's time, every
// transaction of the runner first takes the advisory lock.
var dialect = migrate.Dialect{
	Table: "public.schema_migrations",
	CreateTable: `CREATE TABLE IF NOT EXISTS public.schema_migrations (
		version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`,
	Lock:  fmt.Sprintf(`SELECT pg_advisory_xact_lock(%d)`, int64(lockKey)),
	Param: func(n int) string { return "$" + strconv.Itoa(n) },
	Now:   "now()",
}

// Migrate applies every migration not yet recorded in public.schema_migrations,
// each in its own transaction under an advisory lock (hub/store/migrate). It
// returns the names applied. Running it again is a no-op.
func Migrate(ctx context.Context, db DB) ([]string, error) {
	ms, err := Migrations()
	if err != nil {
		return nil, err
	}
	applied, err := migrate.Run(ctx, pgxDB{db}, dialect, ms)
	if err != nil {
		return applied, fmt.Errorf("citydb: %w", err)
	}
	return applied, nil
}

// pgxDB adapts DB to the migration runner.
type pgxDB struct{ db DB }

func (p pgxDB) Begin(ctx context.Context) (migrate.Tx, error) {
	tx, err := p.db.Begin(ctx)
	if err != nil {
		return nil, err
	}
	return pgxTx{tx}, nil
}

type pgxTx struct{ tx pgx.Tx }

func (t pgxTx) Exec(ctx context.Context, query string, args ...any) error {
	_, err := t.tx.Exec(ctx, query, args...)
	return err
}

func (t pgxTx) QueryInt(ctx context.Context, query string, args ...any) (int, error) {
	var n int
	err := t.tx.QueryRow(ctx, query, args...).Scan(&n)
	return n, err
}

func (t pgxTx) Commit(ctx context.Context) error   { return t.tx.Commit(ctx) }
func (t pgxTx) Rollback(ctx context.Context) error { return t.tx.Rollback(ctx) }

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
