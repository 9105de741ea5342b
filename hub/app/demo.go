package app

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/diemdanh/diemdanh/hub/ingest"
	"github.com/diemdanh/diemdanh/models/conf"
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
	Photos   string // the demo photos fetched by models/fetch-demo.sh
	TestData string // when set, the pupils are the shared test photos (faces/, asian/kpop/) instead
	Camera   string // "auto" (/dev/video0 when present), "none", or a device/URL
	Config   string // optional hub YAML applied before the demo overrides
}

// DefaultDemoOptions are the defaults, with the environment's overrides.
func DefaultDemoOptions() DemoOptions {
	o := DemoOptions{DataDir: "data", HTTPAddr: demoHTTPAddr, MQTTAddr: demoMQTTAddr, Camera: "auto", Photos: DefaultDemoPhotosDir()}
	conf.EnvOverride(&o.DataDir, "DIEMDANH_DATA_DIR")
	conf.EnvOverride(&o.HTTPAddr, "DIEMDANH_HTTP_ADDR")
	conf.EnvOverride(&o.MQTTAddr, "DIEMDANH_MQTT_ADDR")
	return o
}

// Validate names the first bad option.
func (o DemoOptions) Validate() error {
	switch {
	case o.DataDir == "":
		return conf.Fieldf("data", "is required")
	case o.HTTPAddr == "" || o.MQTTAddr == "":
		return conf.Fieldf("http", "the web and MQTT addresses are required")
	case o.Photos == "" && o.TestData == "":
		return conf.Fieldf("photos", "a demo photo folder is required")
	case o.Camera == "":
		return conf.Fieldf("camera", `use "auto", "none" or a camera source`)
	}
	return nil
}

// DemoMain is `hub demo` (what `make run` runs): a hub on embedded
// defaults (built-in MQTT broker, SQLite under --data, web on --http), a
// demo school whose pupils come from the demo photos (the test images of
// the PyPI package face_recognition 1.3.0, fetched by models/fetch-demo.sh),
// and one gate (bin/edge run as a child process) reading a camera if
// /dev/video0 exists, otherwise the synthetic gate video made by `edge
// simulate` from those photos. Without the photos it still runs the hub
// and the gate, and says what is missing and how to enrol from the
// browser. Ctrl-C stops the gate, then the hub, cleanly.
func DemoMain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o := DefaultDemoOptions()
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.DataDir, "data", o.DataDir, "data folder (env DIEMDANH_DATA_DIR)")
	fs.StringVar(&o.HTTPAddr, "http", o.HTTPAddr, "web/API address (env DIEMDANH_HTTP_ADDR)")
	fs.StringVar(&o.MQTTAddr, "mqtt", o.MQTTAddr, "embedded MQTT broker address (env DIEMDANH_MQTT_ADDR)")
	fs.StringVar(&o.EdgeBin, "edge", "", "edge binary (default: bin/edge next to this binary)")
	fs.StringVar(&o.Photos, "photos", o.Photos, "demo photo folder filled by models/fetch-demo.sh (env DEMO_PHOTOS_DIR, else $DIEMDANH_CACHE/demo-photos, else ~/.cache/diemdanh/demo-photos)")
	fs.StringVar(&o.TestData, "testdata", "", "use the shared test photos (a folder with faces/) as the pupils instead of the demo photos")
	fs.StringVar(&o.Camera, "camera", o.Camera, `"auto" (/dev/video0 if present), "none" (synthetic video) or a camera source`)
	fs.StringVar(&o.Config, "config", "", "hub YAML applied before the demo settings (optional)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errors.Join(ErrUsage, err)
	}
	if fs.NArg() > 0 {
		return errors.Join(ErrUsage, fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	}
	if err := o.Validate(); err != nil {
		return errors.Join(ErrUsage, err)
	}
	return RunDemo(ctx, o, stdout, stderr)
}

// demoSession is one run's settings and assets, made before the hub starts.
type demoSession struct {
	o       DemoOptions
	cfg     Config
	log     *slog.Logger
	admin   *adminLogin
	camera  string
	dir     string     // <data>/demo, absolute
	sim     *simAssets // nil: no demo pupils (photos missing)
	missing []string   // the demo photos missing when sim is nil
	video   string     // what the gate plays when there is no camera
}

// RunDemo runs the demo until ctx ends.
func RunDemo(ctx context.Context, o DemoOptions, stdout, stderr io.Writer) error {
	s, err := prepareDemo(ctx, o, stderr)
	if err != nil {
		return err
	}
	a, err := New(ctx, s.cfg, s.log)
	if err != nil {
		return err
	}
	seed, err := seedDemo(ctx, a, s.sim)
	if err == nil {
		err = resolveAdminLogin(ctx, a, s.dir, s.admin)
	}
	if err != nil {
		a.Close()
		return err
	}
	a.AddEventListener(arrivalPrinter(stdout, seed.names))

	hubCtx, stopHub := context.WithCancel(context.Background())
	defer stopHub()
	runErr := make(chan error, 1)
	go func() { runErr <- a.Run(hubCtx) }()
	stop := func(err error) error { stopHub(); <-runErr; return err }
	select {
	case <-a.Mods.MQTT.Ready():
	case err := <-runErr:
		return err
	}
	if _, err := a.Mods.MQTT.Hub(); err != nil {
		return stop(err)
	}
	edgeCfg, err := writeEdgeConfig(s.dir, a, s.o.MQTTAddr, seed.gatePassword, s.camera, s.video)
	if err != nil {
		return stop(err)
	}
	s.banner(a).print(stdout)

	edgeCtx, stopEdge := context.WithCancel(ctx)
	defer stopEdge()
	edgeDone := make(chan error, 1)
	go func() {
		edgeDone <- runChild(edgeCtx, s.o.EdgeBin, []string{"run", "--config", edgeCfg}, stderr, s.log)
	}()
	if err := superviseDemo(ctx, s.log, stopEdge, edgeDone, stopHub, runErr); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "DiemDanh demo stopped cleanly.")
	return nil
}

// superviseDemo waits for Ctrl-C (ctx), then stops the gate and the hub in
// that order. A gate that stops on its own is logged and the hub keeps
// running; a hub that stops on its own stops the gate.
func superviseDemo(ctx context.Context, log *slog.Logger, stopEdge func(), edgeDone <-chan error, stopHub func(), runErr <-chan error) error {
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

// prepareDemo loads the configuration with the demo's overrides, finds the
// gate binary and the camera, and makes the gate video and the gallery
// (or, without demo photos, the placeholder video).
func prepareDemo(ctx context.Context, o DemoOptions, stderr io.Writer) (*demoSession, error) {
	cfg, err := Load(o.Config)
	if err != nil {
		return nil, err
	}
	// Debian's mosquitto package starts a system broker on 1883; the demo
	// then moves its own broker (and the web UI, likewise) to a free port
	// rather than fail. An address the user chose is never changed.
	o.MQTTAddr = freeIfBusy(o.MQTTAddr, demoMQTTAddr, stderr, "MQTT")
	o.HTTPAddr = freeIfBusy(o.HTTPAddr, demoHTTPAddr, stderr, "web")
	cfg.DataDir, cfg.HTTP.Addr, cfg.Broker.Listen = o.DataDir, o.HTTPAddr, o.MQTTAddr
	cfg.Auth.CookieSecure = false // plain http on localhost
	cfg.Web.CookieSecure = false
	s := &demoSession{o: o, cfg: cfg, admin: &adminLogin{}, camera: o.Camera}
	s.log = slog.New(otpCatcher{newLogger(cfg, stderr).Handler(), s.admin})
	if s.o.EdgeBin == "" {
		s.o.EdgeBin = defaultEdgeBin()
	}
	if _, err := os.Stat(s.o.EdgeBin); err != nil {
		return nil, fmt.Errorf("demo: gate binary %s not found (run `make build`): %w", s.o.EdgeBin, err)
	}
	if s.camera == "auto" {
		s.camera = "none"
		if _, err := os.Stat("/dev/video0"); err == nil {
			s.camera = "0"
		}
	}
	if s.dir, err = filepath.Abs(filepath.Join(o.DataDir, "demo")); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(s.dir, 0o750); err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	s.sim, s.missing, err = demoAssets(ctx, s.o, s.dir, cfg.Enrol.Embedder, s.log, stderr)
	if err != nil {
		return nil, err
	}
	if s.sim != nil {
		s.video = s.sim.video
		return s, nil
	}
	s.log.Warn("demo photos missing: the demo runs without its pupils", "missing", s.missing, "folder", o.Photos, "fetch", demoPhotoFetch)
	if s.camera != "none" {
		return s, nil
	}
	s.video = filepath.Join(s.dir, "placeholder.avi")
	return s, writePlaceholderVideo(s.video)
}

// banner is what the newcomer reads once everything runs.
func (s *demoSession) banner(a *App) demoBanner {
	b := demoBanner{url: a.BaseURL(), board: a.BaseURL() + "/teacher/class/" + DemoClass, mqtt: s.o.MQTTAddr,
		db: filepath.Join(s.o.DataDir, "hub.db"), photosDir: s.o.Photos, missing: s.missing,
		placeholder: demoPlaceholderPupil, dataDir: s.o.DataDir, testData: s.o.TestData}
	s.admin.mu.Lock()
	b.user, b.password = s.admin.user, s.admin.password
	s.admin.mu.Unlock()
	switch {
	case s.camera != "none":
		b.gate = "camera " + s.camera
	case s.sim == nil:
		b.gate = "a placeholder video with nobody in it (no camera found)"
	default:
		b.gate = fmt.Sprintf("the synthetic gate video %s (%.0f s, looped)", s.video, s.sim.seconds())
	}
	if s.sim != nil {
		b.people, b.arrivals = s.sim.people, s.sim.walkers()
	}
	return b
}

// arrivalPrinter prints every stored event on stdout.
func arrivalPrinter(stdout io.Writer, names map[string]string) ingest.Listener {
	return ingest.ListenerFunc(func(_ context.Context, ev ingest.StoredEvent) {
		who := "unknown face / người lạ"
		if !ev.Unknown {
			who = names[ev.StudentID] + " (" + ev.StudentID + ")"
		}
		fmt.Fprintf(stdout, "%s  %-3s  %s  gate %s\n", time.UnixMilli(ev.CapturedAt).Format("15:04:05"), ev.Direction, who, ev.GateID)
	})
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
