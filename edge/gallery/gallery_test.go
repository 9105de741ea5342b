package gallery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/wire"
)

func makeDoc(version int64, ids ...string) *wire.GalleryDoc {
	r := rand.New(rand.NewPCG(uint64(version), 7))
	g := match.NewGallery(version, match.DlibResNetV1)
	for _, id := range ids {
		d := make(match.Descriptor, match.DescriptorLen)
		for i := range d {
			d[i] = float32(r.NormFloat64() * 0.1)
		}
		if err := g.Add(id, d); err != nil {
			panic(err)
		}
	}
	return wire.DocFromGallery("thcs-a", g)
}

func TestStoreMissingCorruptReplaceReload(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "gallery.json")
	s, err := NewStore(path, nil)
	if err != nil {
		t.Fatalf("missing file must give an empty gallery: %v", err)
	}
	if doc, g := s.Current(); doc.Version != 0 || g.Len() != 0 {
		t.Fatal("not empty")
	}
	var changes atomic.Int32
	s.OnChange(func(*wire.GalleryDoc, *match.Gallery) { changes.Add(1) })
	if err := s.Replace(makeDoc(3, "079123456781", "079123456782")); err != nil {
		t.Fatal(err)
	}
	if doc, g := s.Current(); doc.Version != 3 || g.People() != 2 || changes.Load() != 1 {
		t.Fatalf("after replace: v%d %d people", doc.Version, g.People())
	}
	// A bad document changes nothing: memory and file stay.
	before, _ := os.ReadFile(path)
	bad := makeDoc(4, "079123456781")
	bad.People[0].StudentID = "42"
	err = s.Replace(bad)
	var fe *conf.FieldError
	if !errors.As(err, &fe) || fe.Field != "people[0].student_id" {
		t.Fatalf("bad doc: %v", err)
	}
	after, _ := os.ReadFile(path)
	if s.Version() != 3 || !bytes.Equal(before, after) {
		t.Fatal("bad document changed the gallery")
	}
	// Reboot: a new Store loads the file without any hub.
	s2, err := NewStore(path, nil)
	if err != nil || s2.Version() != 3 {
		t.Fatalf("reload: %v v%d", err, s2.Version())
	}
	// A corrupt file at start is a clear error.
	if err := os.WriteFile(path, []byte(`{"format":"diemdanh-gallery/1","people":[`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewStore(path, nil); err == nil || !strings.Contains(err.Error(), "malformed JSON") {
		t.Fatalf("corrupt file: %v", err)
	}
	if _, err := NewStore("", nil); err == nil {
		t.Fatal("empty path accepted")
	}
}

// TestConcurrentReadersSeeWholeGalleries: under the race detector, readers
// never see a half-replaced gallery (doc and gallery always agree).
func TestConcurrentReadersSeeWholeGalleries(t *testing.T) {
	s, err := NewStore(filepath.Join(t.TempDir(), "g.json"), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				doc, g := s.Current()
				if doc.Version != g.Version || len(doc.People) != g.People() {
					t.Errorf("torn read: doc v%d/%d g v%d/%d", doc.Version, len(doc.People), g.Version, g.People())
					return
				}
			}
		}()
	}
	for v := int64(1); v <= 20; v++ {
		ids := []string{}
		for i := int64(0); i < v%5+1; i++ {
			ids = append(ids, fmt.Sprintf("0791234567%02d", i))
		}
		if err := s.Replace(makeDoc(v, ids...)); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	wg.Wait()
}

// hub implements the documented contract of
// GET /api/v1/gates/{gate_id}/gallery: basic auth, ETag "v<version>",
// If-None-Match → 304.
type hub struct {
	mu       sync.Mutex
	doc      *wire.GalleryDoc
	requests int
	inm      []string
	fail     int // answer 503 this many times
	body     []byte
}

func (h *hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.requests++
	h.inm = append(h.inm, r.Header.Get("If-None-Match"))
	if r.URL.Path != "/api/v1/gates/gate-1/gallery" {
		http.NotFound(w, r)
		return
	}
	if u, p, ok := r.BasicAuth(); !ok || u != "gate-1" || p != "secret" {
		w.Header().Set("WWW-Authenticate", `Basic realm="hub"`)
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	if h.fail > 0 {
		h.fail--
		http.Error(w, "busy", http.StatusServiceUnavailable)
		return
	}
	if h.body != nil {
		w.Write(h.body)
		return
	}
	etag := ETag(h.doc.Version)
	w.Header().Set("ETag", etag)
	if r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	b, _ := h.doc.Encode()
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}

func (h *hub) set(doc *wire.GalleryDoc) { h.mu.Lock(); h.doc = doc; h.mu.Unlock() }

func startHub(t *testing.T, h *hub) *httptest.Server {
	srv := httptest.NewServer(h) // listens on 127.0.0.1
	t.Cleanup(srv.Close)
	return srv
}

func syncCfg(url string) SyncConfig {
	c := DefaultSyncConfig()
	c.HubURL, c.GateID, c.Username, c.Password = url, "gate-1", "gate-1", "secret"
	c.Timeout = 2 * time.Second
	return c
}

func TestSyncOnceETagFlow(t *testing.T) {
	h := &hub{doc: makeDoc(5, "079123456781", "079123456782", "079123456783")}
	srv := startHub(t, h)
	path := filepath.Join(t.TempDir(), "gallery.json")
	st, _ := NewStore(path, nil)
	sy, err := NewSync(syncCfg(srv.URL), st, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	steps := []struct {
		name    string
		before  func()
		changed bool
		errIs   error
		version int64
		people  int
		inm     string
	}{
		{"first fetch", nil, true, nil, 5, 3, ""},
		{"unchanged → 304", nil, false, nil, 5, 3, `"v5"`},
		{"pupil removed → new version", func() { h.set(makeDoc(6, "079123456781", "079123456783")) }, true, nil, 6, 2, `"v5"`},
		{"hub error keeps gallery", func() { h.mu.Lock(); h.fail = 1; h.mu.Unlock() }, false, errAny, 6, 2, `"v6"`},
		{"bad body keeps gallery", func() { h.mu.Lock(); h.body = []byte(`{"format":"nope"}`); h.mu.Unlock() }, false, errAny, 6, 2, `"v6"`},
	}
	for _, s := range steps {
		if s.before != nil {
			s.before()
		}
		changed, err := sy.SyncOnce(ctx)
		if (err != nil) != (s.errIs != nil) || changed != s.changed {
			t.Fatalf("%s: changed=%v err=%v", s.name, changed, err)
		}
		doc, g := st.Current()
		if doc.Version != s.version || g.People() != s.people {
			t.Fatalf("%s: v%d %d people", s.name, doc.Version, g.People())
		}
		h.mu.Lock()
		inm := h.inm[len(h.inm)-1]
		h.mu.Unlock()
		if inm != s.inm {
			t.Fatalf("%s: If-None-Match %q want %q", s.name, inm, s.inm)
		}
	}
	// The file on disk is the last good gallery.
	st2, err := NewStore(path, nil)
	if err != nil || st2.Version() != 6 {
		t.Fatalf("file after sync: %v v%d", err, st2.Version())
	}
	// Hub down: error, gallery kept.
	srv.Close()
	if _, err := sy.SyncOnce(ctx); err == nil {
		t.Fatal("hub down gave no error")
	}
	if st.Version() != 6 {
		t.Fatal("gallery lost while hub down")
	}
}

var errAny = errors.New("any")

func TestSyncWrongPassword(t *testing.T) {
	srv := startHub(t, &hub{doc: makeDoc(1, "079123456781")})
	st, _ := NewStore(filepath.Join(t.TempDir(), "g.json"), nil)
	c := syncCfg(srv.URL)
	c.Password = "wrong"
	sy, _ := NewSync(c, st, nil, nil, nil)
	if _, err := sy.SyncOnce(context.Background()); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("got %v", err)
	}
}

type lineCounter struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lineCounter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lineCounter) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), s)
}

// TestRunAnnouncementOutageRecovery: an MQTT announcement (OnAnnounce)
// makes a running worker fetch at once, well before its interval; an
// outage is logged once and its end once.
func TestRunAnnouncementOutageRecovery(t *testing.T) {
	h := &hub{doc: makeDoc(1, "079123456781")}
	srv := startHub(t, h)
	st, _ := NewStore(filepath.Join(t.TempDir(), "g.json"), nil)
	logs := &lineCounter{}
	c := syncCfg(srv.URL)
	c.Interval = time.Hour // only announcements and retries trigger fetches
	sy, err := NewSync(c, st, nil, slog.New(slog.NewTextHandler(logs, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- sy.Run(ctx) }()
	defer func() { cancel(); <-done }()
	wait := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timeout waiting for %s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	wait("initial fetch", func() bool { return st.Version() == 1 })
	h.set(makeDoc(2, "079123456782"))
	sy.OnAnnounce(wire.GalleryAnnounce{Schema: 1, Version: 1}) // same version: no fetch needed
	time.Sleep(100 * time.Millisecond)
	if st.Version() != 1 {
		t.Fatal("fetched on an announcement of the current version")
	}
	sy.OnAnnounce(wire.GalleryAnnounce{Schema: 1, Version: 2})
	wait("announced version", func() bool { return st.Version() == 2 })
	// Two failures in a row, then recovery via the retry backoff.
	h.mu.Lock()
	h.fail = 2
	h.mu.Unlock()
	h.set(makeDoc(3, "079123456783"))
	sy.Notify()
	wait("recovery after outage", func() bool { return st.Version() == 3 })
	// The loop logs the recovery after the store took the new version.
	wait("recovery logged", func() bool { return logs.count("gallery sync recovered") >= 1 })
	if n := logs.count("gallery sync outage"); n != 1 {
		t.Fatalf("%d outage lines", n)
	}
	if n := logs.count("gallery sync recovered"); n != 1 {
		t.Fatalf("%d recovered lines", n)
	}
}

func TestSyncConfigValidate(t *testing.T) {
	cases := []struct {
		field string
		mod   func(*SyncConfig)
	}{
		{"", func(c *SyncConfig) {}},
		{"", func(c *SyncConfig) { c.HubURL = "" }}, // disabled
		{"gallery.sync.hub_url", func(c *SyncConfig) { c.HubURL = "ftp://x" }},
		{"gallery.sync.gate_id", func(c *SyncConfig) { c.GateID = "A B" }},
		{"gallery.sync.username", func(c *SyncConfig) { c.Username = "" }},
		{"gallery.sync.ca_file", func(c *SyncConfig) { c.CAFile = "/x.pem" }},
		{"gallery.sync.interval", func(c *SyncConfig) { c.Interval = 0 }},
	}
	for _, tc := range cases {
		c := syncCfg("http://127.0.0.1:8080")
		tc.mod(&c)
		err := c.Validate()
		var fe *conf.FieldError
		if tc.field == "" && err != nil || tc.field != "" && (!errors.As(err, &fe) || fe.Field != tc.field) {
			t.Errorf("%s: got %v", tc.field, err)
		}
	}
}

// customDoc is a gallery of a custom model: the declared name, and the
// declared version with 12 hex digits of the file's checksum
// (faceengine.CustomModel.ModelID).
func customDoc(version int64, sum string, ids ...string) *wire.GalleryDoc {
	doc := makeDoc(version, ids...)
	doc.Model = match.ModelID{Name: "school-r100", Version: "1." + sum}
	return doc
}

// A gate running one custom model refuses a gallery of another, from the
// hub (even while its own gallery is still empty) and from its file at
// start; a gallery of its own model goes through.
func TestStoreRefusesAnotherCustomModel(t *testing.T) {
	mine := customDoc(1, "c9507617a7cb", "079123456781").Model
	cases := []struct {
		name    string
		current *wire.GalleryDoc // nil: no gallery file yet
		offered *wire.GalleryDoc
		refused bool
	}{
		{"other checksum, empty gate", nil, customDoc(2, "87aacdfe5751", "079123456781"), true},
		{"built-in model, empty gate", nil, makeDoc(2, "079123456781"), true},
		{"other checksum, loaded gate", customDoc(1, "c9507617a7cb", "079123456782"), customDoc(2, "87aacdfe5751", "079123456781"), true},
		{"same model", customDoc(1, "c9507617a7cb", "079123456782"), customDoc(2, "c9507617a7cb", "079123456781"), false},
		{"empty gallery of another model", nil, customDoc(2, "87aacdfe5751"), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "gallery.json")
			if tc.current != nil {
				b, err := tc.current.Encode()
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			s, err := NewStore(path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Expect(mine); err != nil {
				t.Fatalf("own gallery refused at start: %v", err)
			}
			before := s.Version()
			err = s.Replace(tc.offered)
			var fe *conf.FieldError
			if tc.refused {
				if !errors.As(err, &fe) || fe.Field != "model" || s.Version() != before {
					t.Fatalf("got %v, version %d; want a refusal naming model", err, s.Version())
				}
				return
			}
			if err != nil || s.Version() != tc.offered.Version {
				t.Fatalf("refused: %v", err)
			}
		})
	}
	// At start, a gallery file of another custom model is refused.
	path := filepath.Join(t.TempDir(), "gallery.json")
	b, err := customDoc(1, "87aacdfe5751", "079123456781").Encode()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := NewStore(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	var fe *conf.FieldError
	if err := s.Expect(mine); !errors.As(err, &fe) || fe.Field != "model" {
		t.Fatalf("file of another model at start: %v", err)
	}
}
