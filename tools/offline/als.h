/* tools/offline/als.h - implicit-feedback alternating least squares (Hu, Koren,
 * Volinsky 2008): confidence c_ui = 1 + alpha * r_ui on observed pairs, 1
 * elsewhere, preference 1 on observed pairs; each half-step solves the
 * regularised normal equations per row with conjugate gradient (as the
 * `implicit` library does), using OpenBLAS for the shared Gram matrix. The
 * offline half of `recctl build --model als`; not used by the server. */
#ifndef REC_ALS_H
#define REC_ALS_H
#include <stddef.h>
#include <stdint.h>
#include "common/err.h"

/* A sparse matrix in compressed-row form: row r's entries are
 * colidx[rowptr[r] .. rowptr[r+1]) with values vals[same range]. */
typedef struct csr {
  size_t rows, cols, nnz;
  const size_t *rowptr;    /* [rows + 1] */
  const uint32_t *colidx;  /* [nnz], each < cols */
  const float *vals;       /* [nnz], > 0 */
} csr;

typedef struct als_opts {
  size_t factors;          /* latent dimension, e.g. 64 */
  int iterations;          /* full user+item sweeps, e.g. 15 */
  float regularization;    /* lambda, e.g. 0.05 */
  float alpha;             /* confidence scale, e.g. 20 */
  int cg_steps;            /* conjugate-gradient steps per row, e.g. 3 */
  uint64_t seed;           /* initial factors ~ N(0, 0.01^2) (std 0.01), splitmix64 */
  /* Called after sweep 'iteration' (1..iterations) with als_loss of the
   * factors so far; may be NULL, which also skips computing the loss. */
  void (*progress)(void *arg, int iteration, double loss);
  void *progress_arg;
} als_opts;

/* Trains on R (users x items) and writes user factors U [R->rows x factors]
 * and item factors V [R->cols x factors], both caller-allocated, row-major.
 * Requires factors 1..1024, iterations >= 1, cg_steps >= 1, alpha > 0,
 * regularization >= 0, rowptr consistent with nnz, every colidx < cols and
 * every value finite and > 0. Rows or columns with no entries are fine (their
 * factors shrink towards 0). Deterministic for a fixed seed and thread count.
 * Returns 0, or REC_EINVAL / REC_ENOMEM with 'err' filled; on failure U and V
 * are untouched and 'progress' is never called. Uses OpenMP threads over rows
 * when built with it; keeps no global state of its own. */
int als_train(const csr *R, const als_opts *o, float *U, float *V, rec_error *err);

/* The weighted objective sum_ui c_ui (p_ui - u.v)^2 + lambda(|U|^2 + |V|^2)
 * divided by nnz (by 1 when nnz is 0), computed without materialising the
 * dense matrix. Expects inputs als_train would accept; NaN if out of memory. */
double als_loss(const csr *R, const als_opts *o, const float *U, const float *V);
#endif
