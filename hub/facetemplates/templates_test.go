package facetemplates

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/hub/store"
	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/faceengine"
	"github.com/diemdanh/diemdanh/models/match"
)

func testKey(b byte) []byte { return bytes.Repeat([]byte{b}, KeySize) }

func openDB(t *testing.T, path string) *store.DB {
	t.Helper()
	db, err := store.Open(context.Background(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func seed(t *testing.T, db *store.DB) {
	t.Helper()
	for _, q := range []string{
		`INSERT INTO schools(id, name) VALUES ('s1', 'School 1')`,
		`INSERT INTO pupils(id, school_id, full_name) VALUES ('000000000001', 's1', 'A'), ('000000000002', 's1', 'B'), ('000000000003', 's1', 'C')`,
	} {
		if _, err := db.W.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
}

func randDesc(r *rand.Rand) match.Descriptor {
	d := make(match.Descriptor, match.DescriptorLen)
	for i := range d {
		d[i] = float32(r.NormFloat64() * 0.1)
	}
	return d
}

func TestEncryptedAtRestAndWrongKey(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "hub.db")
	db := openDB(t, path)
	seed(t, db)
	s, err := Open(db, testKey(7), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	var descs []match.Descriptor
	photo := []byte("\xff\xd8\xffJPEG-PHOTO-PLAINTEXT-MARKER-0123456789")
	for i := 0; i < 3; i++ {
		d := randDesc(r)
		descs = append(descs, d)
		if _, err := s.Add(ctx, "000000000001", d, match.DefaultEmbedder, match.Quality{SizePx: 120}, photo); err != nil {
			t.Fatal(err)
		}
	}
	// Decrypts back to the same values.
	_, m, err := s.ActiveDescriptors(ctx, "s1")
	if err != nil {
		t.Fatal(err)
	}
	if len(m["000000000001"]) != 3 || match.Distance(m["000000000001"][1], descs[1]) != 0 {
		t.Fatalf("round trip: %v", m)
	}
	infos, _ := s.List(ctx, "000000000001")
	got, err := s.Photo(ctx, infos[0].ID)
	if err != nil || !bytes.Equal(got, photo) {
		t.Fatalf("photo round trip: %v", err)
	}
	// Scan the database file and its WAL before any checkpoint: no
	// descriptor's raw float32 bytes (any 16-byte window) nor the photo.
	var raw []byte
	for _, suffix := range []string{"", "-wal"} {
		b, err := os.ReadFile(path + suffix)
		if err != nil && suffix == "" {
			t.Fatal(err)
		}
		raw = append(raw, b...)
	}
	if len(raw) < 4096 {
		t.Fatalf("database too small to be real: %d", len(raw))
	}
	for i, d := range descs {
		b := d.Bytes()
		for off := 0; off+16 <= len(b); off += 16 {
			if bytes.Contains(raw, b[off:off+16]) {
				t.Fatalf("plaintext bytes of descriptor %d at offset %d found in the database", i, off)
			}
		}
	}
	if bytes.Contains(raw, []byte("PLAINTEXT-MARKER")) {
		t.Fatal("plaintext photo found in the database")
	}
	db.Close()

	// After a checkpoint too, and with the wrong key: a clear error.
	db = openDB(t, path)
	defer db.Close()
	if _, err := Open(db, testKey(8), nil, nil); !errors.Is(err, ErrWrongKey) || !strings.Contains(err.Error(), "wrong key") {
		t.Fatalf("wrong key: got %v", err)
	}
	if _, err := Open(db, testKey(7), nil, nil); err != nil {
		t.Fatalf("right key refused: %v", err)
	}
}

func TestActiveDescriptorsFilterAndVersion(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, filepath.Join(t.TempDir(), "hub.db"))
	defer db.Close()
	seed(t, db)
	s, err := Open(db, testKey(1), nil, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	var notified []int64
	s.Subscribe(func(school string, v int64) { notified = append(notified, v) })
	r := rand.New(rand.NewPCG(3, 4))
	other := match.ModelID{Name: "other", Version: "2"}
	mustAdd := func(p string, m match.ModelID, status string) int64 {
		id, err := s.AddTemplate(ctx, New{PupilID: p, Descriptor: randDesc(r), Model: m, Status: status})
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	a := mustAdd("000000000001", match.DefaultEmbedder, "")
	mustAdd("000000000001", other, "")                           // other model: not served
	mustAdd("000000000002", match.DefaultEmbedder, StatusReview) // review: not served
	mustAdd("000000000003", match.DefaultEmbedder, "")           // manual attendance below
	if _, err := db.W.Exec(`UPDATE pupils SET manual_attendance = 1 WHERE id = '000000000003'`); err != nil {
		t.Fatal(err)
	}
	model, m, err := s.ActiveDescriptors(ctx, "s1")
	if err != nil {
		t.Fatal(err)
	}
	if model != match.DefaultEmbedder || len(m) != 1 || len(m["000000000001"]) != 1 {
		t.Fatalf("served %v %v", model, m)
	}
	if om, err := s.OtherModels(ctx, "s1"); err != nil || len(om) != 1 || om[other.String()] != 1 {
		t.Fatalf("other models %v %v", om, err)
	}
	v1, _ := s.Version(ctx, "s1")
	if _, err := s.Add(ctx, "999999999999", randDesc(r), match.DefaultEmbedder, match.Quality{}, nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown pupil: %v", err)
	}
	if err := s.SetStatus(ctx, a, StatusExcluded, "test"); err != nil {
		t.Fatal(err)
	}
	v2, _ := s.Version(ctx, "s1")
	if v2 <= v1 {
		t.Fatalf("version did not bump: %d -> %d", v1, v2)
	}
	doc, err := s.Gallery(ctx, "s1")
	if err != nil || len(doc.People) != 0 || doc.Version != v2 {
		t.Fatalf("gallery after exclusion: %+v %v", doc, err)
	}
	if err := s.DeletePupil(ctx, "000000000001"); err != nil {
		t.Fatal(err)
	}
	if l, _ := s.List(ctx, "000000000001"); len(l) != 0 {
		t.Fatalf("templates left after delete: %v", l)
	}
	if len(notified) < 4 || notified[len(notified)-1] <= v2 {
		t.Fatalf("notifications %v", notified)
	}
}

func TestReembedFromPhotosAndFlag(t *testing.T) {
	ctx := context.Background()
	dir, err := conf.TestDataDir()
	if err != nil {
		t.Fatal(err)
	}
	cfg := faceengine.DefaultEngineConfig()
	cfg.ModelsDir = conf.TestModelsDir()
	cfg.Workers = 1
	eng, err := faceengine.NewEngine(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	jpg, err := os.ReadFile(filepath.Join(dir, "faces", "images", "jimin4.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	db := openDB(t, filepath.Join(t.TempDir(), "hub.db"))
	defer db.Close()
	seed(t, db)
	s, err := Open(db, testKey(2), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	old := match.ModelID{Name: "old-embedder", Version: "0"}
	s.SetModel(old)
	r := rand.New(rand.NewPCG(5, 6))
	if _, err := s.Add(ctx, "000000000001", randDesc(r), old, match.Quality{}, jpg); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Add(ctx, "000000000002", randDesc(r), old, match.Quality{}, nil); err != nil {
		t.Fatal(err)
	}
	rep, err := s.Reembed(ctx, eng)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Reembedded != 1 || len(rep.Flagged) != 1 || rep.Flagged[0] != "000000000002" {
		t.Fatalf("report %+v", rep)
	}
	var flag int
	db.R.QueryRow(`SELECT needs_reenrol FROM pupils WHERE id = '000000000002'`).Scan(&flag)
	if flag != 1 {
		t.Fatal("pupil without photo not flagged for re-enrolment")
	}
	model, m, err := s.ActiveDescriptors(ctx, "s1")
	if err != nil || model != match.DefaultEmbedder || len(m) != 1 || len(m["000000000001"]) != 1 {
		t.Fatalf("after reembed: %v %v %v", model, m, err)
	}
	// Idempotent: a second run re-embeds nothing new.
	rep, err = s.Reembed(ctx, eng)
	if err != nil || rep.Reembedded != 0 {
		t.Fatalf("second reembed %+v %v", rep, err)
	}
}

func TestParseKey(t *testing.T) {
	hexKey := strings.Repeat("ab", 32)
	if k, err := ParseKey([]byte(hexKey + "\n")); err != nil || len(k) != 32 {
		t.Fatalf("hex: %v", err)
	}
	if _, err := ParseKey([]byte("short")); err == nil {
		t.Fatal("short key accepted")
	}
	p := filepath.Join(t.TempDir(), "k", "template.key")
	t.Setenv(KeyEnv, "")
	k1, err := LoadKey(p)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(p)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v", st.Mode())
	}
	k2, _ := LoadKey(p)
	if !bytes.Equal(k1, k2) {
		t.Fatal("key file not stable")
	}
	t.Setenv(KeyEnv, hexKey)
	k3, _ := LoadKey(p)
	if bytes.Equal(k3, k1) {
		t.Fatal("env did not override the file")
	}
}
