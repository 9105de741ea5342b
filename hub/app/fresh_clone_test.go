package app

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/models/conf"
)

// freshMakeRun is `make run` started in a fresh clone of this repository.
type freshMakeRun struct {
	clone          string
	cmd            *exec.Cmd
	exited         chan error
	stdout, stderr *lockedBuffer
	start          time.Time
}

// startFreshMakeRun clones the repository's HEAD (commit first: the working
// tree's changes are not in the clone) into an empty temporary folder, so
// there is no ../shared beside it, and runs `make run` there the way a
// newcomer does, with ATTENDANCE_TESTDATA unset. MODELS_DIR and
// DEMO_PHOTOS_DIR point at caches outside the clone (env overrides the
// caller's); the clone itself has nothing. Everything it needs and lacks is
// a test failure, never a skip.
func startFreshMakeRun(t *testing.T, env ...string) *freshMakeRun {
	t.Helper()
	for _, tool := range []string{"git", "make", "go", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed to run `make run` in a fresh clone: %v", tool, err)
		}
	}
	models := conf.TestModelsDir()
	if _, err := os.Stat(filepath.Join(models, "dlib_face_recognition_resnet_model_v1.dat")); err != nil {
		t.Fatalf("models missing in %s (run `make setup` or set MODELS_DIR): %v", models, err)
	}
	if abs, err := filepath.Abs(models); err == nil {
		models = abs
	}
	root, err := conf.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	parent := t.TempDir()
	clone := filepath.Join(parent, "diemdanh")
	if out, err := exec.Command("git", "clone", "--quiet", root, clone).CombinedOutput(); err != nil {
		t.Fatalf("git clone %s: %v\n%s", root, err, out)
	}
	for _, p := range []string{filepath.Join(parent, "shared"), filepath.Join(clone, "bin"), filepath.Join(clone, "data")} {
		if _, err := os.Stat(p); err == nil {
			t.Fatalf("%s exists: the clone is not fresh", p)
		}
	}
	r := &freshMakeRun{clone: clone, exited: make(chan error, 1), stdout: &lockedBuffer{}, stderr: &lockedBuffer{}}
	base := append(freshEnv(), "MODELS_DIR="+models, "DEMO_PHOTOS_DIR="+DefaultDemoPhotosDir(),
		"DIEMDANH_HTTP_ADDR="+freeAddr(t), "DIEMDANH_MQTT_ADDR="+freeAddr(t))
	r.cmd = exec.Command("make", "run")
	r.cmd.Dir = clone
	r.cmd.Env = append(base, env...)
	r.cmd.Stdout, r.cmd.Stderr = r.stdout, r.stderr
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its own group, like a terminal's foreground job
	r.start = time.Now()
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { r.exited <- r.cmd.Wait() }()
	t.Cleanup(func() {
		if r.cmd.ProcessState == nil {
			_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
			<-r.exited
		}
		if t.Failed() {
			t.Logf("make run stdout:\n%s", r.stdout.String())
			t.Logf("make run stderr (tail):\n%s", tail(r.stderr.String(), 8000))
		}
	})
	return r
}

// freshEnv is this process's environment without what a newcomer's shell
// would not have: the test data, the demo's address and data overrides, and
// the variables of a `make` this test may run under.
func freshEnv() []string {
	drop := map[string]bool{"ATTENDANCE_TESTDATA": true, "DIEMDANH_DATA_DIR": true, "DIEMDANH_HTTP_ADDR": true,
		"DIEMDANH_MQTT_ADDR": true, "DEMO_PHOTOS_URL": true, "MAKEFLAGS": true, "MFLAGS": true, "MAKELEVEL": true}
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if !drop[k] {
			out = append(out, kv)
		}
	}
	return out
}

// waitFor polls the clone's hub.db (read-only) with query until it returns a
// row, `make run` exits, or the deadline passes; it returns the row's
// string columns.
func (r *freshMakeRun) waitFor(t *testing.T, what, query string, within time.Duration, cols int) []string {
	t.Helper()
	dbPath := filepath.Join(r.clone, "data", "hub.db")
	deadline := r.start.Add(within)
	for {
		select {
		case err := <-r.exited:
			r.exited <- err
			t.Fatalf("make run exited before %s: %v", what, err)
		case <-time.After(250 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %s of `make run`", what, within)
		}
		if _, err := os.Stat(dbPath); err != nil {
			continue
		}
		db, err := sql.Open("sqlite3", "file:"+dbPath+"?mode=ro&_busy_timeout=2000")
		if err != nil {
			t.Fatal(err)
		}
		row := make([]string, cols)
		ptrs := make([]any, cols)
		for i := range row {
			ptrs[i] = &row[i]
		}
		err = db.QueryRow(query).Scan(ptrs...)
		db.Close()
		if err == nil {
			return row
		}
	}
}

// interrupt sends SIGINT to the whole process group, as Ctrl-C in a
// terminal does, and checks that everything stopped cleanly: the hub
// printed its clean stop, the hub and the gate logged theirs, make reported
// no failed recipe, and no process of the group is left. make itself either
// exits 0 or dies of the SIGINT (GNU make re-raises it after its child
// exited, which is how it reports Ctrl-C).
func (r *freshMakeRun) interrupt(t *testing.T) {
	t.Helper()
	if err := syscall.Kill(-r.cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	var err error
	select {
	case err = <-r.exited:
	case <-time.After(90 * time.Second):
		t.Fatal("make run did not stop within 90 s of SIGINT")
	}
	var ee *exec.ExitError
	if err != nil && !(errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signaled() && ee.Sys().(syscall.WaitStatus).Signal() == syscall.SIGINT) {
		t.Errorf("make run did not exit cleanly: %v", err)
	}
	out, errs := r.stdout.String(), r.stderr.String()
	if !strings.Contains(out, "DiemDanh demo stopped cleanly.") {
		t.Error("the hub did not report a clean stop")
	}
	for _, want := range []string{"gate stopped", "hub stopped"} {
		if !strings.Contains(errs, want) {
			t.Errorf("log lacks %q", want)
		}
	}
	if strings.Contains(errs, "make: ***") {
		t.Errorf("make reported a failure:\n%s", tail(errs, 2000))
	}
	if err := syscall.Kill(-r.cmd.Process.Pid, 0); err == nil {
		t.Error("processes of `make run` are still running")
	}
}

// TestFreshCloneMakeRun is the newcomer's `make run`: a fresh clone, no
// ../shared, no camera, no ATTENDANCE_TESTDATA; the demo photos and the
// models come from caches outside the clone (already fetched: this test
// fails if they are not). It measures the time from the command to the
// first stored arrival of a demo pupil, checks what `make run` printed,
// then stops it with SIGINT and expects a clean exit.
func TestFreshCloneMakeRun(t *testing.T) {
	photos := DefaultDemoPhotosDir()
	if missing := missingDemoPhotos(photos); len(missing) > 0 {
		t.Fatalf("demo photos missing in %s: %s (run `make setup` or `bash models/fetch-demo.sh`)", photos, strings.Join(missing, ", "))
	}
	r := startFreshMakeRun(t)
	row := r.waitFor(t, "stored arrival of a demo pupil",
		`SELECT e.student_id, p.full_name, e.received_at FROM events e JOIN pupils p ON p.id = e.student_id
		 WHERE e.school_id = 'demo' AND e.direction = 'in' ORDER BY e.received_at LIMIT 1`, 10*time.Minute, 3)
	var receivedMS int64
	fmt.Sscan(row[2], &receivedMS)
	elapsed := time.UnixMilli(receivedMS).Sub(r.start)
	t.Logf("make run in a fresh clone: first arrival (%s, %s) stored %.1f s after the command", row[1], row[0], elapsed.Seconds())
	j, _ := json.Marshal(map[string]any{"test": "TestFreshCloneMakeRun", "first_arrival_s": elapsed.Round(100 * time.Millisecond).Seconds(),
		"pupil": row[1], "date": time.Now().UTC().Format(time.RFC3339)})
	fmt.Println(string(j))
	if row[1] != "Barack Obama" && row[1] != "Joe Biden" {
		t.Errorf("first arrival is %q, not a demo pupil from the demo photos", row[1])
	}

	waitOutput(t, r, row[0]) // the arrival is printed too
	out := r.stdout.String()
	for _, want := range []string{"DiemDanh demo is running.", "/login", "one-time password", "/teacher/class/" + DemoClass,
		"synthetic gate video", "Barack Obama", "Joe Biden", "face_recognition 1.3.0", photos, "Ctrl-C"} {
		if !strings.Contains(out, want) {
			t.Errorf("make run did not print %q:\n%s", want, out)
		}
	}
	if n := strings.Count(r.stderr.String()+out, "build: bin/edge bin/hub"); n != 1 {
		t.Errorf("make run built the binaries %d times, want once", n)
	}
	r.interrupt(t)
}

// TestFreshCloneMakeRunWithoutDemoPhotos: with an empty demo-photo cache
// and the download failing (DEMO_PHOTOS_URL points at a closed local
// port), `make run` still starts the hub and the gate (its heartbeat
// reaches the hub), prints which photos are missing and how to enrol from
// the browser, and stops cleanly.
func TestFreshCloneMakeRunWithoutDemoPhotos(t *testing.T) {
	empty := t.TempDir()
	r := startFreshMakeRun(t, "DEMO_PHOTOS_DIR="+empty, "DEMO_PHOTOS_URL=http://"+closedAddr(t)+"/face_recognition-1.3.0.tar.gz")
	r.waitFor(t, "heartbeat of the demo gate", `SELECT id FROM gates WHERE id = '`+DemoGate+`' AND online = 1 AND last_seen_at > 0`, 10*time.Minute, 1)
	waitOutput(t, r, "Stop")
	out := r.stdout.String()
	for _, want := range []string{"WITHOUT its demo pupils", empty, "biden.jpg", "obama.jpg", "obama2.jpg", "obama3.jpg",
		"models/fetch-demo.sh", "/admin/enrol?pupil=" + demoPlaceholderPupil, "one-time password", "placeholder video", "Ctrl-C"} {
		if !strings.Contains(out, want) {
			t.Errorf("make run did not print %q:\n%s", want, out)
		}
	}
	if errs := r.stderr.String(); !strings.Contains(errs, "demo-photos: MISSING") || !strings.Contains(errs, "download failed") {
		t.Errorf("the fetch script did not say what failed:\n%s", tail(errs, 3000))
	}
	if strings.Contains(out, "Barack Obama") {
		t.Error("demo pupils appeared without their photos")
	}
	r.interrupt(t)
}

// waitOutput waits up to 30 s for want on make run's stdout.
func waitOutput(t *testing.T, r *freshMakeRun, want string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(r.stdout.String(), want); {
		if time.Now().After(deadline) {
			t.Fatalf("make run did not print %q", want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}
