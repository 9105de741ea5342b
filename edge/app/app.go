// Package app is the gate binary: configuration, subcommands (run,
// gallery build, identify, simulate, eval, bench) and the service that
// wires capture → pipeline → store → publisher with the operations HTTP
// endpoint (/healthz, /metrics, optional MJPEG preview).
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/diemdanh/diemdanh/edge/capture"
	"github.com/diemdanh/diemdanh/edge/gallery"
	"github.com/diemdanh/diemdanh/edge/pipeline"
	"github.com/diemdanh/diemdanh/edge/publish"
	"github.com/diemdanh/diemdanh/edge/store"
	"github.com/diemdanh/diemdanh/models/faceengine"
	"github.com/diemdanh/diemdanh/models/wire"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"
)

// App is the running gate service.
type App struct {
	cfg     Config
	log     *slog.Logger
	now     func() time.Time
	engine  *faceengine.Engine
	db      *store.DB
	pub     *publish.Publisher
	gallery *gallery.Store
	sync    *gallery.Sync
	cap     *capture.Capture
	mbox    *capture.Mailbox
	pipe    *pipeline.Pipeline
	reg     *prometheus.Registry
	preview *preview
	started time.Time
	running atomic.Bool
	ln      net.Listener
	closeMu sync.Once
}

// New opens everything the gate needs. A missing model, an unreadable
// store or a corrupt gallery file is a clear error here; a camera that is
// not there yet is retried by Run.
func New(cfg Config, log *slog.Logger, now func() time.Time) (a *App, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	if off := cfg.ClockOffset; off != 0 {
		base := now
		now = func() time.Time { return base().Add(off) }
		log.Warn("clock_offset is set: this gate's clock is shifted on purpose (a test aid, never for a real gate)", "clock_offset", off)
	}
	a = &App{cfg: cfg, log: log, now: now, reg: prometheus.NewRegistry(), started: now()}
	opened := a
	defer func() {
		if err != nil {
			opened.Close()
		}
	}()
	if a.gallery, err = gallery.NewStore(cfg.Gallery.Path, log); err != nil {
		return nil, err
	}
	if cfg.Gallery.Sync.HubURL != "" {
		if a.sync, err = gallery.NewSync(cfg.Gallery.Sync, a.gallery, nil, log, now); err != nil {
			return nil, err
		}
		cfg.MQTT.OnGalleryAnnounce = a.sync.OnAnnounce
	}
	if a.engine, err = faceengine.NewEngine(cfg.Engine, log); err != nil {
		return nil, fmt.Errorf("face engine: %w", err)
	}
	if err := a.gallery.Expect(a.engine.Model()); err != nil {
		return nil, fmt.Errorf("%w; rebuild the gallery or set engine.embedder", err)
	}
	if err := os.MkdirAll(dirOf(cfg.Store.Path), 0o750); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	if a.db, err = store.Open(cfg.Store.Path, cfg.Store.Options, log); err != nil {
		return nil, err
	}
	cfg.MQTT.ConnectHeartbeat = a.Heartbeat // the backlog reaches the hub before the drain
	if a.pub, err = publish.New(cfg.MQTT, a.db, log, now); err != nil {
		return nil, err
	}
	if a.cap, err = capture.New(cfg.Camera, log, now); err != nil {
		return nil, err
	}
	// A video file read as fast as possible (camera.realtime: false) must
	// not drop frames; live sources keep only the newest frame.
	kind, _ := capture.ParseSource(cfg.Camera.Source)
	asFastAsPossible := kind == capture.KindFile && !cfg.Camera.Realtime
	a.mbox = capture.NewMailbox(!asFastAsPossible)
	a.cap.DiscardOnOutage(a.mbox.Discard) // a frame read before an outage is never processed after it
	cfg.Pipeline.WaitForWorkers = asFastAsPossible
	stats := &pipeline.Stats{}
	metrics := pipeline.NewMetrics(a.reg, stats)
	hooks := pipeline.Hooks{}
	if cfg.HTTP.Preview.Enabled {
		a.preview = newPreview(cfg.HTTP.Preview)
		hooks.OnFrame = a.preview.offer
	}
	a.pipe, err = pipeline.New(cfg.Pipeline, pipeline.Deps{Describer: a.engine, Workers: a.engine.Workers(), ModelsDir: cfg.Engine.ModelsDir, Gallery: a.gallery,
		Outbox: a.db, Notify: a.pub.Notify, Hooks: hooks, Stats: stats, Metrics: metrics}, log, now)
	if err != nil {
		return nil, err
	}
	if err := a.pipe.RegisterCandidateMetrics(a.reg); err != nil {
		return nil, err
	}
	a.registerMetrics()
	return a, nil
}

func dirOf(p string) string {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == '/' {
			return p[:i+1]
		}
	}
	return "."
}

func (a *App) registerMetrics() {
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	a.reg.MustRegister(
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		gauge("edge_outbox_depth", "Messages (events and unrecognised faces) waiting in the outbox.", func() float64 { return float64(a.db.Depth()) }),
		gauge("edge_broker_connected", "1 when connected to the MQTT broker.", func() float64 { return b2f(a.pub.Connected()) }),
		gauge("edge_camera_online", "1 when the camera delivers frames.", func() float64 { return b2f(a.cap.Online()) }),
		gauge("edge_gallery_version", "Version of the gallery in force.", func() float64 { return float64(a.gallery.Version()) }),
		gauge("edge_gallery_people", "Enrolled people in the gallery.", func() float64 { return float64(a.people()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "edge_dropped_frames_total", Help: "Stale frames dropped (newest frame wins)."},
			func() float64 { return float64(a.mbox.Dropped()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "edge_bad_frames_total", Help: "Unreadable frames from the camera."},
			func() float64 { return float64(a.cap.BadFrames()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "edge_camera_outages_total", Help: "Camera outages (a live source that failed or stopped), each counted once."},
			func() float64 { return float64(a.cap.Outages()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "edge_camera_stale_frames_total", Help: "Stale camera frames rejected (late backlog, repeated timestamp, read before an outage)."},
			func() float64 { return float64(a.cap.StaleFrames()) }),
		gauge("edge_outbox_disk_full", "1 while the outbox refuses new events because the disk is full.", func() float64 { return b2f(a.db.DiskFull()) }),
		refusedCounter(a.db),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "edge_unrecognised_sent_total",
			Help: "Unrecognised faces acknowledged by the broker."}, func() float64 { return float64(a.pub.SentUnrecognised()) }),
		gauge("edge_fps", "Frames processed per second since start.", a.fps),
		gauge("edge_vote_threshold", "Distance threshold in force (configured, calibrated or from the gallery).",
			func() float64 { return a.pipe.OperatingPoint().Threshold }),
		gauge("edge_vote_min_margin", "Margin over the second-best identity in force.",
			func() float64 { return a.pipe.OperatingPoint().MinMargin }),
	)
}

// refusedCounter exports store.DB.Refused as edge_outbox_refused_total{reason}.
func refusedCounter(db *store.DB) prometheus.Collector {
	return refusedCollector{db: db, desc: prometheus.NewDesc("edge_outbox_refused_total",
		"Messages the outbox refused (not stored), by reason: disk_full or outbox_full.", []string{"reason"}, nil)}
}

type refusedCollector struct {
	db   *store.DB
	desc *prometheus.Desc
}

func (c refusedCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c refusedCollector) Collect(ch chan<- prometheus.Metric) {
	for reason, n := range c.db.Refused() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(n), reason)
	}
}

func (a *App) people() int {
	_, g := a.gallery.Current()
	return g.People()
}

func (a *App) fps() float64 {
	s := a.now().Sub(a.started).Seconds()
	if s <= 0 {
		return 0
	}
	return float64(a.pipe.Stats.Frames.Load()) / s
}

// Stats exposes the pipeline counters.
func (a *App) Stats() *pipeline.Stats { return a.pipe.Stats }

// Addr is the HTTP endpoint's address once Run listens ("" before).
func (a *App) Addr() string {
	if a.ln == nil {
		return ""
	}
	return a.ln.Addr().String()
}

// Listen binds the HTTP endpoint (Run calls it when not done yet).
func (a *App) Listen() error {
	if a.cfg.HTTP.Listen == "" || a.ln != nil {
		return nil
	}
	ln, err := net.Listen("tcp", a.cfg.HTTP.Listen)
	if err != nil {
		return fmt.Errorf("http: %w", err)
	}
	a.ln = ln
	return nil
}

// Run serves until ctx ends. A video file source ending also ends Run
// (nil error) after the pipeline has committed every decision.
func (a *App) Run(ctx context.Context) error {
	if err := a.Listen(); err != nil {
		return err
	}
	a.running.Store(true)
	defer a.running.Store(false)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)
	var pipeDone = make(chan struct{})
	g.Go(func() error {
		err := a.cap.Run(gctx, a.mbox.Put)
		a.mbox.Close(err)
		if errors.Is(err, capture.ErrSource) {
			return err
		}
		return nil
	})
	g.Go(func() error {
		defer close(pipeDone)
		defer a.mbox.Drain()
		defer a.mbox.Close(nil) // unblocks a capture waiting to hand over a frame
		err := a.pipe.Run(gctx, a.mbox)
		if err != nil && gctx.Err() == nil {
			return err
		}
		return nil
	})
	// The publisher keeps running after a video file ends until the
	// outbox is empty (or ctx ends), so a file run loses nothing.
	pubCtx, pubCancel := context.WithCancel(context.WithoutCancel(ctx))
	defer pubCancel()
	g.Go(func() error {
		go func() {
			select {
			case <-gctx.Done():
			case <-pipeDone:
				a.waitOutboxEmpty(gctx)
			}
			pubCancel()
		}()
		err := a.pub.Run(pubCtx)
		if err != nil && pubCtx.Err() == nil {
			return err
		}
		return nil
	})
	g.Go(func() error {
		select {
		case <-pubCtx.Done():
			cancel()
		case <-gctx.Done():
		}
		return nil
	})
	g.Go(func() error { a.heartbeats(gctx); return nil })
	if a.sync != nil {
		g.Go(func() error {
			if err := a.sync.Run(gctx); err != nil && gctx.Err() == nil {
				return err
			}
			return nil
		})
	}
	if a.ln != nil {
		srv := &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 5 * time.Second}
		g.Go(func() error {
			err := srv.Serve(a.ln)
			if errors.Is(err, http.ErrServerClosed) {
				return nil
			}
			return err
		})
		g.Go(func() error {
			<-gctx.Done()
			sctx, c := context.WithTimeout(context.Background(), 2*time.Second)
			defer c()
			_ = srv.Shutdown(sctx)
			return nil
		})
	}
	a.log.Info("gate running", "school_id", a.cfg.SchoolID, "gate_id", a.cfg.GateID, "direction", a.cfg.Direction,
		"camera", a.cap.Source(), "gallery_version", a.gallery.Version(), "people", a.people())
	err := g.Wait()
	a.log.Info("gate stopped", "frames", a.pipe.Stats.Frames.Load(), "events", a.pipe.Stats.Events.Load(),
		"unknown_tracks", a.pipe.Stats.Unknowns.Load(), "unrecognised", a.pipe.Stats.Unrecognised.Load(),
		"near_misses", a.pipe.Stats.NearMisses.Load(), "outbox_depth", a.db.Depth())
	return err
}

func (a *App) waitOutboxEmpty(ctx context.Context) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for a.db.Depth() > 0 {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// heartbeats sends one every heartbeat_interval, and one at once (checked
// each second) when the outbox's disk-full state changes.
func (a *App) heartbeats(ctx context.Context) {
	t := time.NewTicker(a.cfg.HeartbeatInterval)
	defer t.Stop()
	check := time.NewTicker(time.Second)
	defer check.Stop()
	sentFull := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-check.C:
			if a.db.DiskFull() == sentFull {
				continue
			}
		case <-t.C:
		}
		if !a.pub.Connected() {
			continue
		}
		hb := a.Heartbeat()
		if err := a.pub.PublishHeartbeat(hb); err != nil {
			a.log.Debug("heartbeat not sent", "err", err)
			continue
		}
		sentFull = hb.DiskFull
	}
}

// Heartbeat is the current metrics payload.
func (a *App) Heartbeat() wire.Heartbeat {
	window, candidates := a.pipe.CandidateWindow()
	var refused int64
	for _, n := range a.db.Refused() {
		refused += n
	}
	return wire.Heartbeat{Schema: wire.SchemaVersion, GateID: a.cfg.GateID, At: a.now().UnixMilli(), FPS: a.fps(),
		Dropped: a.mbox.Dropped(), OutboxDepth: a.db.Depth(), GalleryVer: a.gallery.Version(),
		Unknowns: a.pipe.Stats.Unknowns.Load(), UptimeS: int64(a.now().Sub(a.started).Seconds()), CameraOnline: a.cap.Online(),
		CandidateWindow: window, Candidates: candidates, DiskFull: a.db.DiskFull(), OutboxRefused: refused}
}

// Close releases everything New opened.
func (a *App) Close() {
	a.closeMu.Do(func() {
		if a.ln != nil && !a.running.Load() {
			a.ln.Close()
		}
		if a.db != nil {
			if err := a.db.Close(); err != nil {
				a.log.Warn("store close", "err", err)
			}
		}
		if a.engine != nil {
			a.engine.Close()
		}
	})
}
