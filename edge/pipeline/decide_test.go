package pipeline

import (
	"strings"
	"testing"
)

func TestDecisionConfigValidate(t *testing.T) {
	cases := []struct {
		decision string
		ok       bool
	}{
		{DecisionVotes, true},
		{"", false},
		{"majority", false},
		{"Votes", false},
	}
	for _, tc := range cases {
		t.Run(tc.decision, func(t *testing.T) {
			c := DefaultConfig()
			c.Decision = tc.decision
			err := c.Validate("pipeline")
			if tc.ok != (err == nil) {
				t.Fatalf("decision %q: err = %v, want ok=%v", tc.decision, err, tc.ok)
			}
			if err != nil && !strings.Contains(err.Error(), "pipeline.decision") {
				t.Fatalf("error does not name the field: %v", err)
			}
		})
	}
	if DefaultConfig().Decision != DecisionVotes {
		t.Fatalf("default decision %q, want %q", DefaultConfig().Decision, DecisionVotes)
	}
}
