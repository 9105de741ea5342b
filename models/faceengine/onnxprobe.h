#ifndef DIEMDANH_ONNXPROBE_H
#define DIEMDANH_ONNXPROBE_H
#include <stddef.h>
#ifdef __cplusplus
extern "C" {
#endif
// Loads an ONNX graph from memory with OpenCV's DNN importer and runs one
// zero input of shape 1x3xHxW (nhwc = 0) or 1xHxWx3 (nhwc = 1) through it,
// catching every C++ exception. Returns the output's number of values, or
// -1 with OpenCV's message in err (NUL-terminated, at most errlen bytes).
long dd_onnx_probe(const char* buf, size_t len, int nhwc, int w, int h, char* err, size_t errlen);
#ifdef __cplusplus
}
#endif
#endif
