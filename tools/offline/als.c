/* tools/offline/als.c - implicit-feedback ALS with a conjugate-gradient row solver,
 * following Hu, Koren & Volinsky (2008) and the `implicit` library. Each
 * half-step computes the shared Gram matrix Y^T Y + lambda I once with
 * OpenBLAS, then refines every row's factors independently by a few CG steps
 * that touch only the row's observed entries, so a sweep costs
 * O(nnz * k * cg_steps + rows * k^2) instead of a dense solve per row. */
#include "tools/offline/als.h"
#include "common/rng.h"
#include "common/xmath.h"

#include <cblas.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_FACTORS = 1024 };

/* Rows are solved in parallel when built with OpenMP. Each row reads only
 * shared, read-only data and writes only its own factors, and static
 * scheduling fixes which thread does what, so results do not depend on
 * timing. The macro keeps -Wunknown-pragmas quiet in builds without it. */
#ifdef _OPENMP
#define PARALLEL_FOR _Pragma("omp parallel for schedule(static)")
#else
#define PARALLEL_FOR
#endif


/* malloc(n * size) that refuses sizes whose product overflows. */
static void *xalloc(size_t n, size_t size) {
  size_t bytes;
  if (rec_mul_overflow(n, size, &bytes)) return NULL;
  return malloc(bytes ? bytes : 1);
}

/* Eight partial sums let the compiler vectorise the reduction without
 * -ffast-math; the order is fixed, so the result is reproducible. */
static float dot(const float *a, const float *b, size_t n) {
  float acc[8] = {0};
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (size_t l = 0; l < 8; l++) acc[l] += a[i + l] * b[i + l];
  for (; i < n; i++) acc[0] += a[i] * b[i];
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

/* y += a x, blocked like dot() because at -O2 GCC vectorises only loops
 * that need no scalar epilogue or aliasing checks. */
static void axpy(float a, const float *restrict x, float *restrict y, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (size_t l = 0; l < 8; l++) y[i + l] += a * x[i + l];
  for (; i < n; i++) y[i] += a * x[i];
}

/* out = G x for the full symmetric k x k matrix G, summed column by column
 * (axpy form) because that vectorises where a row-by-row dot would not.
 * Plain loops rather than cblas_ssymv: this runs inside the OpenMP loop, and
 * a pthreads OpenBLAS must not be entered from there. */
static void symv(const float *G, const float *x, float *out, size_t k) {
  memset(out, 0, k * sizeof *out);
  for (size_t j = 0; j < k; j++) axpy(x[j], G + j * k, out, k);
}

/* G = Y^T Y + lambda I for Y [n x k], both triangles filled. */
static void gram(const float *Y, size_t n, size_t k, float lambda, float *G) {
  memset(G, 0, k * k * sizeof *G);
  if (n > 0)
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (blasint)k, (blasint)n, 1.0f, Y,
                (blasint)k, 0.0f, G, (blasint)k);
  for (size_t i = 0; i < k; i++) {
    for (size_t j = i + 1; j < k; j++) G[j * k + i] = G[i * k + j];
    G[i * k + i] += lambda;
  }
}

/* The row's system is A x = b with A = G + sum_i (c_i - 1) y_i y_i^T and
 * b = sum_i c_i y_i over its observed entries i (preference 1, confidence
 * c_i = 1 + alpha r_i). This writes r = b - A x. */
static void residual(const csr *M, size_t row, const float *Y, const float *G, float alpha,
                     const float *x, float *r, size_t k) {
  symv(G, x, r, k);
  for (size_t j = 0; j < k; j++) r[j] = -r[j];
  for (size_t e = M->rowptr[row]; e < M->rowptr[row + 1]; e++) {
    const float *y = Y + (size_t)M->colidx[e] * k;
    float w = alpha * M->vals[e];
    axpy((1.0f + w) - w * dot(y, x, k), y, r, k);
  }
}

/* ap = A p, with A as in residual(), never formed. */
static void apply(const csr *M, size_t row, const float *Y, const float *G, float alpha,
                  const float *p, float *ap, size_t k) {
  symv(G, p, ap, k);
  for (size_t e = M->rowptr[row]; e < M->rowptr[row + 1]; e++) {
    const float *y = Y + (size_t)M->colidx[e] * k;
    axpy(alpha * M->vals[e] * dot(y, p, k), y, ap, k);
  }
}

/* A few CG steps on the row's system, warm-started from its current factors
 * x (so each sweep continues the previous one's work). Stops early once the
 * residual vanishes, or when p's curvature p.Ap / p.p is below 'flat' (the
 * rounding level of G): with lambda = 0, A can be singular, and a step along
 * a direction it cannot see would only amplify rounding noise in x. */
static void solve_row(const csr *M, size_t row, const float *Y, const float *G,
                      const als_opts *o, float flat, float *x) {
  float buf[3 * MAX_FACTORS]; /* k <= MAX_FACTORS: 12 KiB of stack per thread */
  size_t k = o->factors;
  float *r = buf, *p = buf + k, *ap = buf + 2 * k;
  residual(M, row, Y, G, o->alpha, x, r, k);
  memcpy(p, r, k * sizeof *p);
  float rsold = dot(r, r, k);
  for (int it = 0; it < o->cg_steps && rsold > 1e-20f; it++) {
    apply(M, row, Y, G, o->alpha, p, ap, k);
    float pap = dot(p, ap, k);
    if (!(pap > flat * dot(p, p, k))) return;
    float step = rsold / pap;
    axpy(step, p, x, k);
    axpy(-step, ap, r, k);
    float rsnew = dot(r, r, k), beta = rsnew / rsold;
    for (size_t j = 0; j < k; j++) p[j] = r[j] + beta * p[j];
    rsold = rsnew;
  }
}

/* Updates X [M->rows x k] given Y [M->cols x k]; G is k x k scratch. */
static void half_step(const csr *M, const float *Y, float *X, const als_opts *o, float *G) {
  size_t k = o->factors;
  gram(Y, M->cols, k, o->regularization, G);
  float top = 0;
  for (size_t i = 0; i < k; i++) top = fmaxf(top, G[i * k + i]);
  float flat = FLT_EPSILON * top;
  PARALLEL_FOR
  for (size_t row = 0; row < M->rows; row++) solve_row(M, row, Y, G, o, flat, X + row * k);
}

/* One user's share of the objective: u^T (V^T V) u counts every pair as if
 * unobserved (c = 1, p = 0); observed pairs then swap s^2 for c (1 - s)^2. */
static double row_loss(const csr *R, size_t u, const float *U, const float *V,
                       const float *G, const als_opts *o) {
  float gu[MAX_FACTORS];
  size_t k = o->factors;
  const float *x = U + u * k;
  symv(G, x, gu, k);
  double sum = dot(x, gu, k);
  for (size_t e = R->rowptr[u]; e < R->rowptr[u + 1]; e++) {
    double s = dot(V + (size_t)R->colidx[e] * k, x, k);
    double c = 1.0 + (double)o->alpha * R->vals[e];
    sum += c * (1.0 - s) * (1.0 - s) - s * s;
  }
  return sum;
}

static double sq_norm(const float *A, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; i++) s += (double)A[i] * A[i];
  return s;
}

/* als_loss with caller-provided k x k scratch, so training cannot fail
 * half-way for want of memory. Serial: the sum's order stays fixed. */
static double loss_with(const csr *R, const als_opts *o, const float *U, const float *V,
                        float *G) {
  size_t k = o->factors;
  gram(V, R->cols, k, 0.0f, G);
  double sum = 0;
  for (size_t u = 0; u < R->rows; u++) sum += row_loss(R, u, U, V, G, o);
  sum += o->regularization * (sq_norm(U, R->rows * k) + sq_norm(V, R->cols * k));
  return sum / (double)(R->nnz ? R->nnz : 1);
}

double als_loss(const csr *R, const als_opts *o, const float *U, const float *V) {
  float *G = xalloc(o->factors * o->factors, sizeof *G);
  if (!G) return NAN;
  double loss = loss_with(R, o, U, V, G);
  free(G);
  return loss;
}

static int check_opts(const als_opts *o, rec_error *err) {
  if (o->factors < 1 || o->factors > MAX_FACTORS)
    return rec_fail(err, REC_EINVAL, "als: factors is %zu, must be 1..%d", o->factors,
                    MAX_FACTORS);
  if (o->iterations < 1)
    return rec_fail(err, REC_EINVAL, "als: iterations is %d, must be at least 1", o->iterations);
  if (o->cg_steps < 1)
    return rec_fail(err, REC_EINVAL, "als: cg_steps is %d, must be at least 1", o->cg_steps);
  if (!(o->alpha > 0) || !isfinite(o->alpha))
    return rec_fail(err, REC_EINVAL, "als: alpha is %g, must be finite and > 0", o->alpha);
  if (!(o->regularization >= 0) || !isfinite(o->regularization))
    return rec_fail(err, REC_EINVAL, "als: regularization is %g, must be finite and >= 0",
                    o->regularization);
  return 0;
}

/* Shape checks first, so the entry scan below can trust rowptr. BLAS takes
 * dimensions as int, and the transpose stores row numbers as uint32_t. */
static int check_shape(const csr *R, const float *U, const float *V, size_t k, rec_error *err) {
  size_t cells;
  if (R->rows > INT_MAX || R->cols > INT_MAX)
    return rec_fail(err, REC_EINVAL, "als: %zu x %zu matrix is too large (at most %d a side)",
                    R->rows, R->cols, INT_MAX);
  if (rec_mul_overflow(R->rows + R->cols, k, &cells))
    return rec_fail(err, REC_EINVAL, "als: factor matrices are too large");
  if (!R->rowptr || (R->nnz && (!R->colidx || !R->vals)))
    return rec_fail(err, REC_EINVAL, "als: matrix has NULL arrays");
  if ((R->rows && !U) || (R->cols && !V))
    return rec_fail(err, REC_EINVAL, "als: NULL output factors");
  if (R->rowptr[0] != 0 || R->rowptr[R->rows] != R->nnz)
    return rec_fail(err, REC_EINVAL, "als: rowptr runs %zu..%zu but nnz is %zu", R->rowptr[0],
                    R->rowptr[R->rows], R->nnz);
  for (size_t r = 0; r < R->rows; r++)
    if (R->rowptr[r + 1] < R->rowptr[r])
      return rec_fail(err, REC_EINVAL, "als: rowptr decreases at row %zu", r);
  return 0;
}

/* Every entry must name a real column and carry a positive weight whose
 * confidence 1 + alpha r is finite, or the solves would produce NaN. */
static int check_entries(const csr *R, float alpha, rec_error *err) {
  for (size_t r = 0; r < R->rows; r++) {
    for (size_t e = R->rowptr[r]; e < R->rowptr[r + 1]; e++) {
      float v = R->vals[e];
      if (R->colidx[e] >= R->cols)
        return rec_fail(err, REC_EINVAL, "als: row %zu: column %u is out of range (%zu columns)",
                        r, R->colidx[e], R->cols);
      if (!(v > 0) || !isfinite(alpha * v))
        return rec_fail(err, REC_EINVAL, "als: row %zu column %u: value %g must be finite and > 0"
                        " (and alpha * value finite)", r, R->colidx[e], v);
    }
  }
  return 0;
}

/* The items half-step walks R by column: T = R^T, by counting sort, so each
 * column's rows come out in ascending order. */
typedef struct transposed {
  csr m;
  size_t *ptr;
  uint32_t *idx;
  float *val;
} transposed;

static void transpose_free(transposed *t) {
  free(t->ptr);
  free(t->idx);
  free(t->val);
}

static int transpose(const csr *R, transposed *t, rec_error *err) {
  t->ptr = calloc(R->cols + 1, sizeof *t->ptr);
  t->idx = xalloc(R->nnz, sizeof *t->idx);
  t->val = xalloc(R->nnz, sizeof *t->val);
  if (!t->ptr || !t->idx || !t->val) {
    transpose_free(t);
    return rec_fail(err, REC_ENOMEM, "als: no memory to transpose %zu entries", R->nnz);
  }
  for (size_t e = 0; e < R->nnz; e++) t->ptr[R->colidx[e] + 1]++;
  for (size_t c = 0; c < R->cols; c++) t->ptr[c + 1] += t->ptr[c];
  /* Filling advances ptr[c] to the start of column c + 1; shift it back. */
  for (size_t r = 0; r < R->rows; r++) {
    for (size_t e = R->rowptr[r]; e < R->rowptr[r + 1]; e++) {
      size_t at = t->ptr[R->colidx[e]]++;
      t->idx[at] = (uint32_t)r;
      t->val[at] = R->vals[e];
    }
  }
  memmove(t->ptr + 1, t->ptr, R->cols * sizeof *t->ptr);
  t->ptr[0] = 0;
  t->m = (csr){R->cols, R->rows, R->nnz, t->ptr, t->idx, t->val};
  return 0;
}

static void init_factors(float *A, size_t n, rec_rng *r) {
  for (size_t i = 0; i < n; i++) A[i] = 0.01f * (float)rec_rng_normal(r);
}

int als_train(const csr *R, const als_opts *o, float *U, float *V, rec_error *err) {
  if (!R || !o) return rec_fail(err, REC_EINVAL, "als: NULL matrix or options");
  int rc = check_opts(o, err);
  if (!rc) rc = check_shape(R, U, V, o->factors, err);
  if (!rc) rc = check_entries(R, o->alpha, err);
  if (rc) return rc;
  size_t k = o->factors;
  /* Everything that can fail happens before U and V are written. */
  float *G = xalloc(k * k, sizeof *G);
  if (!G) return rec_fail(err, REC_ENOMEM, "als: no memory for a %zu x %zu Gram matrix", k, k);
  transposed T;
  if ((rc = transpose(R, &T, err))) goto free_gram;
  rec_rng g = {o->seed};
  init_factors(U, R->rows * k, &g);
  init_factors(V, R->cols * k, &g);
  for (int it = 1; it <= o->iterations; it++) {
    half_step(R, V, U, o, G);
    half_step(&T.m, U, V, o, G);
    if (o->progress) o->progress(o->progress_arg, it, loss_with(R, o, U, V, G));
  }
  transpose_free(&T);
free_gram:
  free(G);
  return rc;
}
