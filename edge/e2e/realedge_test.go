package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/edge/publish/brokertest"
	"github.com/diemdanh/diemdanh/edge/sim"
	"github.com/diemdanh/diemdanh/edge/store"
	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/faceengine"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/wire"
)

// buildEdge compiles the real bin/edge into dir.
func buildEdge(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "edge")
	if err := conf.BuildBinary("./edge", bin); err != nil {
		t.Fatal(err)
	}
	return bin
}

// outboxIDs lists the event IDs waiting in the outbox at path (its
// unrecognised faces are left out).
func outboxIDs(t *testing.T, path string) map[string]string {
	t.Helper()
	db, err := store.Open(path, store.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	recs, err := db.Pending(context.Background(), 100000)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, r := range recs {
		if r.Kind != wire.TopicKindEvents {
			continue
		}
		ev, err := wire.DecodeEvent(r.Payload)
		if err != nil {
			t.Fatalf("outbox row %d: %v", r.Seq, err)
		}
		out[ev.EventID] = ev.StudentID
	}
	return out
}

type health struct {
	Running      bool  `json:"running"`
	CameraOnline bool  `json:"camera_online"`
	Frames       int64 `json:"frames"`
	Dropped      int64 `json:"dropped_frames"`
	OutboxDepth  int   `json:"outbox_depth"`
}

func getHealth(addr string) (health, error) {
	var h health
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		return h, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&h)
	return h, err
}

// TestRealEdgeKilledWithBrokerDown runs the real `edge run` binary on a
// synthetic gate video with the broker (Debian mosquitto) down. After the
// first events are committed the edge is killed with SIGKILL; the outbox
// rows must all be on disk. A restarted edge goes through the whole video
// again: the persisted debounce keys must stop it from announcing a pupil
// twice. Only then the broker starts. Asserted: the set of event_ids that
// reaches a persistent-session subscriber equals the set the edge committed
// (read from its outbox while the broker was down, when nothing can leave
// it), no pupil is announced by two different events, the edge exits by
// itself once its outbox is empty. Raw QoS-1 redeliveries are logged.
// The vote threshold is loosened to the default embedder's VoteCap (the
// loosest a gate ever accepts) so that pupils do get announced: this test
// is about durability, not recognition accuracy (edge bench).
func TestRealEdgeKilledWithBrokerDown(t *testing.T) {
	td, err := conf.TestDataDir()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin := buildEdge(t, dir)

	// Fixture: a short synthetic gate video and its gallery.
	ec := faceengine.DefaultEngineConfig()
	ec.ModelsDir = conf.TestModelsDir()
	ec.Workers = 2
	eng, err := faceengine.NewEngine(ec, nil)
	if err != nil {
		t.Fatalf("face engine (set MODELS_DIR): %v", err)
	}
	so := sim.DefaultOptions()
	so.Photos = []string{filepath.Join(td, "faces")}
	so.Out, so.TruthOut, so.GalleryOut = filepath.Join(dir, "gate.avi"), filepath.Join(dir, "truth.json"), filepath.Join(dir, "gallery.json")
	so.Seed, so.People, so.Visitors, so.School = 5, 4, 2, "thcs-a"
	sum, err := sim.Generate(context.Background(), so, eng, nil)
	eng.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("fixture: %+v", *sum)

	addr, _ := brokertest.FreePort()
	httpAddr, _ := brokertest.FreePort()
	mq, err := brokertest.StartMosquitto(dir, addr)
	if err != nil {
		t.Fatal(err)
	}
	rcv := newReceiver(t, addr) // persistent session, created while the broker is up
	mq.Stop()

	dataDir := filepath.Join(dir, "data")
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeConfig := func(realtime bool) string {
		p := filepath.Join(dir, fmt.Sprintf("edge-%v.yaml", realtime))
		y := fmt.Sprintf(`school_id: %s
gate_id: %s
data_dir: %s
log: {level: info, format: text}
camera: {source: %s, realtime: %v}
engine: {models_dir: %s, workers: 2}
pipeline: {report_unknown: true, use_gallery_operating_point: false, calibrate_far: 0, vote: {threshold: %g, min_margin: 0.01}}
gallery: {path: %s}
mqtt: {broker: "tcp://%s", retry_min: 100ms, retry_max: 500ms, poll: 50ms}
http: {listen: "%s"}
`, school, gate, dataDir, so.Out, realtime, conf.TestModelsDir(), looseThreshold(t), so.GalleryOut, addr, httpAddr)
		if err := os.WriteFile(p, []byte(y), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	start := func(cfg string) (*exec.Cmd, <-chan struct{}, *error) {
		cmd := exec.Command(bin, "run", "--config", cfg)
		logf, err := os.OpenFile(filepath.Join(dir, "edge.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		var werr error
		go func() { werr = cmd.Wait(); logf.Close(); close(done) }()
		t.Cleanup(func() { _ = cmd.Process.Signal(syscall.SIGKILL); <-done })
		return cmd, done, &werr
	}
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "edge.log"))
			t.Logf("edge log:\n%s", b)
		}
	})
	dbPath := filepath.Join(dataDir, "edge.db")

	// Run 1, real time, broker down: kill -9 after the first events.
	cmd1, done1, _ := start(writeConfig(true))
	waitFor(t, 90*time.Second, "first committed event", func() bool {
		h, err := getHealth(httpAddr)
		return err == nil && h.OutboxDepth >= 1
	})
	time.Sleep(300 * time.Millisecond)
	_ = cmd1.Process.Signal(syscall.SIGKILL)
	<-done1
	afterKill := outboxIDs(t, dbPath)
	if len(afterKill) == 0 {
		t.Fatal("outbox empty after kill -9 although /healthz reported committed events")
	}

	// Run 2, as fast as possible over the same video, broker still down.
	_, done2, err2 := start(writeConfig(false))
	waitFor(t, 120*time.Second, "restarted edge to finish the video", func() bool {
		h, err := getHealth(httpAddr)
		return err == nil && h.Frames+h.Dropped >= int64(sum.Frames)
	})
	time.Sleep(500 * time.Millisecond) // the last decision of the video commits after its frame
	committed := outboxIDs(t, dbPath)  // nothing leaves the outbox while the broker is down
	for id := range afterKill {
		if _, ok := committed[id]; !ok {
			t.Fatalf("event %s committed before the kill vanished from the outbox", id)
		}
	}
	pupils := map[string]string{}
	for id, sid := range committed {
		if sid == wire.UnknownStudent {
			continue
		}
		if other, dup := pupils[sid]; dup {
			t.Fatalf("pupil %s announced twice (events %s and %s): debounce lost across kill -9", sid, other, id)
		}
		pupils[sid] = id
	}
	t.Logf("committed: %d before the kill, %d in total (%d pupils)", len(afterKill), len(committed), len(pupils))
	if len(pupils) == 0 {
		t.Fatal("no pupil was announced, so the debounce across kill -9 was not exercised")
	}

	mq2, err := brokertest.StartMosquitto(dir, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer mq2.Kill()
	select {
	case <-done2:
		if *err2 != nil {
			t.Fatalf("edge exited with %v", *err2)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("edge did not exit after delivering its outbox")
	}
	waitFor(t, 10*time.Second, "every committed event at the receiver", func() bool { return rcv.distinct() >= len(committed) })
	time.Sleep(300 * time.Millisecond)
	got := rcv.ids()
	seen := map[string]int{}
	for _, id := range got {
		seen[id]++
	}
	for id := range seen {
		if _, ok := committed[id]; !ok {
			t.Errorf("received %s, which the edge never committed", id)
		}
	}
	for id := range committed {
		if seen[id] == 0 {
			t.Errorf("committed event %s never arrived", id)
		}
	}
	t.Logf("received %d messages = %d distinct events + %d QoS-1 redeliveries", len(got), len(seen), len(got)-len(seen))
	if d := outboxDepth(t, dbPath); d != 0 {
		t.Fatalf("outbox holds %d events after the edge exited", d)
	}
}

// looseThreshold is the default embedder's VoteCap.
func looseThreshold(t *testing.T) float64 {
	p, ok := faceengine.ProfileOf(match.DefaultEmbedder)
	if !ok {
		t.Fatalf("no distance profile for %s", match.DefaultEmbedder)
	}
	return p.VoteCap
}
