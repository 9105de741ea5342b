package gallerysrv

// Calibrated operating point. Whenever a school's served gallery changes,
// the server derives the recognition threshold from the gallery's own
// impostor distances (match.CalibrateThreshold at the configured visitor
// false-accept rate) over exactly the descriptors the document carries, and
// puts it in the document, so every gate of the school decides with the
// same calibrated threshold. An admin override (config threshold > 0)
// wins. Each computed point is persisted in gallery_operating_points (the
// history the admin page and GET /schools/{id}/operating-point show) and a
// change is written to the audit log. Calibration is O(n²) in descriptors
// (about 26 s for 5,000 pupils of 3 templates on 2 cores): it runs once
// per descriptor set, embedder and target FAR (a persisted point is reused
// after a restart). It runs before the publication only for a school's
// first gallery and for additions to a small one; a change that removes
// anything (a withdrawal, a deactivation) or any change to a large gallery
// is published at once with the previous threshold and calibrated after
// (calibrate_after.go), so an erasure never waits for a calibration.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/diemdanh/diemdanh/hub/audit"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/wire"
)

// ActionOperatingPoint is the audit action of a changed operating point.
const ActionOperatingPoint = "operating_point"

// Reasons a gallery was not calibrated (OperatingPoint.Reason; the admin
// page translates them).
const (
	ReasonTooFewIdentities = "too_few_identities" // fewer than 2 pupils with templates
	ReasonFailed           = "calibration_failed" // match refused the gallery
	ReasonZeroThreshold    = "zero_threshold"     // the quantile came out at 0
	// ReasonPending: the gallery was published at once with the previous
	// point's threshold (Threshold holds it) and is being calibrated.
	ReasonPending = "calibration_pending"
)

// DefaultTargetFAR is the default visitor false-accept rate: the chance
// that a person who is not enrolled is taken for some pupil.
const DefaultTargetFAR = 0.01

// OperatingPoint is one calibrated (or not calibratable) operating point of
// a served gallery and what the gallery document carried.
type OperatingPoint struct {
	ID             int64  `json:"id"`
	SchoolID       string `json:"school_id"`
	GateID         string `json:"gate_id,omitempty"` // "" = the school's whole gallery
	GalleryVersion int64  `json:"gallery_version"`
	Embedder       string `json:"embedder"` // model name@version
	Pupils         int    `json:"pupils"`
	Templates      int    `json:"templates"`
	// Calibrated is false when the gallery could not be calibrated
	// (Reason says why; Threshold is then 0) or is not calibrated yet
	// (ReasonPending; Threshold is then the previous point's).
	Calibrated     bool    `json:"calibrated"`
	Reason         string  `json:"reason,omitempty"`
	Threshold      float64 `json:"threshold"`
	TargetFAR      float64 `json:"target_far"`
	PerIdentityFAR float64 `json:"per_identity_far"`
	ExpectedFAR    float64 `json:"expected_far"`
	// ExpectedFRR is the single-image false-reject rate; -1 when no pupil
	// has two templates (not measurable).
	ExpectedFRR    float64 `json:"expected_frr"`
	Identities     int     `json:"identities"`
	ImpostorScores int     `json:"impostor_scores"`
	Method         string  `json:"method,omitempty"` // empirical | gaussian-tail
	// Served values: what the gallery document carried (0 = each gate's own).
	ServedThreshold float64 `json:"served_threshold"`
	ServedMinMargin float64 `json:"served_min_margin"`
	Override        bool    `json:"override"`    // an admin override replaced the calibrated threshold
	ComputedAt      int64   `json:"computed_at"` // Unix ms, hub clock

	digest string
}

// calibState counts computed calibrations (tests check the cache) and
// runs the calibrations that follow a provisional publication
// (calibrate_after.go).
type calibState struct {
	computed atomic.Int64
	audit    *audit.Log
	mu       sync.Mutex
	results  map[string]*OperatingPoint // calibKey → calibration fields, computed in the background
	order    []string                   // results' keys, oldest first (bounded by maxResults)
	wanted   map[string]*calibJob       // school → the latest descriptors to calibrate
	running  map[string]bool            // school → a calibration goroutine runs
	started  func(school string)        // tests: called as a background calibration starts
}

// Calibrations returns how many calibrations this server computed (cache
// and persisted points are not counted).
func (s *Server) Calibrations() int64 { return s.calib.computed.Load() }

func pointKey(school, gate string) string { return school + "/" + gate }

// operatingPoint returns the operating point for the descriptors about to
// be served to school (gate "" = every gate of it) at version, calibrated
// inline when no calibration of exactly these descriptors is known (see
// planPoint and settlePoint). Callers hold s.build.
func (s *Server) operatingPoint(ctx context.Context, school, gate string, version int64, model match.ModelID, byPupil map[string][]match.Descriptor) (*OperatingPoint, error) {
	plan, err := s.planPoint(ctx, school, gate, model, byPupil)
	if err != nil {
		return nil, err
	}
	return s.settlePoint(ctx, plan, version, false)
}

// settlePoint returns plan's point at version: the known calibration of
// its descriptors, else (provisional) the previous point's threshold with
// ReasonPending, else a calibration computed now. A new point is persisted,
// and audited when what gates are sent changed (a provisional point is not
// audited: its calibrated successor is). Callers hold s.build.
func (s *Server) settlePoint(ctx context.Context, plan *pointPlan, version int64, provisional bool) (*OperatingPoint, error) {
	servedTh, servedMM, override := s.served(0)
	prev, known := plan.prev, plan.known
	if known != nil && known.GalleryVersion == version {
		servedTh, servedMM, override = s.served(known.Threshold)
		if known.ServedThreshold == servedTh && known.ServedMinMargin == servedMM && known.Override == override {
			s.mu.Lock()
			s.points[plan.key] = known
			s.mu.Unlock()
			return known, nil
		}
		// Same calibration, other served values (the override changed):
		// record it without recomputing.
	}
	p := OperatingPoint{SchoolID: plan.school, GateID: plan.gate, GalleryVersion: version, Embedder: plan.model.String(),
		Pupils: len(plan.capped), Templates: plan.templates, TargetFAR: plan.far, ExpectedFRR: -1, digest: plan.digest}
	switch {
	case known != nil:
		p.setCalibration(known)
	case provisional:
		p.Reason = ReasonPending
		if prev != nil {
			p.Threshold = prev.Threshold
		}
	default:
		s.calibrate(&p, plan.model, plan.capped)
	}
	p.ServedThreshold, p.ServedMinMargin, p.Override = s.served(p.Threshold)
	p.ComputedAt = s.now().UnixMilli()
	changed := p.Reason != ReasonPending && (prev == nil || prev.Threshold != p.Threshold || prev.ServedThreshold != p.ServedThreshold ||
		prev.ServedMinMargin != p.ServedMinMargin || prev.Override != p.Override || prev.Reason != p.Reason)
	if err := s.persistPoint(ctx, &p, prev, changed); err != nil {
		return nil, err
	}
	if changed {
		s.log.Info("operating point", "school", p.SchoolID, "gate", p.GateID, "version", version, "embedder", p.Embedder,
			"threshold", p.Threshold, "served", p.ServedThreshold, "override", p.Override, "target_far", p.TargetFAR,
			"expected_far", p.ExpectedFAR, "expected_frr", p.ExpectedFRR, "method", p.Method, "reason", p.Reason)
	}
	s.mu.Lock()
	s.points[plan.key] = &p
	s.mu.Unlock()
	return &p, nil
}

// persistPoint inserts p into gallery_operating_points and, when changed,
// writes the audit entry in the same transaction.
func (s *Server) persistPoint(ctx context.Context, p, prev *OperatingPoint, changed bool) error {
	err := s.db.Tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO gallery_operating_points(school_id, gate_id, gallery_version, digest, embedder,
			pupils, templates, target_far, threshold, per_identity_far, expected_far, expected_frr, identities, impostor_scores,
			method, reason, served_threshold, served_min_margin, override, computed_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
			p.SchoolID, p.GateID, p.GalleryVersion, p.digest, p.Embedder, p.Pupils, p.Templates, p.TargetFAR, p.Threshold,
			p.PerIdentityFAR, p.ExpectedFAR, p.ExpectedFRR, p.Identities, p.ImpostorScores, p.Method, p.Reason,
			p.ServedThreshold, p.ServedMinMargin, boolInt(p.Override), p.ComputedAt)
		if err != nil {
			return err
		}
		if p.ID, err = res.LastInsertId(); err != nil {
			return err
		}
		if !changed {
			return nil
		}
		subject := "school:" + p.SchoolID
		if p.GateID != "" {
			subject = "gate:" + p.GateID
		}
		detail := map[string]any{"gallery_version": p.GalleryVersion, "embedder": p.Embedder, "threshold": p.Threshold,
			"served_threshold": p.ServedThreshold, "served_min_margin": p.ServedMinMargin, "override": p.Override,
			"target_far": p.TargetFAR, "expected_far": p.ExpectedFAR, "expected_frr": p.ExpectedFRR, "method": p.Method,
			"pupils": p.Pupils, "templates": p.Templates, "reason": p.Reason}
		if prev != nil {
			detail["previous_threshold"], detail["previous_served_threshold"] = prev.Threshold, prev.ServedThreshold
		}
		return s.calib.audit.RecordTx(ctx, tx, "system", ActionOperatingPoint, subject, detail, "")
	})
	if err != nil {
		return fmt.Errorf("gallery %s: operating point: %w", p.SchoolID, err)
	}
	return nil
}

// gatePoint sets the operating point of a gate's own document (candidate
// restriction: only the pupils of its classes, see candidates.go): the
// calibration over exactly the descriptors in doc. When they are the
// school's whole gallery the school's point is used as is; otherwise the
// gate's point is computed once per version (and persisted with its gate
// ID). While the school's document is provisional (calibrate_after.go)
// a gate's point not yet calibrated in the background is provisional too.
// It must not be called while s.build is held.
func (s *Server) gatePoint(doc *wire.GalleryDoc, gate string, provisional bool) error {
	byPupil := make(map[string][]match.Descriptor, len(doc.People))
	for _, p := range doc.People {
		for _, b := range p.Descriptors {
			d, err := match.ParseDescriptorBase64(b)
			if err != nil {
				return fmt.Errorf("gallery: gate %s: %w", gate, err)
			}
			byPupil[p.StudentID] = append(byPupil[p.StudentID], d)
		}
	}
	s.mu.Lock()
	school := s.points[pointKey(doc.SchoolID, "")]
	s.mu.Unlock()
	if school != nil && school.GalleryVersion == doc.Version && school.Embedder == doc.Model.String() && school.digest == Digest(doc.Model, byPupil) {
		doc.Threshold, doc.MinMargin = school.ServedThreshold, school.ServedMinMargin
		return nil
	}
	s.build.Lock()
	defer s.build.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	plan, err := s.planPoint(ctx, doc.SchoolID, gate, doc.Model, byPupil)
	if err != nil {
		return err
	}
	p, err := s.settlePoint(ctx, plan, doc.Version, provisional)
	if err != nil {
		return err
	}
	doc.Threshold, doc.MinMargin = p.ServedThreshold, p.ServedMinMargin
	return nil
}

// calibrate fills p's calibration from the descriptors (counted).
func (s *Server) calibrate(p *OperatingPoint, model match.ModelID, byPupil map[string][]match.Descriptor) {
	if len(byPupil) < 2 {
		p.Reason = ReasonTooFewIdentities
		return
	}
	g := match.NewGallery(p.GalleryVersion, model)
	for _, id := range sortedIDs(byPupil) {
		for _, d := range byPupil[id] {
			if err := g.Add(id, d); err != nil {
				p.Reason = ReasonFailed
				s.log.Warn("operating point: gallery", "school", p.SchoolID, "err", err)
				return
			}
		}
	}
	s.calib.computed.Add(1)
	c, err := match.CalibrateThreshold(g, p.TargetFAR)
	if err != nil {
		p.Reason = ReasonFailed
		s.log.Warn("operating point: calibrate", "school", p.SchoolID, "err", err)
		return
	}
	p.PerIdentityFAR, p.Identities, p.ImpostorScores, p.Method = c.PerIdentityFAR, c.Identities, c.ImpostorScores, c.Method
	p.ExpectedFAR, p.ExpectedFRR = c.ExpectedFAR, c.ExpectedFRR
	if !(c.Threshold > 0) || c.Threshold > 4 || math.IsNaN(c.Threshold) {
		p.Reason = ReasonZeroThreshold
		return
	}
	p.Threshold, p.Calibrated = c.Threshold, true
}

// served returns what a document carries for a calibrated threshold: the
// admin override when set, else the calibration (0 = the gate's own).
func (s *Server) served(calibrated float64) (threshold, minMargin float64, override bool) {
	if s.cfg.Threshold > 0 {
		return s.cfg.Threshold, s.cfg.MinMargin, true
	}
	return calibrated, s.cfg.MinMargin, false
}

func (c Config) targetFAR() float64 {
	if c.TargetFAR == 0 {
		return DefaultTargetFAR
	}
	return c.TargetFAR
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

const pointCols = `id, school_id, gate_id, gallery_version, digest, embedder, pupils, templates, target_far, threshold,
	per_identity_far, expected_far, expected_frr, identities, impostor_scores, method, reason, served_threshold,
	served_min_margin, override, computed_at`

func scanPoint(sc interface{ Scan(...any) error }) (*OperatingPoint, error) {
	var p OperatingPoint
	var ov int
	err := sc.Scan(&p.ID, &p.SchoolID, &p.GateID, &p.GalleryVersion, &p.digest, &p.Embedder, &p.Pupils, &p.Templates,
		&p.TargetFAR, &p.Threshold, &p.PerIdentityFAR, &p.ExpectedFAR, &p.ExpectedFRR, &p.Identities, &p.ImpostorScores,
		&p.Method, &p.Reason, &p.ServedThreshold, &p.ServedMinMargin, &ov, &p.ComputedAt)
	if err != nil {
		return nil, err
	}
	p.Override = ov == 1
	p.Calibrated = p.Reason == "" && p.Threshold > 0
	return &p, nil
}

func (s *Server) latestPoint(ctx context.Context, school, gate string) (*OperatingPoint, error) {
	p, err := scanPoint(s.db.R.QueryRowContext(ctx, `SELECT `+pointCols+` FROM gallery_operating_points
		WHERE school_id = ? AND gate_id = ? ORDER BY id DESC LIMIT 1`, school, gate))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("gallery %s: operating point: %w", school, err)
	}
	return p, nil
}

// OperatingPointReport is a school's operating point as the admin API and
// page show it.
type OperatingPointReport struct {
	SchoolID string `json:"school_id"`
	// Configured values: the visitor false-accept rate calibration aims
	// at, the admin override (0 = none) and the margin sent to gates.
	TargetFAR         float64 `json:"target_far"`
	OverrideThreshold float64 `json:"override_threshold"`
	MinMargin         float64 `json:"min_margin"`
	// Served is what gates of the school are sent now.
	Served ServedValues `json:"served"`
	// Current is the point of the gallery served now (nil before the
	// school's first gallery); History the latest points, newest first
	// (Current included).
	Current *OperatingPoint  `json:"current"`
	History []OperatingPoint `json:"history"`
	// Gates are the latest points of gates served a candidate-restricted
	// gallery (their own calibration; gates served the whole gallery use
	// Current).
	Gates []OperatingPoint `json:"gates"`
}

// ServedValues are the operating values a gallery document carries.
type ServedValues struct {
	Threshold float64 `json:"threshold"`  // 0 = each gate's own
	MinMargin float64 `json:"min_margin"` // 0 = each gate's own
	Override  bool    `json:"override"`
}

// MaxHistory bounds OperatingPointReport.History.
const MaxHistory = 100

// OperatingPointReport builds school's report with up to history past
// points. It builds the school's gallery first when it was never built
// (and so calibrates it once). An unknown school is a not_found error.
func (s *Server) OperatingPointReport(ctx context.Context, school string, history int) (*OperatingPointReport, error) {
	var one int
	if err := s.db.R.QueryRowContext(ctx, `SELECT 1 FROM schools WHERE id = ?`, school).Scan(&one); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, errNotFound("school " + school + " not found")
		}
		return nil, fmt.Errorf("operating point: %w", err)
	}
	if _, _, _, err := s.Current(ctx, school); err != nil {
		return nil, err
	}
	if history < 1 {
		history = 1
	}
	if history > MaxHistory {
		history = MaxHistory
	}
	r := &OperatingPointReport{SchoolID: school, TargetFAR: s.cfg.targetFAR(), OverrideThreshold: s.cfg.Threshold,
		MinMargin: s.cfg.MinMargin, History: []OperatingPoint{}, Gates: []OperatingPoint{}}
	s.mu.Lock()
	if p := s.points[pointKey(school, "")]; p != nil {
		cp := *p
		r.Current = &cp
	}
	s.mu.Unlock()
	rows, err := s.db.R.QueryContext(ctx, `SELECT `+pointCols+` FROM gallery_operating_points
		WHERE school_id = ? AND gate_id = '' ORDER BY id DESC LIMIT ?`, school, history)
	if err != nil {
		return nil, fmt.Errorf("operating point: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		p, err := scanPoint(rows)
		if err != nil {
			return nil, fmt.Errorf("operating point: %w", err)
		}
		r.History = append(r.History, *p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("operating point: %w", err)
	}
	if r.Gates, err = s.gatePoints(ctx, school); err != nil {
		return nil, err
	}
	if r.Current == nil && len(r.History) > 0 {
		cp := r.History[0]
		r.Current = &cp
	}
	if r.Current != nil {
		r.Served = ServedValues{Threshold: r.Current.ServedThreshold, MinMargin: r.Current.ServedMinMargin, Override: r.Current.Override}
	} else {
		th, mm, ov := s.served(0)
		r.Served = ServedValues{Threshold: th, MinMargin: mm, Override: ov}
	}
	return r, nil
}

// gatePoints returns, for the school's current gallery version, the point
// of each active gate that was served its own candidate-restricted
// gallery (computed when the gate first fetched that version).
func (s *Server) gatePoints(ctx context.Context, school string) ([]OperatingPoint, error) {
	rows, err := s.db.R.QueryContext(ctx, `SELECT `+pointCols+` FROM gallery_operating_points
		WHERE id IN (SELECT MAX(o.id) FROM gallery_operating_points o JOIN gates g ON g.id = o.gate_id AND g.active = 1
			WHERE o.school_id = ? AND o.gate_id != '' AND o.gallery_version = (SELECT version FROM gallery_served WHERE school_id = ?)
			GROUP BY o.gate_id) ORDER BY gate_id`, school, school)
	if err != nil {
		return nil, fmt.Errorf("operating point: gates: %w", err)
	}
	defer rows.Close()
	out := []OperatingPoint{}
	for rows.Next() {
		p, err := scanPoint(rows)
		if err != nil {
			return nil, fmt.Errorf("operating point: gates: %w", err)
		}
		out = append(out, *p)
	}
	return out, rows.Err()
}
