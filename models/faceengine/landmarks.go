package faceengine

// #include <stdlib.h>
// #include "hog.h"
import "C"

import (
	"image"
	"path/filepath"
	"runtime"
	"unsafe"

	"github.com/diemdanh/diemdanh/models/errkind"
	"gocv.io/x/gocv"
)

// ShapePredictor is dlib's 5-point landmark predictor on its own (the file
// go-face loads, shape_predictor_5_face_landmarks.dat). Given a face box
// from the HOG detector it places the eye corners and the nose base in
// about a millisecond, without go-face's re-detection, JPEG round trip and
// ResNet descriptor, which a pluggable embedder does not need. Its state is
// read-only, so one predictor serves every worker.
type ShapePredictor struct {
	ptr unsafe.Pointer
}

// NewShapePredictor loads the predictor from the models folder. The file
// must have passed VerifyModels; a missing or unreadable one is
// errkind.ModelMissing, one dlib cannot parse errkind.ModelCorrupt.
func NewShapePredictor(dir string) (*ShapePredictor, error) {
	const name = "shape_predictor_5_face_landmarks.dat"
	if err := VerifyModels(dir, DlibModels[:1]); err != nil {
		return nil, err
	}
	cs := C.CString(filepath.Join(dir, name))
	defer C.free(unsafe.Pointer(cs))
	p := C.gk_sp_new(cs)
	if p == nil {
		return nil, errkind.New(errkind.ModelCorrupt, "landmarks", nil, "dlib cannot load %s", name)
	}
	s := &ShapePredictor{ptr: p}
	runtime.SetFinalizer(s, (*ShapePredictor).Close)
	return s, nil
}

// Close frees the predictor.
func (s *ShapePredictor) Close() {
	if s.ptr != nil {
		C.gk_sp_free(s.ptr)
		s.ptr = nil
	}
}

// Landmarks returns the 5 landmarks of the face in box of the 8-bit grey
// image gray, in gray's coordinates.
func (s *ShapePredictor) Landmarks(gray gocv.Mat, box image.Rectangle) ([]image.Point, error) {
	if s.ptr == nil {
		return nil, errkind.New(errkind.Closed, "landmarks", nil, "predictor closed")
	}
	if gray.Empty() || gray.Type() != gocv.MatTypeCV8U {
		return nil, errkind.New(errkind.Invalid, "landmarks", nil, "need an 8-bit grey image")
	}
	if box.Dx() < 8 || box.Dy() < 8 {
		return nil, errkind.New(errkind.Invalid, "landmarks", nil, "box %v too small", box)
	}
	pix, err := gray.DataPtrUint8()
	if err != nil {
		return nil, errkind.New(errkind.Invalid, "landmarks", err, "grey image not continuous")
	}
	var out [10]C.long
	n := C.gk_sp_shape(s.ptr, (*C.uchar)(unsafe.Pointer(&pix[0])), C.int(gray.Cols()), C.int(gray.Rows()), C.int(gray.Step()),
		C.long(box.Min.X), C.long(box.Min.Y), C.long(box.Max.X-1), C.long(box.Max.Y-1), &out[0], 5)
	runtime.KeepAlive(gray)
	if n != 5 {
		return nil, errkind.New(errkind.Unknown, "landmarks", nil, "predictor returned %d points", int(n))
	}
	pts := make([]image.Point, 5)
	for i := range pts {
		pts[i] = image.Pt(int(out[2*i]), int(out[2*i+1]))
	}
	return pts, nil
}
