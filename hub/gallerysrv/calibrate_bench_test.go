package gallerysrv

import (
	"fmt"
	mrand "math/rand/v2"
	"testing"

	"github.com/diemdanh/diemdanh/models/match"
)

// BenchmarkCalibrate measures the operating-point calibration of one
// gallery version (O(n²) in descriptors): what a roster or template change
// adds to the gallery rebuild, once per version, for schools of 300, 1,000
// and 2,000 pupils with 3 templates each (synthetic unit descriptors).
func BenchmarkCalibrate(b *testing.B) {
	for _, n := range []int{300, 1000, 2000} {
		b.Run(fmt.Sprintf("pupils=%d", n), func(b *testing.B) {
			rng := mrand.New(mrand.NewPCG(3, 5))
			byPupil := make(map[string][]match.Descriptor, n)
			for i := 0; i < n; i++ {
				c := randUnit(rng, 128, nil, 0)
				for k := 0; k < 3; k++ {
					byPupil[fmt.Sprintf("%012d", i)] = append(byPupil[fmt.Sprintf("%012d", i)], randUnit(rng, 128, c, 0.35))
				}
			}
			s := New(nil, nil, nil, Default(), nil, nil)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				p := OperatingPoint{TargetFAR: DefaultTargetFAR}
				s.calibrate(&p, match.DlibResNetV1, byPupil)
				if !p.Calibrated {
					b.Fatalf("not calibrated: %s", p.Reason)
				}
			}
			b.ReportMetric(float64(3*n), "descriptors")
		})
	}
}
