package gallerysrv

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/edge/gallery"
	"github.com/diemdanh/diemdanh/edge/publish/brokertest"
	"github.com/diemdanh/diemdanh/hub/api"
	"github.com/diemdanh/diemdanh/hub/facetemplates"
	"github.com/diemdanh/diemdanh/hub/roster"
	"github.com/diemdanh/diemdanh/hub/store"
	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/wire"
	pmqtt "github.com/eclipse/paho.mqtt.golang"
	"golang.org/x/crypto/bcrypt"
)

var pupils = []string{"001234567890", "001234567891", "001234567892"}

type fixture struct {
	db     *store.DB
	roster *roster.Store
	tpl    *facetemplates.Store
	srv    *Server
	url    string
	pwA    string // gate-a (school thcs-a)
	pwB    string // gate-b (school thcs-b)
}

// newFixture builds a real roster, a real encrypted template store holding
// real descriptors (go-face's idols.json from the shared test data) and
// the gallery server over HTTP.
func newFixture(t *testing.T, ann Announcer, check time.Duration) *fixture {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "hub.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	dir, err := conf.TestDataDir()
	if err != nil {
		t.Fatal(err)
	}
	idols, err := match.LoadIdols(filepath.Join(dir, "faces", "idols.json"))
	if err != nil {
		t.Fatal(err)
	}
	_, descs, err := idols.Labelled()
	if err != nil || len(descs) < 6 {
		t.Fatalf("idol descriptors: %v (%d)", err, len(descs))
	}
	f := &fixture{db: db, roster: roster.New(db, nil, time.Now)}
	f.roster.BcryptCost = bcrypt.MinCost
	key := make([]byte, facetemplates.KeySize)
	rand.Read(key)
	if f.tpl, err = facetemplates.Open(db, key, nil, time.Now); err != nil {
		t.Fatal(err)
	}
	// The templates are idols.json's real dlib descriptors: the store
	// serves their model, as hub/app sets it from enrol.embedder.
	f.tpl.SetModel(match.DlibResNetV1)
	for _, s := range []string{"thcs-a", "thcs-b"} {
		if _, err := f.roster.PutSchool(ctx, roster.School{ID: s, Name: s}); err != nil {
			t.Fatal(err)
		}
	}
	for i, p := range pupils {
		if _, err := f.roster.PutPupil(ctx, roster.Pupil{ID: p, SchoolID: "thcs-a", FullName: "Học sinh " + p[9:], Active: true}); err != nil {
			t.Fatal(err)
		}
		for _, d := range descs[2*i : 2*i+2] {
			if _, err := f.tpl.Add(ctx, p, d, match.DlibResNetV1, match.Quality{}, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	ca, err := f.roster.CreateGate(ctx, roster.Gate{ID: "gate-a", SchoolID: "thcs-a"})
	if err != nil {
		t.Fatal(err)
	}
	cb, err := f.roster.CreateGate(ctx, roster.Gate{ID: "gate-b", SchoolID: "thcs-b"})
	if err != nil {
		t.Fatal(err)
	}
	f.pwA, f.pwB = ca.Password, cb.Password
	cfg := Default()
	cfg.CheckInterval = check
	f.srv = New(db, f.tpl, ann, cfg, nil, time.Now)
	f.roster.Subscribe(f.srv.Changed)
	f.tpl.Subscribe(func(school string, _ int64) { f.srv.Changed(ctx, school) })
	a := api.NewServer(nil, nil, nil)
	f.srv.Routes(a.V1)
	ts := httptest.NewServer(a.Engine)
	t.Cleanup(ts.Close)
	f.url = ts.URL
	return f
}

type resp struct {
	status int
	etag   string
	doc    *wire.GalleryDoc
}

func (f *fixture) get(t *testing.T, gate, user, pw, inm string) resp {
	t.Helper()
	req, _ := http.NewRequest("GET", f.url+"/api/v1/gates/"+gate+"/gallery", nil)
	if user != "" {
		req.SetBasicAuth(user, pw)
	}
	if inm != "" {
		req.Header.Set("If-None-Match", inm)
	}
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	out := resp{status: r.StatusCode, etag: r.Header.Get("ETag")}
	if r.StatusCode == 200 {
		doc, _, err := wire.DecodeGallery(b)
		if err != nil {
			t.Fatalf("served gallery does not decode: %v", err)
		}
		out.doc = doc
	}
	return out
}

func ids(doc *wire.GalleryDoc) []string {
	var out []string
	for _, p := range doc.People {
		out = append(out, p.StudentID)
	}
	return out
}

func TestGalleryETagFlowAndGateAuth(t *testing.T) {
	f := newFixture(t, nil, time.Hour)
	ctx := context.Background()

	r := f.get(t, "gate-a", "gate-a", f.pwA, "")
	if r.status != 200 || r.etag != `"v1"` || r.doc.Version != 1 || len(r.doc.People) != 3 || r.doc.SchoolID != "thcs-a" {
		t.Fatalf("first fetch: %d %s %+v", r.status, r.etag, r.doc)
	}
	for _, p := range r.doc.People {
		if len(p.Descriptors) != 2 {
			t.Fatalf("%s has %d descriptors", p.StudentID, len(p.Descriptors))
		}
	}
	if r := f.get(t, "gate-a", "gate-a", f.pwA, `"v1"`); r.status != 304 || r.etag != `"v1"` {
		t.Fatalf("If-None-Match current: %d %s", r.status, r.etag)
	}
	// Nothing changed: a notification does not bump the version.
	f.srv.Changed(ctx, "thcs-a")
	if r := f.get(t, "gate-a", "gate-a", f.pwA, `"v1"`); r.status != 304 {
		t.Fatalf("unchanged gallery re-versioned: %d %s", r.status, r.etag)
	}
	// A pupil deactivated: new version without them.
	p, _ := f.roster.Pupil(ctx, pupils[1])
	p.Active = false
	if _, err := f.roster.PutPupil(ctx, p); err != nil {
		t.Fatal(err)
	}
	r = f.get(t, "gate-a", "gate-a", f.pwA, `"v1"`)
	if r.status != 200 || r.etag != `"v2"` || r.doc.Version != 2 || len(r.doc.People) != 2 {
		t.Fatalf("after deactivation: %d %s %v", r.status, r.etag, ids(r.doc))
	}
	for _, id := range ids(r.doc) {
		if id == pupils[1] {
			t.Fatal("deactivated pupil still served")
		}
	}
	// A template added: new version.
	if _, err := f.tpl.Add(ctx, pupils[0], make(match.Descriptor, 128), match.DlibResNetV1, match.Quality{}, nil); err != nil {
		t.Fatal(err)
	}
	if r := f.get(t, "gate-a", "gate-a", f.pwA, `"v2"`); r.status != 200 || r.etag != `"v3"` {
		t.Fatalf("after a template was added: %d %s", r.status, r.etag)
	}
	// The version survives a restart of the server (persisted).
	f.srv = New(f.db, f.tpl, nil, Default(), nil, time.Now)
	a := api.NewServer(nil, nil, nil)
	f.srv.Routes(a.V1)
	ts := httptest.NewServer(a.Engine)
	defer ts.Close()
	f.url = ts.URL
	if r := f.get(t, "gate-a", "gate-a", f.pwA, `"v3"`); r.status != 304 {
		t.Fatalf("after restart: %d %s", r.status, r.etag)
	}

	// Authentication and authorisation.
	for name, c := range map[string]struct {
		gate, user, pw string
		want           int
	}{
		"no credentials":         {"gate-a", "", "", 401},
		"wrong password":         {"gate-a", "gate-a", f.pwA + "x", 401},
		"unknown gate user":      {"gate-a", "gate-z", f.pwA, 401},
		"another school's gate":  {"gate-a", "gate-b", f.pwB, 403},
		"asking for another one": {"gate-b", "gate-a", f.pwA, 403},
		"own gallery, school b":  {"gate-b", "gate-b", f.pwB, 200},
	} {
		if r := f.get(t, c.gate, c.user, c.pw, ""); r.status != c.want {
			t.Errorf("%s: status %d, want %d", name, r.status, c.want)
		}
	}
	// A deactivated gate is refused.
	g, _ := f.roster.Gate(ctx, "gate-a")
	g.Active = false
	if _, err := f.roster.UpdateGate(ctx, g); err != nil {
		t.Fatal(err)
	}
	if r := f.get(t, "gate-a", "gate-a", f.pwA, ""); r.status != 403 {
		t.Fatalf("deactivated gate: %d", r.status)
	}
}

// mqttAnnouncer publishes the retained announcement with a real MQTT
// client, as the hub's broker does.
type mqttAnnouncer struct{ c pmqtt.Client }

func (m mqttAnnouncer) Announce(_ context.Context, school string, a wire.GalleryAnnounce) error {
	b, _ := json.Marshal(a)
	tok := m.c.Publish(wire.GalleryTopic(school), 1, true, b)
	tok.WaitTimeout(5 * time.Second)
	return tok.Error()
}

func connect(t *testing.T, addr, id string, onConnect pmqtt.OnConnectHandler) pmqtt.Client {
	t.Helper()
	o := pmqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetAutoReconnect(true).
		SetConnectRetry(true).SetConnectRetryInterval(100 * time.Millisecond)
	if onConnect != nil {
		o.SetOnConnectHandler(onConnect)
	}
	c := pmqtt.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("mqtt connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c
}

// TestRemovalReachesRunningEdge: the edge's real gallery Sync (the gate's
// edge/gallery) runs against the hub's gallery server, woken by the
// retained announcement over a real MQTT broker (embedded mochi). A pupil
// removed from the roster must be gone from the edge within 10 s.
func TestRemovalReachesRunningEdge(t *testing.T) {
	addr, err := brokertest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	b, err := brokertest.StartMochi(addr, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	hubClient := connect(t, addr, "hub-test", nil)
	f := newFixture(t, mqttAnnouncer{hubClient}, time.Hour) // only Changed/announce, no polling help
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	wg.Add(1)
	go func() { defer wg.Done(); _ = f.srv.Run(ctx) }()

	st, err := gallery.NewStore(filepath.Join(t.TempDir(), "gallery.json"), nil)
	if err != nil {
		t.Fatal(err)
	}
	scfg := gallery.DefaultSyncConfig()
	scfg.HubURL, scfg.GateID, scfg.Username, scfg.Password = f.url, "gate-a", "gate-a", f.pwA
	scfg.Interval = time.Hour // the announcement, not polling, must carry the change
	sync, err := gallery.NewSync(scfg, st, nil, nil, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	connect(t, addr, "gate-a-sub", func(c pmqtt.Client) {
		c.Subscribe(wire.GalleryTopic("thcs-a"), 1, func(_ pmqtt.Client, m pmqtt.Message) {
			var a wire.GalleryAnnounce
			if json.Unmarshal(m.Payload(), &a) == nil {
				sync.OnAnnounce(a)
			}
		})
	})
	wg.Add(1)
	go func() { defer wg.Done(); _ = sync.Run(ctx) }()

	has := func(id string) bool {
		_, g := st.Current()
		for _, p := range g.PersonIDs() {
			if p == id {
				return true
			}
		}
		return false
	}
	waitFor(t, 10*time.Second, "edge gets the initial gallery", func() bool { return has(pupils[0]) && has(pupils[2]) })

	start := time.Now()
	if err := f.roster.DeletePupil(context.Background(), pupils[2]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "removed pupil gone from the edge", func() bool { return !has(pupils[2]) })
	t.Logf("removal reached the edge in %s", time.Since(start).Round(time.Millisecond))
	if !has(pupils[0]) || !has(pupils[1]) {
		t.Fatal("other pupils lost")
	}
	// The edge keeps its gallery on disk.
	if _, g, err := wire.LoadGalleryFile(st.Path()); err != nil || g.People() != 2 {
		t.Fatalf("edge gallery file: %v", err)
	}
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for: %s", d, what)
}
