#ifndef GATEKIT_HOG_H
#define GATEKIT_HOG_H
#ifdef __cplusplus
extern "C" {
#endif
void* gk_hog_new(void);
void gk_hog_free(void* h);
// Detects faces in an 8-bit grayscale buffer. Writes up to max boxes as
// (left, top, right, bottom) into out and their scores into scores. Returns
// the number of faces found (which may exceed max), or -1 on error.
int gk_hog_detect(void* h, const unsigned char* gray, int w, int hgt, int stride,
                  int upsample, double adjust, long* out, double* scores, int max);
// dlib's shape predictor (5 landmarks) loaded from a .dat file; NULL on
// error (missing or corrupt file).
void* gk_sp_new(const char* path);
void gk_sp_free(void* sp);
// Runs the predictor on the box (left, top, right, bottom) of an 8-bit
// grayscale buffer; writes n (x, y) pairs into out (at most max points) and
// returns the number of landmarks, or -1 on error. Safe to call
// concurrently on one predictor (its state is read-only).
int gk_sp_shape(void* sp, const unsigned char* gray, int w, int hgt, int stride,
                long left, long top, long right, long bottom, long* out, int max);
// Sets the OpenBLAS thread count if OpenBLAS is the loaded BLAS; returns 1 if
// it was, 0 otherwise.
int gk_set_blas_threads(int n);
// Caps glibc's malloc arenas (mallopt M_ARENA_MAX); returns 1 on success.
int gk_limit_arenas(int n);
// Number of malloc arenas glibc has made so far, or -1.
int gk_count_arenas(void);
#ifdef __cplusplus
}
#endif
#endif
