// Package gallerysrv serves each school's face gallery to its
// authenticated gates: GET /api/v1/gates/{gate_id}/gallery with HTTP basic
// auth (the gate's device username and password, bcrypt-checked), an ETag
// "v<version>" and If-None-Match → 304. The body is a wire.GalleryDoc of
// every active pupil's descriptors (active, not on manual attendance, with
// templates), read through a TemplateSource (hub/facetemplates).
//
// The version is a per-school counter in gallery_served that bumps whenever
// the digest of the served descriptor set changes (a pupil deactivated or
// removed, a template added or deleted). Changes are noticed at once when a
// component calls Changed (the roster and the template store do), and by a
// periodic digest check otherwise. Each new version is announced on the
// retained MQTT topic wire.GalleryTopic(school) through an Announcer
// (the hub's broker), so online gates fetch it within seconds.
//
// Each served gallery carries the school's calibrated recognition
// operating point (calibrate.go): the threshold match.CalibrateThreshold
// derives from exactly the served descriptors at the configured visitor
// false-accept rate, computed once per descriptor set, persisted with its
// history and shown to admins (GET /schools/{school_id}/operating-point,
// the /admin/operating-point page); an admin override in config wins. A
// removal (a withdrawal of consent) is published at once with the previous
// threshold and calibrated after (calibrate_after.go).
package gallerysrv

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/diemdanh/diemdanh/hub/api"
	"github.com/diemdanh/diemdanh/hub/audit"
	"github.com/diemdanh/diemdanh/hub/loginlock"
	"github.com/diemdanh/diemdanh/hub/store"
	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/wire"
)

// TemplateSource gives the descriptors gates must hold: for a school, the
// current model and, per pupil ID, the active templates of active pupils
// not on manual attendance. hub/facetemplates.Store implements it.
type TemplateSource interface {
	ActiveDescriptors(ctx context.Context, schoolID string) (model match.ModelID, byPupil map[string][]match.Descriptor, err error)
}

// Announcer publishes a school's retained gallery announcement on
// wire.GalleryTopic(school) (hub/broker implements it in both modes).
type Announcer interface {
	Announce(ctx context.Context, schoolID string, a wire.GalleryAnnounce) error
}

// Config of the gallery server.
type Config struct {
	// CheckInterval is the periodic digest check that catches changes no
	// component reported.
	CheckInterval time.Duration `yaml:"check_interval"`
	// TargetFAR is the visitor false-accept rate (a person who is not
	// enrolled taken for some pupil) the served threshold is calibrated
	// for, per school gallery (see calibrate.go); 0 means DefaultTargetFAR.
	TargetFAR float64 `yaml:"target_far"`
	// Threshold, when set, is an admin override sent to gates instead of
	// the calibrated threshold (real L2); 0 = calibrate. MinMargin, when
	// set, is sent to gates as the margin; 0 keeps each gate's own.
	Threshold float64 `yaml:"threshold"`
	MinMargin float64 `yaml:"min_margin"`
}

// Default returns the defaults.
func Default() Config { return Config{CheckInterval: 5 * time.Second, TargetFAR: DefaultTargetFAR} }

// Validate checks the config.
func (c Config) Validate(prefix string) error {
	if c.CheckInterval < 500*time.Millisecond || c.CheckInterval > time.Hour {
		return conf.Fieldf(prefix+".check_interval", "must be 500ms..1h, got %s", c.CheckInterval)
	}
	if c.TargetFAR != 0 && !(c.TargetFAR > 0 && c.TargetFAR < 1) {
		return conf.Fieldf(prefix+".target_far", "must be a rate strictly between 0 and 1, got %g", c.TargetFAR)
	}
	if c.Threshold < 0 || c.Threshold > 4 {
		return conf.Fieldf(prefix+".threshold", "must be 0..4 (real L2), got %g", c.Threshold)
	}
	if c.MinMargin < 0 || c.MinMargin > 4 {
		return conf.Fieldf(prefix+".min_margin", "must be 0..4, got %g", c.MinMargin)
	}
	return nil
}

type entry struct {
	version int64
	digest  string
	body    []byte
	people  int
	cand    *candidates       // candidate restriction (candidates.go)
	perGate map[string][]byte // gate → its restricted body (guarded by Server.mu)
	// provisional: published before its calibration (calibrate_after.go);
	// served: the descriptors it carries, as capSet returns them.
	provisional bool
	served      map[string][]match.Descriptor
}

// Server builds, versions, serves and announces galleries.
type Server struct {
	db  *store.DB
	src TemplateSource
	cfg Config
	log *slog.Logger
	now func() time.Time

	mu    sync.Mutex
	ann   Announcer
	cache map[string]*entry
	dirty map[string]bool
	kick  chan struct{}
	auth  map[string]authEntry
	lock  *api.Lockout // per gate username (http.go authenticate), kept in login_lockouts
	build sync.Mutex   // one Refresh at a time
	// points: the operating point of each served gallery, by
	// pointKey(school, gate) (calibrate.go).
	points map[string]*OperatingPoint
	calib  calibState
	// inlineMax: the largest gallery (descriptors) whose additions are
	// calibrated before publication (DefaultInlineCalibrationMax).
	inlineMax int
}

// New returns the server. ann may be nil and set later with SetAnnouncer.
func New(db *store.DB, src TemplateSource, ann Announcer, cfg Config, log *slog.Logger, now func() time.Time) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	s := &Server{db: db, src: src, ann: ann, cfg: cfg, log: log, now: now,
		cache: map[string]*entry{}, dirty: map[string]bool{}, kick: make(chan struct{}, 1), auth: map[string]authEntry{},
		points: map[string]*OperatingPoint{}, lock: api.NewStoredLockout(api.DefaultLockout(), now, loginlock.New(db, loginlock.ScopeGalleryGate)), inlineMax: DefaultInlineCalibrationMax}
	s.calib.audit = audit.New(db, log, now)
	return s
}

// SetAnnouncer sets the MQTT announcer (once the broker exists) and
// announces every school's current version on it in the background, so the
// retained message exists even if nothing changes afterwards.
func (s *Server) SetAnnouncer(a Announcer) {
	s.mu.Lock()
	s.ann = a
	s.mu.Unlock()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.AnnounceAll(ctx); err != nil {
			s.log.Warn("gallery announce", "err", err)
		}
	}()
}

// AnnounceAll (re)announces the current version of every school with gates.
func (s *Server) AnnounceAll(ctx context.Context) error {
	schools, err := s.schools(ctx)
	if err != nil {
		return err
	}
	for _, sc := range schools {
		v, changed, err := s.Refresh(ctx, sc)
		if err != nil {
			return err
		}
		if !changed { // Refresh announced it already when it changed
			model, _, err := s.src.ActiveDescriptors(ctx, sc)
			if err != nil {
				return err
			}
			s.announce(sc, v, model)
		}
	}
	return nil
}

// Changed tells the server that school's gallery may have changed; the
// worker rebuilds and announces it promptly, and the next request serves
// the new version. Safe to call from any goroutine; never blocks.
func (s *Server) Changed(_ context.Context, school string) {
	s.mu.Lock()
	s.dirty[school] = true
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// otherModels is implemented by hub/facetemplates.Store: active templates of
// models other than the served one.
type otherModels interface {
	OtherModels(ctx context.Context, schoolID string) (map[string]int, error)
}

// warnOtherModels logs templates the gallery leaves out because another
// embedder made them (they are kept, never deleted here): after a model
// switch, re-embed them (POST /api/v1/templates/reembed) or re-enrol.
func (s *Server) warnOtherModels(ctx context.Context, school string, served match.ModelID) {
	om, ok := s.src.(otherModels)
	if !ok {
		return
	}
	counts, err := om.OtherModels(ctx, school)
	if err != nil {
		s.log.Warn("gallery: counting other models' templates", "school", school, "err", err)
		return
	}
	for m, n := range counts {
		s.log.Warn("gallery: templates of another embedder are not served; re-embed or re-enrol", "school", school,
			"served_model", served.String(), "model", m, "templates", n)
	}
}

// Digest is the SHA-256 of the model and the sorted descriptor set.
func Digest(model match.ModelID, byPupil map[string][]match.Descriptor) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n", model.String())
	ids := sortedIDs(byPupil)
	for _, id := range ids {
		fmt.Fprintf(h, "%s:%d\n", id, len(byPupil[id]))
		for _, d := range byPupil[id] {
			h.Write(d.Bytes())
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

func sortedIDs(m map[string][]match.Descriptor) []string {
	ids := make([]string, 0, len(m))
	for id, ds := range m {
		if len(ds) > 0 {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

// Refresh rebuilds school's gallery; when its digest differs from the last
// served one, the version bumps (persisted) and the new version is
// announced. It returns the current version and whether it changed. A
// change is published with its calibrated operating point when that is
// known or cheap; otherwise (a removal, a large gallery) at once with the
// previous threshold, calibrated in the background and published again
// (calibrate_after.go).
func (s *Server) Refresh(ctx context.Context, school string) (int64, bool, error) {
	s.build.Lock()
	defer s.build.Unlock()
	s.mu.Lock()
	delete(s.dirty, school)
	cur := s.cache[school]
	s.mu.Unlock()
	retry := func(err error) (int64, bool, error) {
		s.mu.Lock()
		s.dirty[school] = true // retried by the next request or tick, without spinning
		s.mu.Unlock()
		return 0, false, err
	}
	model, byPupil, err := s.src.ActiveDescriptors(ctx, school)
	if err != nil {
		return retry(fmt.Errorf("gallery %s: templates: %w", school, err))
	}
	cand, err := s.loadCandidates(ctx, school, byPupil)
	if err != nil {
		return retry(err)
	}
	plan, err := s.planPoint(ctx, school, "", model, byPupil)
	if err != nil {
		return retry(err)
	}
	provisional := plan.known == nil && plan.prev != nil && (plan.templates > s.inlineMax || removedFrom(cur, plan.capped))
	digest := cand.mix(Digest(model, byPupil))
	if provisional {
		digest = pendingMix(digest)
	}
	version, changed, err := s.bumpVersion(ctx, school, digest, len(byPupil), model)
	if err != nil {
		return 0, false, err
	}
	if cur == nil || cur.digest != digest || cur.version != version {
		op, err := s.settlePoint(ctx, plan, version, provisional)
		if err != nil {
			return 0, false, err
		}
		body, n, err := s.encode(school, version, model, byPupil, op)
		if err != nil {
			return 0, false, err
		}
		s.mu.Lock()
		s.cache[school] = &entry{version: version, digest: digest, body: body, people: n, cand: cand,
			provisional: provisional, served: plan.capped}
		s.mu.Unlock()
	}
	if changed {
		s.log.Info("gallery version", "school", school, "version", version, "people", len(byPupil), "calibration_pending", provisional)
		s.announce(school, version, model)
	}
	if provisional {
		s.scheduleCalibration(school, model, plan.capped, cand)
	}
	return version, changed, nil
}

// bumpVersion returns school's served version, bumped and persisted when
// digest differs from the served one.
func (s *Server) bumpVersion(ctx context.Context, school, digest string, people int, model match.ModelID) (int64, bool, error) {
	var version int64
	var old string
	err := s.db.R.QueryRowContext(ctx, `SELECT version, digest FROM gallery_served WHERE school_id = ?`, school).Scan(&version, &old)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, false, fmt.Errorf("gallery %s: version: %w", school, err)
	}
	if old == digest {
		return version, false, nil
	}
	s.warnOtherModels(ctx, school, model)
	version++
	if _, err := s.db.W.ExecContext(ctx, `INSERT INTO gallery_served(school_id, version, digest, people, updated_at) VALUES (?,?,?,?,?)
		ON CONFLICT(school_id) DO UPDATE SET version=excluded.version, digest=excluded.digest, people=excluded.people, updated_at=excluded.updated_at`,
		school, version, digest, people, s.now().UnixMilli()); err != nil {
		return 0, false, fmt.Errorf("gallery %s: version: %w", school, err)
	}
	return version, true, nil
}

func (s *Server) encode(school string, version int64, model match.ModelID, byPupil map[string][]match.Descriptor, op *OperatingPoint) ([]byte, int, error) {
	doc := &wire.GalleryDoc{Format: wire.GalleryFormat, SchoolID: school, Version: version, Model: model,
		People: []wire.GalleryPerson{}, Threshold: op.ServedThreshold, MinMargin: op.ServedMinMargin}
	for _, id := range sortedIDs(byPupil) {
		ds := byPupil[id]
		if len(ds) > wire.MaxDescriptorsPerPerson {
			ds = ds[:wire.MaxDescriptorsPerPerson]
		}
		p := wire.GalleryPerson{StudentID: id}
		for _, d := range ds {
			p.Descriptors = append(p.Descriptors, d.MarshalBase64())
		}
		doc.People = append(doc.People, p)
	}
	b, err := doc.Encode()
	if err != nil {
		return nil, 0, err
	}
	// The edge decodes strictly: never serve what it would refuse.
	if _, _, err := wire.DecodeGallery(b); err != nil {
		return nil, 0, fmt.Errorf("gallery %s: built an invalid document: %w", school, err)
	}
	return b, len(doc.People), nil
}

// AnnounceURL is the gallery path announced to gates ({gate_id} is theirs).
const AnnounceURL = "/api/v1/gates/{gate_id}/gallery"

func (s *Server) announce(school string, version int64, model match.ModelID) {
	s.mu.Lock()
	ann := s.ann
	s.mu.Unlock()
	if ann == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	a := wire.GalleryAnnounce{Schema: wire.SchemaVersion, Version: version, URL: AnnounceURL, Model: model}
	if err := ann.Announce(ctx, school, a); err != nil {
		s.log.Warn("gallery announce failed", "school", school, "version", version, "err", err)
	}
}

// Current returns school's served version, ETag and body, rebuilding it
// first when it is unknown or marked changed.
func (s *Server) Current(ctx context.Context, school string) (version int64, etag string, body []byte, err error) {
	s.mu.Lock()
	e, dirty := s.cache[school], s.dirty[school]
	s.mu.Unlock()
	if e == nil || dirty {
		if _, _, err := s.Refresh(ctx, school); err != nil {
			return 0, "", nil, err
		}
		s.mu.Lock()
		e = s.cache[school]
		s.mu.Unlock()
	}
	return e.version, ETag(e.version), e.body, nil
}

// ETag is the entity tag of a version: "v<version>".
func ETag(v int64) string { return `"v` + strconv.FormatInt(v, 10) + `"` }

// Run rebuilds changed schools on Changed and checks every school with
// gates every CheckInterval, announcing each school's current version once
// at start (the retained message then always holds the latest). It
// returns when ctx ends.
func (s *Server) Run(ctx context.Context) error {
	t := time.NewTicker(s.cfg.CheckInterval)
	defer t.Stop()
	failing := false
	report := func(err error) {
		switch {
		case err != nil && !failing && ctx.Err() == nil:
			s.log.Warn("gallery refresh failing", "err", err)
			failing = true
		case err == nil && failing:
			s.log.Info("gallery refresh recovered")
			failing = false
		}
	}
	report(s.AnnounceAll(ctx))
	for {
		var schools []string
		var err error
		select {
		case <-ctx.Done():
			return nil
		case <-s.kick:
			s.mu.Lock()
			for sc := range s.dirty {
				schools = append(schools, sc)
			}
			s.mu.Unlock()
		case <-t.C:
			schools, err = s.schools(ctx)
		}
		for _, sc := range schools {
			if err != nil {
				break
			}
			_, _, err = s.Refresh(ctx, sc)
		}
		report(err)
	}
}

// schools with at least one gate (only they are served).
func (s *Server) schools(ctx context.Context) ([]string, error) {
	out, err := store.Strings(ctx, s.db.R, `SELECT DISTINCT school_id FROM gates WHERE active = 1`)
	if err != nil {
		return nil, fmt.Errorf("gallery: schools: %w", err)
	}
	return out, nil
}

// authEntry caches a successful bcrypt check: a gate's password hash and
// the SHA-256 of the password that matched it.
type authEntry struct {
	pwHash string
	sum    [32]byte
}

func (s *Server) cachedOK(user, pwHash string, sum [32]byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.auth[user]
	return ok && e.pwHash == pwHash && subtle.ConstantTimeCompare(e.sum[:], sum[:]) == 1
}

func (s *Server) remember(user, pwHash string, sum [32]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.auth) > 10000 {
		s.auth = map[string]authEntry{}
	}
	s.auth[user] = authEntry{pwHash, sum}
}
