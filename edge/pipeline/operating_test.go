package pipeline

import (
	"math"
	"testing"

	"github.com/diemdanh/diemdanh/models/gatekit"
)

type docGallery struct {
	doc *gatekit.GalleryDoc
	g   *gatekit.Gallery
}

func (d docGallery) Current() (*gatekit.GalleryDoc, *gatekit.Gallery) { return d.doc, d.g }

// axis returns a 5-d descriptor of length r along axis i, with j on axis 4.
func axis(i int, r, j float32) gatekit.Descriptor {
	d := make(gatekit.Descriptor, 5)
	d[i], d[4] = r, j
	return d
}

// TestOperatingPointPrecedence: a threshold the hub calibrated into the
// gallery wins; else the gate's own calibration when enabled, never looser
// than the configured threshold; else the configured threshold.
func TestOperatingPointPrecedence(t *testing.T) {
	g := gatekit.NewGallery(3, gatekit.DlibResNetV1)
	// Four people on orthogonal axes: every impostor distance ≈ 0.354
	// (0.25·√2), genuine 0.01; two descriptors each.
	for i, id := range []string{pupilA, pupilB, "079123456781", "079123456782"} {
		_ = g.Add(id, axis(i, 0.25, 0))
		_ = g.Add(id, axis(i, 0.25, 0.01))
	}
	cases := []struct {
		name      string
		doc       *gatekit.GalleryDoc
		calibrate float64
		useDoc    bool
		want      func(float64) bool
		margin    float64
	}{
		{"configured", &gatekit.GalleryDoc{}, 0, true, func(v float64) bool { return v == 0.40 }, 0.06},
		{"hub calibrated", &gatekit.GalleryDoc{Threshold: 0.33, MinMargin: 0.08}, 0.01, true, func(v float64) bool { return v == 0.33 }, 0.08},
		{"hub value ignored when told", &gatekit.GalleryDoc{Threshold: 0.33, MinMargin: 0.08}, 0, false, func(v float64) bool { return v == 0.40 }, 0.06},
		// The calibrated threshold sits just under the impostors (0.354),
		// stricter than the configured 0.40.
		{"gate calibrated", &gatekit.GalleryDoc{}, 0.01, true, func(v float64) bool { return v > 0.30 && v < 0.25*math.Sqrt2 }, 0.06},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.SchoolID, cfg.GateID = "s", "g"
			cfg.CalibrateFAR, cfg.UseGalleryOperatingPoint = tc.calibrate, tc.useDoc
			p, err := New(cfg, Deps{Describer: nopDescriber{}, Gallery: docGallery{tc.doc, g}, Outbox: nopOutbox{}}, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			op := p.OperatingPoint()
			if !tc.want(op.Threshold) || op.MinMargin != tc.margin {
				t.Fatalf("threshold %g margin %g", op.Threshold, op.MinMargin)
			}
		})
	}
}
