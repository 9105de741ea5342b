package match

import (
	"testing"
)

func TestGalleryMatchMarginIsPerIdentity(t *testing.T) {
	g := NewGallery(1, DlibResNetV1)
	mk := func(x float32) Descriptor {
		d := make(Descriptor, DescriptorLen)
		d[0] = x
		return d
	}
	// Person A has two descriptors near the probe; B is further away. The
	// margin must be measured to B (the second identity), not A's second descriptor.
	for _, p := range []struct {
		id string
		x  float32
	}{{"A", 0.10}, {"A", 0.12}, {"B", 0.40}, {"C", 0.90}} {
		if err := g.Add(p.id, mk(p.x)); err != nil {
			t.Fatal(err)
		}
	}
	m := g.Match(mk(0))
	if m.PersonID != "A" || m.SecondPersonID != "B" {
		t.Fatalf("got %+v", m)
	}
	if d := m.Margin() - 0.30; d > 1e-6 || d < -1e-6 {
		t.Fatalf("margin %.6f, want 0.30", m.Margin())
	}
	if err := g.Add("D", make(Descriptor, 64)); err == nil {
		t.Fatal("mixed descriptor lengths accepted")
	}
	if m := g.Match(make(Descriptor, 64)); m.PersonID != "" {
		t.Fatal("probe of another length matched")
	}
}
