#include <dlfcn.h>
#include <cstring>
#include <dlib/image_processing/frontal_face_detector.h>
#include <dlib/image_transforms.h>
#include <dlib/image_processing/shape_predictor.h>
#include <dlib/serialize.h>
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

struct gk_sp {
  dlib::shape_predictor sp;
};

extern "C" void* gk_sp_new(const char* path) {
  try {
    gk_sp* s = new gk_sp();
    dlib::deserialize(path) >> s->sp;
    return s;
  } catch (...) {
    return nullptr;
  }
}

extern "C" void gk_sp_free(void* s) { delete static_cast<gk_sp*>(s); }

// A view of a caller-owned grayscale buffer as a dlib image, so no copy is
// made (the predictor reads only pixels near the box).
struct gk_gray_view {
  const unsigned char* pix;
  long w, h, stride;
};
namespace dlib {
template <> struct image_traits<gk_gray_view> { typedef unsigned char pixel_type; };
}
inline long num_rows(const gk_gray_view& v) { return v.h; }
inline long num_columns(const gk_gray_view& v) { return v.w; }
inline const void* image_data(const gk_gray_view& v) { return v.pix; }
inline long width_step(const gk_gray_view& v) { return v.stride; }

extern "C" int gk_sp_shape(void* s, const unsigned char* gray, int w, int hgt, int stride,
                           long left, long top, long right, long bottom, long* out, int max) {
  try {
    gk_sp* p = static_cast<gk_sp*>(s);
    gk_gray_view v{gray, w, hgt, stride};
    dlib::const_image_view<gk_gray_view> img(v);
    dlib::full_object_detection d = p->sp(img, dlib::rectangle(left, top, right, bottom));
    int n = (int)d.num_parts();
    for (int i = 0; i < n && i < max; i++) {
      out[2 * i] = d.part(i).x();
      out[2 * i + 1] = d.part(i).y();
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

#include <malloc.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
// Runs when the program is loaded, before any thread exists (a mallopt
// from Go's init can come after some thread already fixed the arena
// limit): two malloc arenas unless MALLOC_ARENA_MAX says otherwise.
__attribute__((constructor)) static void gk_default_arenas(void) {
#ifdef M_ARENA_MAX
  if (getenv("MALLOC_ARENA_MAX") == NULL) mallopt(M_ARENA_MAX, 2);
#endif
}

extern "C" int gk_limit_arenas(int n) {
#ifdef M_ARENA_MAX
  return mallopt(M_ARENA_MAX, n);
#else
  return 0;
#endif
}

// Counts glibc's malloc arenas (the <heap> elements of malloc_info).
extern "C" int gk_count_arenas(void) {
  char* buf = NULL;
  size_t len = 0;
  FILE* f = open_memstream(&buf, &len);
  if (!f) return -1;
  malloc_info(0, f);
  fclose(f);
  int n = 0;
  for (const char* p = buf; (p = strstr(p, "<heap nr=")) != NULL; p++) n++;
  free(buf);
  return n;
}
