package match

import (
	"math"
	"sort"

	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/errkind"
)

// Calibration is an operating threshold derived from an enrolled gallery's
// own impostor distances, and what it is expected to do.
type Calibration struct {
	Threshold float64 `json:"threshold"` // accept a match at real L2 distance <= Threshold
	// TargetFAR is the wanted visitor false-accept rate: the chance that a
	// person who is not enrolled matches somebody in the whole gallery.
	TargetFAR float64 `json:"target_far"`
	// PerIdentityFAR is the false-match rate against one identity that
	// gives TargetFAR over Identities identities: 1-(1-TargetFAR)^(1/N).
	PerIdentityFAR float64 `json:"per_identity_far"`
	Identities     int     `json:"identities"`      // candidates a probe is compared against
	ImpostorScores int     `json:"impostor_scores"` // probe-descriptor × other-identity minima measured
	// Method is "empirical" when the quantile lies inside the measured
	// scores (at least 5 of them below it), else "gaussian-tail": a normal
	// fit to the scores, capped just under the lowest score measured.
	Method string `json:"method"`
	// ExpectedFAR is the visitor false-accept rate the measured scores give
	// at Threshold: 1-(1-f)^N with f the fraction of scores <= Threshold.
	ExpectedFAR float64 `json:"expected_far"`
	// ExpectedFRR is the single-image false-reject rate at Threshold,
	// measured by leave-one-out on the gallery's own genuine pairs (-1 when
	// no identity has two descriptors).
	ExpectedFRR float64 `json:"expected_frr"`
}

// CalibrateThreshold derives the operating threshold of a gallery. For each
// descriptor of each identity A and each other identity B it measures the
// distance to B's nearest descriptor: that is what a visitor resembling A
// would score against B. The threshold is the quantile of these scores at
// the per-identity rate that keeps the visitor false-accept rate over the
// whole gallery at targetFAR, so a bigger gallery gets a lower threshold.
// It needs at least two identities.
func CalibrateThreshold(g *Gallery, targetFAR float64) (Calibration, error) {
	return CalibrateThresholdFor(g, targetFAR, g.People())
}

// CalibrateThresholdFor is CalibrateThreshold for a probe that is compared
// against candidates identities rather than the whole gallery: with
// candidate restriction (the pupils expected at this gate and session) a
// smaller candidate set allows a looser threshold at the same visitor FAR.
func CalibrateThresholdFor(g *Gallery, targetFAR float64, candidates int) (Calibration, error) {
	if g.People() < 2 {
		return Calibration{}, errkind.New(errkind.Invalid, "calibrate", nil, "need ≥2 identities, gallery has %d", g.People())
	}
	if candidates < 1 {
		return Calibration{}, errkind.New(errkind.Invalid, "calibrate", nil, "candidates %d < 1", candidates)
	}
	n := candidates
	people := g.People()
	if !(targetFAR > 0 && targetFAR < 1) {
		return Calibration{}, errkind.New(errkind.Invalid, "calibrate", nil, "target FAR %g not in (0,1)", targetFAR)
	}
	c := Calibration{TargetFAR: targetFAR, Identities: n}
	c.PerIdentityFAR = 1 - math.Pow(1-targetFAR, 1/float64(n))
	scores := make([]float64, 0, len(g.descs)*(people-1))
	var genuine []float64
	minBy := make([]float32, people)
	for k, d := range g.descs {
		for i := range minBy {
			minBy[i] = math.MaxFloat32
		}
		for j, e := range g.descs {
			if j == k {
				continue
			}
			if s := SquaredL2(d, e); s < minBy[g.owner[j]] {
				minBy[g.owner[j]] = s
			}
		}
		for i, s := range minBy {
			if int32(i) == g.owner[k] {
				if s != math.MaxFloat32 {
					genuine = append(genuine, math.Sqrt(float64(s)))
				}
				continue
			}
			scores = append(scores, math.Sqrt(float64(s)))
		}
	}
	sort.Float64s(scores)
	c.ImpostorScores = len(scores)
	c.Threshold, c.Method = LowerQuantile(scores, c.PerIdentityFAR)
	f := float64(sort.SearchFloat64s(scores, math.Nextafter(c.Threshold, math.Inf(1)))) / float64(len(scores))
	c.ExpectedFAR = 1 - math.Pow(1-f, float64(n))
	c.ExpectedFRR = -1
	if len(genuine) > 0 {
		rej := 0
		for _, d := range genuine {
			if d > c.Threshold {
				rej++
			}
		}
		c.ExpectedFRR = float64(rej) / float64(len(genuine))
	}
	return c, nil
}

// LowerQuantile returns the p-quantile of sorted ascending scores and how it
// was found: "empirical" when at least 5 scores lie below it, else
// "gaussian-tail" (mean + sd·Φ⁻¹(p) of all scores, capped just under the
// lowest score, so a small gallery is never given a threshold its own
// impostors would pass).
func LowerQuantile(sorted []float64, p float64) (float64, string) {
	n := float64(len(sorted))
	if n == 0 {
		return 0, "none"
	}
	if p*n >= 5 {
		pos := p*n - 1 // the k-th smallest (1-based k = p·n)
		i := int(math.Floor(pos))
		frac := pos - float64(i)
		if i+1 >= len(sorted) {
			return sorted[len(sorted)-1], "empirical"
		}
		return sorted[i] + frac*(sorted[i+1]-sorted[i]), "empirical"
	}
	var mean, sq float64
	for _, v := range sorted {
		mean += v
	}
	mean /= n
	for _, v := range sorted {
		sq += (v - mean) * (v - mean)
	}
	sd := math.Sqrt(sq / math.Max(n-1, 1))
	t := mean + sd*normQuantile(p)
	if t >= sorted[0] {
		t = math.Nextafter(sorted[0], 0)
	}
	return math.Max(t, 0), "gaussian-tail"
}

// normQuantile is Φ⁻¹(p) (Acklam's rational approximation, |error| < 1.2e-9).
func normQuantile(p float64) float64 {
	a := [6]float64{-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02, 1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00}
	b := [5]float64{-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02, 6.680131188771972e+01, -1.328068155288572e+01}
	c := [6]float64{-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00, -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00}
	d := [4]float64{7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00, 3.754408661907416e+00}
	const lo = 0.02425
	switch {
	case p <= 0:
		return math.Inf(-1)
	case p >= 1:
		return math.Inf(1)
	case p < lo:
		q := math.Sqrt(-2 * math.Log(p))
		return (((((c[0]*q+c[1])*q+c[2])*q+c[3])*q+c[4])*q + c[5]) / ((((d[0]*q+d[1])*q+d[2])*q+d[3])*q + 1)
	case p <= 1-lo:
		q := p - 0.5
		r := q * q
		return (((((a[0]*r+a[1])*r+a[2])*r+a[3])*r+a[4])*r + a[5]) * q / (((((b[0]*r+b[1])*r+b[2])*r+b[3])*r+b[4])*r + 1)
	default:
		q := math.Sqrt(-2 * math.Log(1-p))
		return -(((((c[0]*q+c[1])*q+c[2])*q+c[3])*q+c[4])*q + c[5]) / ((((d[0]*q+d[1])*q+d[2])*q+d[3])*q + 1)
	}
}

// Decision is the calibrated accept rule for one frame, plus M-of-K voting
// across the frames of one track.
type Decision struct {
	Threshold float64 `yaml:"threshold" json:"threshold"` // max real L2 distance to accept
	Margin    float64 `yaml:"margin" json:"margin"`       // min SecondDistance - Distance
	M         int     `yaml:"m" json:"m"`                 // votes for one identity needed ...
	K         int     `yaml:"k" json:"k"`                 // ... among the last K frames
}

// Validate names the first bad field under prefix.
func (d Decision) Validate(prefix string) error {
	switch {
	case !(d.Threshold > 0) || d.Threshold > 4:
		return conf.Fieldf(prefix+".threshold", "must be in (0,4], got %g", d.Threshold)
	case d.Margin < 0 || d.Margin > 4:
		return conf.Fieldf(prefix+".margin", "must be 0..4, got %g", d.Margin)
	case d.K < 1 || d.K > 50:
		return conf.Fieldf(prefix+".k", "must be 1..50, got %d", d.K)
	case d.M < 1 || d.M > d.K:
		return conf.Fieldf(prefix+".m", "must be 1..k (%d), got %d", d.K, d.M)
	}
	return nil
}

// Accept reports whether one frame's match is accepted: close enough and
// clearly closer than the next identity.
func (d Decision) Accept(m Result) bool {
	return m.PersonID != "" && m.Distance <= d.Threshold && m.Margin() >= d.Margin
}

// Voter keeps the last K frame decisions of one track and names the
// identity once M of them agree. The zero identity "" stands for a
// rejected frame.
type Voter struct {
	d      Decision
	recent []string
}

// NewVoter returns a voter for d (d must be valid).
func NewVoter(d Decision) *Voter { return &Voter{d: d} }

// Add records one frame's match and returns the identity M of the last K
// accepted frames agree on, or "".
func (v *Voter) Add(m Result) string {
	id := ""
	if v.d.Accept(m) {
		id = m.PersonID
	}
	v.recent = append(v.recent, id)
	if len(v.recent) > v.d.K {
		v.recent = v.recent[len(v.recent)-v.d.K:]
	}
	if id == "" {
		return ""
	}
	n := 0
	for _, r := range v.recent {
		if r == id {
			n++
		}
	}
	if n >= v.d.M {
		return id
	}
	return ""
}
