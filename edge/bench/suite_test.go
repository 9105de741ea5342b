package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/diemdanh/diemdanh/edge/pipeline"
	"github.com/diemdanh/diemdanh/edge/sim"
	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/faceengine"
)

// copyPhotos copies the first n entries (files or person folders) of
// src into dst, so that a small suite reads few photos. The simulator
// names a set after its folder, so dst keeps src's base name.
func copyPhotos(t *testing.T, src, dst string, n int) {
	t.Helper()
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatalf("test photos: %v", err)
	}
	copied := 0
	for _, e := range ents {
		if copied == n {
			break
		}
		from, to := filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())
		switch {
		case e.IsDir():
			if err := os.CopyFS(to, os.DirFS(from)); err != nil {
				t.Fatal(err)
			}
		case filepath.Ext(e.Name()) == ".jpg":
			copyFile(t, from, to)
		default:
			continue
		}
		copied++
	}
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err == nil {
		err = os.WriteFile(dst, b, 0o644)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// smallSuite generates a suite of days school days from the faces set,
// four CASIA people and 20 SCUT faces (10 enrolled as pupils who never
// walk), with four visitor passages.
func smallSuite(t *testing.T, days int) string {
	t.Helper()
	data, err := conf.TestDataDir()
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	casia, scut := filepath.Join(src, "casia-facev5"), filepath.Join(src, "scut-fbp5500")
	for _, d := range []string{casia, scut} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	copyPhotos(t, filepath.Join(data, "asian", "casia-facev5"), casia, 4)
	copyPhotos(t, filepath.Join(data, "asian", "scut-fbp5500"), scut, 20)
	dir := filepath.Join(t.TempDir(), "suite")
	var out, errb bytes.Buffer
	args := []string{"--suite", dir, "--photos", filepath.Join(data, "faces") + "," + casia + "," + scut,
		"--days", strconv.Itoa(days), "--scut-enrolled", "10", "--visitors", "4", "--models", conf.TestModelsDir()}
	if err := sim.Main(context.Background(), args, &out, &errb); err != nil {
		t.Fatalf("simulate --suite: %v\n%s", err, errb.String())
	}
	return filepath.Join(dir, "suite.json")
}

// TestSuiteEndToEnd runs `edge bench --suite` on a small real suite with
// every decision rule, the baseline and the peer, and checks that the
// report has its keys and that its figures agree with each other and
// with the suite.
func TestSuiteEndToEnd(t *testing.T) {
	path := smallSuite(t, 2)
	s, err := sim.LoadSuite(path)
	if err != nil {
		t.Fatal(err)
	}
	ec := faceengine.DefaultEngineConfig()
	ec.ModelsDir, ec.Workers = conf.TestModelsDir(), 2
	pc := pipeline.DefaultConfig()
	pc.SchoolID, pc.GateID = "bench", "gate-1"
	res, err := RunSuite(context.Background(), SuiteOptions{Suite: path, Engine: ec, Pipeline: pc,
		Rules: knownRules(pc), Baseline: true, Peer: true, SlowDays: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(res)
	t.Logf("%s", b)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	checkKeys(t, m, "", "days", "total", "by_set", "gallery_size", "threshold", "fps", "cpu_ms_per_frame", "rss_mb",
		"recognisable_latency_ms_p50", "recognisable_latency_ms_p95", "latency_ms_p95", "announced_in_view",
		"days_covered", "baseline", "peer")
	accuracyKeys := []string{"enrolled_passages", "visitor_passages", "announced", "tpir", "tpir_ci", "wrong_student",
		"visitor_as_student", "duplicates", "teacher_actions"}
	checkKeys(t, m["total"].(map[string]any), "total", append(accuracyKeys, "unknown_tracks")...)
	for _, d := range m["days"].([]any) {
		checkKeys(t, d.(map[string]any), "days[]", append(accuracyKeys, "day", "unknown_tracks")...)
	}
	for _, slow := range []string{"baseline", "peer"} {
		checkKeys(t, m[slow].(map[string]any), slow, append(accuracyKeys, "fps", "days_covered")...)
	}
	checkKeys(t, m["peer"].(map[string]any), "peer", "frames_with_wrong_name")
	checkSuiteFigures(t, s, res)
}

// knownRules lists the decision rules the pipeline accepts of those the
// bench compares.
func knownRules(pc pipeline.Config) []string {
	var out []string
	for _, r := range []string{"votes", "mean"} {
		if pc.Decision = r; pc.Validate("pipeline") == nil {
			out = append(out, r)
		}
	}
	return out
}

func checkKeys(t *testing.T, m map[string]any, where string, keys ...string) {
	t.Helper()
	for _, k := range keys {
		if _, ok := m[k]; !ok {
			t.Errorf("%s: key %q missing", where, k)
		}
	}
}

// checkTally checks one tally's own consistency.
func checkTally(t *testing.T, where string, a Tally) {
	t.Helper()
	checkRate(t, where, a.Announced, a.Enrolled, a.TPIR, a.TPIRCI)
	if a.TeacherActions != a.Enrolled-a.Announced+a.WrongStudent+a.VisitorAsStudent {
		t.Errorf("%s: teacher actions %d in %+v", where, a.TeacherActions, a)
	}
}

// checkRate checks that tpir is announced/enrolled inside its interval.
func checkRate(t *testing.T, where string, announced, enrolled int, tpir float64, ci [2]float64) {
	t.Helper()
	switch {
	case announced < 0 || announced > enrolled:
		t.Errorf("%s: announced %d of %d", where, announced, enrolled)
	case enrolled > 0 && math.Abs(tpir-float64(announced)/float64(enrolled)) > 1e-4:
		t.Errorf("%s: tpir %v is not %d/%d", where, tpir, announced, enrolled)
	case ci[0] > tpir || (enrolled > 0 && tpir > ci[1]) || ci != Wilson(announced, enrolled):
		t.Errorf("%s: interval %v around %v", where, ci, tpir)
	}
}

// checkSuiteFigures checks that the report agrees with the suite and with
// itself.
func checkSuiteFigures(t *testing.T, s *sim.Suite, res *SuiteResult) {
	t.Helper()
	if len(res.Days) != len(s.Days) || len(res.DaysCovered) != len(s.Days) {
		t.Fatalf("%d days reported, the suite has %d", len(res.Days), len(s.Days))
	}
	var sum Tally
	for i, d := range res.Days {
		checkTally(t, "day", d.Tally)
		if d.Day != s.Days[i].Day || d.Enrolled != s.Days[i].EnrolledPassages || d.Visitors != s.Days[i].VisitorPassages ||
			d.Frames != int64(s.Days[i].Frames) {
			t.Errorf("day %d: %+v, suite %+v", d.Day, d, s.Days[i])
		}
		sum.add(d.Tally)
	}
	checkTally(t, "total", res.Total.Tally)
	if sum != res.Total.Tally || res.Total.Enrolled != s.EnrolledPassages {
		t.Errorf("total %+v, days sum to %+v, suite %d enrolled", res.Total.Tally, sum, s.EnrolledPassages)
	}
	checkSets(t, "gate", res.BySet, res.Total.Tally)
	if res.Total.WrongStudent != 0 || res.Total.VisitorAsStudent != 0 || res.BySet["casia"].TPIR < 0.5 {
		t.Errorf("gate accuracy: %+v, casia %+v", res.Total.Tally, res.BySet["casia"])
	}
	if res.GallerySize != s.GallerySize || !(res.Threshold > 0 && res.Threshold < 1.5) || res.FPS <= 0 || res.CPUPerFrameMS <= 0 || res.RSSMB <= 0 {
		t.Errorf("gallery %d (suite %d), threshold %v, fps %v, cpu %v, rss %v", res.GallerySize, s.GallerySize, res.Threshold, res.FPS, res.CPUPerFrameMS, res.RSSMB)
	}
	if res.Announcements > res.Total.Announced || res.AnnouncedInView < 0 || res.AnnouncedInView > 1 ||
		res.RecognisableLatencyP50 > res.RecognisableLatencyP95 || (res.Total.Announced > 0 && res.LatencyP95 <= 0) {
		t.Errorf("latency: %d announcements, in view %v, recognisable p50/p95 %v/%v, p95 %v",
			res.Announcements, res.AnnouncedInView, res.RecognisableLatencyP50, res.RecognisableLatencyP95, res.LatencyP95)
	}
	for name, slow := range map[string]*SlowReport{"baseline": res.Baseline, "peer": res.Peer} {
		checkTally(t, name, slow.Tally)
		checkSets(t, name, slow.BySet, slow.Tally)
		if len(slow.DaysCovered) != 1 || slow.DaysCovered[0] != 1 || slow.Enrolled != res.Days[0].Enrolled || slow.FPS <= 0 {
			t.Errorf("%s: %+v", name, slow)
		}
	}
	if n := res.Peer.FramesWithWrongName; n == nil || *n < 0 || int64(*n) > res.Peer.Frames {
		t.Errorf("peer frames with a wrong name: %v of %d", n, res.Peer.Frames)
	}
	for rule, r := range res.Rules {
		checkTally(t, rule, r.Total.Tally)
		checkSets(t, rule, r.BySet, r.Total.Tally)
		if r.Total.Enrolled != res.Total.Enrolled {
			t.Errorf("rule %s: %d enrolled, want %d", rule, r.Total.Enrolled, res.Total.Enrolled)
		}
	}
}

// checkSets checks that the per-set counts add up to the total.
func checkSets(t *testing.T, where string, sets map[string]SetTally, total Tally) {
	t.Helper()
	enrolled, announced := 0, 0
	for name, st := range sets {
		checkRate(t, where+" "+name, st.Announced, st.Enrolled, st.TPIR, st.TPIRCI)
		enrolled += st.Enrolled
		announced += st.Announced
	}
	if enrolled != total.Enrolled || announced != total.Announced {
		t.Errorf("%s: sets sum to %d of %d, total %d of %d", where, announced, enrolled, total.Announced, total.Enrolled)
	}
}

// TestCheckFrames: a day read short (its video rewritten during the run)
// fails; a manifest without frame counts cannot be checked.
func TestCheckFrames(t *testing.T) {
	d := suiteDay{day: 1, video: "day01.avi", frames: 1812}
	if err := d.checkFrames(1812); err != nil {
		t.Fatal(err)
	}
	if err := d.checkFrames(208); err == nil {
		t.Fatal("208 of 1812 frames passed")
	}
	if err := (suiteDay{day: 1}).checkFrames(208); err != nil {
		t.Fatalf("no frame count: %v", err)
	}
}
