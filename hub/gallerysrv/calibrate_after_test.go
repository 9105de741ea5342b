package gallerysrv

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/edge/gallery"
	"github.com/diemdanh/diemdanh/edge/publish/brokertest"
	"github.com/diemdanh/diemdanh/hub/audit"
	"github.com/diemdanh/diemdanh/hub/consent"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/wire"
	pmqtt "github.com/eclipse/paho.mqtt.golang"
)

// orderLog records, in order, announcements and calibration starts.
type orderLog struct {
	mu    sync.Mutex
	lines []string
}

func (o *orderLog) add(s string) {
	o.mu.Lock()
	o.lines = append(o.lines, s)
	o.mu.Unlock()
}

func (o *orderLog) get() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.lines...)
}

func (o *orderLog) Announce(_ context.Context, school string, a wire.GalleryAnnounce) error {
	if school == "thcs-b" {
		o.add(fmt.Sprintf("announce v%d", a.Version))
	}
	return nil
}

// holdCalibration makes the n-th background calibration of srv wait for
// release once it has started (started is closed then); the others run.
func holdCalibration(srv *Server, log *orderLog, n int) (started, release chan struct{}) {
	started, release = make(chan struct{}), make(chan struct{})
	k := 0
	srv.calib.mu.Lock()
	srv.calib.started = func(school string) {
		k++
		log.add(fmt.Sprintf("calibration %d starts", k))
		if k == n {
			close(started)
			<-release
		}
	}
	srv.calib.mu.Unlock()
	return started, release
}

func hasPupil(doc *wire.GalleryDoc, id string) bool {
	for _, p := range doc.People {
		if p.StudentID == id {
			return true
		}
	}
	return false
}

// TestRemovalPublishedBeforeCalibration: a withdrawal is published at once
// with the previous threshold (point pending, not audited) and only then
// calibrated; the calibrated gallery follows as a new version whose
// threshold is the calibration of exactly what it carries.
func TestRemovalPublishedBeforeCalibration(t *testing.T) {
	ctx := context.Background()
	log := &orderLog{}
	f := newFixture(t, log, time.Hour)
	f.enrolIdols(t, idolFaces(t), 0, 12, 3)
	doc, _ := f.gateB(t) // the first gallery is calibrated before it is served
	before := f.report(t).Current
	if !before.Calibrated || doc.Threshold != before.Threshold || f.srv.Calibrations() != 1 {
		t.Fatalf("first gallery: doc threshold %g, point %+v", doc.Threshold, before)
	}
	audits := f.auditCount(t)
	started, release := holdCalibration(f.srv, log, 1)

	gone := pupilID(3)
	reg := consent.New(f.db, f.tpl, audit.New(f.db, nil, time.Now), nil, time.Now)
	if _, err := reg.Withdraw(ctx, "admin:root", gone, "gia đình rút lại"); err != nil {
		t.Fatal(err)
	}
	doc2, g2 := f.gateB(t)
	if doc2.Version <= doc.Version || hasPupil(doc2, gone) || g2.People() != 11 || doc2.Threshold != doc.Threshold {
		t.Fatalf("after withdrawal: v%d (was v%d), %d people, has %s: %v, threshold %g (was %g)",
			doc2.Version, doc.Version, g2.People(), gone, hasPupil(doc2, gone), doc2.Threshold, doc.Threshold)
	}
	<-started
	p := f.report(t).Current
	if p.Calibrated || p.Reason != ReasonPending || p.Threshold != before.Threshold || p.GalleryVersion != doc2.Version || p.Pupils != 11 {
		t.Fatalf("provisional point %+v", p)
	}
	if n := f.auditCount(t); n != audits {
		t.Fatalf("a provisional point was audited (%d entries, was %d)", n, audits)
	}
	if d, _ := f.gateB(t); d.Version != doc2.Version {
		t.Fatalf("a new version v%d while the calibration runs", d.Version)
	}
	close(release)
	v3, err := f.srv.Settle(ctx, "thcs-b")
	if err != nil {
		t.Fatal(err)
	}
	doc3, g3 := f.gateB(t)
	want, err := match.CalibrateThreshold(g3, DefaultTargetFAR)
	if err != nil || doc3.Version != v3 || v3 <= doc2.Version || hasPupil(doc3, gone) || g3.People() != 11 || doc3.Threshold != want.Threshold {
		t.Fatalf("calibrated: v%d (settled v%d), %d people, threshold %g, its calibration %g (%v)",
			doc3.Version, v3, g3.People(), doc3.Threshold, want.Threshold, err)
	}
	cur := f.report(t).Current
	checkInvariants(t, cur)
	if cur.GalleryVersion != v3 || f.auditCount(t) != audits+1 || f.srv.Calibrations() != 2 {
		t.Fatalf("calibrated point %+v, %d audit entries (was %d), %d calibrations", cur, f.auditCount(t), audits, f.srv.Calibrations())
	}
	wantOrder := []string{fmt.Sprintf("announce v%d", doc.Version), fmt.Sprintf("announce v%d", doc2.Version),
		"calibration 1 starts", fmt.Sprintf("announce v%d", v3)}
	if got := log.get(); fmt.Sprint(got) != fmt.Sprint(wantOrder) {
		t.Fatalf("order %q, want %q", got, wantOrder)
	}
}

// TestFaultWithdrawWhileCalibrating: a running gate (edge/gallery.Sync,
// woken by the retained announcement on a real MQTT broker) holds a
// gallery whose calibration is running (held open here, as a large
// school's takes tens of seconds). A withdrawal reaches the gate while the
// calibration still runs; afterwards the gate holds the calibrated gallery
// with every other pupil exactly once and the withdrawn one not at all.
func TestFaultWithdrawWhileCalibrating(t *testing.T) {
	addr, err := brokertest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	b, err := brokertest.StartMochi(addr, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	f := newFixture(t, mqttAnnouncer{connect(t, addr, "hub", nil)}, time.Hour)
	people := idolFaces(t)
	f.enrolIdols(t, people, 0, 12, 3)
	if _, _, _, err := f.srv.Current(context.Background(), "thcs-b"); err != nil {
		t.Fatal(err)
	}
	f.srv.inlineMax = 10 // every later change is a large school's: calibrated after publication
	log := &orderLog{}
	started, release := holdCalibration(f.srv, log, 1)
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	wg.Add(1)
	go func() { defer wg.Done(); _ = f.srv.Run(ctx) }()
	st, sy := gateSync(t, f, addr)
	wg.Add(1)
	go func() { defer wg.Done(); _ = sy.Run(ctx) }()
	edgeHas := func(id string) bool { doc, _ := st.Current(); return hasPupil(doc, id) }
	waitFor(t, 10*time.Second, "gate gets the gallery", func() bool { return edgeHas(pupilID(0)) && edgeHas(pupilID(11)) })

	f.enrolIdols(t, people, 12, 13, 3) // an enrolment starts a calibration, held running
	<-started
	waitFor(t, 10*time.Second, "the enrolment reaches the gate", func() bool { return edgeHas(pupilID(12)) })
	gone := pupilID(3)
	reg := consent.New(f.db, f.tpl, audit.New(f.db, nil, time.Now), nil, time.Now)
	begin := time.Now()
	if _, err := reg.Withdraw(context.Background(), "parent:me", gone, "rút lại"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the withdrawn pupil leaves the gate", func() bool { return !edgeHas(gone) })
	t.Logf("withdrawal reached the gate in %s while a calibration ran", time.Since(begin).Round(time.Millisecond))
	if !f.srv.CalibrationPending("thcs-b") {
		t.Fatal("the calibration ended before the withdrawal was checked")
	}
	close(release)
	final, err := f.srv.Settle(context.Background(), "thcs-b")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the gate gets the calibrated gallery", func() bool { return st.Version() == final })
	doc, g := st.Current()
	want, err := match.CalibrateThreshold(g, DefaultTargetFAR)
	if err != nil || doc.Threshold != want.Threshold {
		t.Fatalf("gate threshold %g, calibration of its gallery %g (%v)", doc.Threshold, want.Threshold, err)
	}
	seen := map[string]int{}
	for _, p := range doc.People {
		seen[p.StudentID]++
		if len(p.Descriptors) != 3 {
			t.Errorf("%s: %d descriptors", p.StudentID, len(p.Descriptors))
		}
	}
	for i := 0; i < 13; i++ {
		if want := map[bool]int{true: 0, false: 1}[pupilID(i) == gone]; seen[pupilID(i)] != want {
			t.Errorf("%s held %d times, want %d", pupilID(i), seen[pupilID(i)], want)
		}
	}
	if len(seen) != 12 {
		t.Errorf("gate holds %d pupils, want 12", len(seen))
	}
}

// gateSync is gate-b's real gallery syncer, woken by the retained
// announcement on the broker at addr (no polling help).
func gateSync(t *testing.T, f *fixture, addr string) (*gallery.Store, *gallery.Sync) {
	t.Helper()
	st, err := gallery.NewStore(filepath.Join(t.TempDir(), "gallery.json"), nil)
	if err != nil {
		t.Fatal(err)
	}
	scfg := gallery.DefaultSyncConfig()
	scfg.HubURL, scfg.GateID, scfg.Username, scfg.Password = f.url, "gate-b", "gate-b", f.pwB
	scfg.Interval = time.Hour
	sy, err := gallery.NewSync(scfg, st, nil, nil, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	connect(t, addr, "gate-b-sub", func(c pmqtt.Client) {
		c.Subscribe(wire.GalleryTopic("thcs-b"), 1, func(_ pmqtt.Client, m pmqtt.Message) {
			var a wire.GalleryAnnounce
			if json.Unmarshal(m.Payload(), &a) == nil {
				sy.OnAnnounce(a)
			}
		})
	})
	return st, sy
}

// ownCalibration is the threshold match calibrates for exactly doc.
func ownCalibration(t *testing.T, doc *wire.GalleryDoc) float64 {
	t.Helper()
	b, _ := doc.Encode()
	_, g, err := wire.DecodeGallery(b)
	if err != nil {
		t.Fatal(err)
	}
	c, err := match.CalibrateThreshold(g, DefaultTargetFAR)
	if err != nil {
		t.Fatal(err)
	}
	return c.Threshold
}

// TestRestrictedGateRemovalBeforeCalibration: a gate served only its
// class (candidate restriction) gets a withdrawal at once with its own
// previous threshold, nothing calibrated in its request; the background
// calibration covers its subset too, and the next version carries the
// calibration of exactly its document.
func TestRestrictedGateRemovalBeforeCalibration(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, nil, time.Hour)
	f.enrolIdols(t, idolFaces(t), 0, 12, 3)
	for _, q := range []string{
		`INSERT INTO classes(id, school_id, name, grade) VALUES ('cX', 'thcs-b', '7X', 7), ('cY', 'thcs-b', '7Y', 7)`,
		`UPDATE pupils SET class_id = CASE WHEN id < '` + pupilID(6) + `' THEN 'cX' ELSE 'cY' END WHERE school_id = 'thcs-b'`,
		`INSERT INTO gates(id, school_id, name, direction, username, password_hash) SELECT 'gate-b2', school_id, 'b2', direction, 'gate-b2', password_hash FROM gates WHERE id = 'gate-b'`,
		`INSERT INTO gate_classes(gate_id, class_id) VALUES ('gate-b2', 'cX')`,
	} {
		if _, err := f.db.W.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	f.srv.Changed(ctx, "thcs-b")
	b2 := func() *wire.GalleryDoc {
		r := f.get(t, "gate-b2", "gate-b2", f.pwB, "")
		if r.status != 200 {
			t.Fatalf("gate-b2: %d", r.status)
		}
		return r.doc
	}
	before := b2()
	if len(before.People) != 6 || before.Threshold != ownCalibration(t, before) || f.srv.Calibrations() != 2 {
		t.Fatalf("gate-b2 before: %d people, threshold %g, %d calibrations", len(before.People), before.Threshold, f.srv.Calibrations())
	}
	log := &orderLog{}
	started, release := holdCalibration(f.srv, log, 1)
	gone := pupilID(2) // class cX
	reg := consent.New(f.db, f.tpl, audit.New(f.db, nil, time.Now), nil, time.Now)
	if _, err := reg.Withdraw(ctx, "parent:me", gone, "rút lại"); err != nil {
		t.Fatal(err)
	}
	now := b2()
	<-started
	if hasPupil(now, gone) || len(now.People) != 5 || now.Version <= before.Version || now.Threshold != before.Threshold || f.srv.Calibrations() != 2 {
		t.Fatalf("gate-b2 after the withdrawal: %d people, v%d, threshold %g (was %g), %d calibrations",
			len(now.People), now.Version, now.Threshold, before.Threshold, f.srv.Calibrations())
	}
	close(release)
	v, err := f.srv.Settle(ctx, "thcs-b")
	if err != nil {
		t.Fatal(err)
	}
	after := b2()
	if after.Version != v || hasPupil(after, gone) || len(after.People) != 5 || after.Threshold != ownCalibration(t, after) {
		t.Fatalf("gate-b2 calibrated: v%d (settled v%d), %d people, threshold %g", after.Version, v, len(after.People), after.Threshold)
	}
	if n := f.srv.Calibrations(); n != 4 { // school and gate-b2, in the background
		t.Fatalf("%d calibrations, want 4", n)
	}
}
