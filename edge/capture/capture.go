// Package capture reads frames from a camera index, an RTSP/HTTP stream or
// a video file through gocv, reconnecting with capped backoff when a live
// source drops, and hands them to the pipeline through a newest-frame-wins
// mailbox that drops stale frames (and counts them) instead of building a
// backlog.
package capture

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/diemdanh/diemdanh/models/conf"
	"gocv.io/x/gocv"
)

// Frame is one decoded BGR frame. Whoever receives it owns Mat and must
// Close it.
type Frame struct {
	Mat   gocv.Mat
	Index int64     // position in the source, from 0
	At    time.Time // when it was read
}

// Config selects and tunes the source.
type Config struct {
	// Source is a camera index ("0"), an rtsp:// or http(s):// URL, or a
	// video file path.
	Source string `yaml:"source"`
	// Realtime paces a video file at its own frame rate, like a live camera.
	// False reads a file as fast as possible (benchmarks).
	Realtime bool `yaml:"realtime"`
	// Loop restarts a video file at its end (demos).
	Loop bool `yaml:"loop"`
	// ReconnectMin and ReconnectMax bound the backoff between attempts to
	// reopen a live source.
	ReconnectMin time.Duration `yaml:"reconnect_min"`
	ReconnectMax time.Duration `yaml:"reconnect_max"`
	// MaxBadFrames is how many unreadable frames in a row end a file (or
	// count as an outage of a live source).
	MaxBadFrames int `yaml:"max_bad_frames"`
}

// DefaultConfig reads camera 0 live.
func DefaultConfig() Config {
	return Config{Source: "0", Realtime: true, ReconnectMin: 500 * time.Millisecond, ReconnectMax: 30 * time.Second, MaxBadFrames: 25}
}

// Validate names the first bad field under prefix.
func (c Config) Validate(prefix string) error {
	switch {
	case strings.TrimSpace(c.Source) == "":
		return conf.Fieldf(prefix+".source", "is required (camera index, rtsp:// URL or video file)")
	case c.ReconnectMin <= 0:
		return conf.Fieldf(prefix+".reconnect_min", "must be positive")
	case c.ReconnectMax < c.ReconnectMin:
		return conf.Fieldf(prefix+".reconnect_max", "must be at least reconnect_min")
	case c.MaxBadFrames < 1:
		return conf.Fieldf(prefix+".max_bad_frames", "must be at least 1")
	}
	return nil
}

// Kind of source.
type Kind int

// Source kinds.
const (
	KindCamera Kind = iota
	KindStream
	KindFile
)

// ParseSource classifies a source string.
func ParseSource(s string) (Kind, int) {
	if n, err := strconv.Atoi(strings.TrimSpace(s)); err == nil && n >= 0 {
		return KindCamera, n
	}
	l := strings.ToLower(s)
	for _, p := range []string{"rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://", "tcp://"} {
		if strings.HasPrefix(l, p) {
			return KindStream, 0
		}
	}
	return KindFile, 0
}

// ErrSource is wrapped by errors that no retry can fix (a missing or
// unreadable video file).
var ErrSource = errors.New("capture: source unusable")

// Capture reads one source.
type Capture struct {
	cfg    Config
	log    *slog.Logger
	now    func() time.Time
	kind   Kind
	online atomic.Bool
	bad    atomic.Int64 // unreadable frames
	fps    atomic.Uint64
}

// New returns a capture for cfg; it opens nothing until Run.
func New(cfg Config, log *slog.Logger, now func() time.Time) (*Capture, error) {
	if err := cfg.Validate("camera"); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	k, _ := ParseSource(cfg.Source)
	return &Capture{cfg: cfg, log: log, now: now, kind: k}, nil
}

// Online reports whether the source is currently delivering frames.
func (c *Capture) Online() bool { return c.online.Load() }

// BadFrames is the number of unreadable frames so far.
func (c *Capture) BadFrames() int64 { return c.bad.Load() }

// SourceFPS is the frame rate the source reports (0 if unknown).
func (c *Capture) SourceFPS() float64 { return float64FromBits(c.fps.Load()) }

func (c *Capture) open() (*gocv.VideoCapture, error) {
	k, idx := ParseSource(c.cfg.Source)
	var vc *gocv.VideoCapture
	var err error
	switch k {
	case KindCamera:
		vc, err = gocv.OpenVideoCapture(idx)
	case KindFile:
		st, serr := os.Stat(c.cfg.Source)
		if serr != nil {
			return nil, fmt.Errorf("%w: %v", ErrSource, serr)
		}
		if st.IsDir() {
			return nil, fmt.Errorf("%w: %s is a directory", ErrSource, c.cfg.Source)
		}
		vc, err = gocv.OpenVideoCaptureWithAPI(c.cfg.Source, gocv.VideoCaptureAny)
	default:
		vc, err = gocv.OpenVideoCapture(c.cfg.Source)
	}
	if err != nil {
		if vc != nil {
			vc.Close()
		}
		if k == KindFile {
			return nil, fmt.Errorf("%w: cannot open %s as a video: %v", ErrSource, c.cfg.Source, err)
		}
		return nil, fmt.Errorf("capture: open %s: %s", redact(c.cfg.Source), strings.ReplaceAll(err.Error(), c.cfg.Source, redact(c.cfg.Source)))
	}
	if !vc.IsOpened() {
		vc.Close()
		if k == KindFile {
			return nil, fmt.Errorf("%w: cannot open %s as a video", ErrSource, c.cfg.Source)
		}
		return nil, fmt.Errorf("capture: open %s: not available", redact(c.cfg.Source))
	}
	return vc, nil
}

// Run reads frames and passes each to put until ctx ends or a file ends
// (then it returns io.EOF). Live sources are reopened with capped backoff;
// the first failure of an outage is logged once, and so is the recovery.
// A file that cannot be opened is an error wrapping ErrSource.
func (c *Capture) Run(ctx context.Context, put func(Frame)) error {
	backoff := c.cfg.ReconnectMin
	var outageSince time.Time
	var index int64
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		vc, err := c.open()
		if err == nil {
			var end bool
			end, err = c.readAll(ctx, vc, put, &index, &outageSince)
			vc.Close()
			if end && c.kind == KindFile {
				if c.cfg.Loop {
					continue
				}
				return io.EOF
			}
			if err == nil {
				backoff = c.cfg.ReconnectMin
			}
		}
		if errors.Is(err, ErrSource) {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		c.online.Store(false)
		if outageSince.IsZero() {
			outageSince = c.now()
			if err == nil {
				err = errors.New("stream ended")
			}
			c.log.Warn("camera outage; reconnecting", "source", redact(c.cfg.Source), "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, c.cfg.ReconnectMax)
	}
}

// readAll reads until the source fails. end reports a file's normal end.
func (c *Capture) readAll(ctx context.Context, vc *gocv.VideoCapture, put func(Frame), index *int64, outageSince *time.Time) (end bool, err error) {
	fps := vc.Get(gocv.VideoCaptureFPS)
	if !(fps > 0 && fps < 1000) {
		fps = 25
	}
	c.fps.Store(float64Bits(fps))
	period := time.Duration(float64(time.Second) / fps)
	start := c.now()
	var local int64
	bad := 0
	for ctx.Err() == nil {
		m := gocv.NewMat()
		ok := vc.Read(&m)
		if !ok || m.Empty() || m.Cols() < 16 || m.Rows() < 16 {
			m.Close()
			bad++
			c.bad.Add(1)
			if c.kind == KindFile {
				// OpenCV returns false at the end and for frames it cannot
				// decode; a run of failures ends the file.
				if pos, n := vc.Get(gocv.VideoCapturePosFrames), vc.Get(gocv.VideoCaptureFrameCount); n > 0 && pos >= n-1 {
					return true, nil
				}
				if bad >= c.cfg.MaxBadFrames {
					return true, nil
				}
				continue
			}
			if bad >= c.cfg.MaxBadFrames {
				return false, errors.New("no frames")
			}
			time.Sleep(5 * time.Millisecond)
			continue
		}
		bad = 0
		if !c.online.Load() {
			c.online.Store(true)
			if !outageSince.IsZero() {
				c.log.Info("camera recovered", "source", redact(c.cfg.Source), "outage", c.now().Sub(*outageSince).Round(time.Millisecond))
				*outageSince = time.Time{}
			}
		}
		if c.kind == KindFile && c.cfg.Realtime {
			due := start.Add(time.Duration(local) * period)
			if d := due.Sub(c.now()); d > 0 {
				select {
				case <-ctx.Done():
					m.Close()
					return false, ctx.Err()
				case <-time.After(d):
				}
			}
		}
		put(Frame{Mat: m, Index: *index, At: c.now()})
		*index++
		local++
	}
	return false, ctx.Err()
}

// redact hides a password in a stream URL for logs.
func redact(s string) string {
	if i := strings.Index(s, "://"); i >= 0 {
		rest := s[i+3:]
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			if slash := strings.Index(rest, "/"); slash < 0 || at < slash {
				return s[:i+3] + "***@" + rest[at+1:]
			}
		}
	}
	return s
}

// Mailbox is the handoff between capture and the pipeline. In live mode
// (Drop) a new frame replaces one the pipeline has not taken yet, which is
// closed and counted as dropped: the pipeline always works on the newest
// frame. Without Drop, Put waits for the pipeline (benchmarks that must
// see every frame).
type Mailbox struct {
	drop    bool
	mu      sync.Mutex
	cond    *sync.Cond
	slot    *Frame
	closed  bool
	err     error
	dropped atomic.Int64
}

// NewMailbox returns an empty mailbox.
func NewMailbox(drop bool) *Mailbox {
	b := &Mailbox{drop: drop}
	b.cond = sync.NewCond(&b.mu)
	return b
}

// Dropped is the number of stale frames discarded.
func (b *Mailbox) Dropped() int64 { return b.dropped.Load() }

// Put hands over f (the mailbox owns it from now on).
func (b *Mailbox) Put(f Frame) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for !b.drop && b.slot != nil && !b.closed {
		b.cond.Wait()
	}
	if b.closed {
		f.Mat.Close()
		return
	}
	if b.slot != nil {
		b.slot.Mat.Close()
		b.dropped.Add(1)
	}
	b.slot = &f
	b.cond.Broadcast()
}

// Close ends the mailbox: Next returns err (io.EOF for a normal end) once
// the last frame is taken.
func (b *Mailbox) Close(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	if err == nil {
		err = io.EOF
	}
	b.closed, b.err = true, err
	b.cond.Broadcast()
}

// Next waits for a frame. The caller owns the returned Mat.
func (b *Mailbox) Next(ctx context.Context) (Frame, error) {
	stop := context.AfterFunc(ctx, func() {
		b.mu.Lock()
		b.cond.Broadcast()
		b.mu.Unlock()
	})
	defer stop()
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.slot == nil && !b.closed && ctx.Err() == nil {
		b.cond.Wait()
	}
	if b.slot != nil {
		f := *b.slot
		b.slot = nil
		b.cond.Broadcast()
		return f, nil
	}
	if ctx.Err() != nil {
		return Frame{}, ctx.Err()
	}
	return Frame{}, b.err
}

// Drain closes any frame left in the mailbox.
func (b *Mailbox) Drain() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.slot != nil {
		b.slot.Mat.Close()
		b.slot = nil
	}
}
