package app

import (
	"bytes"
	"database/sql"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/models/conf"
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
// `hub demo --testdata` (real processes) on free ports with a fresh data
// folder and the synthetic gate video made from the shared test photos
// (TestFreshCloneMakeRun covers the default, the fetched demo photos). The demo's process group is killed at the end
// of the test if still running, and its output is logged if the test failed.
func startDemo(t *testing.T) *demoRun {
	t.Helper()
	testdata, err := conf.TestDataDir()
	if err != nil {
		t.Fatal(err)
	}
	models := conf.TestModelsDir()
	if _, err := os.Stat(filepath.Join(models, "dlib_face_recognition_resnet_model_v1.dat")); err != nil {
		t.Fatalf("models missing in %s (set MODELS_DIR): %v", models, err)
	}
	bin := t.TempDir()
	for _, target := range []string{"hub", "edge"} {
		if err := conf.BuildBinary("./"+target, filepath.Join(bin, target)); err != nil {
			t.Fatal(err)
		}
	}
	d := &demoRun{data: filepath.Join(t.TempDir(), "data"), httpAddr: freeAddr(t), exited: make(chan error, 1),
		stdout: &lockedBuffer{}, stderr: &lockedBuffer{}}
	mqttAddr := freeAddr(t)
	cmd := exec.Command(filepath.Join(bin, "hub"), "demo", "--data", d.data, "--http", d.httpAddr, "--mqtt", mqttAddr,
		"--camera", "none", "--testdata", testdata)
	// --testdata needs no demo photos: an empty photo folder proves it.
	cmd.Env = append(os.Environ(), "MODELS_DIR="+models, "DEMO_PHOTOS_DIR="+t.TempDir())
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
// builds bin/hub and bin/edge, starts `hub demo --testdata` on free ports
// with a fresh data folder (so the synthetic gate video is made from the
// test photos), waits for at least one recognised attendance event stored in
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
	// The demo's consent allows gate snapshots: the event keeps its face crop for the board.
	if db, err := sql.Open("sqlite3", "file:"+dbPath+"?mode=ro&_busy_timeout=2000"); err == nil {
		var crops int
		_ = db.QueryRow(`SELECT count(*) FROM events WHERE student_id = ? AND face_jpeg IS NOT NULL`, pupil).Scan(&crops)
		db.Close()
		if crops == 0 {
			t.Error("the demo pupil's arrival has no face crop (consent with snapshots)")
		}
	}
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
	// With --testdata the pupils are the test photos: the banner does not credit the demo photo package.
	if !strings.Contains(out, "the people of the test photos") || strings.Contains(out, demoPhotoPackage) {
		t.Errorf("the banner misnames where the pupils come from:\n%s", out)
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

// TestDemoPhotoSumsMatchFetchScript: the photos the hub verifies are the
// ones models/fetch-demo.sh installs, with the same pinned checksums.
func TestDemoPhotoSumsMatchFetchScript(t *testing.T) {
	root, err := conf.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "models", "DEMO_PHOTOS.SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	pinned := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 || len(f[0]) != 64 {
			t.Fatalf("bad line %q", line)
		}
		pinned[f[1]] = f[0]
	}
	if pinned["face_recognition-1.3.0.tar.gz"] == "" {
		t.Error("the sdist's own checksum is not pinned")
	}
	delete(pinned, "face_recognition-1.3.0.tar.gz")
	files := demoPhotoFiles()
	if len(files) != len(pinned) {
		t.Fatalf("hub knows %d photos, the sums file %d", len(files), len(pinned))
	}
	for _, f := range files {
		if pinned[f.File] != f.SHA256 {
			t.Errorf("%s: hub %s, sums file %s", f.File, f.SHA256, pinned[f.File])
		}
	}
	used := map[string]bool{}
	for _, p := range demoPeople() {
		for _, f := range p.Photos {
			used[f] = true
		}
	}
	for _, f := range files {
		if !used[f.File] {
			t.Errorf("%s is fetched but no demo pupil uses it", f.File)
		}
	}
}

// TestMissingDemoPhotos names absent and altered photos, and accepts the
// real ones.
func TestMissingDemoPhotos(t *testing.T) {
	dir := t.TempDir()
	if got := missingDemoPhotos(dir); len(got) != len(demoPhotoFiles()) || !strings.Contains(got[0], "not found") {
		t.Fatalf("empty folder: %q", got)
	}
	if err := os.WriteFile(filepath.Join(dir, "obama.jpg"), []byte("not the photo"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(missingDemoPhotos(dir), ","); !strings.Contains(got, "obama.jpg (checksum differs)") {
		t.Fatalf("altered photo not named: %s", got)
	}
}

// TestLayoutDemoPhotos: the simulator's folder holds every photo under
// its name, and a person with one photo twice (the same bytes), so that
// the simulator enrols that person instead of taking them for a visitor.
func TestLayoutDemoPhotos(t *testing.T) {
	src, dst := t.TempDir(), filepath.Join(t.TempDir(), "photos")
	for _, f := range demoPhotoFiles() {
		if err := os.WriteFile(filepath.Join(src, f.File), []byte("photo "+f.File), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(dst, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dst, "stale.jpg"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := layoutDemoPhotos(src, dst); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"obama.jpg": "photo obama.jpg", "obama2.jpg": "photo obama2.jpg", "obama3.jpg": "photo obama3.jpg",
		"biden.jpg": "photo biden.jpg", "biden2.jpg": "photo biden.jpg"}
	entries, err := os.ReadDir(dst)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(want) {
		t.Errorf("%d files laid out, want %d", len(entries), len(want))
	}
	for name, content := range want {
		b, err := os.ReadFile(filepath.Join(dst, name))
		if err != nil || string(b) != content {
			t.Errorf("%s: %q %v, want %q", name, b, err, content)
		}
	}
	lines := strings.Join(describeDemoPeople(map[string]string{"obama": "obama.jpg", "biden": "biden.jpg"}), "\n")
	for _, w := range []string{"Barack Obama: enrolled from obama2.jpg, obama3.jpg; obama.jpg walks", "Joe Biden: one photo only (biden.jpg)"} {
		if !strings.Contains(lines, w) {
			t.Errorf("description lacks %q:\n%s", w, lines)
		}
	}
}

// TestOTPCatcher: the first admin's one-time password is caught from the
// auth log record, through With, even when the log level hides warnings.
func TestOTPCatcher(t *testing.T) {
	var buf lockedBuffer
	got := &adminLogin{}
	log := slog.New(otpCatcher{slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelError}), got})
	log.With("component", "auth").Warn("first admin account created", "username", "admin", "one_time_password", "s3cret")
	log.Info("unrelated", "username", "bob")
	if got.user != "admin" || got.password != "s3cret" {
		t.Fatalf("caught %q/%q", got.user, got.password)
	}
	if buf.String() != "" {
		t.Fatalf("records below the level were written: %s", buf.String())
	}
}

// TestDemoOptionsValidate names the missing setting.
func TestDemoOptionsValidate(t *testing.T) {
	o := DefaultDemoOptions()
	if err := o.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	o.Photos = ""
	if err := o.Validate(); err == nil || !strings.Contains(err.Error(), "photos") {
		t.Fatalf("no photo folder: %v", err)
	}
	o.TestData = "/somewhere"
	if err := o.Validate(); err != nil {
		t.Fatalf("test data instead of photos: %v", err)
	}
}
