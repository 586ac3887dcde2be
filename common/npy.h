/* common/npy.h - read and write NumPy .npy files holding little-endian float32
 * matrices (or vectors), the format PyTorch and NumPy users export with
 * np.save. Only '<f4', C order, 1-D or 2-D is accepted; anything else is
 * refused with a message naming the file. */
#ifndef REC_NPY_H
#define REC_NPY_H
#include <stddef.h>
#include "common/err.h"

typedef struct npy_f32 {
  float *data;   /* rows * cols floats, row-major; owned, free with npy_f32_destroy */
  size_t rows;   /* first dimension */
  size_t cols;   /* second dimension; 1 for a 1-D array */
  int ndim;      /* 1 or 2 */
} npy_f32;

/* Reads 'path' into *out. Returns 0, or REC_EIO / REC_ECORRUPT with 'err' filled. */
int  npy_f32_read(const char *path, npy_f32 *out, rec_error *err);
void npy_f32_destroy(npy_f32 *a);
/* Writes a 2-D (cols > 0) or, with ndim 1, 1-D array. Returns 0 or REC_EIO. */
int  npy_f32_write(const char *path, const float *data, size_t rows, size_t cols, int ndim,
                   rec_error *err);
#endif
