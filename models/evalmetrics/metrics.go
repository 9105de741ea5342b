// Package evalmetrics holds the recognition figures of a labelled set of
// descriptors, pure Go without the face engine: every genuine and
// impostor distance, FAR and FRR per threshold, EER, TAR at a FAR,
// closed-set rank-1 by leave-one-out, and open-set outcomes (genuine,
// wrong and visitor acceptance, a visitor probing a gallery without its
// own identity) at a threshold and margin. edge/eval (`edge eval`) and
// the hub's model trial (hub/modeltrial) compute their figures with it.
package evalmetrics

import (
	"math"
	"sort"
	"strconv"

	"github.com/diemdanh/diemdanh/models/match"
)

// Sample is one labelled descriptor.
type Sample struct {
	Identity string
	Source   string // file name, or "idols.json#N"
	Desc     match.Descriptor
}

// Probe holds, for one sample, the distance to the nearest other sample of
// its own identity (OwnMin, +Inf for a singleton) and the two nearest other
// identities' best distances (Other1 <= Other2, Other1ID is the nearest).
type Probe struct {
	OwnMin, Other1, Other2 float64
	Other1ID               string
}

// Pairs are every genuine (same identity) and impostor distance, sorted.
type Pairs struct {
	Genuine, Impostor []float64
}

// Analyse computes all pair distances and the per-probe summaries.
func Analyse(s []Sample) (Pairs, []Probe) {
	ids := map[string]int{}
	for _, x := range s {
		if _, ok := ids[x.Identity]; !ok {
			ids[x.Identity] = len(ids)
		}
	}
	owner := make([]int, len(s))
	names := make([]string, len(ids))
	for i, x := range s {
		owner[i] = ids[x.Identity]
		names[owner[i]] = x.Identity
	}
	var p Pairs
	dist := make([][]float64, len(s))
	for i := range s {
		dist[i] = make([]float64, len(s))
	}
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			d := match.Distance(s[i].Desc, s[j].Desc)
			dist[i][j], dist[j][i] = d, d
			if owner[i] == owner[j] {
				p.Genuine = append(p.Genuine, d)
			} else {
				p.Impostor = append(p.Impostor, d)
			}
		}
	}
	sort.Float64s(p.Genuine)
	sort.Float64s(p.Impostor)
	probes := make([]Probe, len(s))
	minBy := make([]float64, len(ids))
	for i := range s {
		for k := range minBy {
			minBy[k] = math.Inf(1)
		}
		for j := range s {
			if j != i && dist[i][j] < minBy[owner[j]] {
				minBy[owner[j]] = dist[i][j]
			}
		}
		pr := Probe{OwnMin: minBy[owner[i]], Other1: math.Inf(1), Other2: math.Inf(1)}
		for k, d := range minBy {
			if k == owner[i] {
				continue
			}
			switch {
			case d < pr.Other1:
				pr.Other2, pr.Other1, pr.Other1ID = pr.Other1, d, names[k]
			case d < pr.Other2:
				pr.Other2 = d
			}
		}
		probes[i] = pr
	}
	return p, probes
}

// Rate is count/total, kept with both numbers so a reader sees the base.
type Rate struct {
	Count int `json:"count"`
	Total int `json:"total"`
	Rate  Num `json:"rate"`
}

// Num is a float64 that encodes NaN and ±Inf as JSON null (no such figure).
type Num float64

// MarshalJSON implements json.Marshaler.
func (n Num) MarshalJSON() ([]byte, error) {
	f := float64(n)
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return []byte("null"), nil
	}
	return strconv.AppendFloat(nil, f, 'g', 6, 64), nil
}

// NewRate is c/t (NaN when t is 0).
func NewRate(c, t int) Rate {
	r := Rate{Count: c, Total: t, Rate: Num(math.NaN())}
	if t > 0 {
		r.Rate = Num(float64(c) / float64(t))
	}
	return r
}

// FAR is the fraction of impostor pairs at distance <= t; FRR the fraction
// of genuine pairs above t.
func (p Pairs) FAR(t float64) float64 { return fracLE(p.Impostor, t) }

// FRR is the fraction of genuine pairs at distance > t.
func (p Pairs) FRR(t float64) float64 { return 1 - fracLE(p.Genuine, t) }

func fracLE(sorted []float64, t float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	return float64(sort.SearchFloat64s(sorted, math.Nextafter(t, math.Inf(1)))) / float64(len(sorted))
}

// EER finds the threshold among all measured distances where FAR and FRR
// are closest and returns their mean there, and the threshold.
func (p Pairs) EER() (eer, threshold float64) {
	if len(p.Genuine) == 0 || len(p.Impostor) == 0 {
		return math.NaN(), math.NaN()
	}
	cands := append(append([]float64(nil), p.Genuine...), p.Impostor...)
	sort.Float64s(cands)
	best := math.Inf(1)
	for _, t := range cands {
		far, frr := p.FAR(t), p.FRR(t)
		if g := math.Abs(far - frr); g < best {
			best, eer, threshold = g, (far+frr)/2, t
		}
	}
	return eer, threshold
}

// TARAtFAR is the genuine accept rate at the loosest threshold whose pair
// FAR is at most far: just under the (⌊far·n⌋+1)-th smallest impostor
// distance. Resolution is 1/len(Impostor).
func (p Pairs) TARAtFAR(far float64) (tar, threshold float64) {
	n := len(p.Impostor)
	if n == 0 || len(p.Genuine) == 0 {
		return math.NaN(), math.NaN()
	}
	k := int(math.Floor(far * float64(n)))
	if k >= n {
		return 1, math.Inf(1)
	}
	limit := p.Impostor[k]
	below := sort.SearchFloat64s(p.Genuine, limit) // genuine strictly under limit
	return float64(below) / float64(len(p.Genuine)), math.Nextafter(limit, 0)
}

// OpenSet are the identification outcomes at one threshold and margin.
type OpenSet struct {
	Threshold Num     `json:"threshold"`
	Margin    float64 `json:"margin"`
	// Leave-one-out over samples whose identity has another sample:
	GenuineAccept Rate `json:"genuine_accept"` // nearest is own identity, accepted
	WrongAccept   Rate `json:"wrong_accept"`   // nearest is another identity, accepted
	// Leave-one-identity-out: each sample probes a gallery without its own
	// identity, as an unenrolled visitor would.
	VisitorAccept Rate `json:"visitor_accept"`
}

// OpenSetAt evaluates the accept rule (best <= t and margin to the next
// identity >= m) on the probes.
func OpenSetAt(probes []Probe, t, m float64) OpenSet {
	o := OpenSet{Threshold: Num(t), Margin: m}
	var ga, wa, n, va int
	for _, p := range probes {
		if p.Other1 <= t && p.Other2-p.Other1 >= m {
			va++
		}
		if math.IsInf(p.OwnMin, 1) {
			continue
		}
		n++
		if p.OwnMin < p.Other1 {
			if p.OwnMin <= t && p.Other1-p.OwnMin >= m {
				ga++
			}
		} else {
			second := math.Min(p.OwnMin, p.Other2)
			if p.Other1 <= t && second-p.Other1 >= m {
				wa++
			}
		}
	}
	o.GenuineAccept, o.WrongAccept, o.VisitorAccept = NewRate(ga, n), NewRate(wa, n), NewRate(va, len(probes))
	return o
}

// Rank1 is closed-set rank-1 by leave-one-out: the nearest other sample
// has the probe's identity. Singletons are not probes.
func Rank1(probes []Probe) Rate {
	var c, n int
	for _, p := range probes {
		if math.IsInf(p.OwnMin, 1) {
			continue
		}
		n++
		if p.OwnMin < p.Other1 {
			c++
		}
	}
	return NewRate(c, n)
}

// ThresholdForGenuine returns the smallest threshold (margin m) at which
// the leave-one-out genuine accept rate reaches want, or NaN when it never
// does (rank-1 below want).
func ThresholdForGenuine(probes []Probe, want, m float64) float64 {
	var ok []float64
	n := 0
	for _, p := range probes {
		if math.IsInf(p.OwnMin, 1) {
			continue
		}
		n++
		if p.OwnMin < p.Other1 && p.Other1-p.OwnMin >= m {
			ok = append(ok, p.OwnMin)
		}
	}
	need := int(math.Ceil(want * float64(n)))
	if n == 0 || need > len(ok) || need == 0 {
		return math.NaN()
	}
	sort.Float64s(ok)
	return ok[need-1]
}

// ThresholdForVisitor returns the largest threshold (margin 0) at which the
// visitor accept rate stays at or below want.
func ThresholdForVisitor(probes []Probe, want float64) float64 {
	v := make([]float64, 0, len(probes))
	for _, p := range probes {
		v = append(v, p.Other1)
	}
	sort.Float64s(v)
	k := int(math.Floor(want * float64(len(v))))
	if k >= len(v) {
		return math.Inf(1)
	}
	return math.Nextafter(v[k], 0)
}
