package bench

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/diemdanh/diemdanh/edge/capture"
)

// frameFunc handles one whole frame on its own (no tracking) and returns
// the pupils it accepted in it, one decision per face.
type frameFunc func(ctx context.Context, f capture.Frame) ([]decision, error)

// frameRun is a video played through a per-frame rule: every accepted
// match in frame order, and what it cost.
type frameRun struct {
	matches   []decision // sorted by frame
	frames    int64
	wall, cpu time.Duration
}

// fps is the run's throughput.
func (r *frameRun) fps() float64 {
	if r.wall <= 0 {
		return 0
	}
	return float64(r.frames) / r.wall.Seconds()
}

// playFrames plays video as fast as possible (no frame dropped) through
// workers goroutines, each with its own frameFunc from newWorker (whose
// close func runs when it stops), and collects every frame's matches.
func playFrames(ctx context.Context, video string, workers int, newWorker func() (frameFunc, func(), error), log *slog.Logger) (*frameRun, error) {
	cc := capture.DefaultConfig()
	cc.Source, cc.Realtime = video, false
	capt, err := capture.New(cc, log, time.Now)
	if err != nil {
		return nil, err
	}
	mbox := capture.NewMailbox(false)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	capErr := make(chan error, 1)
	cpu0, t0 := cpuTime(), time.Now()
	go func() { e := capt.Run(ctx, mbox.Put); mbox.Close(e); capErr <- e }()
	run := &frameRun{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make([]error, max(workers, 1))
	for w := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[w] = frameWorkerLoop(ctx, mbox, newWorker, func(ms []decision) {
				mu.Lock()
				run.frames++
				run.matches = append(run.matches, ms...)
				mu.Unlock()
			})
			if errs[w] != nil {
				cancel()
			}
		}()
	}
	wg.Wait()
	run.wall = time.Since(t0)
	mbox.Close(nil)
	mbox.Drain()
	run.cpu = cpuTime() - cpu0
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err // stopped before the video ended
	}
	if e := <-capErr; e != nil && !errors.Is(e, io.EOF) {
		return nil, e
	}
	sortByFrame(run.matches)
	return run, nil
}

// frameWorkerLoop takes frames from mbox until it is closed and hands each
// frame's matches to done.
func frameWorkerLoop(ctx context.Context, mbox *capture.Mailbox, newWorker func() (frameFunc, func(), error), done func([]decision)) error {
	fn, closeFn, err := newWorker()
	if err != nil {
		return err
	}
	defer closeFn()
	for {
		f, err := mbox.Next(ctx)
		if err != nil {
			return nil // closed: the video ended or the run stopped
		}
		ms, err := fn(ctx, f)
		f.Mat.Close()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		done(ms)
	}
}

// announceFirst marks, in matches sorted by frame, the first match of each
// pupil as the event (the gate's one-per-day debounce) and returns them.
func announceFirst(matches []decision) []decision {
	seen := map[string]bool{}
	for i := range matches {
		matches[i].enqueued = !seen[matches[i].student]
		seen[matches[i].student] = true
	}
	return matches
}

// sortByFrame sorts decisions by frame, keeping the order within a frame.
func sortByFrame(ds []decision) {
	sort.SliceStable(ds, func(i, j int) bool { return ds[i].frame < ds[j].frame })
}
