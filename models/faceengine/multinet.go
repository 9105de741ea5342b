package faceengine

// #cgo pkg-config: opencv4
// #cgo CXXFLAGS: -std=c++14 -O2 -DNDEBUG
// #include <stdlib.h>
// #include "yunetnet.h"
import "C"

import (
	"strings"
	"unsafe"

	"github.com/diemdanh/diemdanh/models/errkind"
	"gocv.io/x/gocv"
)

// multiNet is a DNN network with several named outputs, run through
// yunetnet.cc instead of gocv's Net.ForwardLayers, which in gocv 0.31
// leaks the C strings of the output names and the array of output Mats on
// every call: at the gate, about 0.5 KB for each detection, which showed
// as the C heap growing by a few MB a school day. It also catches OpenCV's
// exceptions, and copies the outputs into one Go buffer reused from call
// to call. Not safe for concurrent use.
type multiNet struct {
	p    C.DDMultiNet
	msg  *C.char // OpenCV's message when a call fails
	buf  []float32
	lens []C.long
	outs [][]float32
}

// loadMultiNet loads an ONNX graph whose forward returns the outputs names.
func loadMultiNet(raw []byte, names []string) (*multiNet, error) {
	if len(raw) == 0 {
		return nil, errkind.New(errkind.ModelCorrupt, "onnx", nil, "empty file")
	}
	buf := C.CBytes(raw)
	defer C.free(buf)
	cnames := C.CString(strings.Join(names, ","))
	defer C.free(unsafe.Pointer(cnames))
	msg := (*C.char)(C.malloc(netErrLen))
	p := C.dd_multinet_load((*C.char)(buf), C.size_t(len(raw)), cnames, msg, netErrLen)
	if p == nil {
		defer C.free(unsafe.Pointer(msg))
		return nil, errkind.New(errkind.ModelCorrupt, "onnx", nil, "%s", openCVReason(C.GoString(msg)))
	}
	return &multiNet{p: p, msg: msg, lens: make([]C.long, len(names)), outs: make([][]float32, len(names))}, nil
}

// netErrLen is the size of the buffer OpenCV's messages are copied into.
const netErrLen = 1024

func (n *multiNet) close() {
	if n.p != nil {
		C.dd_multinet_free(n.p)
		C.free(unsafe.Pointer(n.msg))
		n.p, n.msg = nil, nil
	}
}

// forward runs img (8-bit BGR, the network's input size) through the
// network. It returns each named output's values, in order, as slices of a
// buffer of at least size floats that the next call overwrites.
func (n *multiNet) forward(img gocv.Mat, size int) ([][]float32, error) {
	if cap(n.buf) < size {
		n.buf = make([]float32, size)
	}
	n.buf = n.buf[:cap(n.buf)]
	got := C.dd_multinet_forward(n.p, unsafe.Pointer(img.Ptr()), (*C.float)(unsafe.Pointer(&n.buf[0])), C.long(len(n.buf)),
		&n.lens[0], C.int(len(n.lens)), n.msg, netErrLen)
	if got < 0 {
		return nil, errkind.New(errkind.Unknown, "onnx", nil, "forward: %s", openCVReason(C.GoString(n.msg)))
	}
	at := 0
	for i, l := range n.lens {
		n.outs[i] = n.buf[at : at+int(l) : at+int(l)]
		at += int(l)
	}
	return n.outs, nil
}
