package auth_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/diemdanh/diemdanh/hub/auth"
	"github.com/diemdanh/diemdanh/hub/store"
	"github.com/diemdanh/diemdanh/models/conf"
)

// lockedHub runs the real hub binary (`hub run --config`) on a data folder
// that survives its restarts, and keeps its output for failures.
type lockedHub struct {
	t          *testing.T
	bin, cfg   string
	addr       string
	cmd        *exec.Cmd
	mu         sync.Mutex
	out        bytes.Buffer
	httpClient *http.Client
}

func (h *lockedHub) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.out.Write(p)
}

func (h *lockedHub) start() {
	t := h.t
	t.Helper()
	h.cmd = exec.Command(h.bin, "run", "--config", h.cfg)
	h.cmd.Stdout, h.cmd.Stderr = h, h
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + h.addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			h.kill()
			t.Fatalf("hub not healthy: %v\n%s", err, h.output())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// kill ends the hub with SIGKILL: nothing is flushed or closed.
func (h *lockedHub) kill() {
	if h.cmd != nil && h.cmd.Process != nil {
		_ = h.cmd.Process.Kill()
		_ = h.cmd.Wait()
		h.cmd = nil
	}
}

func (h *lockedHub) output() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.out.String()
}

// webLogin posts a JSON login and returns the status.
func (h *lockedHub) webLogin(user, pass string) int {
	h.t.Helper()
	resp, err := h.httpClient.Post("http://"+h.addr+"/api/v1/auth/login", "application/json",
		strings.NewReader(fmt.Sprintf(`{"username":%q,"password":%q}`, user, pass)))
	if err != nil {
		h.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// gateBasic calls /api/v1/auth/me with HTTP basic auth and returns the status.
func (h *lockedHub) gateBasic(user, pass string) int {
	h.t.Helper()
	req, _ := http.NewRequest("GET", "http://"+h.addr+"/api/v1/auth/me", nil)
	req.SetBasicAuth(user, pass)
	resp, err := h.httpClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func loopbackAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// seedLockoutHub creates the hub's database with an admin account and a
// gate, before the first start.
func seedLockoutHub(t *testing.T, data, gatePw string) {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(data, "hub.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	cfg := auth.DefaultConfig()
	cfg.BcryptCost = bcrypt.MinCost
	svc, err := auth.New(db, nil, cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := svc.CreateAccount(ctx, "test", auth.NewAccount{Username: "hieutruong", Password: pw, Role: auth.RoleAdmin, FullName: "Hiệu trưởng"}); err != nil {
		t.Fatal(err)
	}
	gh, _ := bcrypt.GenerateFromPassword([]byte(gatePw), bcrypt.MinCost)
	for _, q := range []string{`INSERT INTO schools(id, name) VALUES ('s1', 'THCS A')`,
		`INSERT INTO gates(id, school_id, name, direction, username, password_hash) VALUES ('g1', 's1', 'Cổng chính', 'in', 'g1', ?)`} {
		var args []any
		if strings.Contains(q, "gates") {
			args = append(args, string(gh))
		}
		if _, err := db.W.Exec(q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// TestFaultWebLockoutSurvivesRestart: against the real hub binary, an
// admin's web login reaches its failure limit and a gate's HTTP basic-auth
// username is locked by wrong passwords; the hub is killed with SIGKILL
// and started again on the same database. After the restart the right
// passwords are still refused (429) until the limit and the lock end,
// then accepted, and the stored counters of both are deleted.
func TestFaultWebLockoutSurvivesRestart(t *testing.T) {
	const window = 15 * time.Second // the web window and the gate's first lock; the restart must take less
	const gatePw = "gate-secret-123"
	bin := filepath.Join(t.TempDir(), "hub")
	if err := conf.BuildBinary("./hub", bin); err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	seedLockoutHub(t, data, gatePw)
	h := &lockedHub{t: t, bin: bin, addr: loopbackAddr(t), cfg: filepath.Join(t.TempDir(), "hub.yaml"),
		httpClient: &http.Client{Timeout: 10 * time.Second}}
	cfg := fmt.Sprintf(`data_dir: %s
http: {addr: "%s"}
broker: {listen: "%s"}
backup: {enabled: false}
auth:
  cookie_secure: false
  bcrypt_cost: 4
  max_failures_account: 3
  failure_window: %s
  gate_lockout: {free_failures: 3, base: %s, max: 150s}
`, data, h.addr, loopbackAddr(t), window, window)
	if err := os.WriteFile(h.cfg, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	h.start()
	defer h.kill()

	for i := 0; i < 3; i++ {
		if st := h.webLogin("hieutruong", "wrong-guess"); st != http.StatusUnauthorized {
			t.Fatalf("wrong web password %d: status %d, want 401", i+1, st)
		}
		if st := h.gateBasic("g1", "wrong-guess"); st != http.StatusUnauthorized {
			t.Fatalf("wrong gate password %d: status %d, want 401", i+1, st)
		}
	}
	lockedAt := time.Now()
	checks := []struct {
		name string
		try  func() int
	}{
		{"web login", func() int { return h.webLogin("hieutruong", pw) }},
		{"gate basic auth", func() int { return h.gateBasic("g1", gatePw) }},
	}
	for _, c := range checks {
		if st := c.try(); st != http.StatusTooManyRequests {
			t.Fatalf("%s: right password before the restart: status %d, want 429", c.name, st)
		}
	}

	h.kill()
	h.start()
	for _, c := range checks {
		if st := c.try(); st != http.StatusTooManyRequests {
			t.Fatalf("%s: right password after the restart: status %d, want 429 (the lock was reset)\n%s", c.name, st, h.output())
		}
	}
	if since := time.Since(lockedAt); since >= window {
		t.Fatalf("the refusals came %v after the lock began, after its end: they prove nothing", since)
	}
	time.Sleep(time.Until(lockedAt.Add(window + time.Second)))
	for _, c := range checks {
		if st := c.try(); st != http.StatusOK {
			t.Fatalf("%s: right password after the lock ended: status %d, want 200\n%s", c.name, st, h.output())
		}
	}
	h.kill()
	assertCountersGone(t, data)
}

// assertCountersGone: after the good logins, the account's and the gate
// username's stored counters are deleted, and the address's, out of the
// window by then, is pruned.
func assertCountersGone(t *testing.T, data string) {
	t.Helper()
	db, err := store.Open(context.Background(), filepath.Join(data, "hub.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, k := range []struct{ scope, key string }{{"http", "acct:hieutruong"}, {"http-gate", "gate:g1"}, {"http", "ip:127.0.0.1"}} {
		var n int
		if err := db.R.QueryRow(`SELECT count(*) FROM login_lockouts WHERE scope = ? AND key = ?`, k.scope, k.key).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("%s %s: %d counters left after the good logins, want 0", k.scope, k.key, n)
		}
	}
}
