// Package capture reads frames from a camera index, an RTSP/HTTP stream or
// a video file through gocv, reconnecting with capped backoff when a live
// source drops (each outage counted), rejecting stale frames of a live
// stream (a backlog delivered late, a repeated timestamp, a frame left over
// from before an outage), and hands them to the pipeline through a
// newest-frame-wins mailbox that drops unread frames (and counts them)
// instead of building a backlog. Stream passwords never reach its logs or
// errors (Redact).
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
	Index int64     // position in the source, from 0, increasing across reconnections
	Conn  int64     // the connection to the source that delivered it, from 1
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
	// MaxLag is how far a live frame's own timestamp may fall behind the
	// freshest frame of its connection before the frame is stale (a backlog
	// delivered late after a stall): stale frames are dropped and counted.
	// 0 turns the check off.
	MaxLag time.Duration `yaml:"max_lag"`
	// ReadTimeout is how long a live source may go without a frame before
	// it counts as an outage, e.g. an RTSP camera silent with its
	// connection open (a hung camera, a cut cable behind a switch). For
	// RTSP it is also FFmpeg's socket timeout, so the blocked read fails
	// and the gate reconnects (silence.go). 0 leaves OpenCV's own 30 s.
	ReadTimeout time.Duration `yaml:"read_timeout"`
}

// DefaultConfig reads camera 0 live.
func DefaultConfig() Config {
	return Config{Source: "0", Realtime: true, ReconnectMin: 500 * time.Millisecond, ReconnectMax: 3 * time.Second, MaxBadFrames: 25,
		MaxLag: 2 * time.Second, ReadTimeout: 5 * time.Second}
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
	case c.MaxLag < 0:
		return conf.Fieldf(prefix+".max_lag", "must not be negative (0 turns the check off)")
	case c.ReadTimeout != 0 && c.ReadTimeout < 500*time.Millisecond:
		return conf.Fieldf(prefix+".read_timeout", "must be 0 (OpenCV's 30 s) or at least 500ms, got %v", c.ReadTimeout)
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
	cfg     Config
	log     *slog.Logger
	now     func() time.Time
	kind    Kind
	online  atomic.Bool
	bad     atomic.Int64 // unreadable frames
	stale   atomic.Int64 // stale frames rejected
	outages atomic.Int64
	conns   atomic.Int64
	fps     atomic.Uint64
	discard func() int
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

// DiscardOnOutage registers f, called when an outage begins to throw away
// frames read before it that nobody has taken yet (Mailbox.Discard); the
// count f returns is added to StaleFrames. Call it before Run.
func (c *Capture) DiscardOnOutage(f func() int) { c.discard = f }

// Online reports whether the source is currently delivering frames.
func (c *Capture) Online() bool { return c.online.Load() }

// BadFrames is the number of unreadable frames so far.
func (c *Capture) BadFrames() int64 { return c.bad.Load() }

// StaleFrames is the number of frames rejected as stale: a live stream's
// backlog delivered late, a repeated or backward timestamp, or a frame
// from before an outage discarded when the outage began.
func (c *Capture) StaleFrames() int64 { return c.stale.Load() }

// Outages is the number of outages so far: a live source that failed to
// open or stopped delivering frames, counted once until frames flow again.
func (c *Capture) Outages() int64 { return c.outages.Load() }

// Connections is the number of times the source was opened.
func (c *Capture) Connections() int64 { return c.conns.Load() }

// Source is the configured source with any password redacted.
func (c *Capture) Source() string { return Redact(c.cfg.Source) }

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
		setFFmpegOptions(c.cfg.Source, c.cfg.ReadTimeout)
		// FFmpeg only: the other backends OpenCV would try after it print
		// the whole URL, password included, to stderr.
		vc, err = gocv.OpenVideoCaptureWithAPI(c.cfg.Source, gocv.VideoCaptureFFmpeg)
	}
	if err != nil {
		if vc != nil {
			vc.Close()
		}
		if k == KindFile {
			return nil, fmt.Errorf("%w: cannot open %s as a video: %v", ErrSource, c.cfg.Source, err)
		}
		return nil, fmt.Errorf("capture: open %s: %s", c.Source(), strings.ReplaceAll(err.Error(), c.cfg.Source, c.Source()))
	}
	if !vc.IsOpened() {
		vc.Close()
		if k == KindFile {
			return nil, fmt.Errorf("%w: cannot open %s as a video", ErrSource, c.cfg.Source)
		}
		return nil, fmt.Errorf("capture: open %s: not available", c.Source())
	}
	c.conns.Add(1)
	return vc, nil
}

// runState is what Run carries across connections.
type runState struct {
	index       int64      // next frame's Index
	mu          sync.Mutex // outageSince: the read loop and the silence watchdog
	outageSince time.Time  // zero while frames flow
}

// Run reads frames and passes each to put until ctx ends or a file ends
// (then it returns io.EOF). Live sources are reopened with backoff from
// ReconnectMin doubling to ReconnectMax; each outage is counted and logged
// once, and so is the recovery. A file that cannot be opened is an error
// wrapping ErrSource.
func (c *Capture) Run(ctx context.Context, put func(Frame)) error {
	backoff := c.cfg.ReconnectMin
	st := &runState{}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		vc, err := c.open()
		if err == nil {
			var end bool
			end, err = c.readAll(ctx, vc, put, st)
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
		c.beginOutage(st, err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, c.cfg.ReconnectMax)
	}
}

// beginOutage marks the source offline; the first failure of an outage
// counts it, logs it and discards frames read before it.
func (c *Capture) beginOutage(st *runState, err error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	c.online.Store(false)
	if !st.outageSince.IsZero() {
		return
	}
	st.outageSince = c.now()
	c.outages.Add(1)
	if c.discard != nil {
		c.stale.Add(int64(c.discard()))
	}
	if err == nil {
		err = errors.New("stream ended")
	}
	c.log.Warn("camera outage; reconnecting", "source", c.Source(), "err", err, "outages", c.outages.Load())
}

// recovered marks the source online after a good frame.
func (c *Capture) recovered(st *runState) {
	if c.online.Load() {
		return
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	c.online.Store(true)
	if !st.outageSince.IsZero() {
		c.log.Info("camera recovered", "source", c.Source(), "outage", c.now().Sub(st.outageSince).Round(time.Millisecond),
			"connection", c.conns.Load())
		st.outageSince = time.Time{}
	}
}

// readAll reads until the source fails. end reports a file's normal end.
func (c *Capture) readAll(ctx context.Context, vc *gocv.VideoCapture, put func(Frame), st *runState) (end bool, err error) {
	fps := vc.Get(gocv.VideoCaptureFPS)
	if !(fps > 0 && fps < 1000) {
		fps = 25
	}
	c.fps.Store(float64Bits(fps))
	period := time.Duration(float64(time.Second) / fps)
	start := c.now()
	fresh := newFreshness(c.cfg.MaxLag, start)
	conn := c.conns.Load()
	var local int64
	bad, good := 0, start
	var last atomic.Int64 // the last good frame (unix ns), for the watchdog
	last.Store(start.UnixNano())
	defer c.watchSilence(st, &last)()
	for ctx.Err() == nil {
		m := gocv.NewMat()
		if ok := vc.Read(&m); !ok || m.Empty() || m.Cols() < 16 || m.Rows() < 16 {
			m.Close()
			bad++
			c.bad.Add(1)
			if end, err := c.badFrame(vc, bad, c.now().Sub(good)); end || err != nil {
				return end, err
			}
			continue
		}
		bad, good = 0, c.now()
		last.Store(good.UnixNano())
		if c.kind == KindStream && c.staleFrame(fresh, vc) {
			m.Close()
			continue
		}
		c.recovered(st)
		if c.kind == KindFile && c.cfg.Realtime {
			if err := c.pace(ctx, start.Add(time.Duration(local)*period)); err != nil {
				m.Close()
				return false, err
			}
		}
		put(Frame{Mat: m, Index: st.index, Conn: conn, At: c.now()})
		st.index++
		local++
	}
	return false, ctx.Err()
}

// badFrame decides what an unreadable frame means: a file's end, a live
// source's outage (after MaxBadFrames in a row, or no frame for
// ReadTimeout: a silent RTSP camera fails each read only after FFmpeg's
// socket timeout, so counting failures alone would take MaxBadFrames
// timeouts), or a retry. silent is the time since the last good frame.
func (c *Capture) badFrame(vc *gocv.VideoCapture, bad int, silent time.Duration) (end bool, err error) {
	if c.kind == KindFile {
		// OpenCV returns false at the end and for frames it cannot decode;
		// a run of failures ends the file.
		if pos, n := vc.Get(gocv.VideoCapturePosFrames), vc.Get(gocv.VideoCaptureFrameCount); n > 0 && pos >= n-1 {
			return true, nil
		}
		return bad >= c.cfg.MaxBadFrames, nil
	}
	if bad >= c.cfg.MaxBadFrames {
		return false, errors.New("no frames")
	}
	if c.cfg.ReadTimeout > 0 && silent >= c.cfg.ReadTimeout {
		return false, fmt.Errorf("no frame for %v", silent.Round(time.Millisecond))
	}
	time.Sleep(5 * time.Millisecond)
	return false, nil
}

// staleFrame checks a stream frame's own timestamp and counts a stale one.
func (c *Capture) staleFrame(fresh *freshness, vc *gocv.VideoCapture) bool {
	verdict := fresh.check(c.now(), vc.Get(gocv.VideoCapturePosMsec))
	switch verdict {
	case frameFresh:
		return false
	case frameRebased:
		c.log.Warn("camera timestamps jumped; following the stream's new clock", "source", c.Source())
		return false
	}
	if c.stale.Add(1) == 1 || verdict == frameRepeated {
		c.log.Debug("stale camera frame dropped", "source", c.Source(), "why", verdict.String())
	}
	return true
}

func (c *Capture) pace(ctx context.Context, due time.Time) error {
	d := due.Sub(c.now())
	if d <= 0 {
		return nil
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
