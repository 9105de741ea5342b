package wire

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/diemdanh/diemdanh/models/match"
)

// addJSONSeeds adds every .json file under dir (recursively) to the corpus.
func addJSONSeeds(f *testing.F, dir string) {
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && filepath.Ext(p) == ".json" {
			if b, err := os.ReadFile(p); err == nil {
				f.Add(b)
			}
		}
		return nil
	})
}

// FuzzDecodeEvent: DecodeEvent never panics, and whatever it accepts
// round-trips: Encode succeeds, decoding that gives the same event, and
// encoding is stable (canonical).
func FuzzDecodeEvent(f *testing.F) {
	addJSONSeeds(f, filepath.Join("testdata", "events"))
	f.Add([]byte(`{"schema":1}`))
	f.Add([]byte(`{"schema":1,"face_jpeg":""}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := DecodeEvent(b)
		if err != nil {
			if ev != nil {
				t.Fatal("event returned with an error")
			}
			return
		}
		enc, err := ev.Encode()
		if err != nil {
			t.Fatalf("accepted event does not encode: %v", err)
		}
		ev2, err := DecodeEvent(enc)
		if err != nil {
			t.Fatalf("encoded event does not decode: %v\n%s", err, enc)
		}
		if !bytes.Equal(ev.FaceJPEG, ev2.FaceJPEG) {
			t.Fatal("face_jpeg changed in the round trip")
		}
		a, c := *ev, *ev2
		a.FaceJPEG, c.FaceJPEG = nil, nil
		if !reflect.DeepEqual(a, c) {
			t.Fatalf("round trip changed the event:\n%+v\n%+v", a, c)
		}
		enc2, err := ev2.Encode()
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding not stable: %v", err)
		}
	})
}

// FuzzDecodeGallery: DecodeGallery never panics, and an accepted document
// re-encodes to one that decodes to the same people and descriptors.
func FuzzDecodeGallery(f *testing.F) {
	addJSONSeeds(f, filepath.Join("testdata", "gallery"))
	f.Add([]byte(`{"format":"diemdanh-gallery/1","model":{"name":"x"},"people":[]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		doc, g, err := DecodeGallery(b)
		if err != nil {
			if doc != nil || g != nil {
				t.Fatal("values returned with an error")
			}
			return
		}
		if g.People() != len(doc.People) {
			t.Fatalf("gallery has %d people, document %d", g.People(), len(doc.People))
		}
		enc, err := doc.Encode()
		if err != nil {
			t.Fatal(err)
		}
		doc2, g2, err := DecodeGallery(enc)
		if err != nil {
			t.Fatalf("re-encoded gallery does not decode: %v", err)
		}
		if g2.People() != g.People() || g2.Len() != g.Len() || g2.Dim() != g.Dim() || doc2.Version != doc.Version {
			t.Fatal("round trip changed the gallery")
		}
		for _, id := range g.PersonIDs() {
			a, c := g.Descriptors(id), g2.Descriptors(id)
			if len(a) != len(c) {
				t.Fatalf("%s: %d descriptors became %d", id, len(a), len(c))
			}
			if !reflect.DeepEqual(g.Sessions(id), g2.Sessions(id)) {
				t.Fatalf("%s: sessions %v became %v", id, g.Sessions(id), g2.Sessions(id))
			}
			for i := range a {
				if match.Distance(a[i], c[i]) != 0 {
					t.Fatalf("%s: descriptor %d changed", id, i)
				}
			}
		}
		enc2, _ := doc2.Encode()
		if !bytes.Equal(enc, enc2) {
			t.Fatal("encoding not stable")
		}
	})
}

// fuzzRoundTrip: decode never panics, returns nil with every error, and
// whatever it accepts re-encodes (encoding/json, as the gate publishes)
// to a payload that decodes to the same value, and encodes stably.
func fuzzRoundTrip[T any](t *testing.T, b []byte, decode func([]byte) (*T, error)) {
	v, err := decode(b)
	if err != nil {
		if v != nil {
			t.Fatal("value returned with an error")
		}
		return
	}
	enc, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("accepted payload does not encode: %v", err)
	}
	v2, err := decode(enc)
	if err != nil {
		t.Fatalf("encoded payload does not decode: %v\n%s", err, enc)
	}
	if !reflect.DeepEqual(v, v2) {
		t.Fatalf("round trip changed the payload:\n%+v\n%+v", v, v2)
	}
	enc2, err := json.Marshal(v2)
	if err != nil || !bytes.Equal(enc, enc2) {
		t.Fatalf("encoding not stable: %v", err)
	}
}

// FuzzDecodeStatus: see fuzzRoundTrip.
func FuzzDecodeStatus(f *testing.F) {
	addJSONSeeds(f, filepath.Join("testdata", "status"))
	f.Add([]byte(`{"schema":1,"gate_id":"g","online":false}`))
	f.Fuzz(func(t *testing.T, b []byte) { fuzzRoundTrip(t, b, DecodeStatus) })
}

// FuzzDecodeHeartbeat: see fuzzRoundTrip.
func FuzzDecodeHeartbeat(f *testing.F) {
	addJSONSeeds(f, filepath.Join("testdata", "heartbeat"))
	f.Add([]byte(`{"schema":1,"gate_id":"g","fps":-0}`))
	f.Fuzz(func(t *testing.T, b []byte) { fuzzRoundTrip(t, b, DecodeHeartbeat) })
}

// FuzzDecodeGalleryAnnounce: see fuzzRoundTrip.
func FuzzDecodeGalleryAnnounce(f *testing.F) {
	addJSONSeeds(f, filepath.Join("testdata", "announce"))
	f.Add([]byte(`{"schema":1,"version":0,"url":"/"}`))
	f.Fuzz(func(t *testing.T, b []byte) { fuzzRoundTrip(t, b, DecodeGalleryAnnounce) })
}
