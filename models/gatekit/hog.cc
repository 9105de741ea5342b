#include <dlfcn.h>
#include <cstring>
#include <dlib/image_processing/frontal_face_detector.h>
#include <dlib/image_transforms.h>
#include "hog.h"

struct gk_hog {
  dlib::frontal_face_detector det = dlib::get_frontal_face_detector();
};

extern "C" void* gk_hog_new(void) {
  try { return new gk_hog(); } catch (...) { return nullptr; }
}

extern "C" void gk_hog_free(void* h) { delete static_cast<gk_hog*>(h); }

extern "C" int gk_hog_detect(void* h, const unsigned char* gray, int w, int hgt, int stride,
                             int upsample, double adjust, long* out, double* scores, int max) {
  try {
    gk_hog* g = static_cast<gk_hog*>(h);
    dlib::array2d<unsigned char> img(hgt, w);
    for (int y = 0; y < hgt; y++) std::memcpy(&img[y][0], gray + (size_t)y * stride, w);
    double scale = 1.0;
    for (int i = 0; i < upsample; i++) { dlib::pyramid_up(img); scale *= 2.0; }
    std::vector<dlib::rect_detection> dets;
    g->det(img, dets, adjust);
    int n = (int)dets.size();
    for (int i = 0; i < n && i < max; i++) {
      const dlib::rectangle& r = dets[i].rect;
      out[4 * i + 0] = (long)(r.left() / scale);
      out[4 * i + 1] = (long)(r.top() / scale);
      out[4 * i + 2] = (long)(r.right() / scale);
      out[4 * i + 3] = (long)(r.bottom() / scale);
      scores[i] = dets[i].detection_confidence;
    }
    return n;
  } catch (...) {
    return -1;
  }
}

extern "C" int gk_set_blas_threads(int n) {
  typedef void (*setter)(int);
  setter f = (setter)dlsym(RTLD_DEFAULT, "openblas_set_num_threads");
  if (!f) return 0;
  f(n);
  return 1;
}
