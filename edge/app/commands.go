package app

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/pprof"
	"strings"

	"github.com/diemdanh/diemdanh/edge/bench"
	"github.com/diemdanh/diemdanh/edge/eval"
	"github.com/diemdanh/diemdanh/edge/pipeline"
	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/faceengine"
	"github.com/diemdanh/diemdanh/models/wire"
)

func cmdEval(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return eval.Main(ctx, args, loadEngine, stdout, stderr)
}

// benchFlags are `edge bench`'s flags.
type benchFlags struct {
	video, truth, gal, suite, config, embedder, cpuprofile, decision *string
	asJSON, baseline, peer, verbose, realtime, learn                 *bool
	threshold, margin                                                *float64
	m, k, width, workers, days, slowDays                             *int
}

func newBenchFlags(fs *flag.FlagSet) *benchFlags {
	return &benchFlags{
		video:      fs.String("video", "", "synthetic gate video (edge simulate --out)"),
		truth:      fs.String("truth", "", "ground truth JSON (edge simulate --truth)"),
		gal:        fs.String("gallery", "", "gallery file (edge simulate --gallery-out)"),
		suite:      fs.String("suite", "", "suite manifest (edge simulate --suite DIR: DIR/suite.json); replaces --video, --truth and --gallery"),
		asJSON:     fs.Bool("json", false, "print one JSON object"),
		config:     fs.String("config", "", "edge config file whose pipeline and engine settings to use (optional)"),
		baseline:   fs.Bool("baseline", true, "also measure the naive baseline (go-face on every full frame)"),
		peer:       fs.Bool("peer", false, "with --suite: also measure the peer, face_recognition's rule (dlib HOG and ResNet, tolerance 0.6, every frame)"),
		days:       fs.Int("days", 0, "with --suite: school days to run from day 1 (0: every day, or day 1 with --realtime)"),
		slowDays:   fs.Int("slow-days", 1, "with --suite: days the baseline and the peer cover, from day 1"),
		decision:   fs.String("decision", "votes,mean", "with --suite: decision rules to compare in the same run, comma-separated; the first gives the top-level figures (by default those the pipeline knows)"),
		threshold:  fs.Float64("threshold", 0, "override pipeline.vote.threshold"),
		margin:     fs.Float64("margin", -1, "override pipeline.vote.min_margin"),
		m:          fs.Int("m", 0, "override pipeline.vote.m"),
		k:          fs.Int("k", 0, "override pipeline.vote.k"),
		width:      fs.Int("detect-width", 0, "override pipeline.detect_width"),
		workers:    fs.Int("workers", 0, "override engine.workers"),
		embedder:   fs.String("embedder", "", "override engine.embedder (the gallery must be made by the same one)"),
		verbose:    fs.Bool("v", false, "log the pipeline to stderr"),
		cpuprofile: fs.String("cpuprofile", "", "write a Go CPU profile of the run to this file"),
		realtime:   fs.Bool("realtime", false, "play the video at its own frame rate like a live camera (stale frames dropped, no waiting for workers): the latency a gate has"),
		learn:      fs.Bool("learn", false, "with --suite: after each day, play the teacher through a scratch hub (confirm unrecognised pupils, dismiss visitors, undo wrong announcements) and run the next day with the gallery the gate downloads from it; false runs the control"),
	}
}

func cmdBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench", stderr)
	bf := newBenchFlags(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if *bf.suite == "" && (*bf.video == "" || *bf.truth == "" || *bf.gal == "") {
		return usageErr("bench needs --suite S or --video V --truth T --gallery G")
	}
	if *bf.learn && *bf.suite == "" {
		return usageErr("--learn needs --suite: learning runs over the suite's school days")
	}
	cfg, err := LoadConfig(*bf.config)
	if err != nil {
		return err
	}
	bf.override(&cfg)
	if cfg.Pipeline.Vote.Profiles, err = cfg.Engine.Profiles("engine"); err != nil {
		return err
	}
	if err := cfg.Pipeline.Validate("pipeline"); err != nil {
		return err
	}
	log := conf.NewLogger(conf.LogConfig{Level: "error"}, stderr)
	if *bf.verbose {
		log = conf.NewLogger(conf.LogConfig{Level: "debug"}, stderr)
	}
	if *bf.cpuprofile != "" {
		f, err := os.Create(*bf.cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	var res any
	if *bf.suite != "" {
		res, err = bf.runSuite(ctx, cfg, fs, log)
	} else {
		res, err = bench.Run(ctx, bench.Options{Video: *bf.video, Truth: *bf.truth, Gallery: *bf.gal, Engine: cfg.Engine,
			Pipeline: cfg.Pipeline, Baseline: *bf.baseline, Realtime: *bf.realtime}, log)
	}
	if err != nil {
		return err
	}
	if *bf.asJSON {
		return json.NewEncoder(stdout).Encode(res)
	}
	b, _ := json.MarshalIndent(res, "", "  ")
	fmt.Fprintln(stdout, string(b))
	return nil
}

// override applies the flags that override the config.
func (bf *benchFlags) override(cfg *Config) {
	pc := &cfg.Pipeline
	if *bf.threshold > 0 {
		pc.Vote.Threshold = *bf.threshold
		pc.UseGalleryOperatingPoint = false
	}
	if *bf.margin >= 0 {
		pc.Vote.MinMargin = *bf.margin
		pc.UseGalleryOperatingPoint = false
	}
	if *bf.m > 0 {
		pc.Vote.M = *bf.m
	}
	if *bf.k > 0 {
		pc.Vote.K = *bf.k
	}
	if *bf.width > 0 {
		pc.DetectWidth = *bf.width
	}
	if *bf.workers > 0 {
		cfg.Engine.Workers = *bf.workers
	}
	if *bf.embedder != "" {
		cfg.Engine.Embedder = *bf.embedder
	}
	pc.SchoolID, pc.GateID, pc.Direction = "bench", "gate-1", wire.DirectionIn
}

// runSuite runs `edge bench --suite`.
func (bf *benchFlags) runSuite(ctx context.Context, cfg Config, fs *flag.FlagSet, log *slog.Logger) (*bench.SuiteResult, error) {
	if *bf.days < 0 || *bf.slowDays < 1 {
		return nil, usageErr("--days must be 0 or more and --slow-days 1 or more")
	}
	rules, err := decisionRules(*bf.decision, isSet(fs, "decision"), cfg.Pipeline)
	if err != nil {
		return nil, err
	}
	return bench.RunSuite(ctx, bench.SuiteOptions{Suite: *bf.suite, Engine: cfg.Engine, Pipeline: cfg.Pipeline,
		Rules: rules, Days: *bf.days, Realtime: *bf.realtime, Baseline: *bf.baseline, Peer: *bf.peer,
		SlowDays: *bf.slowDays, Learn: *bf.learn}, log)
}

// decisionRules parses --decision. Every rule given explicitly must be
// one the pipeline accepts; the default list keeps those it accepts.
func decisionRules(list string, explicit bool, pc pipeline.Config) ([]string, error) {
	var rules []string
	for _, r := range strings.Split(list, ",") {
		if r = strings.TrimSpace(r); r == "" {
			continue
		}
		pc.Decision = r
		if err := pc.Validate("pipeline"); err != nil {
			if explicit {
				return nil, usageErr("--decision %s: %v", r, err)
			}
			continue
		}
		rules = append(rules, r)
	}
	if len(rules) == 0 {
		return nil, usageErr("--decision: no decision rule in %q", list)
	}
	return rules, nil
}

// isSet reports whether the flag was given on the command line.
func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// loadEngine is the engine section of the gate's config file at path
// (`edge eval --config`), read as the gate reads it.
func loadEngine(path string) (faceengine.EngineConfig, error) {
	cfg, err := LoadConfig(path)
	return cfg.Engine, err
}
