package match

import (
	"math"
)

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

func trunc(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
