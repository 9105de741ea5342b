// Package app assembles the hub: configuration, the database, the one gin
// engine and every component (modules.go), the background workers, the
// subcommands of bin/hub (commands.go) and the ordered shutdown:
// stop accepting → drain ingest → flush → close broker → close database.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/diemdanh/diemdanh/hub/api"
	"github.com/diemdanh/diemdanh/hub/store"
)

// Phase is a step of the shutdown, run in this order.
type Phase int

// Shutdown phases.
const (
	PhaseStopAccepting Phase = iota // HTTP server and broker listeners stop taking new work
	PhaseDrain                      // ingest finishes what it accepted
	PhaseFlush                      // workers flush their queues/outboxes (background workers are stopped just before)
	PhaseCloseBroker                // the MQTT broker / external connection closes
	numPhases
)

var phaseNames = [...]string{"stop accepting", "drain", "flush", "close broker"}

type hook struct {
	name string
	fn   func(ctx context.Context) error
}

type worker struct {
	name string
	fn   func(ctx context.Context) error
}

// App is the running hub.
type App struct {
	Cfg Config
	Log *slog.Logger
	Now func() time.Time
	DB  *store.DB
	API *api.Server

	// Mods holds the components built by buildModules (see modules.go).
	Mods Modules

	ln       net.Listener
	mu       sync.Mutex
	hooks    [numPhases][]hook
	workers  []worker
	closed   bool
	startErr error
}

// Option adjusts New.
type Option func(*App)

// WithClock sets the clock (tests).
func WithClock(now func() time.Time) Option { return func(a *App) { a.Now = now } }

// New validates cfg, opens the database, builds every module and binds the
// HTTP listener (so Addr is known before Run). Close releases everything
// if Run is never called.
func New(ctx context.Context, cfg Config, log *slog.Logger, opts ...Option) (*App, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.resolvePaths()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &App{Cfg: cfg, Log: log, Now: time.Now}
	for _, o := range opts {
		o(a)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("app: data dir: %w", err)
	}
	db, err := store.Open(ctx, cfg.DB(), log)
	if err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	a.DB = db
	a.API = api.NewServer(log, a.Now, nil)
	a.API.AddHealth("db", func(ctx context.Context) error { return db.R.PingContext(ctx) })
	if err := a.buildModules(ctx); err != nil {
		a.Close()
		return nil, err
	}
	addr := cfg.HTTP.Addr
	if !a.API.HasRealAuth() {
		_, port, _ := net.SplitHostPort(addr)
		if host, _, _ := net.SplitHostPort(addr); host != "127.0.0.1" && host != "localhost" && host != "::1" {
			log.Warn("no access control configured yet: binding the API to 127.0.0.1 only", "requested", addr)
		}
		addr = net.JoinHostPort("127.0.0.1", port)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		a.Close()
		return nil, fmt.Errorf("app: listen %s: %w", addr, err)
	}
	a.ln = ln
	return a, nil
}

// Addr is the bound HTTP address.
func (a *App) Addr() string { return a.ln.Addr().String() }

// BaseURL is http://Addr.
func (a *App) BaseURL() string { return "http://" + a.Addr() }

// OnStop registers fn to run in shutdown phase p (registration order
// within a phase). Each phase is bounded by Cfg.ShutdownTimeout.
func (a *App) OnStop(p Phase, name string, fn func(ctx context.Context) error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.hooks[p] = append(a.hooks[p], hook{name, fn})
}

// Go registers a background worker started by Run. Its ctx ends at the
// start of PhaseFlush; it should return promptly then.
func (a *App) Go(name string, fn func(ctx context.Context) error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.workers = append(a.workers, worker{name, fn})
}

// Run serves until ctx is done, then shuts down in order and closes the
// database. It returns the first error of a worker or the server.
func (a *App) Run(ctx context.Context) error {
	runCtx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	workCtx, cancelWork := context.WithCancel(context.Background())
	defer cancelWork()

	var wg sync.WaitGroup
	errc := make(chan error, 1+len(a.workers))
	httpCtx, stopHTTP := context.WithCancel(context.Background())
	defer stopHTTP()
	httpDone := make(chan struct{})
	go func() {
		defer close(httpDone)
		if err := a.API.Serve(httpCtx, a.ln, a.Cfg.ShutdownTimeout); err != nil {
			errc <- err
			cancelRun()
		}
	}()
	a.mu.Lock()
	workers := append([]worker(nil), a.workers...)
	a.mu.Unlock()
	for _, w := range workers {
		wg.Add(1)
		go func(w worker) {
			defer wg.Done()
			if err := w.fn(workCtx); err != nil && !errors.Is(err, context.Canceled) {
				a.Log.Error("worker stopped", "worker", w.name, "err", err)
				errc <- fmt.Errorf("%s: %w", w.name, err)
				cancelRun()
			}
		}(w)
	}
	a.Log.Info("hub running", "http", a.BaseURL())
	<-runCtx.Done()
	a.Log.Info("shutting down")

	var firstErr error
	select {
	case firstErr = <-errc:
	default:
	}
	// 1. stop accepting: HTTP first, then component hooks (broker listeners).
	stopHTTP()
	<-httpDone
	a.runPhase(PhaseStopAccepting)
	a.runPhase(PhaseDrain)
	cancelWork()
	wg.Wait()
	a.runPhase(PhaseFlush)
	a.runPhase(PhaseCloseBroker)
	if err := a.Close(); err != nil && firstErr == nil {
		firstErr = err
	}
	a.Log.Info("hub stopped")
	return firstErr
}

func (a *App) runPhase(p Phase) {
	a.mu.Lock()
	hs := append([]hook(nil), a.hooks[p]...)
	a.mu.Unlock()
	for _, h := range hs {
		ctx, cancel := context.WithTimeout(context.Background(), a.Cfg.ShutdownTimeout)
		if err := h.fn(ctx); err != nil {
			a.Log.Warn("shutdown step failed", "phase", phaseNames[p], "step", h.name, "err", err)
		}
		cancel()
	}
}

// Close closes the listener (if Run never ran) and the database. It is
// idempotent; Run calls it last.
func (a *App) Close() error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil
	}
	a.closed = true
	a.mu.Unlock()
	if a.ln != nil {
		_ = a.ln.Close()
	}
	if a.DB != nil {
		if err := a.DB.Close(); err != nil {
			return fmt.Errorf("app: close db: %w", err)
		}
	}
	return nil
}
