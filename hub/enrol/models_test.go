package enrol

import (
	"context"
	"errors"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/hub/facetemplates"
	"github.com/diemdanh/diemdanh/hub/modeltrial"
	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/evalmetrics"
	"github.com/diemdanh/diemdanh/models/faceengine"
	"github.com/diemdanh/diemdanh/models/match"
)

// trialPupils: seven people of the shared test photos, two or three
// photos each, enrolled as pupils of s1 with their photos kept.
var trialPupils = [][]string{
	{"bona.jpg", "bona2.jpg", "bona3.jpg"}, {"chaeyeon.jpg", "chaeyeon2.jpg"}, {"chaeyoung.jpg", "chaeyoung2.jpg"},
	{"eunseo2.jpg", "eunseo3.jpg"}, {"jimin.jpg", "jimin2.jpg", "jimin3.jpg"}, {"luda.jpg", "luda2.jpg"}, {"tzuyu.jpg", "tzuyu2.jpg"},
}

// trialID is the pupil ID of trialPupils[i].
func trialID(i int) string { return fmt.Sprintf("0000000000%02d", 11+i) }

// trialFixture enrols trialPupils with the default embedder (descriptors
// of engine(t), photos kept) plus pupilB with a template and no kept
// photo, and returns a service whose candidates add dlib-resnet-v1, with
// a running trial runner.
func trialFixture(t *testing.T) (*fixture, *Service, *modeltrial.Runner, []evalmetrics.Sample) {
	t.Helper()
	f := newFixture(t)
	ctx := context.Background()
	var stored []evalmetrics.Sample
	for i, files := range trialPupils {
		id := trialID(i)
		if _, err := f.db.W.Exec(`INSERT INTO pupils(id, school_id, class_id, full_name) VALUES (?, 's1', 'c1', ?)`, id, files[0]); err != nil {
			t.Fatal(err)
		}
		for _, file := range files {
			photo := readPhotoT(t, file)
			faces, err := engine(t).Recognize(ctx, photo)
			face, ok := facetemplates.PickFace(faces)
			if err != nil || !ok {
				t.Fatalf("%s: %d faces, %v", file, len(faces), err)
			}
			if _, err := f.tpl.Add(ctx, id, face.Descriptor, engine(t).Model(), match.Quality{}, photo); err != nil {
				t.Fatal(err)
			}
			stored = append(stored, evalmetrics.Sample{Identity: id, Desc: face.Descriptor})
		}
	}
	faces, err := engine(t).Recognize(ctx, readPhotoT(t, "elkie.jpg"))
	if err != nil || len(faces) != 1 {
		t.Fatalf("elkie: %d faces, %v", len(faces), err)
	}
	if _, err := f.tpl.Add(ctx, pupilB, faces[0].Descriptor, engine(t).Model(), match.Quality{}, nil); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Candidates = []Candidate{{Embedder: match.DlibResNetV1.Name}}
	svc, err := New(f.db, engine(t), f.tpl, f.reg, f.al, cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	r, err := modeltrial.New(TrialModels{S: svc}, f.tpl, f.al, modeltrial.Config{TargetFAR: 0.01}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { r.Run(rctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	for !running(r) {
		time.Sleep(time.Millisecond)
	}
	return f, svc, r, stored
}

// running: Start no longer says "not running" (Run has begun).
func running(r *modeltrial.Runner) bool {
	_, err := r.Start(context.Background(), "s1", "nobody", "test", "")
	return errors.Is(err, modeltrial.ErrUnknown)
}

func waitTrial(t *testing.T, r *modeltrial.Runner) modeltrial.Trial {
	t.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		if tr, ok := r.Trial("s1"); ok && tr.State != modeltrial.StateRunning {
			return tr
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("trial still running after 5 min")
	return modeltrial.Trial{}
}

// TestTrialComparesTwoEmbedders runs the school's 16 kept photos through
// SFace (current) and dlib-resnet-v1 (candidate): both columns cover
// every photo, the current column's figures are those of the stored
// descriptors (the same model on the same photos), the candidate's are
// those of a dlib engine run here, and the trial is audited.
func TestTrialComparesTwoEmbedders(t *testing.T) {
	f, _, r, stored := trialFixture(t)
	ctx := context.Background()
	for _, c := range []string{"unknown-model", match.DefaultEmbedder.Name} {
		if _, err := r.Start(ctx, "s1", c, "admin:test", ""); !errors.Is(err, modeltrial.ErrUnknown) {
			t.Errorf("start %q: %v, want ErrUnknown", c, err)
		}
	}
	tr, err := r.Start(ctx, "s1", match.DlibResNetV1.Name, "admin:test", "127.0.0.1")
	if err != nil || tr.Total != len(stored) || tr.WithoutPhoto != 1 {
		t.Fatalf("start: %+v, %v (want %d photos, 1 pupil without)", tr, err, len(stored))
	}
	if _, err := r.StartSwitch(ctx, match.DlibResNetV1.Name, "admin:test", ""); !errors.Is(err, modeltrial.ErrBusy) {
		t.Errorf("switch during a trial: %v, want ErrBusy", err)
	}
	tr = waitTrial(t, r)
	if tr.State != modeltrial.StateDone || tr.Done != tr.Total || tr.Current == nil || tr.Tried == nil {
		t.Fatalf("trial: %+v", tr)
	}
	cur, cand := tr.Current, tr.Tried
	if cur.Model != engine(t).Model().String() || cand.Model != match.DlibResNetV1.String() {
		t.Fatalf("columns %s / %s", cur.Model, cand.Model)
	}
	_, probes := evalmetrics.Analyse(stored)
	if want := evalmetrics.Rank1(probes); cur.Rank1 != want || cur.FTE.Count != 0 || cur.Photos != len(stored) {
		t.Errorf("current rank-1 %+v FTE %+v photos %d, want %+v, 0, %d", cur.Rank1, cur.FTE, cur.Photos, want, len(stored))
	}
	want := dlibSamples(t, stored)
	_, dprobes := evalmetrics.Analyse(want)
	if r1 := evalmetrics.Rank1(dprobes); cand.Rank1 != r1 || cand.FTE.Count != len(stored)-len(want) {
		t.Errorf("candidate rank-1 %+v FTE %+v, want %+v and %d", cand.Rank1, cand.FTE, r1, len(stored)-len(want))
	}
	if t95 := evalmetrics.ThresholdForGenuine(dprobes, modeltrial.Genuine95, 0); math.IsNaN(t95) != math.IsNaN(float64(cand.Genuine95)) {
		t.Errorf("candidate 95%% threshold %v, want %v", cand.Genuine95, t95)
	} else if v := evalmetrics.OpenSetAt(dprobes, t95, 0).VisitorAccept; !math.IsNaN(t95) && cand.VisitorAt95 != v {
		t.Errorf("candidate visitors at 95%% %+v, want %+v", cand.VisitorAt95, v)
	}
	for _, c := range []*modeltrial.Column{cur, cand} {
		if !c.Calibrated || c.Calibration.Threshold <= 0 || c.MsPerPhoto <= 0 || c.Pupils != len(trialPupils) {
			t.Errorf("%s: calibrated %v %+v, %.1f ms, %d pupils", c.Model, c.Calibrated, c.Calibration, c.MsPerPhoto, c.Pupils)
		}
	}
	t.Logf("SFace: rank-1 %+v visitors@95 %+v FAR %.4f FRR %.4f %.1f ms; dlib: rank-1 %+v visitors@95 %+v FAR %.4f FRR %.4f %.1f ms",
		cur.Rank1, cur.VisitorAt95, cur.Calibration.ExpectedFAR, cur.Calibration.ExpectedFRR, cur.MsPerPhoto,
		cand.Rank1, cand.VisitorAt95, cand.Calibration.ExpectedFAR, cand.Calibration.ExpectedFRR, cand.MsPerPhoto)
	if n := f.count(t, `SELECT count(*) FROM audit_log WHERE action = ? AND actor = 'admin:test' AND subject = 'school:s1'`, modeltrial.ActionTrial); n != 1 {
		t.Errorf("%d trial audit entries, want 1", n)
	}
	// A trial can be cancelled.
	if _, err := r.Start(ctx, "s1", match.DlibResNetV1.Name, "admin:test", ""); err != nil {
		t.Fatal(err)
	}
	if !r.Cancel("s1") {
		t.Error("cancel: no running trial")
	}
	if tr := waitTrial(t, r); tr.State != modeltrial.StateCancelled || tr.Current != nil {
		t.Errorf("after cancel: %+v", tr)
	}
}

// dlibSamples describes the stored pupils' photos with a dlib engine, as
// the trial's candidate should.
func dlibSamples(t *testing.T, stored []evalmetrics.Sample) []evalmetrics.Sample {
	t.Helper()
	cfg := faceengine.DefaultEngineConfig()
	cfg.ModelsDir, cfg.Workers, cfg.Embedder = conf.TestModelsDir(), 1, match.DlibResNetV1.Name
	eng, err := faceengine.NewEngine(cfg, nil)
	if err != nil {
		t.Fatalf("dlib engine: %v", err)
	}
	defer eng.Close()
	var out []evalmetrics.Sample
	for i, files := range trialPupils {
		id := trialID(i)
		for _, file := range files {
			faces, err := eng.Recognize(context.Background(), readPhotoT(t, file))
			if err != nil {
				t.Fatal(err)
			}
			if f, ok := facetemplates.PickFace(faces); ok {
				out = append(out, evalmetrics.Sample{Identity: id, Desc: f.Descriptor})
			}
		}
	}
	return out
}

// TestSwitchReembedsAndPublishes: the switch to dlib-resnet-v1 re-embeds
// every kept photo under the new model, bumps the school's gallery,
// flags the pupil without a kept photo, moves the enrolment engine and
// keeps the choice for the next start; it is audited when it starts and
// when it ends.
func TestSwitchReembedsAndPublishes(t *testing.T) {
	f, svc, r, stored := trialFixture(t)
	ctx := context.Background()
	before, err := f.tpl.Version(ctx, "s1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.StartSwitch(ctx, match.DefaultEmbedder.Name, "admin:test", ""); !errors.Is(err, modeltrial.ErrUnknown) {
		t.Errorf("switch to the current model: %v, want ErrUnknown", err)
	}
	if _, err := r.StartSwitch(ctx, match.DlibResNetV1.Name, "admin:test", "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	var sw modeltrial.Switch
	for deadline := time.Now().Add(5 * time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if sw, _ = r.LastSwitch(); sw.State != modeltrial.StateRunning {
			break
		}
	}
	if sw.State != modeltrial.StateDone || sw.Report == nil {
		t.Fatalf("switch: %+v", sw)
	}
	rep := sw.Report
	if rep.Model != match.DlibResNetV1.String() || rep.Reembedded == 0 || rep.Reembedded > len(stored) {
		t.Errorf("report %+v (%d kept photos)", rep, len(stored))
	}
	if len(rep.Flagged) != 1 || rep.Flagged[0] != pupilB {
		t.Errorf("flagged %v, want [%s] (no kept photo)", rep.Flagged, pupilB)
	}
	model, byPupil, err := f.tpl.ActiveDescriptors(ctx, "s1")
	if err != nil || model != match.DlibResNetV1 {
		t.Fatalf("served model %v, %v", model, err)
	}
	n := 0
	for _, ds := range byPupil {
		n += len(ds)
	}
	if n != rep.Reembedded {
		t.Errorf("%d descriptors served, %d re-embedded", n, rep.Reembedded)
	}
	if after, _ := f.tpl.Version(ctx, "s1"); after <= before {
		t.Errorf("gallery version %d -> %d: not bumped", before, after)
	}
	if svc.engine().Model() != match.DlibResNetV1 || svc.Config().Embedder != match.DlibResNetV1.Name {
		t.Errorf("enrolment engine %v, embedder %q", svc.engine().Model(), svc.Config().Embedder)
	}
	for _, c := range (TrialModels{S: svc}).Candidates() {
		if c.Current != (c.Name == match.DlibResNetV1.Name) {
			t.Errorf("candidate %+v", c)
		}
	}
	next, chosen, err := ApplyChoice(ctx, f.db, svc.Config())
	if err != nil || chosen != match.DlibResNetV1.Name || next.Embedder != match.DlibResNetV1.Name {
		t.Errorf("choice at the next start: %q %q %v", chosen, next.Embedder, err)
	}
	if n := f.count(t, `SELECT count(*) FROM audit_log WHERE action = ? AND actor = 'admin:test'`, modeltrial.ActionSwitch); n != 2 {
		t.Errorf("%d switch audit entries, want 2 (start, end)", n)
	}
	if n := f.count(t, `SELECT count(*) FROM pupils WHERE id = ? AND needs_reenrol = 1`, pupilB); n != 1 {
		t.Errorf("pupil without a photo not flagged")
	}
}

// TestCandidatesValidate: a bad enrol.candidates entry is refused,
// naming its field.
func TestCandidatesValidate(t *testing.T) {
	bad := customSFace()
	bad.SHA256 = "abc"
	other := customSFace()
	other.Version = "2"
	cases := []struct {
		name  string
		cands []Candidate
		field string
	}{
		{"unknown embedder", []Candidate{{Embedder: "nope"}}, "enrol.candidates[0].embedder"},
		{"no embedder", []Candidate{{}}, "enrol.candidates[0].embedder"},
		{"bad custom", []Candidate{{Embedder: match.DlibResNetV1.Name}, {Embedder: faceengine.CustomEmbedder, Custom: bad}}, "enrol.candidates[1].custom.sha256"},
		{"one name, two files", []Candidate{{Embedder: faceengine.CustomEmbedder, Custom: customSFace()}, {Embedder: faceengine.CustomEmbedder, Custom: other}}, "enrol.candidates[1].custom.name"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			c.Candidates = tc.cands
			var fe *conf.FieldError
			if err := c.Validate("enrol"); !errors.As(err, &fe) || fe.Field != tc.field {
				t.Fatalf("got %v, want a FieldError on %s", err, tc.field)
			}
		})
	}
	c := DefaultConfig()
	c.Candidates = []Candidate{{Embedder: match.DlibResNetV1.Name}, {Embedder: faceengine.CustomEmbedder, Custom: customSFace()}}
	if err := c.Validate("enrol"); err != nil {
		t.Fatalf("valid candidates refused: %v", err)
	}
}
