#ifndef DIEMDANH_YUNETNET_H
#define DIEMDANH_YUNETNET_H
#include <stddef.h>
#ifdef __cplusplus
extern "C" {
#endif
// A DNN network that returns several named outputs, owned here rather than
// through gocv: gocv 0.31's ForwardLayers leaks its output-name strings and
// its output array on every call (about 0.5 KB a frame at the gate).
typedef void* DDMultiNet;

// Loads an ONNX graph from memory; names are the outputs forward returns,
// separated by commas. NULL with OpenCV's message in err on failure.
DDMultiNet dd_multinet_load(const char* buf, size_t len, const char* names, char* err, size_t errlen);
void dd_multinet_free(DDMultiNet net);

// Runs img (a cv::Mat*, 8-bit BGR, the network's input size) through the
// network and copies the outputs, in the order of names, one after another
// into out (cap floats); lens[i] gets output i's number of values. Returns
// the number of floats written, or -1 with the reason in err (an OpenCV
// exception, or cap too small). Catches every C++ exception.
long dd_multinet_forward(DDMultiNet net, void* img, float* out, long cap, long* lens, int nlens, char* err, size_t errlen);
#ifdef __cplusplus
}
#endif
#endif
