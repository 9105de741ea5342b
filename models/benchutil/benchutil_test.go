package benchutil

import "testing"

func TestPercentile(t *testing.T) {
	v := []float64{5, 1, 4, 2, 3, 6, 7, 8, 9, 10}
	for _, tc := range []struct{ q, want float64 }{{0, 1}, {0.5, 5}, {0.95, 10}, {0.9, 9}, {1, 10}} {
		if got := Percentile(v, tc.q); got != tc.want {
			t.Errorf("Percentile(%v) = %v, want %v", tc.q, got, tc.want)
		}
	}
	if v[0] != 5 {
		t.Error("input modified")
	}
	if Percentile(nil, 0.5) != 0 {
		t.Error("empty")
	}
	if Round(1.23456, 2) != 1.23 || Round(2.5, 0) != 3 {
		t.Error("Round")
	}
}
