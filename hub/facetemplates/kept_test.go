package facetemplates

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/diemdanh/diemdanh/models/match"
)

// TestKeptPhotos: only active enrolment templates of the current model
// with a kept photo, of active pupils of the school, are listed, and
// each opens to its photo; a pupil whose templates kept no photo is
// counted.
func TestKeptPhotos(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, filepath.Join(t.TempDir(), "hub.db"))
	seed(t, db)
	for _, q := range []string{
		`INSERT INTO schools(id, name) VALUES ('s2', 'School 2')`,
		`INSERT INTO pupils(id, school_id, full_name) VALUES ('000000000004', 's2', 'D'), ('000000000005', 's1', 'E')`,
	} {
		if _, err := db.W.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	s, err := Open(db, testKey(3), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(5, 6))
	other := match.ModelID{Name: "other", Version: "1"}
	add := func(n New) int64 {
		t.Helper()
		n.Descriptor = randDesc(r)
		if n.Model.Name == "" {
			n.Model = s.Model()
		}
		id, err := s.AddTemplate(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	a1 := add(New{PupilID: "000000000001", Photo: []byte("a1")})
	a2 := add(New{PupilID: "000000000001", Photo: []byte("a2")})
	add(New{PupilID: "000000000001", Photo: []byte("a3"), Status: StatusReview})
	add(New{PupilID: "000000000001", Photo: []byte("a4"), Model: other})
	add(New{PupilID: "000000000001", Photo: []byte("gate"), Source: SourceTeacher, EventID: "e1"})
	add(New{PupilID: "000000000002"})                            // no photo kept: counted
	b3 := add(New{PupilID: "000000000003", Photo: []byte("c1")}) // listed
	add(New{PupilID: "000000000004", Photo: []byte("d1")})       // another school
	add(New{PupilID: "000000000005", Photo: []byte("e1")})       // inactive below
	if _, err := db.W.Exec(`UPDATE pupils SET active = 0 WHERE id = '000000000005'`); err != nil {
		t.Fatal(err)
	}
	refs, without, err := s.KeptPhotos(ctx, "s1")
	if err != nil {
		t.Fatal(err)
	}
	want := []KeptRef{{a1, "000000000001"}, {a2, "000000000001"}, {b3, "000000000003"}}
	if len(refs) != len(want) {
		t.Fatalf("refs %+v, want %+v", refs, want)
	}
	for i, w := range want {
		if refs[i] != w {
			t.Errorf("ref %d = %+v, want %+v", i, refs[i], w)
		}
	}
	if without != 1 {
		t.Errorf("pupils without a kept photo: %d, want 1", without)
	}
	if p, err := s.Photo(ctx, refs[1].TemplateID); err != nil || string(p) != "a2" {
		t.Errorf("photo %q, %v", p, err)
	}
}
