// Package modeltrial is "try before you switch": it runs a school's kept
// enrolment photos through a candidate face model and through the hub's
// current one, each in its own engine, and reports side by side what
// `edge eval` reports (models/evalmetrics): rank-1 by leave-one-out,
// visitor acceptance at 95 % genuine acceptance (each photo probes a
// gallery without its own pupil: the school's own pupils are the
// visitors), failure to enrol, the expected FAR and FRR at the calibrated
// point (match.CalibrateThreshold) and the time per photo on this
// machine. A trial runs in the background with a bounded worker, reports
// its progress and can be cancelled; a switch is one audited action that
// sets the hub's model, re-embeds the kept photos and publishes the new
// gallery (Models.Switch, hub/enrol).
//
// The package does not link the face engine: engines come from Models.
package modeltrial

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/diemdanh/diemdanh/hub/facetemplates"
	"github.com/diemdanh/diemdanh/models/errkind"
	"github.com/diemdanh/diemdanh/models/evalmetrics"
	"github.com/diemdanh/diemdanh/models/match"
)

// Genuine95 is the genuine acceptance at which visitor acceptance is
// reported, as `edge eval` does.
const Genuine95 = 0.95

// Column is one model's figures on the school's kept photos.
type Column struct {
	Candidate string `json:"candidate"` // the name the admin picks
	Model     string `json:"model"`     // name@version
	Photos    int    `json:"photos"`
	Pupils    int    `json:"pupils"` // pupils with at least one described photo
	// FTE: photos in which the model found no usable face (none, or
	// several and match.DefaultQualityPolicy picks none).
	FTE   evalmetrics.Rate `json:"failure_to_enrol"`
	Rank1 evalmetrics.Rate `json:"rank1_loo"`
	// Genuine95 is the threshold of 95 % genuine acceptance (null when
	// rank-1 stays under 95 %) and VisitorAt95 the visitor acceptance there.
	Genuine95   evalmetrics.Num  `json:"genuine95_threshold"`
	VisitorAt95 evalmetrics.Rate `json:"visitor_accept_at_genuine95"`
	// Calibrated is false when fewer than 2 pupils were described.
	Calibrated  bool              `json:"calibrated"`
	Calibration match.Calibration `json:"calibration"`
	MsPerPhoto  float64           `json:"ms_per_photo"`
}

// accumulator collects one model's descriptors as the photos are run.
type accumulator struct {
	candidate string
	model     match.ModelID
	samples   []evalmetrics.Sample
	photos    int
	fte       int
	elapsed   time.Duration
}

// add runs one photo through emb and keeps its face's descriptor. An
// engine error that is about the engine (a missing or corrupt model, a
// closed engine, a cancelled context) ends the trial; any other failure
// counts as a failure to enrol.
func (a *accumulator) add(ctx context.Context, emb facetemplates.Embedder, pupil string, jpg []byte) error {
	start := time.Now()
	faces, err := emb.Recognize(ctx, jpg)
	a.elapsed += time.Since(start)
	a.photos++
	if err != nil {
		if fatal(ctx, err) {
			return fmt.Errorf("modeltrial: %s: %w", a.model, err)
		}
		a.fte++
		return nil
	}
	f, ok := facetemplates.PickFace(faces)
	if !ok {
		a.fte++
		return nil
	}
	a.samples = append(a.samples, evalmetrics.Sample{Identity: pupil, Desc: f.Descriptor})
	return nil
}

func fatal(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return true
	}
	var ek *errkind.Error
	if !errors.As(err, &ek) {
		return true
	}
	return ek.Kind == errkind.ModelMissing || ek.Kind == errkind.ModelCorrupt || ek.Kind == errkind.Closed
}

// column computes the figures from what was collected.
func (a *accumulator) column(targetFAR float64) Column {
	c := Column{Candidate: a.candidate, Model: a.model.String(), Photos: a.photos, FTE: evalmetrics.NewRate(a.fte, a.photos),
		Genuine95: evalmetrics.Num(math.NaN())}
	if a.photos > 0 {
		c.MsPerPhoto = math.Round(10*float64(a.elapsed.Microseconds())/1000/float64(a.photos)) / 10
	}
	pupils := map[string]bool{}
	g := match.NewGallery(1, a.model)
	for _, s := range a.samples {
		pupils[s.Identity] = true
		if err := g.Add(s.Identity, s.Desc); err != nil {
			continue // a descriptor of another length: not comparable
		}
	}
	c.Pupils = len(pupils)
	_, probes := evalmetrics.Analyse(a.samples)
	c.Rank1 = evalmetrics.Rank1(probes)
	t95 := evalmetrics.ThresholdForGenuine(probes, Genuine95, 0)
	c.Genuine95 = evalmetrics.Num(t95)
	c.VisitorAt95 = evalmetrics.NewRate(0, 0) // unreachable: no such figure
	if !math.IsNaN(t95) {
		c.VisitorAt95 = evalmetrics.OpenSetAt(probes, t95, 0).VisitorAccept
	}
	if cal, err := match.CalibrateThreshold(g, targetFAR); err == nil {
		c.Calibrated, c.Calibration = true, cal
	}
	return c
}
