package app

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/diemdanh/diemdanh/hub/consent"
	"github.com/diemdanh/diemdanh/hub/ingest"
	"github.com/diemdanh/diemdanh/hub/roster"
	"github.com/diemdanh/diemdanh/models/gatekit"
	"gopkg.in/yaml.v3"
)

// Demo identifiers.
const (
	DemoSchool = "demo"
	DemoClass  = "demo-6a"
	DemoGate   = "demo-gate"
)

// DemoOptions configure `hub demo`.
type DemoOptions struct {
	DataDir  string // hub data; the demo's files go in <data>/demo
	HTTPAddr string
	MQTTAddr string
	EdgeBin  string // bin/edge
	TestData string // shared test data (faces/ for the demo pupils)
	Camera   string // "auto" (/dev/video0 when present), "none", or a device/URL
	Config   string // optional hub YAML applied before the demo overrides
}

// DemoMain is `hub demo` (what `make run` runs): a hub on embedded
// defaults (built-in MQTT broker, SQLite under --data, web on --http), a
// demo school whose pupils are the test photos, and one gate (bin/edge run
// as a child process) reading a camera if /dev/video0 exists, otherwise the
// synthetic gate video made by `edge simulate` from the test photos.
// Ctrl-C stops the gate, then the hub, cleanly.
func DemoMain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o := DemoOptions{DataDir: "data", HTTPAddr: demoHTTPAddr, MQTTAddr: demoMQTTAddr, Camera: "auto"}
	gatekit.EnvOverride(&o.DataDir, "DIEMDANH_DATA_DIR")
	gatekit.EnvOverride(&o.HTTPAddr, "DIEMDANH_HTTP_ADDR")
	gatekit.EnvOverride(&o.MQTTAddr, "DIEMDANH_MQTT_ADDR")
	gatekit.EnvOverride(&o.TestData, "ATTENDANCE_TESTDATA")
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.DataDir, "data", o.DataDir, "data folder (env DIEMDANH_DATA_DIR)")
	fs.StringVar(&o.HTTPAddr, "http", o.HTTPAddr, "web/API address (env DIEMDANH_HTTP_ADDR)")
	fs.StringVar(&o.MQTTAddr, "mqtt", o.MQTTAddr, "embedded MQTT broker address (env DIEMDANH_MQTT_ADDR)")
	fs.StringVar(&o.EdgeBin, "edge", "", "edge binary (default: bin/edge next to this binary)")
	fs.StringVar(&o.TestData, "testdata", o.TestData, "test data folder with faces/ (env ATTENDANCE_TESTDATA; default ../shared/testdata)")
	fs.StringVar(&o.Camera, "camera", o.Camera, `"auto" (/dev/video0 if present), "none" (synthetic video) or a camera source`)
	fs.StringVar(&o.Config, "config", "", "hub YAML applied before the demo settings (optional)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errors.Join(ErrUsage, err)
	}
	return RunDemo(ctx, o, stdout, stderr)
}

// RunDemo runs the demo until ctx ends.
func RunDemo(ctx context.Context, o DemoOptions, stdout, stderr io.Writer) error {
	cfg, err := Load(o.Config)
	if err != nil {
		return err
	}
	// Debian's mosquitto package starts a system broker on 1883; the demo
	// then moves its own broker (and the web UI, likewise) to a free port
	// rather than fail. An address the user chose is never changed.
	o.MQTTAddr = freeIfBusy(o.MQTTAddr, demoMQTTAddr, stderr, "MQTT")
	o.HTTPAddr = freeIfBusy(o.HTTPAddr, demoHTTPAddr, stderr, "web")
	cfg.DataDir = o.DataDir
	cfg.HTTP.Addr = o.HTTPAddr
	cfg.Broker.Listen = o.MQTTAddr
	cfg.Auth.CookieSecure = false // plain http on localhost
	cfg.Web.CookieSecure = false
	log := newLogger(cfg, stderr)
	if o.EdgeBin == "" {
		o.EdgeBin = defaultEdgeBin()
	}
	if _, err := os.Stat(o.EdgeBin); err != nil {
		return fmt.Errorf("demo: gate binary %s not found (run `make build`): %w", o.EdgeBin, err)
	}
	camera := o.Camera
	if camera == "auto" {
		camera = "none"
		if _, err := os.Stat("/dev/video0"); err == nil {
			camera = "0"
		}
	}
	demoDir, err := filepath.Abs(filepath.Join(o.DataDir, "demo"))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(demoDir, 0o750); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	sim, err := demoAssets(ctx, o, demoDir, cfg.Enrol.Embedder, log, stderr)
	if err != nil {
		return err
	}

	a, err := New(ctx, cfg, log)
	if err != nil {
		return err
	}
	password, err := SeedDemo(ctx, a, sim)
	if err != nil {
		a.Close()
		return err
	}
	names := map[string]string{}
	for _, p := range sim.truth.Passages {
		if p.StudentID != "" {
			names[p.StudentID] = demoName(p.Name)
		}
	}
	a.AddEventListener(ingest.ListenerFunc(func(_ context.Context, ev ingest.StoredEvent) {
		who := "unknown face / người lạ"
		if !ev.Unknown {
			who = names[ev.StudentID] + " (" + ev.StudentID + ")"
		}
		fmt.Fprintf(stdout, "%s  %-3s  %s  gate %s\n", time.UnixMilli(ev.CapturedAt).Format("15:04:05"), ev.Direction, who, ev.GateID)
	}))

	hubCtx, stopHub := context.WithCancel(context.Background())
	defer stopHub()
	runErr := make(chan error, 1)
	go func() { runErr <- a.Run(hubCtx) }()
	select {
	case <-a.Mods.MQTT.Ready():
	case err := <-runErr:
		return err
	}
	if _, err := a.Mods.MQTT.Hub(); err != nil {
		stopHub()
		<-runErr
		return err
	}
	edgeCfg, err := writeEdgeConfig(demoDir, a, o.MQTTAddr, password, camera, sim.video)
	if err != nil {
		stopHub()
		<-runErr
		return err
	}
	source := "synthetic gate video " + sim.video
	if camera != "none" {
		source = "camera " + camera
	}
	fmt.Fprintf(stdout, "DiemDanh demo: web %s (admin password: see the log above), MQTT %s, one gate reading the %s.\n", a.BaseURL(), o.MQTTAddr, source)
	fmt.Fprintln(stdout, "Attendance events appear below; Ctrl-C stops everything.")

	edgeCtx, stopEdge := context.WithCancel(ctx)
	defer stopEdge()
	edgeDone := make(chan error, 1)
	go func() { edgeDone <- runChild(edgeCtx, o.EdgeBin, []string{"run", "--config", edgeCfg}, stderr, log) }()

	var edgeErr error
	select {
	case <-ctx.Done():
		stopEdge()
		edgeErr = <-edgeDone
	case edgeErr = <-edgeDone:
		if edgeErr != nil {
			log.Error("the demo gate stopped", "err", edgeErr)
		}
		select {
		case <-ctx.Done():
		case err := <-runErr:
			return err
		}
	case err := <-runErr:
		stopEdge()
		<-edgeDone
		return err
	}
	stopHub()
	if err := <-runErr; err != nil {
		return err
	}
	if edgeErr != nil {
		return fmt.Errorf("demo gate: %w", edgeErr)
	}
	return nil
}

func defaultEdgeBin() string {
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "edge")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return filepath.Join("bin", "edge")
}

type simAssets struct {
	video, gallery string
	truth          struct {
		Passages []struct {
			StudentID string `json:"student_id"`
			Name      string `json:"name"`
			Enrolled  bool   `json:"enrolled"`
		} `json:"passages"`
	}
	doc *gatekit.GalleryDoc
	g   *gatekit.Gallery
}

// demoAssets makes (once per embedder) the synthetic gate video, its
// ground truth and the gallery of the people in it, made by embedder (the
// hub's enrol.embedder), with `edge simulate`.
func demoAssets(ctx context.Context, o DemoOptions, demoDir, embedder string, log *slog.Logger, stderr io.Writer) (*simAssets, error) {
	s := &simAssets{video: filepath.Join(demoDir, "gate.avi"), gallery: filepath.Join(demoDir, "gallery.json")}
	truth := filepath.Join(demoDir, "truth.json")
	model, ok := gatekit.EmbedderModel(embedder)
	if !ok {
		return nil, gatekit.Fieldf("enrol.embedder", "unknown embedder %q", embedder)
	}
	_, e1 := os.Stat(s.video)
	_, e2 := os.Stat(s.gallery)
	_, e3 := os.Stat(truth)
	if e2 == nil { // a gallery left by a demo run with another embedder is made again
		if _, g, err := gatekit.LoadGalleryFile(s.gallery); err != nil || g.Model != model {
			e2 = fmt.Errorf("gallery of another model")
		}
	}
	if e1 != nil || e2 != nil || e3 != nil {
		td := o.TestData
		if td == "" {
			var err error
			if td, err = gatekit.TestDataDir(); err != nil {
				return nil, fmt.Errorf("demo: the demo pupils are the test photos: %w", err)
			}
		}
		faces := filepath.Join(td, "faces")
		if _, err := os.Stat(faces); err != nil {
			return nil, fmt.Errorf("demo: test photos not found at %s (set ATTENDANCE_TESTDATA or --testdata): %w", faces, err)
		}
		// The idol crops (asian/kpop), when present, add 15 people with
		// several photos each: enrolled from some, walking with another, so
		// the demo shows arrivals every few seconds instead of one a loop.
		photos := faces
		if kpop := filepath.Join(td, "asian", "kpop"); dirExists(kpop) {
			photos += "," + kpop
		}
		log.Info("making the synthetic gate video from the test photos (once, about 20 s)", "photos", photos)
		args := []string{"simulate", "--photos", photos, "--out", s.video + ".tmp.avi", "--truth", truth + ".tmp",
			"--gallery-out", s.gallery + ".tmp", "--school", DemoSchool, "--seed", "1", "--duration", "20", "--embedder", model.Name}
		if err := runChild(ctx, o.EdgeBin, args, stderr, log); err != nil {
			return nil, fmt.Errorf("demo: edge simulate: %w", err)
		}
		for _, p := range [][2]string{{s.video + ".tmp.avi", s.video}, {truth + ".tmp", truth}, {s.gallery + ".tmp", s.gallery}} {
			if err := os.Rename(p[0], p[1]); err != nil {
				return nil, fmt.Errorf("demo: %w", err)
			}
		}
	}
	b, err := os.ReadFile(truth)
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	if err := json.Unmarshal(b, &s.truth); err != nil {
		return nil, fmt.Errorf("demo: %s: %w", truth, err)
	}
	if s.doc, s.g, err = gatekit.LoadGalleryFile(s.gallery); err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	return s, nil
}

// Default demo addresses.
const (
	demoHTTPAddr = "127.0.0.1:8080"
	demoMQTTAddr = "127.0.0.1:1883"
)

// freeIfBusy returns addr, or, when addr is the default and already taken
// by another program, a free loopback port (and says so on w).
func freeIfBusy(addr, def string, w io.Writer, what string) string {
	if addr != def {
		return addr
	}
	l, err := net.Listen("tcp", addr)
	if err == nil {
		l.Close()
		return addr
	}
	l, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return addr
	}
	free := l.Addr().String()
	l.Close()
	fmt.Fprintf(w, "demo: %s address %s is in use by another program; using %s instead\n", what, addr, free)
	return free
}

func dirExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

func demoName(label string) string {
	if label == "" {
		return ""
	}
	return strings.ToUpper(label[:1]) + label[1:]
}

// SeedDemo creates (idempotently) the demo school, class, pupils with
// consent and their encrypted templates from the simulator's gallery, and
// the demo gate with a fresh password, which it returns.
func SeedDemo(ctx context.Context, a *App, sim *simAssets) (string, error) {
	r := a.Mods.Roster
	if _, err := r.PutSchool(ctx, roster.School{ID: DemoSchool, Name: "Trường THCS Demo", Level: "lower_secondary"}); err != nil {
		return "", fmt.Errorf("demo: %w", err)
	}
	if _, err := r.Class(ctx, DemoClass); err != nil {
		if _, err := r.PutClass(ctx, roster.Class{ID: DemoClass, SchoolID: DemoSchool, Name: "6A", Grade: 6,
			StartTime: "07:00", LateAfterMin: 15, AbsentCutoff: "09:00", Active: true}); err != nil {
			return "", fmt.Errorf("demo: %w", err)
		}
	}
	names := map[string]string{}
	for _, p := range sim.truth.Passages {
		if p.StudentID != "" {
			names[p.StudentID] = demoName(p.Name)
		}
	}
	for _, id := range sim.g.PersonIDs() {
		name := names[id]
		if name == "" {
			name = "Học sinh " + id[len(id)-4:]
		}
		if _, err := r.PutPupil(ctx, roster.Pupil{ID: id, SchoolID: DemoSchool, ClassID: DemoClass, FullName: name,
			DateOfBirth: "2014-01-01", Active: true}); err != nil {
			return "", fmt.Errorf("demo: pupil %s: %w", id, err)
		}
		if c := a.Mods.Consent; c != nil {
			if cur, _ := c.Valid(ctx, id); cur == nil {
				if _, err := c.Record(ctx, "demo", consent.Grant{PupilID: id, GuardianName: "Phụ huynh (demo)", PupilConsented: true,
					ScopeFace: true, DocumentRef: "demo consent form"}); err != nil {
					return "", fmt.Errorf("demo: consent %s: %w", id, err)
				}
			}
		}
		have, err := a.Mods.Templates.List(ctx, id)
		if err != nil {
			return "", fmt.Errorf("demo: %w", err)
		}
		own := 0 // templates of the gallery's model (a data folder may hold another model's)
		for _, t := range have {
			if t.Model == sim.g.Model.String() {
				own++
			}
		}
		if own == 0 {
			for _, d := range sim.g.Descriptors(id) {
				if _, err := a.Mods.Templates.Add(ctx, id, d, sim.g.Model, gatekit.Quality{}, nil); err != nil {
					return "", fmt.Errorf("demo: template %s: %w", id, err)
				}
			}
		}
	}
	if _, err := r.Gate(ctx, DemoGate); err != nil {
		cred, err := r.CreateGate(ctx, roster.Gate{ID: DemoGate, SchoolID: DemoSchool, Name: "Cổng chính (demo)", Direction: gatekit.DirectionIn})
		if err != nil {
			return "", fmt.Errorf("demo: %w", err)
		}
		return cred.Password, nil
	}
	cred, err := r.RotateGatePassword(ctx, DemoGate)
	if err != nil {
		return "", fmt.Errorf("demo: %w", err)
	}
	return cred.Password, nil
}

func writeEdgeConfig(demoDir string, a *App, mqttAddr, password, camera, video string) (string, error) {
	source := camera
	if camera == "none" {
		source = video
	}
	cfg := map[string]any{
		"school_id": DemoSchool,
		"gate_id":   DemoGate,
		"direction": gatekit.DirectionIn,
		"data_dir":  filepath.Join(demoDir, "edge"),
		"log":       map[string]any{"level": "info"},
		"camera":    map[string]any{"source": source, "realtime": true, "loop": camera == "none"},
		"engine":    map[string]any{"models_dir": gatekit.TestModelsDir(), "embedder": a.Mods.Templates.Model().Name},
		"pipeline":  map[string]any{"cooldown": "1m"},
		"mqtt": map[string]any{"broker": "tcp://" + mqttAddr, "client_id": DemoGate,
			"username": DemoGate, "password": password},
		"gallery": map[string]any{"sync": map[string]any{"hub_url": a.BaseURL(), "username": DemoGate,
			"password": password, "interval": "30s"}},
		"http":               map[string]any{"listen": ""},
		"heartbeat_interval": "10s",
	}
	b, err := yaml.Marshal(cfg)
	if err != nil {
		return "", err
	}
	p := filepath.Join(demoDir, "edge.yaml")
	if err := gatekit.WriteFileAtomic(p, b, 0o600); err != nil {
		return "", fmt.Errorf("demo: %w", err)
	}
	return p, nil
}

// runChild runs bin/edge with its output prefixed on stderr, in its own
// process group (so the terminal's Ctrl-C reaches only the hub, which then
// stops the child once); it dies with the hub if the hub is killed. When
// ctx ends it gets SIGINT, then SIGKILL after 15 s.
func runChild(ctx context.Context, bin string, args []string, stderr io.Writer, log *slog.Logger) error {
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", bin, err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			fmt.Fprintf(stderr, "[edge] %s\n", sc.Text())
		}
	}()
	done := make(chan error, 1)
	go func() { wg.Wait(); done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	_ = cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() == 130 {
			return nil
		}
		return err
	case <-time.After(15 * time.Second):
		log.Warn("child did not stop in 15 s; killing it", "bin", bin)
		_ = cmd.Process.Kill()
		return <-done
	}
}
