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
// Sets the OpenBLAS thread count if OpenBLAS is the loaded BLAS; returns 1 if
// it was, 0 otherwise.
int gk_set_blas_threads(int n);
#ifdef __cplusplus
}
#endif
#endif
