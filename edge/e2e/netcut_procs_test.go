package e2e

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/diemdanh/diemdanh/hub/audit"
	"github.com/diemdanh/diemdanh/hub/auth"
	hubstore "github.com/diemdanh/diemdanh/hub/store"
	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/wire"
)

// cutHub is a real `hub run` with its embedded broker on the root side
// of the data link; ro reads its SQLite file.
type cutHub struct {
	httpAddr, brokerAddr string
	ro                   *sql.DB
}

// startNetcutHub seeds the hub's database (school, class, the pupils,
// gate g1 with its password, an admin account) and starts the hub.
func startNetcutHub(t *testing.T, bin, dir, brokerIP string, pupils []string) *cutHub {
	t.Helper()
	data := filepath.Join(dir, "hub-data")
	path := filepath.Join(data, "hub.db")
	if err := os.MkdirAll(data, 0o750); err != nil {
		t.Fatal(err)
	}
	seedNetcutHub(t, path, pupils)
	h := &cutHub{httpAddr: freeAddrOn(t, "127.0.0.1"), brokerAddr: freeAddrOn(t, brokerIP)}
	cfg := fmt.Sprintf("log: {level: info}\ndata_dir: %s\nhttp: {addr: %q}\nbroker: {listen: %q}\nbackup: {enabled: false}\n",
		data, h.httpAddr, h.brokerAddr)
	cfgPath := filepath.Join(dir, "hub.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "hub.log")
	logTail(t, "hub", logPath)
	done := startProc(t, exec.Command(bin, "run", "--config", cfgPath), logPath)
	waitFor(t, 60*time.Second, "the hub healthy", func() bool {
		select {
		case <-done:
			t.Fatal("the hub exited at start")
		default:
		}
		resp, err := http.Get("http://" + h.httpAddr + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	ro, err := sql.Open("sqlite3", hubstore.DSN(path, true))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ro.Close() })
	h.ro = ro
	return h
}

func seedNetcutHub(t *testing.T, path string, pupils []string) {
	t.Helper()
	ctx := context.Background()
	db, err := hubstore.Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	gh, err := bcrypt.GenerateFromPassword([]byte(ncGatePw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	stmts := []struct {
		q    string
		args []any
	}{
		{`INSERT INTO schools(id, name) VALUES (?, 'Trường THCS Lê Lợi')`, []any{ncSchool}},
		{`INSERT INTO classes(id, school_id, name, grade) VALUES ('c1', ?, '6A', 6)`, []any{ncSchool}},
		{`INSERT INTO gates(id, school_id, name, direction, username, password_hash) VALUES (?, ?, 'Cổng chính', 'in', ?, ?)`,
			[]any{ncGate, ncSchool, ncGate, string(gh)}},
	}
	for i, p := range pupils {
		stmts = append(stmts, struct {
			q    string
			args []any
		}{`INSERT INTO pupils(id, school_id, class_id, full_name) VALUES (?, ?, 'c1', ?)`, []any{p, ncSchool, fmt.Sprintf("Học sinh %d", i+1)}})
	}
	for _, s := range stmts {
		if _, err := db.W.Exec(s.q, s.args...); err != nil {
			t.Fatalf("%s: %v", s.q, err)
		}
	}
	as, err := auth.New(db, audit.New(db, nil, nil), auth.DefaultConfig(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := as.CreateAccount(ctx, "test", auth.NewAccount{Username: "quantri", Password: ncAdminPw,
		Role: auth.RoleAdmin, FullName: "Quản trị"}); err != nil {
		t.Fatal(err)
	}
}

// count is the number of the gate's events with a pupil at the hub.
func (h *cutHub) count(t *testing.T) int {
	t.Helper()
	var n int
	if err := h.ro.QueryRow(`SELECT COUNT(*) FROM events WHERE gate_id = ? AND student_id IS NOT NULL`, ncGate).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// online is the gate's status as the hub stored it.
func (h *cutHub) online(t *testing.T) bool {
	t.Helper()
	var on bool
	if err := h.ro.QueryRow(`SELECT online FROM gates WHERE id = ?`, ncGate).Scan(&on); err != nil {
		t.Fatal(err)
	}
	return on
}

// cutGate is a real `edge run` inside the lab's namespace; its HTTP
// server listens on the management link.
type cutGate struct {
	httpAddr, dbPath, logPath string
	done                      <-chan struct{}
}

func startNetcutGate(t *testing.T, bin, dir string, lab *netLab, broker, video, gallery string) *cutGate {
	t.Helper()
	data := filepath.Join(dir, "edge-data")
	g := &cutGate{httpAddr: lab.mgmtGateIP + ":9110", dbPath: filepath.Join(data, "edge.db")}
	y := fmt.Sprintf(`school_id: %s
gate_id: %s
data_dir: %s
log: {level: info, format: text}
heartbeat_interval: 10m
camera: {source: %s, realtime: true}
engine: {models_dir: %s, workers: 2}
gallery: {path: %s}
mqtt: {broker: "tcp://%s", username: %s, password: %s, keep_alive: %s, connect_timeout: 3s, ack_timeout: 5s, retry_min: 200ms, retry_max: 2s, poll: 200ms}
http: {listen: "%s"}
`, ncSchool, ncGate, data, video, conf.TestModelsDir(), gallery, broker, ncGate, ncGatePw, cutKeepAlive, g.httpAddr)
	cfgPath := filepath.Join(dir, "edge.yaml")
	if err := os.WriteFile(cfgPath, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	g.logPath = filepath.Join(dir, "edge.log")
	logTail(t, "gate", g.logPath)
	g.done = startProc(t, lab.command(bin, "run", "--config", cfgPath), g.logPath)
	return g
}

// metrics reads edge_events_total and edge_outbox_depth from /metrics.
func (g *cutGate) metrics(t *testing.T) (events float64, depth int) {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + g.httpAddr + "/metrics")
	if err != nil {
		t.Fatalf("the gate's /metrics over the management link: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	ev, ok1 := metricValue(string(b), "edge_events_total")
	d, ok2 := metricValue(string(b), "edge_outbox_depth")
	if !ok1 || !ok2 {
		t.Fatalf("edge_events_total or edge_outbox_depth missing from /metrics:\n%s", b)
	}
	return ev, int(d)
}

// openGateDB opens the running gate's SQLite file read-only.
func (g *cutGate) openGateDB(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+g.dbPath+"?mode=ro&_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// outboxEvents lists the events waiting in the gate's outbox (event ID →
// pupil).
func (g *cutGate) outboxEvents(t *testing.T) map[string]string {
	t.Helper()
	db := g.openGateDB(t)
	defer db.Close()
	rows, err := db.Query(`SELECT payload FROM outbox WHERE kind = ?`, wire.TopicKindEvents)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			t.Fatal(err)
		}
		ev, err := wire.DecodeEvent(b)
		if err != nil {
			t.Fatal(err)
		}
		out[ev.EventID] = ev.StudentID
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// debounced returns the pupils the gate committed an event for (its
// debounce keys day|pupil|direction) and its outbox's row count.
func (g *cutGate) debounced(t *testing.T) (map[string]bool, int) {
	t.Helper()
	db := g.openGateDB(t)
	defer db.Close()
	rows, err := db.Query(`SELECT key FROM debounce`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			t.Fatal(err)
		}
		f := strings.Split(k, "|")
		if len(f) != 3 {
			t.Fatalf("debounce key %q is not day|pupil|direction", k)
		}
		out[f[1]] = true
	}
	var depth int
	if err := db.QueryRow(`SELECT COUNT(*) FROM outbox`).Scan(&depth); err != nil {
		t.Fatal(err)
	}
	return out, depth
}

// waitExit waits for the gate to exit by itself: a video file ends and
// the gate stops once its outbox is empty.
func (g *cutGate) waitExit(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case <-g.done:
	case <-time.After(d):
		t.Fatalf("the gate did not exit within %v after the video", d)
	}
}

// adminClient is an admin's session on the hub's web UI.
type adminClient struct {
	base string
	hc   *http.Client
}

func newAdminClient(t *testing.T, addr string) *adminClient {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	a := &adminClient{base: "http://" + addr, hc: &http.Client{Jar: jar, Timeout: 10 * time.Second}}
	body, _ := json.Marshal(map[string]string{"username": "quantri", "password": ncAdminPw})
	resp, err := a.hc.Post(a.base+"/api/v1/auth/login", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("admin login: HTTP %d %s", resp.StatusCode, b)
	}
	return a
}

var gateRowRe = regexp.MustCompile(`(?s)<tr data-gate="` + ncGate + `">.*?</tr>`)
var outboxCellRe = regexp.MustCompile(`class="outbox">(\d+)`)

// gateRow is the gate's row of the admin overview.
func (a *adminClient) gateRow(t *testing.T) string {
	t.Helper()
	resp, err := a.hc.Get(a.base + "/admin")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/admin: HTTP %d", resp.StatusCode)
	}
	row := gateRowRe.Find(b)
	if row == nil {
		t.Fatalf("no row for gate %s on the admin overview:\n%s", ncGate, b)
	}
	return string(row)
}

// gateOutbox is the outbox depth the admin overview shows for the gate.
func (a *adminClient) gateOutbox(t *testing.T) int {
	t.Helper()
	row := a.gateRow(t)
	m := outboxCellRe.FindStringSubmatch(row)
	if m == nil {
		t.Fatalf("no outbox cell in the gate's row: %s", row)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}
