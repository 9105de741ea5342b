package pipeline

import (
	"math"
	"testing"

	"github.com/diemdanh/diemdanh/models/faceengine"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/wire"
)

type docGallery struct {
	doc *wire.GalleryDoc
	g   *match.Gallery
}

func (d docGallery) Current() (*wire.GalleryDoc, *match.Gallery) { return d.doc, d.g }

// axis returns a 5-d descriptor of length r along axis i, with j on axis 4.
func axis(i int, r, j float32) match.Descriptor {
	d := make(match.Descriptor, 5)
	d[i], d[4] = r, j
	return d
}

// TestOperatingPointPrecedence: a threshold the hub calibrated into the
// gallery wins (never above the embedder's vote cap); else the gate's own
// calibration when enabled, never looser than vote.threshold or, when that
// is 0 (the default), the embedder profile's VoteCap; else that cap.
func TestOperatingPointPrecedence(t *testing.T) {
	model := match.DefaultEmbedder
	prof, ok := faceengine.ProfileOf(model)
	if !ok {
		t.Fatalf("no profile for %v", model)
	}
	vc := prof.VoteCap
	unmeasured := match.ModelID{Name: "unmeasured", Version: "1"}
	gallery := func(m match.ModelID) *match.Gallery {
		g := match.NewGallery(3, m)
		// Four people on orthogonal axes, at a scale of the cap: every
		// impostor distance ≈ 0.8·cap, genuine 0.01·cap.
		r := float32(0.8 * vc / math.Sqrt2)
		for i, id := range []string{pupilA, pupilB, "079123456781", "079123456782"} {
			_ = g.Add(id, axis(i, r, 0))
			_ = g.Add(id, axis(i, r, float32(0.01*vc)))
		}
		return g
	}
	imp := 0.8 * vc
	def := DefaultConfig()
	if def.Vote.Threshold != 0 || def.CalibrateFAR <= 0 {
		t.Fatalf("defaults: vote.threshold %g (want 0: calibrated), calibrate_far %g", def.Vote.Threshold, def.CalibrateFAR)
	}
	cases := []struct {
		name      string
		model     match.ModelID
		doc       *wire.GalleryDoc
		threshold float64
		calibrate float64
		useDoc    bool
		want      func(float64) bool
		margin    float64
	}{
		{"profile cap when nothing is calibrated", model, &wire.GalleryDoc{}, 0, 0, true, func(v float64) bool { return v == vc }, def.Vote.MinMargin},
		{"configured threshold", model, &wire.GalleryDoc{}, 0.5 * vc, 0, true, func(v float64) bool { return v == 0.5*vc }, def.Vote.MinMargin},
		{"hub calibrated", model, &wire.GalleryDoc{Threshold: 0.9 * vc, MinMargin: 0.08}, 0, 0.01, true, func(v float64) bool { return v == 0.9*vc }, 0.08},
		{"hub calibrated above the cap is capped", model, &wire.GalleryDoc{Threshold: vc + 0.1, MinMargin: 0.08}, 0, 0.01, true, func(v float64) bool { return v == vc }, 0.08},
		{"hub value ignored when told", model, &wire.GalleryDoc{Threshold: 0.9 * vc, MinMargin: 0.08}, 0, 0, false, func(v float64) bool { return v == vc }, def.Vote.MinMargin},
		// The calibrated threshold sits just under the impostors, stricter
		// than the cap (at most at them: the descriptors are float32, so
		// "just under" can round to the impostor distance itself).
		{"gate calibrated", model, &wire.GalleryDoc{}, 0, 0.01, true, func(v float64) bool { return v > 0.6*vc && v < imp+1e-6 }, def.Vote.MinMargin},
		{"gate calibrated, stricter vote.threshold wins", model, &wire.GalleryDoc{}, 0.5 * vc, 0.01, true, func(v float64) bool { return v == 0.5*vc }, def.Vote.MinMargin},
		{"unmeasured embedder, nothing calibrated: accept nobody", unmeasured, &wire.GalleryDoc{}, 0, 0, true, func(v float64) bool { return v == 0 }, def.Vote.MinMargin},
		{"unmeasured embedder, gate calibrated", unmeasured, &wire.GalleryDoc{}, 0, 0.01, true, func(v float64) bool { return v > 0.6*vc && v < imp+1e-6 }, def.Vote.MinMargin},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.SchoolID, cfg.GateID = "s", "g"
			cfg.Vote.Threshold = tc.threshold
			cfg.CalibrateFAR, cfg.UseGalleryOperatingPoint = tc.calibrate, tc.useDoc
			p, err := New(cfg, Deps{Describer: nopDescriber{}, Gallery: docGallery{tc.doc, gallery(tc.model)}, Outbox: nopOutbox{}}, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			op := p.OperatingPoint()
			if !tc.want(op.Threshold) || op.MinMargin != tc.margin {
				t.Fatalf("threshold %g margin %g (cap %g)", op.Threshold, op.MinMargin, vc)
			}
		})
	}
	// vote.threshold 0 is valid (calibrated); negative is not.
	bad := DefaultConfig()
	bad.Vote.Threshold = -0.1
	if err := bad.Validate("pipeline"); err == nil {
		t.Fatal("negative vote.threshold accepted")
	}
	if err := DefaultConfig().Validate("pipeline"); err != nil {
		t.Fatal(err)
	}
}
