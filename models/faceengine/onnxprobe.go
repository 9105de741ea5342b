package faceengine

// #cgo pkg-config: opencv4
// #cgo CXXFLAGS: -std=c++14 -O2 -DNDEBUG
// #include <stdlib.h>
// #include "onnxprobe.h"
import "C"

import (
	"strings"
	"unsafe"

	"github.com/diemdanh/diemdanh/models/errkind"
)

// probeONNX loads a graph and runs one zero input through it inside a
// C++ try/catch. OpenCV 4.6's importer throws on graphs it cannot read
// (float16 or float64 weights, quantised DequantizeLinear, unsupported
// layers), and gocv does not catch: the process would abort. A declared
// model is therefore probed here first, so such a file is refused with
// OpenCV's own reason. It returns the output's number of values.
func probeONNX(raw []byte, spec ONNXSpec) (int, error) {
	if len(raw) == 0 {
		return 0, errkind.New(errkind.ModelCorrupt, "onnx", nil, "empty file")
	}
	w, h := spec.size()
	nhwc := 0
	if spec.NHWC {
		nhwc = 1
	}
	buf := C.CBytes(raw)
	defer C.free(buf)
	const errLen = 1024
	msg := (*C.char)(C.malloc(errLen))
	defer C.free(unsafe.Pointer(msg))
	n := C.dd_onnx_probe((*C.char)(buf), C.size_t(len(raw)), C.int(nhwc), C.int(w), C.int(h), msg, errLen)
	if n < 0 {
		return 0, errkind.New(errkind.ModelCorrupt, "onnx", nil, "%s", openCVReason(C.GoString(msg)))
	}
	return int(n), nil
}

// openCVReason keeps the informative part of an OpenCV exception: its
// message has the source file and function around the reason, over
// several lines for importer errors.
func openCVReason(what string) string {
	var reason string
	for _, l := range strings.Split(what, "\n") {
		l = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), ">"))
		if l == "" {
			continue
		}
		if reason == "" || strings.Contains(l, "Node [") {
			reason = l
		}
	}
	if i := strings.Index(reason, "parse error: "); i >= 0 {
		node := strings.TrimSpace(reason[:i])
		rest := reason[i+len("parse error: "):]
		if j := strings.LastIndex(rest, "error: "); j >= 0 {
			rest = rest[j+len("error: "):]
		}
		return node + ": " + rest
	}
	if i := strings.LastIndex(reason, "error: "); i >= 0 {
		reason = reason[i+len("error: "):]
	}
	return reason
}
