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
