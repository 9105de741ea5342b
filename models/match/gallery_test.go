package match

import (
	"math"
	"testing"
)

func axis(i int, v float32) Descriptor {
	d := make(Descriptor, DescriptorLen)
	d[i] = v
	return d
}

// TestGalleryMatchTable: the margin is measured to the second-best
// IDENTITY, never to a second descriptor of the same person.
func TestGalleryMatchTable(t *testing.T) {
	build := func(entries ...any) *Gallery {
		g := NewGallery(1, DlibResNetV1)
		for i := 0; i < len(entries); i += 2 {
			if err := g.Add(entries[i].(string), entries[i+1].(Descriptor)); err != nil {
				t.Fatal(err)
			}
		}
		return g
	}
	probe := axis(0, 1)
	near := func(d float32) Descriptor { v := axis(0, 1); v[1] = d; return v } // at distance d from probe
	inf := math.Inf(1)
	cases := []struct {
		name          string
		g             *Gallery
		probe         Descriptor
		id, second    string
		dist, secondD float64
	}{
		{"empty gallery", build(), probe, "", "", inf, inf},
		{"one identity", build("A", near(0.1)), probe, "A", "", 0.1, inf},
		{"two descriptors of one identity: no margin to itself", build("A", near(0.1), "A", near(0.15)), probe, "A", "", 0.1, inf},
		{"second identity beyond a closer same-person descriptor", build("A", near(0.1), "A", near(0.15), "B", near(0.4)), probe, "A", "B", 0.1, 0.4},
		{"order of insertion does not matter", build("B", near(0.4), "A", near(0.15), "A", near(0.1)), probe, "A", "B", 0.1, 0.4},
		{"look-alike: tiny margin", build("A", near(0.30), "B", near(0.31)), probe, "A", "B", 0.30, 0.31},
		{"probe of another length matches nobody", build("A", near(0.1)), Descriptor{1, 2, 3}, "", "", inf, inf},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := tc.g.Match(tc.probe)
			if m.PersonID != tc.id || m.SecondPersonID != tc.second {
				t.Fatalf("got %q/%q want %q/%q", m.PersonID, m.SecondPersonID, tc.id, tc.second)
			}
			if !closeTo(m.Distance, tc.dist) || !closeTo(m.SecondDistance, tc.secondD) {
				t.Fatalf("distances %v/%v want %v/%v", m.Distance, m.SecondDistance, tc.dist, tc.secondD)
			}
			if want := tc.secondD - tc.dist; !math.IsNaN(want) && !closeTo(m.Margin(), want) {
				t.Fatalf("margin %v want %v", m.Margin(), want)
			}
		})
	}
}

func closeTo(a, b float64) bool {
	if math.IsInf(b, 1) {
		return math.IsInf(a, 1)
	}
	return math.Abs(a-b) < 1e-6
}
