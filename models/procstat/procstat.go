package procstat

import (
	"os"
	"strconv"
	"strings"
)

// StatusMB reads a memory field of /proc/self/status (e.g. "VmRSS" for
// the resident set, "VmHWM" for its peak) in megabytes, or 0 where /proc is
// unavailable. The bench commands report rss_mb with it.
func StatusMB(field string) float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, field+":"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				kb, _ := strconv.ParseFloat(f[0], 64)
				return kb / 1024
			}
		}
	}
	return 0
}
