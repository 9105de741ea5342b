package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime/pprof"

	"github.com/diemdanh/diemdanh/edge/bench"
	"github.com/diemdanh/diemdanh/edge/eval"
	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/wire"
)

func cmdEval(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return eval.Main(ctx, args, stdout, stderr)
}

func cmdBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench", stderr)
	video := fs.String("video", "", "synthetic gate video (edge simulate --out)")
	truth := fs.String("truth", "", "ground truth JSON (edge simulate --truth)")
	gal := fs.String("gallery", "", "gallery file (edge simulate --gallery-out)")
	asJSON := fs.Bool("json", false, "print one JSON object")
	config := fs.String("config", "", "edge config file whose pipeline and engine settings to use (optional)")
	baseline := fs.Bool("baseline", true, "also measure the naive baseline (go-face on every full frame)")
	threshold := fs.Float64("threshold", 0, "override pipeline.vote.threshold")
	margin := fs.Float64("margin", -1, "override pipeline.vote.min_margin")
	m := fs.Int("m", 0, "override pipeline.vote.m")
	k := fs.Int("k", 0, "override pipeline.vote.k")
	width := fs.Int("detect-width", 0, "override pipeline.detect_width")
	workers := fs.Int("workers", 0, "override engine.workers")
	embedder := fs.String("embedder", "", "override engine.embedder (the gallery must be made by the same one)")
	verbose := fs.Bool("v", false, "log the pipeline to stderr")
	cpuprofile := fs.String("cpuprofile", "", "write a Go CPU profile of the run to this file")
	realtime := fs.Bool("realtime", false, "play the video at its own frame rate like a live camera (stale frames dropped, no waiting for workers): the latency a gate has")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *video == "" || *truth == "" || *gal == "" {
		return usageErr("bench needs --video V --truth T --gallery G")
	}
	cfg, err := LoadConfig(*config)
	if err != nil {
		return err
	}
	pc := cfg.Pipeline
	if *threshold > 0 {
		pc.Vote.Threshold = *threshold
		pc.UseGalleryOperatingPoint = false
	}
	if *margin >= 0 {
		pc.Vote.MinMargin = *margin
		pc.UseGalleryOperatingPoint = false
	}
	if *m > 0 {
		pc.Vote.M = *m
	}
	if *k > 0 {
		pc.Vote.K = *k
	}
	if *width > 0 {
		pc.DetectWidth = *width
	}
	if *workers > 0 {
		cfg.Engine.Workers = *workers
	}
	if *embedder != "" {
		cfg.Engine.Embedder = *embedder
	}
	pc.SchoolID, pc.GateID, pc.Direction = "bench", "gate-1", wire.DirectionIn
	if err := pc.Validate("pipeline"); err != nil {
		return err
	}
	log := conf.NewLogger(conf.LogConfig{Level: "error"}, stderr)
	if *verbose {
		log = conf.NewLogger(conf.LogConfig{Level: "debug"}, stderr)
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	res, err := bench.Run(ctx, bench.Options{Video: *video, Truth: *truth, Gallery: *gal, Engine: cfg.Engine,
		Pipeline: pc, Baseline: *baseline, Realtime: *realtime}, log)
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(res)
	}
	b, _ := json.MarshalIndent(res, "", "  ")
	fmt.Fprintln(stdout, string(b))
	return nil
}
