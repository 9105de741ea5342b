// Package bench is `edge bench`: it runs the real gate pipeline on a
// synthetic gate video as fast as possible, publishing through the durable
// outbox and the MQTT publisher to an embedded mochi-mqtt broker on
// loopback, scores the events against the simulator's ground truth, and
// measures the naive baseline (go-face on every full frame, no tracking,
// the same decision rule per frame, the same debounce) in the same run.
package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"syscall"
	"time"

	"github.com/diemdanh/diemdanh/edge/capture"
	"github.com/diemdanh/diemdanh/edge/pipeline"
	"github.com/diemdanh/diemdanh/edge/sim"
	"github.com/diemdanh/diemdanh/hub/bench/gatelearn"
	"github.com/diemdanh/diemdanh/models/benchutil"
	"github.com/diemdanh/diemdanh/models/faceengine"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/wire"
)

// TruthFormat identifies the ground-truth file. The truth types are the
// simulator's own, so its writer (edge/sim) and this reader share one
// definition.
const TruthFormat = sim.TruthFormat

// Truth is the simulator's ground truth.
type Truth = sim.Truth

// Passage is one person walking past the camera.
type Passage = sim.Passage

// LoadTruth reads and checks a truth file.
func LoadTruth(path string) (*Truth, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("truth: %w", err)
	}
	var t Truth
	if err := json.Unmarshal(b, &t); err != nil {
		return nil, fmt.Errorf("truth %s: %w", path, err)
	}
	if t.Format != TruthFormat {
		return nil, fmt.Errorf("truth %s: format %q, want %q", path, t.Format, TruthFormat)
	}
	if !(t.FPS > 0) {
		t.FPS = 25
	}
	return &t, nil
}

// Options configure a benchmark run.
type Options struct {
	Video, Truth, Gallery string
	Engine                faceengine.EngineConfig
	Pipeline              pipeline.Config
	Baseline              bool // also measure the naive baseline
	// Realtime plays the video at its frame rate, as a live camera: the
	// newest frame wins (stale ones are dropped and counted) and the
	// detector skips a crop when every worker is busy. fps is then capped
	// by the video; the latency is the one a gate has. Otherwise the file
	// plays as fast as the pipeline goes and nothing is dropped.
	Realtime         bool
	SchoolID, GateID string
	// Now is the gate's clock (nil: time.Now): the pipeline, the capture
	// and the publisher run on it (a learning run's school days).
	Now func() time.Time
}

// clock is o.Now, or time.Now.
func (o Options) clock() func() time.Time {
	if o.Now != nil {
		return o.Now
	}
	return time.Now
}

// Accuracy is how a run's events compare with the truth.
type Accuracy struct {
	Passages         int     `json:"passages"`
	Enrolled         int     `json:"enrolled_passages"`
	Visitors         int     `json:"visitor_passages"`
	Announced        int     `json:"announced"`
	TPIR             float64 `json:"tpir"`
	WrongStudent     int     `json:"wrong_student"`
	VisitorAsStudent int     `json:"visitor_as_student"`
	Duplicates       int     `json:"duplicates"`
}

// Baseline is the naive pipeline's result.
type Baseline struct {
	FPS           float64 `json:"fps"`
	Frames        int64   `json:"frames"`
	CPUCoresUsed  float64 `json:"cpu_cores_used"`
	CPUPerFrameMS float64 `json:"cpu_ms_per_frame"`
	Accuracy
	// SameRule is the same run's matches decided with the pipeline's
	// agreement rule instead of one frame: a pupil is announced once M
	// of K consecutive frames accepted them (no tracking, so frames, not
	// tracks, are counted). It separates what tracking buys from what the
	// stricter M-of-K rule costs.
	SameRule *Accuracy `json:"same_rule,omitempty"`
}

// Result is the one JSON object `edge bench --json` prints.
type Result struct {
	Video        string  `json:"video"`
	Frames       int64   `json:"frames"`
	FPS          float64 `json:"fps"`
	Dropped      int64   `json:"dropped"`
	LatencyP50   float64 `json:"latency_ms_p50"`
	LatencyP95   float64 `json:"latency_ms_p95"`
	LatencyMax   float64 `json:"latency_ms_max"`
	ProcessingMS float64 `json:"processing_ms_p95"` // decision frame read → PUBACK
	// WaitMS: first visible frame → frame of the deciding vote, in video
	// time (the part of the latency spent waiting for the face to be
	// found, grow and get agreeing votes).
	WaitMSP50 float64 `json:"wait_ms_p50"`
	WaitMSP95 float64 `json:"wait_ms_p95"`
	// The same latency over the passages the simulator rendered without
	// motion blur or occlusion (the hard cases make most of the tail).
	CleanPassages   int     `json:"clean_passages"`
	CleanLatencyP50 float64 `json:"clean_latency_ms_p50"`
	CleanLatencyP95 float64 `json:"clean_latency_ms_p95"`
	Accuracy
	Events        int64     `json:"events"`
	Acked         int       `json:"acked"`
	UnknownTracks int64     `json:"unknown_tracks"`
	Describes     int64     `json:"describes"`
	DetectFrames  int64     `json:"detect_frames"`
	MotionSkipped int64     `json:"motion_skipped"`
	DecidedSkip   int64     `json:"decided_skipped"`
	RSSMB         float64   `json:"rss_mb"`
	CPUCoresUsed  float64   `json:"cpu_cores_used"`
	CPUPerFrameMS float64   `json:"cpu_ms_per_frame"` // CPU time (all threads) per frame: load-independent cost
	Threshold     float64   `json:"threshold"`
	MinMargin     float64   `json:"min_margin"`
	K             int       `json:"k"`
	M             int       `json:"m"`
	DetectWidth   int       `json:"detect_width"`
	Detector      string    `json:"detector"`
	Realtime      bool      `json:"realtime"` // played at the video's frame rate (Options.Realtime)
	Baseline      *Baseline `json:"baseline,omitempty"`
	Ratio         float64   `json:"throughput_ratio,omitempty"`
	// CPURatio is the baseline's CPU time per frame over the pipeline's:
	// the throughput ratio on an otherwise idle machine of the same cores.
	CPURatio float64 `json:"cpu_cost_ratio,omitempty"`
}

// decision is one announced (or debounced) identity.
type decision struct {
	student  string
	frame    int64
	enqueued bool
	eventID  string
	at       time.Time // capture time of the decision frame
}

// Run executes the benchmark: load the inputs, run the gate on the video
// with its surroundings (store, broker, publisher), score, and measure the
// baseline.
func Run(ctx context.Context, o Options, log *slog.Logger) (*Result, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	in, err := loadInputs(o)
	if err != nil {
		return nil, err
	}
	eng, err := faceengine.NewEngine(o.Engine, log)
	if err != nil {
		return nil, fmt.Errorf("face engine: %w", err)
	}
	defer eng.Close()
	vr, err := runVideo(ctx, o, eng, in, log)
	if err != nil {
		return nil, err
	}
	res := vr.res
	if o.Baseline {
		b, err := runBaseline(ctx, o.Video, eng, in.gal, res.Threshold, res.MinMargin, res.M, res.K, in.truth, log)
		if err != nil {
			return nil, fmt.Errorf("baseline: %w", err)
		}
		res.Baseline = b
		if b.FPS > 0 {
			res.Ratio = res.FPS / b.FPS
		}
		if res.CPUPerFrameMS > 0 {
			res.CPURatio = b.CPUPerFrameMS / res.CPUPerFrameMS
		}
	}
	return res, nil
}

// videoRun is one video through the gate: its result, and the decisions
// and acknowledgements behind it for further scoring.
type videoRun struct {
	res       *Result
	decs      []decision
	acks      map[string]time.Time // event ID -> PUBACK
	wall, cpu time.Duration
	// reviews are the tracks sent as unrecognised faces, published the
	// gate's messages as the broker received them.
	reviews   []gatelearn.Track
	published []Published
}

// runVideo starts the gate's surroundings (a scratch outbox, a broker and
// the publisher), runs the pipeline on o.Video, waits for the
// acknowledgements and scores the events against in.truth.
func runVideo(ctx context.Context, o Options, eng *faceengine.Engine, in benchInputs, log *slog.Logger) (*videoRun, error) {
	if o.SchoolID == "" {
		o.SchoolID = benchSchool
	}
	if o.GateID == "" {
		o.GateID = benchGate
	}
	env, err := startEnv(ctx, o, log)
	if err != nil {
		return nil, err
	}
	defer env.close()
	cfg := o.Pipeline
	cfg.SchoolID, cfg.GateID = o.SchoolID, o.GateID
	cfg.WaitForWorkers = !o.Realtime // fast mode: reproducible whatever the machine's load
	if cfg.Direction == "" {
		cfg.Direction = wire.DirectionIn
	}
	gr, err := runGate(ctx, o, cfg, eng, in, env, log)
	if err != nil {
		return nil, err
	}
	env.waitAcks(ctx)
	vr := &videoRun{res: gr.result(o, cfg), acks: map[string]time.Time{}, wall: gr.wall, cpu: gr.cpu, published: env.rec.Published()}
	env.mu.Lock()
	vr.decs = append(vr.decs, gr.decs...)
	vr.reviews = append(vr.reviews, gr.reviews...)
	for id, at := range env.acks {
		vr.acks[id] = at
	}
	env.mu.Unlock()
	res := vr.res
	res.Acked = len(vr.acks)
	res.latencies(in.truth, vr.decs, vr.acks)
	res.Accuracy = score(in.truth, vr.decs)
	res.Duplicates += env.rec.Duplicates()
	return vr, nil
}

// benchInputs are a run's files: the ground truth and the gallery (the
// video is read by the capture).
type benchInputs struct {
	truth *Truth
	doc   *wire.GalleryDoc
	gal   *match.Gallery
}

// loadInputs reads the truth and the gallery and checks the video exists.
func loadInputs(o Options) (benchInputs, error) {
	truth, err := LoadTruth(o.Truth)
	if err != nil {
		return benchInputs{}, err
	}
	doc, gal, err := wire.LoadGalleryFile(o.Gallery)
	if err != nil {
		return benchInputs{}, fmt.Errorf("gallery %s: %w", o.Gallery, err)
	}
	if _, err := os.Stat(o.Video); err != nil {
		return benchInputs{}, fmt.Errorf("video: %w", err)
	}
	return benchInputs{truth: truth, doc: doc, gal: gal}, nil
}

// gateRun is what the pipeline did with the video.
type gateRun struct {
	pipe      *pipeline.Pipeline
	st        *pipeline.Stats
	decs      []decision        // guarded by benchEnv.mu
	reviews   []gatelearn.Track // unrecognised faces sent; guarded by benchEnv.mu
	dropped   int64
	wall, cpu time.Duration
	rss       float64
}

// runGate plays the video through the pipeline, as fast as it goes unless
// o.Realtime, and records the decisions.
func runGate(ctx context.Context, o Options, cfg pipeline.Config, eng *faceengine.Engine, in benchInputs, env *benchEnv, log *slog.Logger) (*gateRun, error) {
	gr := &gateRun{st: &pipeline.Stats{}}
	hooks := pipeline.Hooks{OnEvent: func(ev *wire.Event, info pipeline.EventInfo) {
		if info.Unknown {
			return
		}
		env.mu.Lock()
		gr.decs = append(gr.decs, decision{student: ev.StudentID, frame: info.DecisionFrame, enqueued: info.Enqueued, eventID: ev.EventID, at: info.DecisionAt})
		env.mu.Unlock()
	}, OnUnrecognised: func(u *wire.Unrecognised, info pipeline.EventInfo) {
		if !info.Enqueued {
			return
		}
		env.mu.Lock()
		gr.reviews = append(gr.reviews, gatelearn.Track{CaptureID: u.CaptureID, First: info.FirstFrame, Last: info.DecisionFrame})
		env.mu.Unlock()
	}}
	var err error
	gr.pipe, err = pipeline.New(cfg, pipeline.Deps{Describer: eng, Workers: eng.Workers(), ModelsDir: o.Engine.ModelsDir,
		Gallery: staticGallery{in.doc, in.gal}, Outbox: env.db, Notify: env.pub.Notify, Hooks: hooks, Stats: gr.st}, log, o.clock())
	if err != nil {
		return nil, err
	}
	cc := capture.DefaultConfig()
	cc.Source, cc.Realtime = o.Video, o.Realtime
	capt, err := capture.New(cc, log, o.clock())
	if err != nil {
		return nil, err
	}
	mbox := capture.NewMailbox(o.Realtime) // fast mode: every frame, as fast as the pipeline goes

	cpu0 := cpuTime()
	t0 := time.Now()
	capErr := make(chan error, 1)
	runCtx, runCancel := context.WithCancel(ctx)
	defer runCancel()
	go func() { e := capt.Run(runCtx, mbox.Put); mbox.Close(e); capErr <- e }()
	err = gr.pipe.Run(runCtx, mbox)
	mbox.Close(nil) // unblocks the capture if the pipeline stopped early
	mbox.Drain()
	if err != nil {
		return nil, err
	}
	gr.wall = time.Since(t0)
	gr.cpu = cpuTime() - cpu0
	if e := <-capErr; e != nil && !errors.Is(e, io.EOF) {
		return nil, fmt.Errorf("video: %w", e)
	}
	gr.rss = maxRSSMB()
	gr.dropped = mbox.Dropped()
	return gr, nil
}

// result is the run's throughput, counts and operating point.
func (gr *gateRun) result(o Options, cfg pipeline.Config) *Result {
	st, frames := gr.st, gr.st.Frames.Load()
	res := &Result{Video: o.Video, Frames: frames, FPS: float64(frames) / gr.wall.Seconds(), Dropped: gr.dropped,
		Events: st.Events.Load(), UnknownTracks: st.Unknowns.Load(), Describes: st.Describes.Load(),
		DetectFrames: st.DetectFrames.Load(), MotionSkipped: st.MotionSkipped.Load(), DecidedSkip: st.DecidedSkipped.Load(), RSSMB: gr.rss,
		CPUCoresUsed: gr.cpu.Seconds() / gr.wall.Seconds(), CPUPerFrameMS: perFrame(gr.cpu, frames), Threshold: cfg.Vote.Threshold, MinMargin: cfg.Vote.MinMargin,
		K: cfg.Vote.K, M: cfg.Vote.M, DetectWidth: cfg.DetectWidth, Detector: gr.pipe.DetectorName(), Realtime: o.Realtime}
	op := gr.pipe.OperatingPoint()
	res.Threshold, res.MinMargin = op.Threshold, op.MinMargin
	return res
}

func perFrame(cpu time.Duration, frames int64) float64 {
	if frames == 0 {
		return 0
	}
	return math.Round(float64(cpu.Microseconds())/float64(frames)/100) / 10
}

// pct is the p-th percentile (0–100) of v, to 0.1.
func pct(v []float64, p float64) float64 {
	return math.Round(benchutil.Percentile(v, p/100)*10) / 10
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func maxRSSMB() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return math.Round(float64(ru.Maxrss)/1024*10) / 10 // Linux: KB
}

type staticGallery struct {
	doc *wire.GalleryDoc
	gal *match.Gallery
}

func (s staticGallery) Current() (*wire.GalleryDoc, *match.Gallery) { return s.doc, s.gal }
