/* tools/offline/ease.c - see ease.h. */
#include "tools/offline/ease.h"
#include "common/clock.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* LAPACK (OpenBLAS carries it): Cholesky factorisation and the inverse from it. */
extern void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info);
extern void dpotri_(const char *uplo, const int *n, double *a, const int *lda, int *info);

typedef struct by_count {
  uint32_t item, count;
} by_count;

static int more_users(const void *a, const void *b) {
  const by_count *x = a, *y = b;
  if (x->count != y->count) return x->count > y->count ? -1 : 1;
  return x->item < y->item ? -1 : x->item > y->item;
}

typedef struct weight {
  float mag, w;
  uint32_t j;
} weight;

static int heavier(const void *a, const void *b) {
  const weight *x = a, *y = b;
  if (x->mag != y->mag) return x->mag > y->mag ? -1 : 1;
  return x->j < y->j ? -1 : x->j > y->j;
}

/* The k heaviest of v[0..n) into v[0..k), sorted: Hoare selection (no two
 * weights compare equal: ties go by j), then a sort of the k. */
static void heaviest(weight *v, size_t n, size_t k) {
  size_t lo = 0, hi = n; /* the boundary k lies in [lo, hi] */
  while (hi - lo > 1 && k > lo && k < hi) {
    weight pivot = v[lo + (hi - lo - 1) / 2]; /* never the last: each pass shrinks [lo, hi) */
    size_t i = lo, j = hi - 1;
    for (;;) {
      while (heavier(&v[i], &pivot) < 0) i++;
      while (heavier(&pivot, &v[j]) < 0) j--;
      if (i >= j) break;
      weight x = v[i];
      v[i++] = v[j];
      v[j--] = x;
    }
    if (k <= j) hi = j + 1; /* [lo, j] are all heavier than [j + 1, hi) */
    else lo = j + 1;
  }
  qsort(v, k < n ? k : n, sizeof *v, heavier);
}

void ease_table_destroy(ease_table *t) {
  free(t->off);
  free(t->nbr);
  free(t->w);
  memset(t, 0, sizeof *t);
}

int ease_build(const ui_matrix *R, const ease_opts *o, ease_table *out, ease_report *rep, rec_error *err) {
  int64_t t0 = rec_mono_ns();
  size_t n_items = R->cols, max_items = o->max_items ? o->max_items : EASE_MAX_ITEMS;
  size_t per_item = o->per_item ? o->per_item : EASE_PER_ITEM;
  if (!(o->lambda > 0)) return rec_fail(err, REC_EINVAL, "EASE: lambda must be > 0");
  ease_table t = {.n_items = n_items};
  by_count *order = calloc(n_items + 1, sizeof *order);
  int32_t *col = malloc((n_items + 1) * sizeof *col);
  t.off = calloc(n_items + 1, sizeof *t.off);
  if (!order || !col || !t.off) {
    free(order), free(col), ease_table_destroy(&t);
    return rec_fail(err, REC_ENOMEM, "EASE: out of memory");
  }
  /* The items solved over: the most frequent, up to max_items. */
  for (size_t i = 0; i < n_items; i++) order[i].item = (uint32_t)i;
  for (size_t k = 0; k < R->nnz; k++) order[R->colidx[k]].count++;
  qsort(order, n_items, sizeof *order, more_users);
  size_t seen = 0;
  while (seen < n_items && order[seen].count) seen++;
  size_t m = seen < max_items ? seen : max_items;
  for (size_t i = 0; i < n_items; i++) col[i] = -1;
  for (size_t k = 0; k < m; k++) col[order[k].item] = (int32_t)k;
  double *G = m ? calloc(m * m, sizeof *G) : NULL;
  uint32_t *row = malloc((R->cols + 1) * sizeof *row);
  int rc = (m && !G) || !row ? rec_fail(err, REC_ENOMEM, "EASE: out of memory for a %zu x %zu solve (%zu MB)", m, m,
                                        m * m * sizeof *G >> 20) : 0;
  /* G = X^T X (binary), then + lambda on the diagonal. */
  for (size_t u = 0; !rc && u < R->rows; u++) {
    size_t n = 0;
    for (size_t k = R->rowptr[u]; k < R->rowptr[u + 1]; k++)
      if (R->vals[k] > 0 && col[R->colidx[k]] >= 0) row[n++] = (uint32_t)col[R->colidx[k]];
    for (size_t a = 0; a < n; a++) {
      double *g = G + (size_t)row[a] * m;
      for (size_t b = 0; b < n; b++) g[row[b]] += 1;
    }
  }
  free(row);
  for (size_t k = 0; !rc && k < m; k++) G[k * m + k] += o->lambda;
  /* P = G^-1 by Cholesky: symmetric, so the row-major matrix is its own
   * column-major transpose; dpotri fills one triangle, mirrored after. */
  int n = (int)m, info = 0;
  if (!rc && m) {
    /* The one large dense solve of the build: OpenBLAS's own threads (the
     * trainers keep it on one). Each output element is still summed by one
     * thread in a fixed blocking, so the bytes do not depend on the count. */
    int threads = openblas_get_num_threads();
#if !defined(__SANITIZE_THREAD__) /* OpenBLAS's own thread pool syncs where ThreadSanitizer cannot see */
    openblas_set_num_threads(omp_get_max_threads());
#endif
    dpotrf_("U", &n, G, &n, &info);
    if (!info) dpotri_("U", &n, G, &n, &info);
    openblas_set_num_threads(threads);
    if (info) rc = rec_fail(err, REC_EINVAL, "EASE: LAPACK %s failed (info %d) on the %zu x %zu Gram matrix",
                            info < 0 ? "argument" : "factorisation", info, m, m);
  }
  for (size_t j = 0; !rc && j < m; j++) /* column-major upper: (i <= j) at G[i + j m] */
    for (size_t i = 0; i < j; i++) G[j + i * m] = G[i + j * m];
  /* B[a][b] = -P[a][b] / P[b][b]; per row the per_item heaviest weights. */
  size_t keep = per_item < (m ? m - 1 : 0) ? per_item : (m ? m - 1 : 0);
  t.nbr = malloc((m * keep + 1) * sizeof *t.nbr);
  t.w = malloc((m * keep + 1) * sizeof *t.w);
  if (!rc && (!t.nbr || !t.w)) rc = rec_fail(err, REC_ENOMEM, "EASE: out of memory");
  uint32_t *kept = calloc(m + 1, sizeof *kept);
  if (!rc && !kept) rc = rec_fail(err, REC_ENOMEM, "EASE: out of memory");
  /* One thread: a selection per row costs a fraction of the solve, and
   * OpenMP's barriers are invisible to ThreadSanitizer. */
  weight *v = rc ? NULL : malloc((m + 1) * sizeof *v);
  if (!rc && !v) rc = rec_fail(err, REC_ENOMEM, "EASE: out of memory");
  for (size_t a = 0; !rc && a < m; a++) {
    size_t nv = 0;
    for (size_t b = 0; b < m; b++) {
      if (b == a) continue;
      float w = (float)(-G[a * m + b] / G[b * m + b]);
      v[nv++] = (weight){fabsf(w), w, order[b].item};
    }
    heaviest(v, nv, keep);
    for (size_t k = 0; k < keep; k++) {
      t.nbr[a * keep + k] = v[k].j;
      t.w[a * keep + k] = v[k].w;
    }
    kept[a] = (uint32_t)keep;
  }
  free(v);
  /* Rows by item: solved item order[a].item owns row a. */
  if (!rc) {
    size_t *first = calloc(n_items + 1, sizeof *first);
    uint32_t *nbr = malloc((m * keep + 1) * sizeof *nbr);
    float *w = malloc((m * keep + 1) * sizeof *w);
    if (!first || !nbr || !w) {
      free(first), free(nbr), free(w);
      rc = rec_fail(err, REC_ENOMEM, "EASE: out of memory");
    } else {
      for (size_t i = 0; i < n_items; i++) t.off[i + 1] = t.off[i] + (col[i] >= 0 ? kept[col[i]] : 0);
      for (size_t i = 0; i < n_items; i++)
        if (col[i] >= 0) {
          size_t a = (size_t)col[i];
          memcpy(nbr + t.off[i], t.nbr + a * keep, kept[a] * sizeof *nbr);
          memcpy(w + t.off[i], t.w + a * keep, kept[a] * sizeof *w);
        }
      free(t.nbr), free(t.w), free(first);
      t.nbr = nbr, t.w = w;
    }
  }
  free(kept);
  free(G);
  free(order);
  free(col);
  if (rc) {
    ease_table_destroy(&t);
    return rc;
  }
  if (rep) *rep = (ease_report){.items_seen = seen, .items_solved = m, .seconds = (double)(rec_mono_ns() - t0) / 1e9};
  *out = t;
  return 0;
}

void ease_scores_weighted(const ease_table *t, const uint32_t *items, const float *w, size_t n, size_t n_cols,
                          float *scores) {
  memset(scores, 0, n_cols * sizeof *scores);
  for (size_t k = 0; k < n; k++)
    for (size_t e = t->off[items[k]]; e < t->off[items[k] + 1]; e++) scores[t->nbr[e]] += w[k] * t->w[e];
}

void ease_scores(const ease_table *t, const ui_matrix *R, uint32_t u, float *scores) {
  memset(scores, 0, R->cols * sizeof *scores);
  for (size_t k = R->rowptr[u]; k < R->rowptr[u + 1]; k++) {
    uint32_t i = R->colidx[k];
    if (!(R->vals[k] > 0)) continue;
    for (size_t e = t->off[i]; e < t->off[i + 1]; e++) scores[t->nbr[e]] += t->w[e];
  }
}

/* ---- the low-rank factorisation (ease.h) ---- */

extern void dgelqf_(const int *m, const int *n, double *a, const int *lda, double *tau, double *work,
                    const int *lwork, int *info);
extern void dorglq_(const int *m, const int *n, const int *k, double *a, const int *lda, const double *tau,
                    double *work, const int *lwork, int *info);
extern void dsyev_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda, double *w,
                   double *work, const int *lwork, int *info);

/* Y = B X, X and Y [n x l] row-major. */
static void b_times(const ease_table *t, const double *X, double *Y, size_t l) {
  memset(Y, 0, t->n_items * l * sizeof *Y);
  for (size_t i = 0; i < t->n_items; i++)
    for (size_t e = t->off[i]; e < t->off[i + 1]; e++) {
      const double *x = X + (size_t)t->nbr[e] * l, w = t->w[e];
      double *y = Y + i * l;
      for (size_t k = 0; k < l; k++) y[k] += w * x[k];
    }
}

/* Y = B^T X. */
static void bt_times(const ease_table *t, const double *X, double *Y, size_t l) {
  memset(Y, 0, t->n_items * l * sizeof *Y);
  for (size_t i = 0; i < t->n_items; i++)
    for (size_t e = t->off[i]; e < t->off[i + 1]; e++) {
      const double *x = X + i * l, w = t->w[e];
      double *y = Y + (size_t)t->nbr[e] * l;
      for (size_t k = 0; k < l; k++) y[k] += w * x[k];
    }
}

/* Y [n x l] row-major -> an orthonormal basis of its columns, in place.
 * Row-major Y is column-major Y^T (l x n): its LQ factorisation Y^T = L Q
 * has orthonormal rows Q, and Q written back is Y's basis, row-major. */
static int orthonormalise(double *Y, size_t n, size_t l, double *tau, double *work, int lwork) {
  int m = (int)l, nn = (int)n, info = 0;
  dgelqf_(&m, &nn, Y, &m, tau, work, &lwork, &info);
  if (!info) dorglq_(&m, &nn, &m, Y, &m, tau, work, &lwork, &info);
  return info;
}

static double gaussian(uint64_t *s) {
  /* splitmix64, then Box-Muller */
  uint64_t r[2];
  for (int k = 0; k < 2; k++) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    r[k] = z ^ (z >> 31);
  }
  double u1 = ((double)(r[0] >> 11) + 0.5) / 9007199254740992.0, u2 = (double)(r[1] >> 11) / 9007199254740992.0;
  return sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2);
}

int ease_factorise(const ease_table *t, size_t rank, uint64_t seed, float *L, float *R, double *sigma,
                   rec_error *err) {
  size_t n = t->n_items;
  if (!rank || rank > n) return rec_fail(err, REC_EINVAL, "EASE factorisation: rank %zu of %zu items", rank, n);
  size_t l = rank + 10 < n ? rank + 10 : n;
  double *Y = malloc(n * l * sizeof *Y), *Z = malloc(n * l * sizeof *Z), *tau = malloc(l * sizeof *tau);
  double *G = malloc(l * l * sizeof *G), *lam = malloc(l * sizeof *lam), *work = NULL;
  int rc = 0, info = 0, lwork = -1;
  if (!Y || !Z || !tau || !G || !lam) rc = rec_fail(err, REC_ENOMEM, "EASE factorisation: out of memory");
  if (!rc) { /* one workspace for LQ, its Q and the eigensolver: the largest each asks for */
    double q[3] = {0};
    int m = (int)l, nn = (int)n, li = (int)l;
    dgelqf_(&m, &nn, Y, &m, tau, &q[0], &lwork, &info);
    dorglq_(&m, &nn, &m, Y, &m, tau, &q[1], &lwork, &info);
    dsyev_("V", "U", &li, G, &li, lam, &q[2], &lwork, &info);
    double most = q[0] > q[1] ? q[0] : q[1];
    most = most > q[2] ? most : q[2];
    lwork = (int)most + 1;
    if (!(work = malloc((size_t)lwork * sizeof *work))) rc = rec_fail(err, REC_ENOMEM, "EASE factorisation: out of memory");
  }
  if (!rc) {
    uint64_t s = seed;
    for (size_t k = 0; k < n * l; k++) Z[k] = gaussian(&s);
    b_times(t, Z, Y, l);
    info = orthonormalise(Y, n, l, tau, work, lwork);
    for (int q = 0; q < 2 && !info; q++) { /* power iterations: the spectrum's tail decays faster */
      bt_times(t, Y, Z, l);
      info = orthonormalise(Z, n, l, tau, work, lwork);
      if (!info) b_times(t, Z, Y, l);
      if (!info) info = orthonormalise(Y, n, l, tau, work, lwork);
    }
    if (!info) {
      /* C = Q^T B (l x n) is Z^T with Z = B^T Q; G = C C^T = Z^T Z = W diag(lam) W^T. */
      bt_times(t, Y, Z, l);
      cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (blasint)l, (blasint)l, (blasint)n, 1.0, Z, (blasint)l, Z,
                  (blasint)l, 0.0, G, (blasint)l);
      int li = (int)l;
      dsyev_("V", "U", &li, G, &li, lam, work, &lwork, &info); /* ascending; column c of col-major G */
    }
    if (info) rc = rec_fail(err, REC_EINVAL, "EASE factorisation: LAPACK failed (info %d)", info);
  }
  if (!rc) {
    /* B ~ Q W S V^T with V = Z W S^-1: L = Q W S^1/2, R = Z W S^-1/2. */
    for (size_t k = 0; k < rank; k++) {
      size_t c = l - 1 - k;
      double sg = lam[c] > 0 ? sqrt(lam[c]) : 0, h = sqrt(sg);
      if (sigma) sigma[k] = sg;
      const double *w = G + c * l;
      for (size_t i = 0; i < n; i++) {
        double a = 0, b = 0;
        for (size_t r = 0; r < l; r++) a += Y[i * l + r] * w[r], b += Z[i * l + r] * w[r];
        L[i * rank + k] = (float)(a * h);
        R[i * rank + k] = h > 0 ? (float)(b / h) : 0.0f;
      }
    }
  }
  free(Y), free(Z), free(tau), free(G), free(lam), free(work);
  return rc;
}
