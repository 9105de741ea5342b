package faceengine

import (
	"context"
	"errors"
	"image"
	"log/slog"
	"math"
	"runtime"
	"runtime/debug"
	"sync"

	face "github.com/Kagami/go-face"
	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/errkind"
	"github.com/diemdanh/diemdanh/models/imagecheck"
	"github.com/diemdanh/diemdanh/models/match"
	"gocv.io/x/gocv"
)

// EngineConfig configures the face engine.
type EngineConfig struct {
	ModelsDir   string            `yaml:"models_dir"`   // folder with the dlib .dat files; MODELS_DIR overrides
	Workers     int               `yaml:"workers"`      // recognizers run in parallel; 0 = number of CPUs
	BLASThreads int               `yaml:"blas_threads"` // OpenBLAS threads per process; we parallelise by workers
	Limits      imagecheck.Limits `yaml:"limits"`
	// TightCropPad is the border added (as a fraction of the image side)
	// around an image in which no face is found, for tight ID-photo crops
	// where the HOG detector needs context around the face.
	TightCropPad float64 `yaml:"tight_crop_pad"`
	// Embedder names the descriptor model: match.DefaultEmbedder
	// ("sface-2021dec-bq", also when empty), "dlib-resnet-v1" (go-face's
	// own), another ONNX/fusion embedder, e.g. "faceplugin-mfn-v1", or
	// "custom" for the model declared in Custom.
	Embedder string `yaml:"embedder"`
	// ONNX, when set, replaces the registered spec of the ONNX embedder
	// named by Embedder (its Model.Name must equal Embedder). It is for the
	// evaluation harness and tests that try other normalisations or
	// alignments; configs do not set it.
	ONNX *ONNXSpec `yaml:"-"`
	// Custom declares the model run when Embedder is "custom"
	// (CustomEmbedder): a school's own licensed ONNX file (custom.go).
	Custom *CustomModel `yaml:"custom"`
	// Key is the config key of this section, which NewEngine's refusals
	// name ("" = "engine"; the hub's is "enrol").
	Key string `yaml:"-"`
}

// DefaultEngineConfig returns the defaults.
func DefaultEngineConfig() EngineConfig {
	return EngineConfig{ModelsDir: conf.DefaultModelsDir, BLASThreads: 1, Limits: imagecheck.DefaultLimits(), TightCropPad: 0.35, Embedder: match.DefaultEmbedder.Name}
}

// Validate names the first bad field, under prefix (e.g. "engine").
func (c EngineConfig) Validate(prefix string) error {
	switch {
	case c.ModelsDir == "":
		return conf.Fieldf(prefix+".models_dir", "is required")
	case c.Workers < 0 || c.Workers > 64:
		return conf.Fieldf(prefix+".workers", "must be 0..64, got %d", c.Workers)
	case c.BLASThreads < 0 || c.BLASThreads > 64:
		return conf.Fieldf(prefix+".blas_threads", "must be 0..64, got %d", c.BLASThreads)
	case c.Limits.MaxPixels < 0 || c.Limits.MaxBytes < 0 || c.Limits.MaxSide < 0:
		return conf.Fieldf(prefix+".limits", "must not be negative")
	case c.TightCropPad < 0 || c.TightCropPad > 2:
		return conf.Fieldf(prefix+".tight_crop_pad", "must be 0..2, got %g", c.TightCropPad)
	}
	return c.validateEmbedder(prefix)
}

// Engine runs detection, landmarks and descriptors with a pool of go-face
// recognizers, one per worker (a Recognizer serialises its detector and its
// network internally, so sharing one would serialise everything).
type Engine struct {
	cfg  EngineConfig
	log  *slog.Logger
	pool chan *face.Recognizer
	all  []*face.Recognizer
	mu   sync.RWMutex
	shut bool
	emb  Embedder        // nil: go-face's own dlib-resnet-v1 descriptor
	sp   *ShapePredictor // with emb: landmarks for DescribeCrop's direct path
	// With an Align5 embedder: YuNet detects and places the landmarks
	// (one detector per worker; engine_yunet.go).
	pe    pointEmbedder
	ynAll []*YuNetDetector
	yn    chan *YuNetDetector

	recOnce sync.Once // fills pool (loadRecognizers)
	recErr  error
}

// Model is the embedder this engine produces descriptors for.
func (e *Engine) Model() match.ModelID {
	if e.emb != nil {
		return e.emb.Model()
	}
	return match.DlibResNetV1
}

// NewEngine verifies the model files against their pinned checksums and
// loads one recognizer per worker.
func NewEngine(cfg EngineConfig, log *slog.Logger) (*Engine, error) {
	key := cfg.Key
	if key == "" {
		key = "engine"
	}
	if err := cfg.Validate(key); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Workers == 0 {
		cfg.Workers = runtime.NumCPU()
	}
	if cfg.Embedder == "" {
		cfg.Embedder = match.DefaultEmbedder.Name
	}
	if cfg.BLASThreads > 0 {
		SetBLASThreads(cfg.BLASThreads)
	}
	if err := VerifyModels(cfg.ModelsDir, DlibModels); err != nil {
		return nil, err
	}
	e := &Engine{cfg: cfg, log: log, pool: make(chan *face.Recognizer, cfg.Workers)}
	spec, ok := onnxSpec(cfg.Embedder)
	if cfg.ONNX != nil {
		spec, ok = *cfg.ONNX, true
	}
	if cfg.Embedder == CustomEmbedder {
		emb, err := NewCustomEmbedder(cfg.ModelsDir, *cfg.Custom, cfg.Workers, key+".custom")
		if err != nil {
			return nil, err
		}
		e.emb = emb
	} else if fs, fok := FusionSpecs[cfg.Embedder]; fok && cfg.ONNX == nil {
		emb, err := NewFusionEmbedder(cfg.ModelsDir, fs, cfg.Workers)
		if err != nil {
			return nil, err
		}
		e.emb = emb
	} else if ok {
		emb, err := NewONNXEmbedder(cfg.ModelsDir, spec, cfg.Workers)
		if err != nil {
			return nil, err
		}
		e.emb = emb
	}
	if pe, ok := e.emb.(pointEmbedder); ok && pe.Aligns5() {
		if err := e.loadYuNet(); err != nil {
			e.Close()
			return nil, err
		}
	} else if e.emb != nil {
		sp, err := NewShapePredictor(cfg.ModelsDir)
		if err != nil {
			e.Close()
			return nil, err
		}
		e.sp = sp
	}
	// go-face's recognizers hold dlib's ResNet, which a pluggable embedder
	// never runs on the gate (DescribeCrop's direct path): load them on
	// first use only. The files' checksums are verified above either way.
	if e.emb == nil {
		if err := e.loadRecognizers(); err != nil {
			e.Close()
			return nil, err
		}
	}
	// The ONNX files were read into Go memory to be checked and parsed;
	// OpenCV holds its own copy now. Hand the Go copies back to the OS
	// at once rather than at the collector's leisure (tens of MB of RSS
	// on a gate device).
	debug.FreeOSMemory()
	log.Info("face engine ready", "models_dir", cfg.ModelsDir, "workers", cfg.Workers, "model", e.Model().String())
	return e, nil
}

// Workers is the number of recognizers in the pool.
func (e *Engine) Workers() int { return e.cfg.Workers }

// Limits returns the image limits in force.
func (e *Engine) Limits() imagecheck.Limits { return e.cfg.Limits }

// Close frees every recognizer. Calls in flight finish first.
func (e *Engine) Close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.shut {
		return
	}
	e.shut = true
	for _, r := range e.all {
		r.Close()
	}
	if e.emb != nil {
		e.emb.Close()
	}
	if e.sp != nil {
		e.sp.Close()
	}
	for _, d := range e.ynAll {
		d.Close()
	}
}

// loadRecognizers fills the go-face pool, once.
func (e *Engine) loadRecognizers() error {
	e.recOnce.Do(func() {
		for i := 0; i < e.cfg.Workers; i++ {
			rec, err := face.NewRecognizer(e.cfg.ModelsDir)
			if err != nil {
				var se face.SerializationError
				if errors.As(err, &se) {
					e.recErr = errkind.New(errkind.ModelCorrupt, "engine", err, "loading models from %s", e.cfg.ModelsDir)
				} else {
					e.recErr = errkind.New(errkind.Unknown, "engine", err, "loading models from %s", e.cfg.ModelsDir)
				}
				return
			}
			e.all = append(e.all, rec)
			e.pool <- rec
		}
	})
	return e.recErr
}

func (e *Engine) acquire(ctx context.Context) (*face.Recognizer, func(), error) {
	e.mu.RLock()
	if e.shut {
		e.mu.RUnlock()
		return nil, nil, errkind.New(errkind.Closed, "engine", nil, "engine closed")
	}
	if err := e.loadRecognizers(); err != nil {
		e.mu.RUnlock()
		return nil, nil, err
	}
	select {
	case r := <-e.pool:
		return r, func() { e.pool <- r; e.mu.RUnlock() }, nil
	case <-ctx.Done():
		e.mu.RUnlock()
		return nil, nil, ctx.Err()
	}
}

// RecognizeJPEG is the strict go-face path: JPEG bytes with three colour
// components only. A PNG, a grayscale or CMYK JPEG, an empty or corrupt
// buffer or one over the pixel limit is a typed error. Boxes are in the
// JPEG's own coordinates; quality lacks sharpness and brightness (they
// need pixels; use RecognizeMat for those).
func (e *Engine) RecognizeJPEG(ctx context.Context, b []byte) ([]match.Face, error) {
	info, err := imagecheck.Sniff(b, e.cfg.Limits)
	if err != nil {
		return nil, err
	}
	if info.Format != "jpeg" {
		return nil, errkind.New(errkind.Unsupported, "recognize", nil, "%s given where JPEG is required", info.Format)
	}
	if info.Components != 3 {
		return nil, errkind.New(errkind.Unsupported, "recognize", nil, "JPEG with %d colour components (need 3; decode with Recognize to convert)", info.Components)
	}
	if e.emb == nil {
		return e.recognizeRaw(ctx, b, nil)
	}
	m, err := gocv.IMDecode(b, gocv.IMReadColor)
	if err != nil || m.Empty() {
		m.Close()
		return nil, errkind.New(errkind.CorruptImage, "recognize", err, "cannot decode JPEG")
	}
	defer m.Close()
	if e.pe != nil {
		return e.recognizeYuNet(ctx, m)
	}
	return e.recognizeRaw(ctx, b, &m)
}

// recognizeRaw runs go-face on JPEG bytes. With a pluggable embedder, src
// is the same image decoded (BGR); each face's descriptor is then replaced
// by the embedder's, computed from the landmarks at src's full resolution.
func (e *Engine) recognizeRaw(ctx context.Context, jpegBytes []byte, src *gocv.Mat) ([]match.Face, error) {
	rec, release, err := e.acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	raw, err := rec.Recognize(jpegBytes)
	if err != nil {
		var le face.ImageLoadError
		if errors.As(err, &le) {
			return nil, errkind.New(errkind.CorruptImage, "recognize", err, "")
		}
		return nil, errkind.New(errkind.Unknown, "recognize", err, "")
	}
	out := make([]match.Face, len(raw))
	for i, f := range raw {
		out[i] = match.Face{Box: f.Rectangle, Landmarks: f.Shapes, Descriptor: append(match.Descriptor(nil), f.Descriptor[:]...)}
		out[i].Quality.SizePx = f.Rectangle.Dx()
		out[i].Quality.YawDeg, out[i].Quality.RollDeg = PoseFromLandmarks(f.Shapes)
		if e.emb != nil && src != nil {
			d, err := e.emb.Embed(ctx, *src, f.Shapes)
			if err != nil {
				return nil, err
			}
			out[i].Descriptor = d
		}
	}
	return out, nil
}

// Recognize decodes any supported format (bounded by the limits, converted
// to colour and downscaled to Limits.MaxSide), then finds every face. Boxes
// are in the coordinates of the downscaled image; Scale in the result maps
// them back.
func (e *Engine) Recognize(ctx context.Context, b []byte) ([]match.Face, error) {
	m, _, err := DecodeMat(b, e.cfg.Limits)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	return e.RecognizeMat(ctx, m)
}

// RecognizeMat finds every face in a BGR Mat and fills in full quality figures.
func (e *Engine) RecognizeMat(ctx context.Context, m gocv.Mat) ([]match.Face, error) {
	if m.Empty() || m.Cols() == 0 || m.Rows() == 0 {
		return nil, errkind.New(errkind.EmptyImage, "recognize", nil, "empty frame")
	}
	src := m
	if m.Channels() != 3 {
		conv := gocv.NewMat()
		defer conv.Close()
		if m.Channels() == 1 {
			gocv.CvtColor(m, &conv, gocv.ColorGrayToBGR)
		} else {
			gocv.CvtColor(m, &conv, gocv.ColorBGRAToBGR)
		}
		src = conv
	}
	if e.pe != nil {
		return e.recognizeYuNet(ctx, src)
	}
	jpg, err := EncodeJPEG(src, 95)
	if err != nil {
		return nil, err
	}
	faces, err := e.recognizeRaw(ctx, jpg, &src)
	if err != nil {
		return nil, err
	}
	for i := range faces {
		q := MeasureCrop(src, faces[i].Box)
		q.YawDeg, q.RollDeg = faces[i].Quality.YawDeg, faces[i].Quality.RollDeg
		faces[i].Quality = q
	}
	return faces, nil
}

// RecognizeTight handles tight face crops (ID photos, 160×160 crops) where
// the HOG detector, which needs some context around a face, finds nothing:
// it first tries the image as it is, then adds a replicated border of
// TightCropPad on every side and tries again. Boxes are mapped back to the
// unpadded image. (Further tries with a black or mirrored border found a
// face in 13 of the 28 kpop and casia-facev5 crops this misses, but on
// casia-facev5 the 5 faces so enrolled added exactly 5 rank-1 errors for
// both embedders, so we do not: a failure to enrol asks the admin for a
// better photo instead.)
func (e *Engine) RecognizeTight(ctx context.Context, m gocv.Mat) ([]match.Face, error) {
	faces, err := e.RecognizeMat(ctx, m)
	if err != nil || len(faces) > 0 || e.cfg.TightCropPad == 0 {
		return faces, err
	}
	pad := int(math.Round(e.cfg.TightCropPad * float64(max(m.Cols(), m.Rows()))))
	padded := gocv.NewMat()
	defer padded.Close()
	gocv.CopyMakeBorder(m, &padded, pad, pad, pad, pad, gocv.BorderReplicate, ColorBlack())
	// Small crops also need upscaling: HOG finds faces of 80 px and more.
	work := padded
	scale := 1.0
	if side := padded.Cols(); side < 400 {
		scale = 400 / float64(side)
		up := gocv.NewMat()
		defer up.Close()
		gocv.Resize(padded, &up, image.Pt(0, 0), scale, scale, gocv.InterpolationCubic)
		work = up
	}
	faces, err = e.RecognizeMat(ctx, work)
	if err != nil {
		return nil, err
	}
	for i := range faces {
		faces[i].Box = unmap(faces[i].Box, scale, pad)
		for j, p := range faces[i].Landmarks {
			faces[i].Landmarks[j] = image.Pt(int(float64(p.X)/scale)-pad, int(float64(p.Y)/scale)-pad)
		}
		faces[i].Quality.SizePx = faces[i].Box.Dx()
	}
	return faces, nil
}

func unmap(r image.Rectangle, scale float64, pad int) image.Rectangle {
	return image.Rect(int(float64(r.Min.X)/scale)-pad, int(float64(r.Min.Y)/scale)-pad,
		int(float64(r.Max.X)/scale)-pad, int(float64(r.Max.Y)/scale)-pad)
}

// CropTarget is the face width, in pixels, a crop is scaled to before the
// descriptor is computed: above HOG's 80 px minimum, near dlib's 150 px chip.
const CropTarget = 150

// DescribeCrop computes the descriptor of the face inside box of frame m,
// as found by a cheap detector (HOGDetector) on a downscaled frame and
// mapped back. It crops with a margin, scales the face to CropTarget px,
// runs go-face on the crop only (a few ms of HOG on ~300×300 px instead of
// the whole frame) and returns the face nearest the crop's centre, in
// frame coordinates. It returns (nil, nil) when go-face finds no face there.
//
// With a pluggable embedder it takes a direct path instead: dlib's shape
// predictor places the landmarks in the given box (which must be a HOG box,
// as the predictor was trained on those) and the embedder runs on them; no
// re-detection, JPEG encoding or unused dlib descriptor (describeBox).
func (e *Engine) DescribeCrop(ctx context.Context, m gocv.Mat, box image.Rectangle) (*match.Face, error) {
	if m.Empty() {
		return nil, errkind.New(errkind.EmptyImage, "describe", nil, "empty frame")
	}
	if e.pe != nil {
		return e.describeYuNet(ctx, m, box)
	}
	if e.emb != nil && e.sp != nil {
		return e.describeBox(ctx, m, box)
	}
	bounds := image.Rect(0, 0, m.Cols(), m.Rows())
	margin := box.Dx() * 6 / 10
	crop := image.Rect(box.Min.X-margin, box.Min.Y-margin, box.Max.X+margin, box.Max.Y+margin).Intersect(bounds)
	if crop.Dx() < 8 || crop.Dy() < 8 {
		return nil, nil
	}
	roi := m.Region(crop)
	defer roi.Close()
	scale := float64(CropTarget) / float64(max(box.Dx(), 1))
	work := gocv.NewMat()
	defer work.Close()
	gocv.Resize(roi, &work, image.Pt(int(float64(crop.Dx())*scale), int(float64(crop.Dy())*scale)), 0, 0, gocv.InterpolationLinear)
	faces, err := e.RecognizeMat(ctx, work)
	if err != nil || len(faces) == 0 {
		return nil, err
	}
	c := image.Pt(work.Cols()/2, work.Rows()/2)
	best, bestD := 0, math.MaxFloat64
	for i, f := range faces {
		fc := image.Pt((f.Box.Min.X+f.Box.Max.X)/2, (f.Box.Min.Y+f.Box.Max.Y)/2)
		if d := math.Hypot(float64(fc.X-c.X), float64(fc.Y-c.Y)); d < bestD {
			best, bestD = i, d
		}
	}
	f := faces[best]
	f.Box = unmap(f.Box, scale, 0).Add(crop.Min)
	for j, p := range f.Landmarks {
		f.Landmarks[j] = image.Pt(int(float64(p.X)/scale)+crop.Min.X, int(float64(p.Y)/scale)+crop.Min.Y)
	}
	f.Quality.SizePx = f.Box.Dx()
	return &f, nil
}

// describeBox is DescribeCrop's direct path for pluggable embedders.
func (e *Engine) describeBox(ctx context.Context, m gocv.Mat, box image.Rectangle) (*match.Face, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.shut {
		return nil, errkind.New(errkind.Closed, "describe", nil, "engine closed")
	}
	bounds := image.Rect(0, 0, m.Cols(), m.Rows())
	box = box.Intersect(bounds)
	if box.Dx() < 16 || box.Dy() < 16 {
		return nil, nil
	}
	pad := box.Dx() / 4
	rr := image.Rect(box.Min.X-pad, box.Min.Y-pad, box.Max.X+pad, box.Max.Y+pad).Intersect(bounds)
	roi := m.Region(rr)
	gray := gocv.NewMat()
	switch roi.Channels() {
	case 1:
		roi.CopyTo(&gray)
	case 4:
		gocv.CvtColor(roi, &gray, gocv.ColorBGRAToGray)
	default:
		gocv.CvtColor(roi, &gray, gocv.ColorBGRToGray)
	}
	roi.Close()
	pts, err := e.sp.Landmarks(gray, box.Sub(rr.Min))
	gray.Close()
	if err != nil {
		return nil, err
	}
	for i := range pts {
		pts[i] = pts[i].Add(rr.Min)
	}
	if m.Channels() != 3 {
		return nil, errkind.New(errkind.Invalid, "describe", nil, "need a BGR frame, got %d channels", m.Channels())
	}
	d, err := e.emb.Embed(ctx, m, pts)
	if err != nil {
		return nil, err
	}
	q := MeasureCrop(m, box)
	q.YawDeg, q.RollDeg = PoseFromLandmarks(pts)
	return &match.Face{Box: box, Landmarks: pts, Descriptor: d, Quality: q}, nil
}
