package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/edge/e2e/rtsptest"
	"github.com/diemdanh/diemdanh/edge/publish/brokertest"
	"github.com/diemdanh/diemdanh/edge/sim"
	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/faceengine"
	"github.com/diemdanh/diemdanh/models/wire"
	pmqtt "github.com/eclipse/paho.mqtt.golang"
)

// The camera's account; the password must never leave the gate.
const rtspUser, rtspPass = "user", "secret"

// rtspMain is the camera helper: an RTSP server (rtsptest) on E2E_ADDR that
// prints "listening" once it accepts connections, until SIGTERM or SIGKILL.
func rtspMain() int {
	srv, err := rtsptest.Start(os.Getenv("E2E_ADDR"), rtspUser, rtspPass, func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) })
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	fmt.Println("listening")
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	<-ctx.Done()
	srv.Close()
	return 0
}

// rtspFixture is a synthetic gate video of CASIA pupils and its gallery.
func rtspFixture(t *testing.T, dir string) (sim.Options, *sim.Truth) {
	t.Helper()
	td, err := conf.TestDataDir()
	if err != nil {
		t.Fatal(err)
	}
	ec := faceengine.DefaultEngineConfig()
	ec.ModelsDir = conf.TestModelsDir()
	ec.Workers = 2
	eng, err := faceengine.NewEngine(ec, nil)
	if err != nil {
		t.Fatalf("face engine (set MODELS_DIR): %v", err)
	}
	// Ten CASIA people are enough for eight passages, and analysing only
	// their photos keeps the fixture quick.
	photos := filepath.Join(dir, "photos")
	src := filepath.Join(td, "asian", "casia-facev5")
	people, err := os.ReadDir(src)
	if err != nil || len(people) < 10 {
		t.Fatalf("CASIA-FaceV5 under %s: %v (%d people, want 10)", src, err, len(people))
	}
	for _, p := range people[:10] {
		linkPhotos(t, filepath.Join(src, p.Name()), filepath.Join(photos, p.Name()))
	}
	so := sim.DefaultOptions()
	so.Photos = []string{photos}
	so.Out, so.TruthOut, so.GalleryOut = filepath.Join(dir, "gate.avi"), filepath.Join(dir, "truth.json"), filepath.Join(dir, "gallery.json")
	so.Seed, so.People, so.Visitors, so.School, so.Duration = 7, 8, 0, school, 36
	_, err = sim.Generate(context.Background(), so, eng, nil)
	eng.Close()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(so.TruthOut)
	if err != nil {
		t.Fatal(err)
	}
	var tr sim.Truth
	if err := json.Unmarshal(b, &tr); err != nil {
		t.Fatal(err)
	}
	return so, &tr
}

// linkPhotos links every file of one person's folder into to.
func linkPhotos(t *testing.T, from, to string) {
	t.Helper()
	files, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(to, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if err := os.Symlink(filepath.Join(from, f.Name()), filepath.Join(to, f.Name())); err != nil {
			t.Fatal(err)
		}
	}
}

// rtspTap records every payload the gate publishes (events, status,
// heartbeats, unrecognised faces) as the hub's broker receives them.
type rtspTap struct {
	mu       sync.Mutex
	payloads []string
	events   []wire.Event
}

func newRTSPTap(t *testing.T, addr string) *rtspTap {
	t.Helper()
	tap := &rtspTap{}
	handler := func(_ pmqtt.Client, m pmqtt.Message) {
		tap.mu.Lock()
		defer tap.mu.Unlock()
		tap.payloads = append(tap.payloads, m.Topic()+" "+string(m.Payload()))
		if m.Topic() == wire.EventTopic(school, gate) {
			if ev, err := wire.DecodeEvent(m.Payload()); err == nil {
				tap.events = append(tap.events, *ev)
			}
		}
	}
	o := pmqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("e2e-rtsp-tap").SetCleanSession(false).
		SetAutoReconnect(true).SetDefaultPublishHandler(handler)
	c := pmqtt.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("tap connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(0) })
	if tok := c.Subscribe("diemdanh/v1/"+school+"/gate/"+gate+"/#", 1, handler); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	return tap
}

func (g *rtspTap) snapshot() ([]string, []wire.Event) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.payloads...), append([]wire.Event(nil), g.events...)
}

// rtspHTTP fetches a page of the gate's operations endpoint.
func rtspHTTP(addr, path string) (string, error) {
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// rtspMetric reads one unlabelled sample from a Prometheus text page.
func rtspMetric(page, name string) (float64, bool) {
	sc := bufio.NewScanner(strings.NewReader(page))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == name {
			v, err := strconv.ParseFloat(f[1], 64)
			return v, err == nil
		}
	}
	return 0, false
}

// rtspPublisher runs ffmpeg publishing the video to the camera from offset;
// done closes when it exits.
func rtspPublisher(t *testing.T, video string, offset time.Duration, url, logPath string) (cmd *exec.Cmd, done <-chan struct{}) {
	t.Helper()
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd, err = rtsptest.Publish(context.Background(), video, offset, url, logf)
	if err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(exited) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })
	return cmd, exited
}

// rtspGate starts the real bin/edge reading the camera with the default
// reconnect settings; its stdout and stderr (OpenCV's and FFmpeg's
// included) go to logPath.
func rtspGate(t *testing.T, bin, dir string, so sim.Options, cameraURL, brokerAddr, httpAddr, logPath string) <-chan struct{} {
	t.Helper()
	cfg := filepath.Join(dir, "edge.yaml")
	y := fmt.Sprintf(`school_id: %s
gate_id: %s
data_dir: %s
log: {level: debug, format: text}
camera: {source: "%s"}
engine: {models_dir: %s, workers: 2}
gallery: {path: %s}
mqtt: {broker: "tcp://%s", retry_min: 100ms, retry_max: 500ms, poll: 50ms}
http: {listen: "%s"}
heartbeat_interval: 1s
`, school, gate, filepath.Join(dir, "data"), cameraURL, conf.TestModelsDir(), so.GalleryOut, brokerAddr, httpAddr)
	if err := os.WriteFile(cfg, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "--config", cfg)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	return done
}

// TestFaultRTSPServerDies: the real bin/edge reads a live RTSP camera (an
// RTSP server in a child process, Debian's ffmpeg publishing a synthetic
// gate video of CASIA pupils as H.264, Digest authentication with the
// password in the gate's URL). At video second 12 the server is killed
// with SIGKILL; 8 s later it returns and ffmpeg publishes on from second
// 20, as a camera whose world went on. Asserted:
//   - the outage is counted once (edge_camera_outages_total, /healthz),
//     until the video's end, the camera's next outage;
//   - the gate reads frames again within 5 s of the server's return
//     (server start to the gate's camera_online);
//   - no event is captured during the outage, and none after it names a
//     pupil who walked only before it (no stale frame taken as new);
//   - a pupil walking after the return is recognised, and every event the
//     gate committed reaches the broker once, no pupil twice;
//   - the password is in none of the gate's log (its native libraries'
//     stderr included), /metrics, /healthz or MQTT payloads.
func TestFaultRTSPServerDies(t *testing.T) {
	const killAt, outage = 12 * time.Second, 8 * time.Second
	dir := t.TempDir()
	t0 := time.Now()
	bin := buildEdge(t, dir)
	t1 := time.Now()
	so, truth := rtspFixture(t, dir)
	t.Logf("bin/edge built in %v, fixture made in %v", t1.Sub(t0).Round(time.Second), time.Since(t1).Round(time.Second))
	fps := truth.FPS
	after, beforeOnly := passagesAround(truth, killAt, killAt+outage, fps)
	if len(after) < 2 {
		t.Fatalf("fixture: %d enrolled passages after the return, want at least 2", len(after))
	}

	rig := newRTSPRig(t, dir)
	tap := newRTSPTap(t, rig.brokerAddr)
	pub1, pubStart := rig.start(t, bin, dir, so)
	cam, camAddr, pubURL, ffLog, httpAddr, gateLog := rig.cam, rig.camAddr, rig.pubURL, rig.ffLog, rig.httpAddr, rig.gateLog
	time.Sleep(time.Until(pubStart.Add(killAt)))
	cam.kill() // SIGKILL: the camera's server dies mid-stream
	killed := time.Now()
	_ = pub1.Process.Kill() // the encoder's own connection died with it
	waitFor(t, 35*time.Second, "the gate to notice the outage", func() bool {
		h, err := getHealth(httpAddr)
		return err == nil && !h.CameraOnline
	})
	time.Sleep(time.Until(killed.Add(outage)))

	back := time.Now()
	cam2 := startHelper(t, "rtsp", "E2E_ADDR="+camAddr)
	waitFor(t, 10*time.Second, "the camera's server again", func() bool { return cam2.lines("listening") == 1 })
	_, pubDone := rtspPublisher(t, so.Out, killAt+outage, pubURL, ffLog)
	waitFor(t, 15*time.Second, "frames after the return", func() bool {
		h, err := getHealth(httpAddr)
		return err == nil && h.CameraOnline
	})
	reconnect := time.Since(back)
	t.Logf("server back → gate reading frames: %v", reconnect.Round(10*time.Millisecond))
	if reconnect > 5*time.Second {
		t.Errorf("the gate read frames %v after the server returned, want within 5 s", reconnect)
	}
	// The end of the published video is the camera's next outage: count
	// this one just before it.
	time.Sleep(time.Until(back.Add(time.Duration(float64(truth.Frames)/fps*float64(time.Second)) - killAt - outage - 2*time.Second)))
	checkOneOutage(t, httpAddr)
	select {
	case <-pubDone:
	case <-time.After(time.Duration(float64(truth.Frames)/fps*float64(time.Second)) + 10*time.Second):
		t.Fatal("ffmpeg did not finish publishing the video")
	}
	time.Sleep(3 * time.Second) // the last tracks end and decide
	waitFor(t, 20*time.Second, "an empty outbox", func() bool {
		h, err := getHealth(httpAddr)
		return err == nil && h.OutboxDepth == 0
	})
	checkRTSPRun(t, tap, httpAddr, gateLog, rtspRun{killed: killed, back: back, after: after, beforeOnly: beforeOnly})
}

// passagesAround splits the truth at the outage: the pupils whose passage
// starts after the video resumes, and those who walked only before the kill.
func passagesAround(tr *sim.Truth, kill, resume time.Duration, fps float64) (after, beforeOnly map[string]bool) {
	after, beforeOnly = map[string]bool{}, map[string]bool{}
	frame := func(d time.Duration) int64 { return int64(d.Seconds() * fps) }
	late := map[string]bool{}
	for _, p := range tr.Passages {
		if !p.Enrolled {
			continue
		}
		if p.FirstFrame >= frame(resume) {
			after[p.StudentID] = true
		}
		if p.LastFrame >= frame(kill) {
			late[p.StudentID] = true
		}
	}
	for _, p := range tr.Passages {
		if p.Enrolled && !late[p.StudentID] {
			beforeOnly[p.StudentID] = true
		}
	}
	return after, beforeOnly
}

// rtspRun is what TestFaultRTSPServerDies knows about its own run.
type rtspRun struct {
	killed, back      time.Time
	after, beforeOnly map[string]bool
}

// checkOneOutage: the camera is online and one outage is counted in
// /metrics and /healthz.
func checkOneOutage(t *testing.T, httpAddr string) {
	t.Helper()
	metrics, err := rtspHTTP(httpAddr, "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := rtspMetric(metrics, "edge_camera_outages_total"); !ok || v != 1 {
		t.Errorf("edge_camera_outages_total = %v (found %v), want 1", v, ok)
	}
	if v, ok := rtspMetric(metrics, "edge_camera_online"); !ok || v != 1 {
		t.Errorf("edge_camera_online = %v (found %v), want 1 while the video plays", v, ok)
	}
	healthz, err := rtspHTTP(httpAddr, "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(healthz, `"camera_outages":1`) {
		t.Errorf("/healthz does not count one camera outage: %s", healthz)
	}
}

// checkRTSPRun checks the events at the broker and that the
// password went nowhere.
func checkRTSPRun(t *testing.T, tap *rtspTap, httpAddr, gateLog string, run rtspRun) {
	t.Helper()
	metrics, err := rtspHTTP(httpAddr, "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	healthz, err := rtspHTTP(httpAddr, "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	committed, _ := rtspMetric(metrics, "edge_events_total")
	time.Sleep(500 * time.Millisecond) // a redelivery in flight lands before counting
	payloads, events := tap.snapshot()
	checkRTSPEvents(t, events, int(committed), run)
	logb, err := os.ReadFile(gateLog)
	if err != nil {
		t.Fatal(err)
	}
	for name, text := range map[string]string{"log": string(logb), "/metrics": metrics, "/healthz": healthz,
		"MQTT payloads": strings.Join(payloads, "\n")} {
		if strings.Contains(text, rtspPass) {
			t.Errorf("the camera's password %q is in the gate's %s", rtspPass, name)
		}
	}
	if !strings.Contains(string(logb), rtspUser+":***@") {
		t.Error("the gate's log never names the camera (redacted): the password check looked at nothing")
	}
	if len(payloads) == 0 {
		t.Error("the gate published nothing: the password check looked at nothing")
	}
}

// checkRTSPEvents: every committed event once at the broker, no pupil
// twice, none captured during the outage, none after it for a pupil who
// walked only before it, and a pupil of the resumed video recognised.
func checkRTSPEvents(t *testing.T, events []wire.Event, committed int, run rtspRun) {
	t.Helper()
	byID := map[string]wire.Event{}
	for _, ev := range events {
		byID[ev.EventID] = ev
	}
	pupils := map[string]string{}
	recognisedAfter := 0
	for id, ev := range byID {
		if other, dup := pupils[ev.StudentID]; dup {
			t.Errorf("pupil %s announced twice (events %s and %s)", ev.StudentID, other, id)
		}
		pupils[ev.StudentID] = id
		at := time.UnixMilli(ev.CapturedAt)
		switch {
		case at.After(run.killed.Add(time.Second)) && at.Before(run.back):
			t.Errorf("event %s (pupil %s) captured at %s, during the outage (%s to %s)", id, ev.StudentID,
				at.Format(time.StampMilli), run.killed.Format(time.StampMilli), run.back.Format(time.StampMilli))
		case !at.Before(run.back) && run.beforeOnly[ev.StudentID]:
			t.Errorf("event %s captured after the return names pupil %s, who walked only before the outage: a stale frame", id, ev.StudentID)
		case !at.Before(run.back) && run.after[ev.StudentID]:
			recognisedAfter++
		}
	}
	t.Logf("broker: %d messages, %d distinct events (the gate committed %d); %d of %d pupils walking after the return recognised",
		len(events), len(byID), committed, recognisedAfter, len(run.after))
	if len(byID) != committed {
		t.Errorf("%d distinct events at the broker, the gate committed %d", len(byID), committed)
	}
	if recognisedAfter == 0 {
		t.Error("no pupil walking after the camera returned was recognised")
	}
}

func rtspTail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// rtspRig is an RTSP test's set-up: mosquitto, the camera's RTSP server
// (a child process), and the logs shown when the test fails.
type rtspRig struct {
	brokerAddr, httpAddr, camAddr string
	pubURL, ffLog, gateLog        string
	cam                           *proc
}

func newRTSPRig(t *testing.T, dir string) *rtspRig {
	t.Helper()
	r := &rtspRig{ffLog: filepath.Join(dir, "ffmpeg.log"), gateLog: filepath.Join(dir, "edge.log")}
	r.brokerAddr, _ = brokertest.FreePort()
	r.httpAddr, _ = brokertest.FreePort()
	r.camAddr, _ = brokertest.FreePort()
	r.pubURL = "rtsp://" + r.camAddr + "/gate"
	mq, err := brokertest.StartMosquitto(dir, r.brokerAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mq.Kill)
	t.Cleanup(func() {
		if t.Failed() {
			for _, f := range []string{r.gateLog, r.ffLog} {
				b, _ := os.ReadFile(f)
				t.Logf("%s:\n%s", f, rtspTail(string(b), 80))
			}
		}
	})
	r.cam = startHelper(t, "rtsp", "E2E_ADDR="+r.camAddr)
	waitFor(t, 10*time.Second, "the camera's server", func() bool { return r.cam.lines("listening") == 1 })
	return r
}

// start publishes the fixture's video to the camera's server and starts
// the real bin/edge on it; it returns once the gate reads frames, with the
// publisher and the time it started.
func (r *rtspRig) start(t *testing.T, bin, dir string, so sim.Options) (*exec.Cmd, time.Time) {
	t.Helper()
	pub, _ := rtspPublisher(t, so.Out, 0, r.pubURL, r.ffLog)
	pubStart := time.Now()
	rtspGate(t, bin, dir, so, "rtsp://"+rtspUser+":"+rtspPass+"@"+r.camAddr+"/gate", r.brokerAddr, r.httpAddr, r.gateLog)
	waitFor(t, 60*time.Second, "the gate reading the camera", func() bool {
		h, err := getHealth(r.httpAddr)
		return err == nil && h.CameraOnline && h.Frames > 0
	})
	return pub, pubStart
}
