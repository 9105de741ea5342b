package app

import (
	"bytes"
	"database/sql"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/models/gatekit"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// demoRun is a running `hub demo` started by startDemo.
type demoRun struct {
	cmd            *exec.Cmd
	exited         chan error
	stdout, stderr *lockedBuffer
	data, httpAddr string
}

// startDemo builds bin/hub and bin/edge into a temporary folder and starts
// `hub demo` (real processes) on free ports with a fresh data folder and
// the synthetic gate video. The demo's process group is killed at the end
// of the test if still running, and its output is logged if the test failed.
func startDemo(t *testing.T) *demoRun {
	t.Helper()
	testdata, err := gatekit.TestDataDir()
	if err != nil {
		t.Fatal(err)
	}
	models := gatekit.TestModelsDir()
	if _, err := os.Stat(filepath.Join(models, "dlib_face_recognition_resnet_model_v1.dat")); err != nil {
		t.Fatalf("models missing in %s (set MODELS_DIR): %v", models, err)
	}
	root, err := gatekit.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	for _, target := range []string{"hub", "edge"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(bin, target), "./"+target)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", target, err, out)
		}
	}
	d := &demoRun{data: filepath.Join(t.TempDir(), "data"), httpAddr: freeAddr(t), exited: make(chan error, 1),
		stdout: &lockedBuffer{}, stderr: &lockedBuffer{}}
	mqttAddr := freeAddr(t)
	cmd := exec.Command(filepath.Join(bin, "hub"), "demo", "--data", d.data, "--http", d.httpAddr, "--mqtt", mqttAddr, "--camera", "none")
	cmd.Env = append(os.Environ(), "ATTENDANCE_TESTDATA="+testdata, "MODELS_DIR="+models)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stdout, cmd.Stderr = d.stdout, d.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d.cmd = cmd
	go func() { d.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-d.exited
		}
		if t.Failed() {
			t.Logf("hub stdout:\n%s", d.stdout.String())
			t.Logf("hub stderr (tail):\n%s", tail(d.stderr.String(), 6000))
		}
	})
	return d
}

// TestMakeRunSmoke is the `make run` smoke test with real processes: it
// builds bin/hub and bin/edge, starts `hub demo` on free ports with a
// fresh data folder (so the synthetic gate video is made from the test
// photos), waits for at least one recognised attendance event stored in
// SQLite (and its daily attendance row), then sends SIGINT and expects a
// clean exit of the hub and of its gate child.
func TestMakeRunSmoke(t *testing.T) {
	d := startDemo(t)
	cmd, exited, data := d.cmd, d.exited, d.data
	stdout, stderr := d.stdout, d.stderr

	dbPath := filepath.Join(data, "hub.db")
	var pupil string
	start := time.Now()
	deadline := start.Add(200 * time.Second)
	for pupil == "" {
		select {
		case err := <-exited:
			t.Fatalf("hub demo exited early: %v", err)
		case <-time.After(time.Second):
		}
		if time.Now().After(deadline) {
			t.Fatal("no recognised attendance event stored within 200 s")
		}
		if _, err := os.Stat(dbPath); err != nil {
			continue
		}
		db, err := sql.Open("sqlite3", "file:"+dbPath+"?mode=ro&_busy_timeout=2000")
		if err != nil {
			t.Fatal(err)
		}
		_ = db.QueryRow(`SELECT student_id FROM events WHERE student_id IS NOT NULL AND school_id = 'demo' LIMIT 1`).Scan(&pupil)
		db.Close()
	}
	t.Logf("first recognised event stored %s after start (pupil %s)", time.Since(start).Round(time.Second), pupil)
	// The attendance listener turned it into the pupil's daily state.
	var status string
	for status == "" && time.Now().Before(deadline) {
		db, _ := sql.Open("sqlite3", "file:"+dbPath+"?mode=ro&_busy_timeout=2000")
		_ = db.QueryRow(`SELECT status FROM daily_attendance WHERE pupil_id = ? AND status IN ('present', 'late')`, pupil).Scan(&status)
		db.Close()
		time.Sleep(200 * time.Millisecond)
	}
	if status == "" {
		t.Fatal("no daily attendance row for the recognised pupil")
	}

	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("hub demo did not exit cleanly: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("hub demo did not stop within 60 s of SIGINT")
	}
	out, errs := stdout.String(), stderr.String()
	if !strings.Contains(out, pupil) {
		t.Errorf("the event was not shown to the user:\n%s", out)
	}
	for _, want := range []string{"gate stopped", "hub stopped"} {
		if !strings.Contains(errs, want) {
			t.Errorf("log lacks %q", want)
		}
	}
	// The gate child is gone too (its process group is empty).
	if err := syscall.Kill(-cmd.Process.Pid, 0); err == nil {
		t.Error("processes of the demo are still running")
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// TestDemoMovesOffBusyDefaultPort: a system mosquitto on 1883 (Debian starts
// one) must not stop `make run`; a port the user chose is kept as given.
func TestDemoMovesOffBusyDefaultPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	busy := l.Addr().String()
	var out strings.Builder
	if got := freeIfBusy(busy, busy, &out, "MQTT"); got == busy || !strings.Contains(out.String(), "in use") {
		t.Fatalf("busy default kept: %q (%s)", got, out.String())
	}
	if got := freeIfBusy(busy, "127.0.0.1:1", &out, "MQTT"); got != busy {
		t.Fatalf("a chosen address was changed to %q", got)
	}
}
