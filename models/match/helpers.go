package match

import (
	"math"

	"github.com/diemdanh/diemdanh/models/conf"
)

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// trunc bounds a value quoted in an error to 40 bytes and an ellipsis.
func trunc(s string) string { return conf.Truncate(s, 40, conf.Bytes, "…") }
