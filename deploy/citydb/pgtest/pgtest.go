// Package pgtest runs a real, throwaway PostgreSQL cluster for tests and
// benchmarks: initdb + pg_ctl in a temporary directory, listening on a free
// loopback port with its unix socket inside that directory. As root (CI) it
// runs the server as the "postgres" OS user via runuser, because initdb
// refuses root. The system PostgreSQL service is never used or touched.
//
// With $CITYDB_TEST_DSN set, Open uses that server instead (it cannot be
// stopped: Managed() reports false).
package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvDSN names the variable holding an external server's admin DSN.
const EnvDSN = "CITYDB_TEST_DSN"

// Options tune a throwaway cluster.
type Options struct {
	// Durable keeps fsync and synchronous_commit on (benchmarks). Tests
	// turn them off for speed; a clean "pg_ctl stop -m fast" loses nothing either way.
	Durable bool
	// MaxConnections defaults to 300 (the city-peak benchmark opens 200).
	MaxConnections int
}

// Cluster is a running PostgreSQL server.
type Cluster struct {
	dir, data, sock, logPath string
	bin                      string
	port                     int
	password                 string
	opts                     Options
	external                 *url.URL
	seq                      atomic.Int64
}

// Open returns the server named by $CITYDB_TEST_DSN, or starts a throwaway one.
func Open(opts Options) (*Cluster, error) {
	if dsn := os.Getenv(EnvDSN); dsn != "" {
		u, err := url.Parse(dsn)
		if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			return nil, fmt.Errorf("pgtest: %s must be a postgres:// URL", EnvDSN)
		}
		return &Cluster{external: u}, nil
	}
	return Start(opts)
}

// Start creates and starts a throwaway cluster.
func Start(opts Options) (*Cluster, error) {
	if opts.MaxConnections == 0 {
		opts.MaxConnections = 300
	}
	bin, err := findBin()
	if err != nil {
		return nil, err
	}
	base := "" // $TMPDIR
	if os.Geteuid() == 0 {
		// The server runs as postgres: use /tmp, which it can traverse
		// (a root-only $TMPDIR would lock it out).
		base = "/tmp"
	}
	dir, err := os.MkdirTemp(base, "citydb-pg-")
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	c := &Cluster{dir: dir, data: filepath.Join(dir, "data"), sock: dir, logPath: filepath.Join(dir, "server.log"),
		bin: bin, password: "test-" + strconv.FormatInt(time.Now().UnixNano(), 36), opts: opts}
	if err := c.initdb(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	var startErr error
	for range 3 { // a freshly picked port can be taken by someone else
		if c.port, startErr = freePort(); startErr != nil {
			break
		}
		if startErr = c.StartServer(); startErr == nil {
			return c, nil
		}
	}
	os.RemoveAll(dir)
	return nil, startErr
}

func findBin() (string, error) {
	if b := os.Getenv("PG_BINDIR"); b != "" {
		return b, nil
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	sort.Slice(matches, func(i, j int) bool { return pgMajor(matches[i]) > pgMajor(matches[j]) })
	for _, m := range matches {
		if pgMajor(m) >= 15 {
			return filepath.Dir(m), nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", errors.New("pgtest: PostgreSQL 15 binaries not found (apt-get install postgresql, or set PG_BINDIR or " + EnvDSN + ")")
}

func pgMajor(p string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(p))))
	return n
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pgtest: free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// run executes a PostgreSQL binary, as the postgres OS user when we are root.
func (c *Cluster) run(name string, args ...string) error {
	prog := filepath.Join(c.bin, name)
	var cmd *exec.Cmd
	if os.Geteuid() == 0 {
		cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--", prog}, args...)...)
	} else {
		cmd = exec.Command(prog, args...)
	}
	cmd.Dir = c.dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("pgtest: %s: %w: %s", name, err, strings.TrimSpace(out.String()))
	}
	return nil
}

func (c *Cluster) initdb() error {
	pw := filepath.Join(c.dir, "pwfile")
	if err := os.WriteFile(pw, []byte(c.password+"\n"), 0o600); err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return fmt.Errorf("pgtest: running as root needs the postgres OS user (install the postgresql package): %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		for _, p := range []string{c.dir, pw} {
			if err := os.Chown(p, uid, gid); err != nil {
				return fmt.Errorf("pgtest: chown: %w", err)
			}
		}
	}
	return c.run("initdb", "-D", c.data, "-U", "postgres", "--pwfile="+pw, "-E", "UTF8", "--no-locale",
		"--auth-local=trust", "--auth-host=scram-sha-256", "-N")
}

// StartServer (re)starts the server and waits until it accepts connections.
func (c *Cluster) StartServer() error {
	if c.external != nil {
		return errors.New("pgtest: cannot start an external server")
	}
	o := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c max_connections=%d -c shared_buffers=128MB",
		c.port, c.sock, c.opts.MaxConnections)
	if !c.opts.Durable {
		o += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
	}
	if err := c.run("pg_ctl", "-D", c.data, "-l", c.logPath, "-w", "-t", "60", "-o", o, "start"); err != nil {
		b, _ := os.ReadFile(c.logPath)
		if len(b) > 2000 {
			b = b[len(b)-2000:]
		}
		return fmt.Errorf("%w\nserver log:\n%s", err, b)
	}
	return nil
}

// StopServer stops the server (pg_ctl stop -m fast), keeping its data.
func (c *Cluster) StopServer() error {
	if c.external != nil {
		return errors.New("pgtest: cannot stop an external server")
	}
	return c.run("pg_ctl", "-D", c.data, "-m", "fast", "-w", "-t", "60", "stop")
}

// Managed reports whether this cluster was started here (and can be stopped).
func (c *Cluster) Managed() bool { return c.external == nil }

// Close stops a throwaway cluster and removes its directory.
func (c *Cluster) Close() error {
	if c.external != nil {
		return nil
	}
	err := c.StopServer()
	if err != nil && strings.Contains(err.Error(), "Is server running?") {
		err = nil // already stopped
	}
	if rmErr := os.RemoveAll(c.dir); err == nil {
		err = rmErr
	}
	return err
}

// DSN is a URL for user/password on database db (TCP loopback).
func (c *Cluster) DSN(userName, password, db string) string {
	if c.external != nil {
		u := *c.external
		u.User = url.UserPassword(userName, password)
		u.Path = "/" + db
		return u.String()
	}
	u := url.URL{Scheme: "postgres", User: url.UserPassword(userName, password),
		Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(c.port)), Path: "/" + db,
		RawQuery: "sslmode=disable"}
	return u.String()
}

// AdminDSN is the superuser's URL for database db ("" = the default database).
func (c *Cluster) AdminDSN(db string) string {
	if c.external != nil {
		u := *c.external
		if db != "" {
			u.Path = "/" + db
		}
		return u.String()
	}
	if db == "" {
		db = "postgres"
	}
	return c.DSN("postgres", c.password, db)
}

// CreateDatabase creates a fresh database with a unique name built from
// prefix and returns its name.
func (c *Cluster) CreateDatabase(ctx context.Context, prefix string) (string, error) {
	name := strings.ToLower(fmt.Sprintf("%s_%d_%d", sanitize(prefix), os.Getpid(), c.seq.Add(1)))
	conn, err := pgx.Connect(ctx, c.AdminDSN(""))
	if err != nil {
		return "", fmt.Errorf("pgtest: connect: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("pgtest: create database: %w", err)
	}
	return name, nil
}

func sanitize(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	if b.Len() > 30 {
		return b.String()[:30]
	}
	if b.Len() == 0 {
		return "t"
	}
	return b.String()
}
