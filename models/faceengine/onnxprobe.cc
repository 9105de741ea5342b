#include "onnxprobe.h"

#include <opencv2/core.hpp>
#include <opencv2/dnn.hpp>

#include <cstring>
#include <exception>

static long fail(const char* what, char* err, size_t errlen) {
  if (errlen > 0) {
    std::strncpy(err, what, errlen - 1);
    err[errlen - 1] = 0;
  }
  return -1;
}

long dd_onnx_probe(const char* buf, size_t len, int nhwc, int w, int h, char* err, size_t errlen) {
  try {
    cv::dnn::Net net = cv::dnn::readNetFromONNX(buf, len);
    if (net.empty()) return fail("the importer returned an empty network", err, errlen);
    int nchw[] = {1, 3, h, w};
    int nhwcShape[] = {1, h, w, 3};
    cv::Mat in(4, nhwc ? nhwcShape : nchw, CV_32F, cv::Scalar(0));
    net.setInput(in);
    cv::Mat out = net.forward();
    return static_cast<long>(out.total());
  } catch (const cv::Exception& e) {
    return fail(e.what(), err, errlen);
  } catch (const std::exception& e) {
    return fail(e.what(), err, errlen);
  } catch (...) {
    return fail("unknown exception", err, errlen);
  }
}
