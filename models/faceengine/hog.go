package faceengine

// #cgo CXXFLAGS: -std=c++14 -O2 -DNDEBUG
// #cgo LDFLAGS: -ldlib -lblas -llapack -ldl
// #include <stdlib.h>
// #include "hog.h"
import "C"

import (
	"image"
	"runtime"
	"unsafe"

	"github.com/diemdanh/diemdanh/models/errkind"
)

// HOGDetector is dlib's frontal-face HOG detector on its own, without
// landmarks or descriptors: the cheap first stage of the gate pipeline. It
// is not safe for concurrent use; give each worker its own.
type HOGDetector struct {
	ptr unsafe.Pointer
}

// Detection is a face box found by a detector, with its score.
type Detection struct {
	Box   image.Rectangle
	Score float64
}

// NewHOGDetector builds a detector (the HOG model is compiled into dlib).
func NewHOGDetector() (*HOGDetector, error) {
	p := C.gk_hog_new()
	if p == nil {
		return nil, errkind.New(errkind.Unknown, "hog", nil, "cannot create detector")
	}
	d := &HOGDetector{ptr: p}
	runtime.SetFinalizer(d, (*HOGDetector).Close)
	return d, nil
}

// Close frees the detector.
func (d *HOGDetector) Close() {
	if d.ptr != nil {
		C.gk_hog_free(d.ptr)
		d.ptr = nil
	}
}

// maxDetections bounds the boxes returned from one call.
const maxDetections = 64

// DetectGray runs the detector on an 8-bit grayscale image of w×h pixels
// with the given row stride. upsample doubles the image that many times
// first (finds faces under 80 px at 4× the cost per step). adjust shifts
// the decision threshold (0 is dlib's default; negative finds more).
func (d *HOGDetector) DetectGray(pix []byte, w, h, stride, upsample int, adjust float64) ([]Detection, error) {
	if d.ptr == nil {
		return nil, errkind.New(errkind.Closed, "hog", nil, "detector closed")
	}
	if w <= 0 || h <= 0 || stride < w || len(pix) < stride*(h-1)+w {
		return nil, errkind.New(errkind.EmptyImage, "hog", nil, "bad buffer %dx%d stride %d len %d", w, h, stride, len(pix))
	}
	var boxes [4 * maxDetections]C.long
	var scores [maxDetections]C.double
	n := C.gk_hog_detect(d.ptr, (*C.uchar)(unsafe.Pointer(&pix[0])), C.int(w), C.int(h), C.int(stride),
		C.int(upsample), C.double(adjust), &boxes[0], &scores[0], maxDetections)
	if n < 0 {
		return nil, errkind.New(errkind.Unknown, "hog", nil, "detector failed")
	}
	if n > maxDetections {
		n = maxDetections
	}
	out := make([]Detection, int(n))
	for i := range out {
		out[i] = Detection{
			Box:   image.Rect(int(boxes[4*i]), int(boxes[4*i+1]), int(boxes[4*i+2]), int(boxes[4*i+3])),
			Score: float64(scores[i]),
		}
	}
	return out, nil
}

// SetBLASThreads sets OpenBLAS's thread count when OpenBLAS is the BLAS in
// use and reports whether it was. The engine calls it with 1: we
// parallelise across workers, each with its own recognizer, instead of
// inside one matrix product, which on 2 cores only adds contention.
func SetBLASThreads(n int) bool { return C.gk_set_blas_threads(C.int(n)) == 1 }

// LimitMallocArenas caps glibc's malloc arenas at n (mallopt M_ARENA_MAX,
// as the MALLOC_ARENA_MAX environment variable does) and reports whether
// it could. OpenCV and dlib allocate from whichever OS thread cgo runs
// them on, and glibc gives busy threads arenas of their own (up to 8 per
// core), each keeping freed buffers: on the gate, two arenas instead of
// the default took the peak RSS from 435 to 341 MB at the same speed
// (deploy/PERFORMANCE.md). A constructor in hog.cc already sets 2 when the
// program loads, before any thread exists, unless MALLOC_ARENA_MAX is set;
// this is for callers that want another limit.
func LimitMallocArenas(n int) bool { return C.gk_limit_arenas(C.int(n)) == 1 }

// mallocArenas is how many malloc arenas glibc has made (tests).
func mallocArenas() int { return int(C.gk_count_arenas()) }
