package procstat

import (
	"testing"
)

func TestProcStatusMB(t *testing.T) {
	rss, peak := StatusMB("VmRSS"), StatusMB("VmHWM")
	if rss <= 1 || peak < rss {
		t.Fatalf("VmRSS %.1f MB, VmHWM %.1f MB", rss, peak)
	}
	if StatusMB("NoSuchField") != 0 {
		t.Fatal("unknown field not 0")
	}
}
