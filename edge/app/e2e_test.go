package app

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/edge/bench"
	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/faceengine"
	"github.com/diemdanh/diemdanh/models/match"
)

const (
	pupilA = "079000000001"
	pupilB = "079000000002"
	pupilC = "079000000003"
)

// gateFixture builds a gallery of three pupils from the shared photos and
// a short video in which A and B walk in together, a visitor follows and
// A comes through a second time (a repeat the debounce must swallow).
func gateFixture(t *testing.T) (dir, video, galPath string, truth *bench.Truth) {
	t.Helper()
	dir = t.TempDir()
	photos := filepath.Join(dir, "photos")
	for id, names := range map[string][]string{pupilA: {"bona.jpg", "bona2.jpg"}, pupilB: {"chaeyoung.jpg", "chaeyoung2.jpg"}, pupilC: {"tzuyu.jpg", "tzuyu2.jpg"}} {
		if err := os.MkdirAll(filepath.Join(photos, id), 0o755); err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			if err := os.Symlink(facePhoto(t, n), filepath.Join(photos, id, n)); err != nil {
				t.Fatal(err)
			}
		}
	}
	doc, reps, err := BuildGallery(context.Background(), testEngine(t), photos, "school-1", 7, match.DefaultQualityPolicy(), 8)
	if err != nil {
		t.Fatal(err)
	}
	if len(doc.People) != 3 {
		t.Fatalf("gallery has %d people: %+v", len(doc.People), reps)
	}
	b, _ := doc.Encode()
	galPath = filepath.Join(dir, "gallery.json")
	if err := conf.WriteFileAtomic(galPath, b, 0o644); err != nil {
		t.Fatal(err)
	}
	video = filepath.Join(dir, "gate.avi")
	truth = writeGateVideo(t, video, 150, 1280, 720, []walker{
		{photo: facePhoto(t, "bona.jpg"), student: pupilA, start: 0, n: 40, x: 400, faceStart: 180, faceEnd: 300},
		{photo: facePhoto(t, "chaeyoung.jpg"), student: pupilB, start: 15, n: 40, x: 950, faceStart: 180, faceEnd: 300},
		{photo: facePhoto(t, "joy.jpg"), start: 60, n: 40, x: 640, faceStart: 180, faceEnd: 300},
		{photo: facePhoto(t, "bona.jpg"), student: pupilA, start: 105, n: 40, x: 700, faceStart: 180, faceEnd: 300},
	})
	return dir, video, galPath, truth
}

func gateConfig(dir, video, galPath, broker string) Config {
	c := Default()
	c.SchoolID, c.GateID = "school-1", "gate-1"
	c.DataDir = dir
	c.Gallery.Path = galPath
	c.Camera.Source, c.Camera.Realtime = video, false
	c.Engine.ModelsDir = conf.TestModelsDir()
	c.Engine.Workers = 2
	c.MQTT.Broker = "tcp://" + broker
	c.MQTT.RetryMin = 50 * time.Millisecond
	c.MQTT.Poll = 20 * time.Millisecond
	c.HTTP.Listen = "127.0.0.1:0"
	return c
}

// TestGateEndToEnd runs the gate service on a synthetic video against an
// embedded mochi-mqtt broker: each pupil's arrival reaches the broker
// exactly once, the visitor never does, and a restart on the same store
// announces nobody again.
func TestGateEndToEnd(t *testing.T) {
	dir, video, galPath, truth := gateFixture(t)
	broker, addr, rec, err := bench.StartBroker()
	if err != nil {
		t.Fatal(err)
	}
	defer broker.Close()

	run := func() *App {
		cfg := gateConfig(dir, video, galPath, addr)
		a, err := New(cfg, nil, time.Now)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		if err := a.Run(ctx); err != nil {
			t.Fatalf("run: %v", err)
		}
		if ctx.Err() != nil {
			t.Fatal("run did not finish on its own at the end of the video")
		}
		a.Close()
		return a
	}
	a := run()
	st := a.Stats()
	t.Logf("frames %d detect %d tracks %d describes %d decisions %d unknown %d debounced %d events %d",
		st.Frames.Load(), st.DetectFrames.Load(), st.TracksStarted.Load(), st.Describes.Load(), st.Decisions.Load(),
		st.Unknowns.Load(), st.Debounced.Load(), st.Events.Load())
	if st.Frames.Load() != int64(truth.Frames) {
		t.Errorf("processed %d frames of %d (a file read as fast as possible must not drop any)", st.Frames.Load(), truth.Frames)
	}
	got := map[string]int{}
	th := a.pipe.OperatingPoint().Threshold // the threshold in force (calibrated, capped)
	if th <= 0 {
		t.Fatalf("no threshold in force: %+v", a.pipe.OperatingPoint())
	}
	for _, ev := range rec.Received() {
		got[ev.StudentID]++
		if ev.SchoolID != "school-1" || ev.GateID != "gate-1" || ev.Direction != "in" || ev.GalleryVer != 7 {
			t.Errorf("event fields: %+v", ev)
		}
		if ev.Distance > th || ev.FramesUsed < 2 || len(ev.FaceJPEG) == 0 || len(ev.FaceJPEG) > 20<<10 {
			t.Errorf("event %s: distance %.3f frames %d crop %d bytes", ev.StudentID, ev.Distance, ev.FramesUsed, len(ev.FaceJPEG))
		}
	}
	if got[pupilA] != 1 || got[pupilB] != 1 || len(got) != 2 {
		t.Fatalf("events at the broker per student: %v; want exactly one for %s and %s", got, pupilA, pupilB)
	}
	if d := rec.Duplicates(); d != 0 {
		t.Fatalf("%d duplicate deliveries", d)
	}
	if st.Debounced.Load() < 1 {
		t.Errorf("A's second passage was not debounced (debounced=%d)", st.Debounced.Load())
	}

	// Restart on the same store: the debounce is persisted.
	a = run()
	if n := len(rec.Received()); n != 2 {
		t.Fatalf("after a restart the broker has %d events, want still 2", n)
	}
	if a.Stats().Events.Load() != 0 {
		t.Fatalf("restart enqueued %d events", a.Stats().Events.Load())
	}
}

// TestBenchScoresSyntheticVideo runs `edge bench` logic (without the slow
// baseline) on the fixture and checks its scoring against the truth.
func TestBenchScoresSyntheticVideo(t *testing.T) {
	dir, video, galPath, truth := gateFixture(t)
	tp := filepath.Join(dir, "truth.json")
	writeJSON(t, tp, truth)
	ec := faceengine.DefaultEngineConfig()
	ec.ModelsDir, ec.Workers = conf.TestModelsDir(), 2
	res, err := bench.Run(context.Background(), bench.Options{Video: video, Truth: tp, Gallery: galPath, Engine: ec,
		Pipeline: Default().Pipeline}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", *res)
	if res.Frames != int64(truth.Frames) || res.Passages != 4 || res.Enrolled != 3 || res.Visitors != 1 {
		t.Fatalf("counts: %+v", res)
	}
	// A's second passage counts as announced through the debounce.
	if res.TPIR != 1 || res.WrongStudent != 0 || res.VisitorAsStudent != 0 || res.Duplicates != 0 {
		t.Fatalf("accuracy: %+v", res.Accuracy)
	}
	if res.Acked != 2 || res.LatencyP95 <= 0 || res.FPS <= 0 || res.RSSMB <= 0 {
		t.Fatalf("acked %d latency %v fps %v rss %v", res.Acked, res.LatencyP95, res.FPS, res.RSSMB)
	}
}
