package match

import (
	"fmt"
	"math/rand"
	"testing"
)

func randomGallery(n, perPerson int, rng *rand.Rand) *Gallery {
	g := NewGallery(1, DlibResNetV1)
	for i := 0; i < n; i++ {
		d := make(Descriptor, DescriptorLen)
		for j := range d {
			d[j] = float32(rng.NormFloat64() * 0.09)
		}
		_ = g.Add(fmt.Sprintf("%012d", i/perPerson), d)
	}
	return g
}

func benchmarkMatch(b *testing.B, n int) {
	rng := rand.New(rand.NewSource(1))
	g := randomGallery(n, 5, rng)
	probe := make(Descriptor, DescriptorLen)
	for j := range probe {
		probe[j] = float32(rng.NormFloat64() * 0.09)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if m := g.Match(probe); m.PersonID == "" {
			b.Fatal("no match")
		}
	}
}

// BenchmarkGalleryMatch500 and 5000: 1:N plain scan (5 descriptors a person).
func BenchmarkGalleryMatch500(b *testing.B)  { benchmarkMatch(b, 500) }
func BenchmarkGalleryMatch5000(b *testing.B) { benchmarkMatch(b, 5000) }
