// Package gatelearn is the hub side of `edge bench --suite --learn`: the
// learning loop of issue 17 run over the benchmark's school days through
// the hub's real stores and rules. It builds a hub in a scratch folder (a
// real SQLite database with every migration, the roster, consents with the
// gate-template scope, the encrypted template store, the review store of
// unrecognised faces, ingest, hub/enrol's "not this pupil" and the gallery
// server over HTTP on loopback), enrols the suite's pupils from the
// descriptors of the suite's gallery, and hands the gate the gallery it
// downloads like a gate does (edge/gallery's sync with the gate's
// credentials).
//
// Each simulated day runs on the hub's clock (Hub.BeginDay); after it
// (Hub.EndDay) the hub ingests what the gate published, so the templates
// the gate offered with its events become automatic templates where
// hub/learn's rules allow, and the teacher is played on the day's review
// board (teacher.go): each unrecognised face of an enrolled pupil is
// confirmed as that pupil (hub/learn's Confirm), each visitor's dismissed
// in every class, each wrong announcement marked "not this pupil"; then
// the gate downloads the gallery for the next day. Nothing is written
// around the hub's own functions.
//
// The package links the face engine (hub/enrol re-describes an event's
// crop on "not this pupil"; the teacher's eyes describe the photos that
// were walked), so deploy/archcheck lists it among the packages that may.
package gatelearn

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/diemdanh/diemdanh/edge/gallery"
	"github.com/diemdanh/diemdanh/hub/api"
	"github.com/diemdanh/diemdanh/hub/attendance"
	"github.com/diemdanh/diemdanh/hub/audit"
	"github.com/diemdanh/diemdanh/hub/consent"
	"github.com/diemdanh/diemdanh/hub/enrol"
	"github.com/diemdanh/diemdanh/hub/facereview"
	"github.com/diemdanh/diemdanh/hub/facetemplates"
	"github.com/diemdanh/diemdanh/hub/gallerysrv"
	"github.com/diemdanh/diemdanh/hub/ingest"
	"github.com/diemdanh/diemdanh/hub/learn"
	"github.com/diemdanh/diemdanh/hub/roster"
	"github.com/diemdanh/diemdanh/hub/store"
	"github.com/diemdanh/diemdanh/models/faceengine"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/wire"
)

// Config configures the hub of a learning run.
type Config struct {
	// Dir holds the hub database and the gate's gallery file; the caller
	// creates and removes it.
	Dir string
	// SchoolID and GateID are those of the gate's messages.
	SchoolID, GateID string
	// Engine is the gate's engine: hub/enrol uses it for "not this
	// pupil", the teacher to describe the photos walked. Its model must be
	// the suite gallery's.
	Engine *faceengine.Engine
	// Suite is the suite's gallery (the descriptors the gate uses): the
	// pupils are enrolled from it, and the hub's first gallery must equal
	// it (CheckFirstGallery).
	Suite *wire.GalleryDoc
	// Pupils are the suite's pupils (names and sets); every one must be
	// in Suite.
	Pupils []Pupil
	// CalibrateFAR is the gate's own calibration target (pipeline
	// calibrate_far): the hub's served threshold must equal the gate's
	// calibration of the suite gallery at it.
	CalibrateFAR float64
	// Start is the simulated time of day 1's first frame; zero: 07:00
	// today in the school's zone.
	Start time.Time
	Log   *slog.Logger
}

// Pupil is one pupil of the suite.
type Pupil struct {
	ID   string // 12-digit personal ID, as in the suite's gallery
	Name string
	Set  string // the photo set, which is also the pupil's class
}

// Actors of the teacher's decisions, as the audit log records them.
const (
	AdminActor   = "admin:gatelearn"
	TeacherActor = "teacher:gatelearn"
)

// Hub is the hub of a learning run. Its methods are not for concurrent
// use.
type Hub struct {
	cfg   Config
	log   *slog.Logger
	clock *Clock

	db      *store.DB
	audit   *audit.Log
	roster  *roster.Store
	tpl     *facetemplates.Store
	consent *consent.Registry
	enrol   *enrol.Service
	review  *facereview.Store
	att     *attendance.Service
	learn   *learn.Confirmer
	auto    *learn.Updater
	ing     *ingest.Ingester
	fanned  *fanned
	events  int                // events stored so far
	stop    context.CancelFunc // ingest, attendance and automatic templates
	workers sync.WaitGroup
	galSrv  *gallerysrv.Server
	http    *http.Server
	httpErr chan error

	gate    *gallery.Store // the gate's copy of the gallery
	sync    *gallery.Sync
	classes map[string]string // set → class ID
	eyes    *eyes
	day     int
}

// Open builds the hub in cfg.Dir, enrols the suite's pupils and checks
// that the gallery the gate downloads equals the suite's
// (CheckFirstGallery). Close releases it.
func Open(ctx context.Context, cfg Config) (_ *Hub, err error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	h := &Hub{cfg: cfg, log: cfg.Log, classes: map[string]string{}, eyes: newEyes(cfg.Engine)}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.clock, err = newClock(cfg.Start); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			h.Close()
		}
	}()
	if err := h.openStores(ctx); err != nil {
		return nil, err
	}
	if err := h.setUp(ctx); err != nil {
		return nil, err
	}
	if err := h.serveGallery(); err != nil {
		return nil, err
	}
	if _, err := h.download(ctx); err != nil {
		return nil, err
	}
	if err := h.CheckFirstGallery(); err != nil {
		return nil, err
	}
	return h, nil
}

func (c Config) check() error {
	switch {
	case c.Dir == "":
		return errors.New("gatelearn: a folder is required")
	case !wire.ValidID(c.SchoolID) || !wire.ValidID(c.GateID):
		return fmt.Errorf("gatelearn: invalid school %q or gate %q", c.SchoolID, c.GateID)
	case c.Engine == nil:
		return errors.New("gatelearn: an engine is required")
	case c.Suite == nil || len(c.Pupils) == 0:
		return errors.New("gatelearn: the suite's gallery and pupils are required")
	case c.Engine.Model() != c.Suite.Model:
		return fmt.Errorf("gatelearn: the engine makes %s descriptors, the suite's gallery holds %s", c.Engine.Model(), c.Suite.Model)
	case !(c.CalibrateFAR > 0 && c.CalibrateFAR < 1):
		return fmt.Errorf("gatelearn: calibrate_far %g is not a rate", c.CalibrateFAR)
	}
	return nil
}

// openStores opens the database and wires the hub's components as hub/app
// does: templates tell the gallery server of changes, events and
// unrecognised faces arrive through ingest, attendance follows the events,
// hub/learn carries out the teacher's decisions and keeps the templates
// the gate offers with its events as automatic templates where its rules
// allow.
func (h *Hub) openStores(ctx context.Context) error {
	var err error
	now := h.clock.Now
	if h.db, err = store.Open(ctx, filepath.Join(h.cfg.Dir, "hub.db"), h.log); err != nil {
		return err
	}
	key := make([]byte, facetemplates.KeySize)
	if _, err := rand.Read(key); err != nil {
		return fmt.Errorf("gatelearn: key: %w", err)
	}
	if h.tpl, err = facetemplates.Open(h.db, key, h.log, now); err != nil {
		return err
	}
	h.tpl.SetModel(h.cfg.Suite.Model)
	h.audit = audit.New(h.db, h.log, now)
	h.roster = roster.New(h.db, h.log, now)
	h.consent = consent.New(h.db, h.tpl, h.audit, h.log, now)
	if h.enrol, err = enrol.New(h.db, h.cfg.Engine, h.tpl, h.consent, h.audit, enrol.DefaultConfig(), h.log, now); err != nil {
		return err
	}
	if h.review, err = facereview.New(h.db, key, h.audit, facereview.Default(), h.log, now); err != nil {
		return err
	}
	h.att = attendance.New(h.db, attendance.Default(), h.log, now)
	guard := &learn.Guard{SameMax: sameMax, MinMargin: learn.DefaultGuardMargin}
	if h.learn, err = learn.NewConfirmer(learn.ConfirmDeps{Review: h.review, Attendance: h.att, Templates: h.tpl,
		Audit: h.audit, Log: h.log, Guard: guard}); err != nil {
		return err
	}
	if h.auto, err = learn.NewUpdater(learn.DefaultAutomaticConfig(), learn.AutomaticDeps{DB: h.db, Templates: h.tpl,
		VoteCap: voteCap, Log: h.log, Now: now}); err != nil {
		return err
	}
	if h.ing, err = ingest.New(h.db, ingest.Default(), h.log, now); err != nil {
		return err
	}
	h.ing.AddTopic(wire.TopicKindUnrecognised, h.review)
	h.fanned = newFanned()
	for _, l := range []ingest.Listener{h.att, h.auto, h.fanned} { // fanned last: it sees an event after the others
		h.ing.AddListener(l)
	}
	wctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	h.stop = stop
	h.ing.Start(wctx)
	h.goWorker("attendance", func() error { return h.att.Run(wctx) })
	h.goWorker("automatic templates", func() error { return h.auto.Run(wctx) })
	h.galSrv = gallerysrv.New(h.db, h.tpl, nil, gallerysrv.Default(), h.log, now)
	h.roster.Subscribe(h.galSrv.Changed)
	h.tpl.Subscribe(func(school string, _ int64) { h.galSrv.Changed(ctx, school) })
	return nil
}

// goWorker runs a background worker of the hub until Close.
func (h *Hub) goWorker(name string, run func() error) {
	h.workers.Add(1)
	go func() {
		defer h.workers.Done()
		if err := run(); err != nil {
			h.log.Warn("gatelearn: worker stopped", "worker", name, "err", err)
		}
	}()
}

// voteCap is the measured vote cap of model's embedder: the automatic
// templates' drift guard, as hub/app passes it.
func voteCap(m match.ModelID) (float64, bool) {
	p, ok := faceengine.ProfileOf(m)
	return p.VoteCap, ok
}

// sameMax is the same-person limit of model's embedder: the teacher
// templates' guard, as hub/app passes it.
func sameMax(m match.ModelID) (float64, bool) {
	p, ok := faceengine.ProfileOf(m)
	return p.SameMax, ok
}

// serveGallery serves the gallery server's routes on 127.0.0.1:0 and
// points the gate's sync at it with the gate's credentials.
func (h *Hub) serveGallery() error {
	creds, err := h.roster.CreateGate(roster.WithActor(context.Background(), AdminActor, ""),
		roster.Gate{ID: h.cfg.GateID, SchoolID: h.cfg.SchoolID, Name: "Cổng chính"})
	if err != nil {
		return fmt.Errorf("gatelearn: gate: %w", err)
	}
	a := api.NewServer(h.log, h.clock.Now, nil)
	h.galSrv.Routes(a.V1)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("gatelearn: listen: %w", err)
	}
	h.http = &http.Server{Handler: a.Engine, ReadHeaderTimeout: 10 * time.Second}
	h.httpErr = make(chan error, 1)
	go func() { h.httpErr <- h.http.Serve(l) }()
	if h.gate, err = gallery.NewStore(filepath.Join(h.cfg.Dir, "gate-gallery.json"), h.log); err != nil {
		return err
	}
	sc := gallery.DefaultSyncConfig()
	sc.HubURL, sc.GateID, sc.Username, sc.Password = "http://"+l.Addr().String(), h.cfg.GateID, creds.Username, creds.Password
	h.sync, err = gallery.NewSync(sc, h.gate, nil, h.log, h.clock.Now)
	return err
}

// download fetches the gallery as the gate does; changed is whether a new
// version arrived.
func (h *Hub) download(ctx context.Context) (changed bool, err error) {
	// A removal is published before it is calibrated (hub/gallerysrv):
	// the next day's gate holds the calibrated gallery, as a gate does
	// once the night's calibration is done.
	if _, err := h.galSrv.Settle(ctx, h.cfg.SchoolID); err != nil {
		return false, fmt.Errorf("gatelearn: the calibrated gallery: %w", err)
	}
	if changed, err = h.sync.SyncOnce(ctx); err != nil {
		return false, fmt.Errorf("gatelearn: the gate's gallery download: %w", err)
	}
	return changed, nil
}

// Gallery is the gallery the gate holds: what it downloaded last.
func (h *Hub) Gallery() (*wire.GalleryDoc, *match.Gallery) { return h.gate.Current() }

// Now is the hub's (and the gate's) simulated clock: the current day's
// morning, running at the real pace.
func (h *Hub) Now() time.Time { return h.clock.Now() }

// Close stops the hub's workers and closes its database (the folder is
// the caller's).
func (h *Hub) Close() {
	if h.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = h.http.Shutdown(ctx)
		cancel()
		<-h.httpErr
	}
	if h.ing != nil {
		h.ing.Close()
	}
	if h.stop != nil {
		h.stop()
		h.workers.Wait()
	}
	if h.db != nil {
		h.db.Close()
	}
	h.eyes.forget()
}

// Clock is the simulated clock of a learning run: day d starts at Start
// plus d-1 days and runs at the real pace, so the gate's capture times,
// the hub's ingest checks, consent dates, template expiry and "once a
// day" rules all see school days.
type Clock struct {
	mu        sync.Mutex
	start     time.Time // day 1's start
	dayStart  time.Time // the current day's start
	realStart time.Time // when the current day started, real time
}

func newClock(start time.Time) (*Clock, error) {
	if start.IsZero() {
		loc, err := time.LoadLocation("Asia/Ho_Chi_Minh")
		if err != nil {
			return nil, fmt.Errorf("gatelearn: %w", err)
		}
		y, m, d := time.Now().In(loc).Date()
		start = time.Date(y, m, d, 7, 0, 0, 0, loc)
	}
	return &Clock{start: start, dayStart: start.Add(-12 * time.Hour), realStart: time.Now()}, nil
}

// Now is the simulated time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dayStart.Add(time.Since(c.realStart))
}

// setDay starts day d (1-based).
func (c *Clock) setDay(d int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dayStart, c.realStart = c.start.AddDate(0, 0, d-1), time.Now()
}

// dayStartMilli is the current day's start, Unix ms.
func (c *Clock) dayStartMilli() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dayStart.UnixMilli()
}

// fanned counts the stored events ingest handed to its listeners. It is
// the last listener: once it has counted an event, every listener before
// it has been told (ingest tells them in order, on one goroutine).
type fanned struct {
	mu      sync.Mutex
	n       int
	changed chan struct{} // closed and replaced at each event
}

func newFanned() *fanned { return &fanned{changed: make(chan struct{})} }

// EventStored implements ingest.Listener.
func (f *fanned) EventStored(context.Context, ingest.StoredEvent) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	close(f.changed)
	f.changed = make(chan struct{})
}

// wait returns once n events have been counted.
func (f *fanned) wait(ctx context.Context, n int) error {
	for {
		f.mu.Lock()
		got, ch := f.n, f.changed
		f.mu.Unlock()
		if got >= n {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("gatelearn: %d of %d stored events reached the listeners: %w", got, n, ctx.Err())
		}
	}
}
