package eval

import "github.com/diemdanh/diemdanh/models/evalmetrics"

// The figures are computed by models/evalmetrics (pure Go, which the hub's
// model trial shares); these names keep the harness's report types.
type (
	// Sample is one labelled descriptor.
	Sample = evalmetrics.Sample
	// Probe is one sample's leave-one-out distances.
	Probe = evalmetrics.Probe
	// Pairs are every genuine and impostor distance, sorted.
	Pairs = evalmetrics.Pairs
	// Rate is count/total.
	Rate = evalmetrics.Rate
	// Num encodes NaN and ±Inf as JSON null.
	Num = evalmetrics.Num
	// OpenSet are the identification outcomes at one threshold and margin.
	OpenSet = evalmetrics.OpenSet
)

// Analyse is evalmetrics.Analyse.
func Analyse(s []Sample) (Pairs, []Probe) { return evalmetrics.Analyse(s) }

// OpenSetAt is evalmetrics.OpenSetAt.
func OpenSetAt(probes []Probe, t, m float64) OpenSet { return evalmetrics.OpenSetAt(probes, t, m) }

// Rank1 is evalmetrics.Rank1.
func Rank1(probes []Probe) Rate { return evalmetrics.Rank1(probes) }

// ThresholdForGenuine is evalmetrics.ThresholdForGenuine.
func ThresholdForGenuine(probes []Probe, want, m float64) float64 {
	return evalmetrics.ThresholdForGenuine(probes, want, m)
}

// ThresholdForVisitor is evalmetrics.ThresholdForVisitor.
func ThresholdForVisitor(probes []Probe, want float64) float64 {
	return evalmetrics.ThresholdForVisitor(probes, want)
}

func rate(c, t int) Rate { return evalmetrics.NewRate(c, t) }
