package gallerysrv

import (
	"context"
	"crypto/rand"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/hub/facetemplates"
	"github.com/diemdanh/diemdanh/hub/roster"
	"github.com/diemdanh/diemdanh/hub/store"
	"github.com/diemdanh/diemdanh/models/match"
)

// BenchmarkRefresh1000Pupils measures one gallery rebuild (decrypt every
// template, digest, encode, validate) for a school of 1,000 pupils with 3
// templates each: the work between a roster change and the announcement.
func BenchmarkRefresh1000Pupils(b *testing.B) {
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(b.TempDir(), "hub.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	key := make([]byte, facetemplates.KeySize)
	rand.Read(key)
	tpl, err := facetemplates.Open(db, key, nil, time.Now)
	if err != nil {
		b.Fatal(err)
	}
	tpl.SetModel(match.DlibResNetV1) // the model the templates below are added as
	r := roster.New(db, nil, time.Now)
	if _, err := r.PutSchool(ctx, roster.School{ID: "big", Name: "Big"}); err != nil {
		b.Fatal(err)
	}
	rng := mrand.New(mrand.NewPCG(1, 2))
	for i := 0; i < 1000; i++ {
		id := fmt.Sprintf("%012d", 100000000000+i)
		if _, err := r.PutPupil(ctx, roster.Pupil{ID: id, SchoolID: "big", FullName: "P", Active: true}); err != nil {
			b.Fatal(err)
		}
		for j := 0; j < 3; j++ {
			d := make(match.Descriptor, 128)
			var n float64
			for k := range d {
				d[k] = float32(rng.NormFloat64())
				n += float64(d[k] * d[k])
			}
			for k := range d {
				d[k] /= float32(math.Sqrt(n))
			}
			if _, err := tpl.Add(ctx, id, d, match.DlibResNetV1, match.Quality{}, nil); err != nil {
				b.Fatal(err)
			}
		}
	}
	s := New(db, tpl, nil, Default(), nil, time.Now)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s.mu.Lock()
		delete(s.cache, "big")
		s.mu.Unlock()
		if _, _, err := s.Refresh(ctx, "big"); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	_, _, body, _ := s.Current(ctx, "big")
	b.ReportMetric(float64(len(body))/1024, "KiB/gallery")
}
