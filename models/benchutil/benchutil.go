// Package benchutil holds what the bench commands (hub/bench/... and
// edge/bench) share: the flag set, the JSON output, one percentile
// the process's resident set (from models/procstat) and its Go heap.
package benchutil

import (
	"encoding/json"
	"flag"
	"io"
	"math"
	"runtime"
	"sort"

	"github.com/diemdanh/diemdanh/models/procstat"
)

// FlagSet is a bench command's flag set: errors return (no exit) and
// usage goes to stderr.
func FlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// JSONFlag adds the --json flag every bench command has.
func JSONFlag(fs *flag.FlagSet) *bool {
	return fs.Bool("json", false, "print one JSON object")
}

// PrintJSON writes v as one JSON object and a newline.
func PrintJSON(w io.Writer, v any) error {
	return json.NewEncoder(w).Encode(v)
}

// Percentile is the q-quantile (0 ≤ q ≤ 1) of v by nearest rank: the
// smallest value with at least q of the values at or below it (q = 1
// is the maximum); 0 for no values. v may be unsorted; it is not
// modified.
func Percentile(v []float64, q float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := v
	if !sort.Float64sAreSorted(v) {
		s = append([]float64(nil), v...)
		sort.Float64s(s)
	}
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

// Round rounds f to d decimals.
func Round(f float64, d int) float64 {
	p := math.Pow(10, float64(d))
	return math.Round(f*p) / p
}

// PeakRSSMB is the process's peak resident set (VmHWM) in MB.
func PeakRSSMB() float64 { return procstat.StatusMB("VmHWM") }

// RSSMB is the process's current resident set (VmRSS) in MB.
func RSSMB() float64 { return procstat.StatusMB("VmRSS") }

// GoHeapMB is the Go heap in use, in MB, after a collection: beside RSSMB
// it tells the Go side's memory from the C heap's.
func GoHeapMB() float64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return float64(ms.HeapInuse) / (1 << 20)
}
