#include "yunetnet.h"

#include <opencv2/core.hpp>
#include <opencv2/dnn.hpp>

#include <cstring>
#include <exception>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

namespace {

struct MultiNet {
  cv::dnn::Net net;
  std::vector<cv::String> names;
};

void setErr(const char* what, char* err, size_t errlen) {
  if (errlen > 0) {
    std::strncpy(err, what, errlen - 1);
    err[errlen - 1] = 0;
  }
}

long forward(MultiNet* m, const cv::Mat& img, float* out, long cap, long* lens, int nlens, char* err, size_t errlen) {
  if (nlens != static_cast<int>(m->names.size())) {
    setErr("wrong number of outputs requested", err, errlen);
    return -1;
  }
  cv::Mat blob = cv::dnn::blobFromImage(img, 1.0, cv::Size(), cv::Scalar(), false, false, CV_32F);
  m->net.setInput(blob);
  std::vector<cv::Mat> outs;
  m->net.forward(outs, m->names);
  long total = 0;
  for (const cv::Mat& o : outs) total += static_cast<long>(o.total());
  if (outs.size() != m->names.size() || total > cap) {
    setErr("outputs larger than the buffer", err, errlen);
    return -1;
  }
  long at = 0;
  for (size_t i = 0; i < outs.size(); i++) {
    cv::Mat o = outs[i].isContinuous() ? outs[i] : outs[i].clone();
    if (o.depth() != CV_32F) {
      setErr("output is not float32", err, errlen);
      return -1;
    }
    std::memcpy(out + at, o.ptr<float>(), o.total() * sizeof(float));
    lens[i] = static_cast<long>(o.total());
    at += lens[i];
  }
  return at;
}

}  // namespace

DDMultiNet dd_multinet_load(const char* buf, size_t len, const char* names, char* err, size_t errlen) {
  try {
    std::unique_ptr<MultiNet> m(new MultiNet);
    m->net = cv::dnn::readNetFromONNX(buf, len);
    if (m->net.empty()) {
      setErr("the importer returned an empty network", err, errlen);
      return nullptr;
    }
    std::stringstream ss(names);
    for (std::string n; std::getline(ss, n, ',');) m->names.push_back(n);
    return m.release();
  } catch (const std::exception& e) {
    setErr(e.what(), err, errlen);
  } catch (...) {
    setErr("unknown exception", err, errlen);
  }
  return nullptr;
}

void dd_multinet_free(DDMultiNet net) { delete static_cast<MultiNet*>(net); }

long dd_multinet_forward(DDMultiNet net, void* img, float* out, long cap, long* lens, int nlens, char* err, size_t errlen) {
  try {
    return forward(static_cast<MultiNet*>(net), *static_cast<cv::Mat*>(img), out, cap, lens, nlens, err, errlen);
  } catch (const std::exception& e) {
    setErr(e.what(), err, errlen);
  } catch (...) {
    setErr("unknown exception", err, errlen);
  }
  return -1;
}
