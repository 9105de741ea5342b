package pipeline

import (
	"context"
	"image"
	"time"

	"github.com/diemdanh/diemdanh/edge/capture"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/wire"
	"gocv.io/x/gocv"
)

// Describer computes a descriptor for a face box of a frame
// (faceengine.Engine).
type Describer interface {
	DescribeCrop(ctx context.Context, m gocv.Mat, box image.Rectangle) (*match.Face, error)
	Model() match.ModelID
}

// GallerySource returns the gallery in force (edge/gallery.Store).
type GallerySource interface {
	Current() (*wire.GalleryDoc, *match.Gallery)
}

// Outbox stores events and unrecognised faces durably (edge/store.DB).
type Outbox interface {
	EnqueueDebounced(ctx context.Context, ev *wire.Event, key string, now time.Time, cooldown time.Duration) (bool, error)
	Enqueue(ctx context.Context, ev *wire.Event) error
	EnqueueUnrecognised(ctx context.Context, u *wire.Unrecognised) error
}

// FrameSource yields frames (capture.Mailbox); io.EOF ends the run.
type FrameSource interface {
	Next(ctx context.Context) (capture.Frame, error)
}

// EventInfo tells hooks where an event came from.
type EventInfo struct {
	TrackID       int64
	FirstFrame    int64     // track's first frame
	DecisionFrame int64     // frame of the vote that decided it
	DecisionAt    time.Time // capture time of that frame
	Enqueued      bool      // false when debounced (a repeat)
	Unknown       bool
}

// Overlay is a face box with its label, for the installer preview.
type Overlay struct {
	Box   image.Rectangle
	Label string
}

// Hooks observe the pipeline (benchmark, preview). Each may be nil and
// must return quickly.
type Hooks struct {
	// OnEvent runs after an event is committed to the outbox (or debounced).
	OnEvent func(ev *wire.Event, info EventInfo)
	// OnUnrecognised runs after an unrecognised face was offered to the
	// outbox (info.Enqueued: stored); info.DecisionFrame is the track's
	// last frame.
	OnUnrecognised func(u *wire.Unrecognised, info EventInfo)
	// OnFrame runs on the detection goroutine with the full frame (valid
	// only during the call) and the current tracks.
	OnFrame func(f capture.Frame, boxes []Overlay)
}

// Deps are the pipeline's collaborators.
type Deps struct {
	Describer Describer
	Workers   int // descriptor workers (the engine's pool size)
	// ModelsDir holds the YuNet detector's weights ("" = MODELS_DIR or
	// the default, conf.ResolveModelsDir).
	ModelsDir string
	Gallery   GallerySource
	Outbox    Outbox
	Notify    func() // wakes the publisher after a commit
	Hooks     Hooks
	Stats     *Stats
	Metrics   *Metrics
}
