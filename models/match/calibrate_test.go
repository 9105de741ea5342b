package match

import (
	"errors"
	"fmt"
	"math"
	"math/rand"
	"testing"

	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/errkind"
)

// syntheticGallery builds people identities in dim dimensions: each has a
// random unit centre and three descriptors scattered around it.
func syntheticGallery(people, dim int, seed int64) *Gallery {
	rng := rand.New(rand.NewSource(seed))
	g := NewGallery(1, ModelID{"synthetic", "1"})
	unit := func(v []float64) Descriptor {
		var n float64
		for _, x := range v {
			n += x * x
		}
		d := make(Descriptor, len(v))
		for i, x := range v {
			d[i] = float32(x / math.Sqrt(n))
		}
		return d
	}
	for p := 0; p < people; p++ {
		c := make([]float64, dim)
		for i := range c {
			c[i] = rng.NormFloat64()
		}
		for k := 0; k < 3; k++ {
			v := make([]float64, dim)
			for i := range v {
				v[i] = c[i] + 0.35*rng.NormFloat64()
			}
			if err := g.Add(fmt.Sprintf("p%03d", p), unit(v)); err != nil {
				panic(err)
			}
		}
	}
	return g
}

// The same population, enrolled in galleries of growing size: to keep the
// visitor FAR at 1%, each identity may be matched by a visitor less often,
// so the threshold must never rise and must end clearly lower. A stricter
// target must lower it too.
func TestCalibratedThresholdFallsAsGalleryGrows(t *testing.T) {
	full := syntheticGallery(400, 64, 1)
	prev, first := math.Inf(1), 0.0
	for _, n := range []int{10, 50, 200, 400} {
		g := NewGallery(1, full.Model)
		for _, id := range full.PersonIDs()[:n] {
			for _, d := range full.Descriptors(id) {
				_ = g.Add(id, d)
			}
		}
		c, err := CalibrateThreshold(g, 0.01)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("N=%d: threshold %.4f (%s, per-identity %.2g, %d scores, expected FAR %.4f FRR %.3f)",
			n, c.Threshold, c.Method, c.PerIdentityFAR, c.ImpostorScores, c.ExpectedFAR, c.ExpectedFRR)
		// Each gallery is a new sample of impostor scores, so allow the
		// quantile estimate a little noise between neighbouring sizes.
		if c.Threshold > prev+0.01 {
			t.Errorf("N=%d: threshold %.4f rose above %.4f", n, c.Threshold, prev)
		}
		if n == 10 {
			first = c.Threshold
		}
		if want := 1 - math.Pow(0.99, 1/float64(n)); math.Abs(c.PerIdentityFAR-want) > 1e-12 {
			t.Errorf("N=%d: per-identity FAR %g, want %g", n, c.PerIdentityFAR, want)
		}
		if c.ImpostorScores != 3*n*(n-1) {
			t.Errorf("N=%d: %d impostor scores, want %d", n, c.ImpostorScores, 3*n*(n-1))
		}
		if c.ExpectedFAR > 0.015 {
			t.Errorf("N=%d: the gallery's own impostors give FAR %.4f at the threshold, target 1%%", n, c.ExpectedFAR)
		}
		strict, _ := CalibrateThreshold(g, 0.001)
		if !(strict.Threshold <= c.Threshold) {
			t.Errorf("N=%d: target 0.1%% gives %.4f, above the 1%% threshold %.4f", n, strict.Threshold, c.Threshold)
		}
		prev = c.Threshold
	}
	if !(prev < first-0.05) {
		t.Errorf("threshold %.4f at 400 identities not clearly below %.4f at 10", prev, first)
	}
	// On one gallery's scores, the threshold for a growing candidate set
	// falls strictly (the same empirical distribution, a smaller quantile).
	prev = math.Inf(1)
	for _, n := range []int{1, 5, 20, 100, 400, 2000} {
		c, err := CalibrateThresholdFor(full, 0.01, n)
		if err != nil {
			t.Fatal(err)
		}
		if !(c.Threshold < prev) || c.Identities != n {
			t.Errorf("%d candidates: threshold %.4f not below %.4f (%+v)", n, c.Threshold, prev, c)
		}
		prev = c.Threshold
	}
}

func TestCalibrateRejectsTinyGalleries(t *testing.T) {
	g := NewGallery(1, DlibResNetV1)
	_ = g.Add("a", Descriptor{1, 0})
	if _, err := CalibrateThreshold(g, 0.01); errkind.Of(err) != errkind.Invalid {
		t.Fatalf("one identity: %v", err)
	}
	_ = g.Add("b", Descriptor{0, 1})
	for _, far := range []float64{0, 1, -0.1, math.NaN()} {
		if _, err := CalibrateThreshold(g, far); errkind.Of(err) != errkind.Invalid {
			t.Errorf("target %g: %v", far, err)
		}
	}
	c, err := CalibrateThreshold(g, 0.01)
	if err != nil || c.ExpectedFRR != -1 || c.Method != "gaussian-tail" || c.Threshold > math.Sqrt2 {
		t.Fatalf("two singletons: %+v %v", c, err)
	}
}

func TestLowerQuantile(t *testing.T) {
	s := make([]float64, 1000)
	for i := range s {
		s[i] = float64(i + 1) // 1..1000
	}
	// p·n = 10: the 10th smallest.
	if v, m := LowerQuantile(s, 0.01); v != 10 || m != "empirical" {
		t.Errorf("p=0.01: %v %s", v, m)
	}
	// p·n = 12.5: halfway between the 12th and 13th.
	if v, _ := LowerQuantile(s, 0.0125); v != 12.5 {
		t.Errorf("p=0.0125: %v", v)
	}
	// p·n = 1: too few below; the normal tail, capped at the minimum.
	if v, m := LowerQuantile(s, 0.001); m != "gaussian-tail" || v > 1 {
		t.Errorf("p=0.001: %v %s", v, m)
	}
	// Φ⁻¹ against known values.
	for _, c := range []struct{ p, z float64 }{{0.5, 0}, {0.975, 1.959964}, {0.001, -3.090232}, {1e-5, -4.264891}} {
		if z := normQuantile(c.p); math.Abs(z-c.z) > 1e-5 {
			t.Errorf("Φ⁻¹(%g) = %g, want %g", c.p, z, c.z)
		}
	}
}

func TestDecisionMarginAndVoting(t *testing.T) {
	d := Decision{Threshold: 0.5, Margin: 0.1, M: 2, K: 3}
	if err := d.Validate("decision"); err != nil {
		t.Fatal(err)
	}
	var fe *conf.FieldError
	for _, bad := range []Decision{{Threshold: 0, M: 1, K: 1}, {Threshold: 0.5, Margin: -1, M: 1, K: 1}, {Threshold: 0.5, M: 3, K: 2}, {Threshold: 0.5, M: 1, K: 0}} {
		if err := bad.Validate("decision"); !errors.As(err, &fe) {
			t.Errorf("%+v: %v", bad, err)
		}
	}
	cases := []struct {
		m    Result
		want bool
	}{
		{Result{PersonID: "a", Distance: 0.4, SecondDistance: 0.6}, true},
		{Result{PersonID: "a", Distance: 0.4, SecondDistance: 0.45}, false}, // margin 0.05
		{Result{PersonID: "a", Distance: 0.55, SecondDistance: 0.9}, false}, // over threshold
		{Result{PersonID: "a", Distance: 0.3, SecondDistance: math.Inf(1)}, true},
		{Result{Distance: math.Inf(1), SecondDistance: math.Inf(1)}, false},
	}
	for _, c := range cases {
		if got := d.Accept(c.m); got != c.want {
			t.Errorf("%+v: accept %v", c.m, got)
		}
	}
	v := NewVoter(d)
	ok := func(id string) Result { return Result{PersonID: id, Distance: 0.3, SecondDistance: 0.9} }
	got := []string{v.Add(ok("a")), v.Add(ok("b")), v.Add(ok("a")), v.Add(Result{PersonID: "a", Distance: 0.9}), v.Add(ok("b")), v.Add(ok("b"))}
	want := []string{"", "", "a", "", "", "b"} // windows: a | a b | a b a | b a - | a - b | - b b
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("frame %d: got %q want %q (all %q)", i, got[i], want[i], got)
		}
	}
}
