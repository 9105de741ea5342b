package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/edge/sim"
	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/faceengine"
	"github.com/diemdanh/diemdanh/models/wire"
)

// The network-cut test's timings. The gate's MQTT keepalive is short so
// that the hub's broker (mochi closes a client silent for 1.5 × its
// keepalive, then publishes its last will) marks the gate offline soon.
const (
	cutKeepAlive  = 5 * time.Second
	cutLength     = 60 * time.Second
	offlineWithin = cutKeepAlive*3/2 + 2500*time.Millisecond // the broker's deadline, then ingest
	ncSchool      = "s1"
	ncGate        = "g1"
	ncGatePw      = "gate-password-123"
	ncAdminPw     = "admin-password-123"
)

// TestFaultNetworkCut puts a real gate (bin/edge run on a synthetic gate
// video in real time) in its own network namespace and a real hub (bin/hub
// run with its embedded broker on the root side of a veth pair) outside
// it, and drops every packet between them, both ways and without a RST,
// for 60 s while pupils walk past. Asserted: the hub shows the gate
// offline within 1.5 × the keepalive (plus 2.5 s) and not at once; the
// gate's outbox depth rises in its /metrics while events are committed
// during the cut; after the link returns the gate is online again, its
// first heartbeat tells the hub its backlog, which the admin overview
// shows; the gate ends with an empty outbox and the hub's SQLite holds
// exactly one event per pupil the gate decided (its debounce keys), the
// events of the cut among them, received after the link returned.
func TestFaultNetworkCut(t *testing.T) {
	lab := newNetLab(t)
	t.Logf("gate namespace %s: data link %s–%s (cut with tc qdisc %s), management link %s", lab.ns, lab.hubIP, lab.gateIP, lab.dropName, lab.mgmtGateIP)
	dir := t.TempDir()
	t0 := time.Now()
	edgeBin, hubBin := buildEdge(t, dir), buildHub(t, dir)
	t1 := time.Now()
	video, gallery, pupils := netcutFixture(t, dir)
	t.Logf("built bin/edge and bin/hub in %v, the fixture in %v", t1.Sub(t0).Round(time.Second), time.Since(t1).Round(time.Second))
	h := startNetcutHub(t, hubBin, dir, lab.hubIP, pupils)
	g := startNetcutGate(t, edgeBin, dir, lab, h.brokerAddr, video, gallery)

	waitFor(t, 90*time.Second, "the first event stored at the hub", func() bool { return h.count(t) >= 1 })
	if !h.online(t) {
		t.Fatal("the gate is not online at the hub although its event was stored")
	}
	before, _ := g.metrics(t)
	stored := h.count(t)
	lab.cut(t)
	cutAt := time.Now()
	offline := waitOffline(t, h, cutAt)
	admin := newAdminClient(t, h.httpAddr)
	if row := admin.gateRow(t); !strings.Contains(row, `class="badge bad"`) {
		t.Fatalf("the admin overview does not show the gate offline during the cut: %s", row)
	}
	maxDepth := 0
	for time.Since(cutAt) < cutLength {
		if _, d := g.metrics(t); d > maxDepth {
			maxDepth = d
		}
		time.Sleep(time.Second)
	}
	during, depth := g.metrics(t)
	pending := g.outboxEvents(t)
	if n := h.count(t); n != stored {
		t.Fatalf("%d events reached the hub during the cut (%d before): the link was not cut", n, stored)
	}
	lab.restore(t)
	restoredAt := time.Now()
	t.Logf("cut %v: offline at the hub after %v; gate events %v → %v, outbox depth up to %d (%d at the end, %d events)",
		cutLength, offline.Round(time.Millisecond), before, during, maxDepth, depth, len(pending))
	if during-before < 2 || len(pending) < 2 || maxDepth < len(pending) {
		t.Fatalf("fewer than 2 passages decided during the cut (events %v → %v, %d waiting, depth up to %d): nothing was tested",
			before, during, len(pending), maxDepth)
	}
	backlog := waitBacklogHeartbeat(t, h, restoredAt, len(pending))
	if got := admin.gateOutbox(t); got != backlog {
		t.Errorf("admin overview shows outbox %d, the gate's heartbeat after the cut said %d", got, backlog)
	}
	g.waitExit(t, 90*time.Second)
	checkExactlyOnce(t, h, g, pending, restoredAt)
	logLines(t, "gate", g.logPath, "mqtt broker outage", "mqtt broker connection recovered", "heartbeat sent after connecting")
}

// logLines logs the lines of a process's log that contain any of subs.
func logLines(t *testing.T, name, path string, subs ...string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		for _, s := range subs {
			if strings.Contains(line, s) {
				t.Logf("%s: %s", name, line)
				break
			}
		}
	}
}

// waitOffline waits until the hub has the gate offline and checks the
// delay against the keepalive window; it returns the delay.
func waitOffline(t *testing.T, h *cutHub, cutAt time.Time) time.Duration {
	t.Helper()
	waitFor(t, offlineWithin+10*time.Second, "the gate offline at the hub", func() bool { return !h.online(t) })
	d := time.Since(cutAt)
	if d > offlineWithin {
		t.Fatalf("the hub showed the gate offline %v after the cut, want within %v (keepalive %v × 1.5 + 2.5 s)", d, offlineWithin, cutKeepAlive)
	}
	if d < time.Second {
		t.Fatalf("the hub showed the gate offline %v after the cut: a silent drop is noticed only by the keepalive (a RST or FIN got through?)", d)
	}
	return d
}

// waitBacklogHeartbeat waits for the gate's heartbeat after the link
// returned and checks that it carries the backlog: at least the events
// waiting at the end of the cut. It returns that outbox depth.
func waitBacklogHeartbeat(t *testing.T, h *cutHub, restoredAt time.Time, pending int) int {
	t.Helper()
	waitFor(t, 20*time.Second, "the gate online again at the hub", func() bool { return h.online(t) })
	t.Logf("online again at the hub %v after the link returned", time.Since(restoredAt).Round(time.Millisecond))
	var hb wire.Heartbeat
	waitFor(t, 10*time.Second, "a heartbeat after the link returned", func() bool {
		var raw string
		if err := h.ro.QueryRow(`SELECT last_heartbeat FROM gates WHERE id = ?`, ncGate).Scan(&raw); err != nil {
			t.Fatal(err)
		}
		return raw != "" && json.Unmarshal([]byte(raw), &hb) == nil && hb.At >= restoredAt.UnixMilli()-1000
	})
	if hb.OutboxDepth < pending {
		t.Fatalf("the heartbeat after the cut says outbox_depth %d, but %d events were waiting", hb.OutboxDepth, pending)
	}
	return hb.OutboxDepth
}

// checkExactlyOnce compares the hub's events of the gate with what the
// gate committed: one row per debounce key, none twice, the events of the
// cut among them, stored after the link returned.
func checkExactlyOnce(t *testing.T, h *cutHub, g *cutGate, pending map[string]string, restoredAt time.Time) {
	t.Helper()
	committed, depth := g.debounced(t)
	if depth != 0 {
		t.Fatalf("the gate exited with %d messages in its outbox", depth)
	}
	rows, err := h.ro.Query(`SELECT event_id, student_id, received_at FROM events WHERE gate_id = ? AND student_id IS NOT NULL`, ncGate)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	perPupil := map[string]int{}
	received := map[string]int64{}
	for rows.Next() {
		var id, pupil string
		var at int64
		if err := rows.Scan(&id, &pupil, &at); err != nil {
			t.Fatal(err)
		}
		perPupil[pupil]++
		received[id] = at
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for p, n := range perPupil {
		if n != 1 {
			t.Errorf("pupil %s stored %d times at the hub, want once", p, n)
		}
		if !committed[p] {
			t.Errorf("pupil %s stored at the hub but not committed by the gate", p)
		}
	}
	for p := range committed {
		if perPupil[p] == 0 {
			t.Errorf("pupil %s committed by the gate is missing at the hub (lost)", p)
		}
	}
	for id, p := range pending {
		at, ok := received[id]
		switch {
		case !ok:
			t.Errorf("event %s (pupil %s) of the cut is missing at the hub", id, p)
		case at < restoredAt.UnixMilli():
			t.Errorf("event %s of the cut stored at %d, before the link returned (%d)", id, at, restoredAt.UnixMilli())
		}
	}
	t.Logf("hub: %d events, one per pupil; the gate committed %d; %d of them during the cut", len(received), len(committed), len(pending))
}

// netcutFixture makes a 90 s gate video (960×540) in which 12 CASIA
// people walk past about every 7 s, and its gallery. Only those 12 people's photos
// are analysed (a copy of their folders), which keeps it quick.
func netcutFixture(t *testing.T, dir string) (video, gallery string, pupils []string) {
	t.Helper()
	td, err := conf.TestDataDir()
	if err != nil {
		t.Fatal(err)
	}
	photos := filepath.Join(dir, "casia12")
	if err := os.MkdirAll(photos, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 12; i++ {
		src := filepath.Join(td, "asian", "casia-facev5", fmt.Sprintf("%03d", i))
		if out, err := exec.Command("cp", "-r", src, photos+"/").CombinedOutput(); err != nil {
			t.Fatalf("copy %s: %v %s", src, err, out)
		}
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
	so.Photos = []string{photos}
	so.Out, so.TruthOut, so.GalleryOut = filepath.Join(dir, "gate.avi"), filepath.Join(dir, "truth.json"), filepath.Join(dir, "gallery.json")
	so.Seed, so.People, so.Visitors, so.Duration, so.School = 3, 12, 0, 90, ncSchool
	so.Width, so.Height = 960, 540
	sum, err := sim.Generate(context.Background(), so, eng, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("fixture: %d passages over %.0f s, gallery of %d", sum.Passages, sum.Seconds, sum.GalleryPeople)
	b, err := os.ReadFile(so.GalleryOut)
	if err != nil {
		t.Fatal(err)
	}
	var g struct {
		People []struct {
			StudentID string `json:"student_id"`
		} `json:"people"`
	}
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	for _, p := range g.People {
		pupils = append(pupils, p.StudentID)
	}
	return so.Out, so.GalleryOut, pupils
}

// buildHub compiles the real bin/hub into dir.
func buildHub(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "hub")
	if err := conf.BuildBinary("./hub", bin); err != nil {
		t.Fatal(err)
	}
	return bin
}

// freeAddrOn is a free TCP address on ip.
func freeAddrOn(t *testing.T, ip string) string {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// logTail prints the last lines of a process's log when the test failed.
func logTail(t *testing.T, name, path string) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		b, _ := os.ReadFile(path)
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) > 80 {
			lines = lines[len(lines)-80:]
		}
		t.Logf("%s log (last lines):\n%s", name, strings.Join(lines, "\n"))
	})
}

// startProc starts cmd with its output in logPath and kills it at cleanup.
func startProc(t *testing.T, cmd *exec.Cmd, logPath string) <-chan struct{} {
	t.Helper()
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); f.Close(); close(done) }()
	t.Cleanup(func() { _ = cmd.Process.Signal(syscall.SIGKILL); <-done })
	return done
}

// metricValue reads one unlabelled sample from a Prometheus text page.
func metricValue(page, name string) (float64, bool) {
	sc := bufio.NewScanner(strings.NewReader(page))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && f[0] == name {
			v, err := strconv.ParseFloat(f[1], 64)
			return v, err == nil
		}
	}
	return 0, false
}
