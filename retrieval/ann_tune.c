/* retrieval/ann_tune.c - see ann_tune.h. */
#include "retrieval/ann_tune.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK 8192

/* Inserts (s, id) into a best-first list of k; ties keep the lower id first
 * because ids arrive in increasing order. */
static void keep(float *score, int64_t *ids, size_t k, size_t *have, float s, int64_t id) {
  size_t at = *have < k ? (*have)++ : k;
  if (at == k) {
    if (!(s > score[k - 1])) return;
    at = k - 1;
  }
  while (at > 0 && s > score[at - 1]) {
    score[at] = score[at - 1];
    ids[at] = ids[at - 1];
    at--;
  }
  score[at] = s;
  ids[at] = id;
}

int ann_exact_topk(const float *items, size_t n, size_t dim, const float *queries, size_t nq, size_t k,
                   int64_t *ids, rec_error *err) {
  if (k > n) k = n;
  float *block = malloc((size_t)BLOCK * nq * sizeof *block), *best = malloc(nq * k * sizeof *best);
  size_t *have = calloc(nq, sizeof *have);
  if (!block || !best || !have) {
    free(block), free(best), free(have);
    return rec_fail(err, REC_ENOMEM, "out of memory");
  }
  for (size_t at = 0; at < n; at += BLOCK) {
    size_t m = n - at < BLOCK ? n - at : BLOCK;
    /* block[q x m] = queries[q x dim] . items[at..at+m]^T */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)nq, (blasint)m, (blasint)dim, 1.0f, queries,
                (blasint)dim, items + at * dim, (blasint)dim, 0.0f, block, (blasint)m);
    for (size_t q = 0; q < nq; q++)
      for (size_t j = 0; j < m; j++)
        keep(best + q * k, ids + q * k, k, &have[q], block[q * m + j], (int64_t)(at + j));
  }
  free(block), free(best), free(have);
  return 0;
}

double ann_recall(const ann_index *idx, const float *queries, size_t nq, size_t dim, size_t k,
                  const int64_t *exact) {
  int64_t *got = malloc(k * sizeof *got);
  float *sc = malloc(k * sizeof *sc);
  size_t hits = 0, total = 0;
  for (size_t q = 0; got && sc && q < nq; q++) {
    size_t n = 0;
    if (ann_search(idx, queries + q * dim, k, got, sc, &n) != 0) n = 0;
    for (size_t i = 0; i < n; i++)
      for (size_t j = 0; j < k; j++)
        if (got[i] == exact[q * k + j]) {
          hits++;
          break;
        }
    total += k;
  }
  free(got), free(sc);
  return total ? (double)hits / (double)total : 0.0;
}

int ann_tune_nprobe(ann_index *idx, const float *items, size_t n, size_t dim, const float *queries, size_t nq,
                    size_t k, double target, size_t *nprobe, double *recall, rec_error *err) {
  size_t nlist = 0;
  ann_nprobe(idx, &nlist);
  if (nlist == 0) return rec_fail(err, REC_EINVAL, "nprobe tuning needs an IVF index");
  if (k > n) k = n;
  int64_t *exact = malloc(nq * k * sizeof *exact);
  if (!exact) return rec_fail(err, REC_ENOMEM, "out of memory");
  int rc = ann_exact_topk(items, n, dim, queries, nq, k, exact, err);
  /* 1, 2, 3, 4, 6, 8, 12, 16, ...: steps of about 1.4x. */
  size_t p = 1;
  double r = 0;
  while (!rc) {
    if ((rc = ann_set_nprobe(idx, p, err))) break;
    r = ann_recall(idx, queries, nq, dim, k, exact);
    if (r >= target || p == nlist) break;
    size_t next = (p & (p - 1)) == 0 ? p + p / 2 : (p / 3) * 4; /* 2^i -> 1.5 * 2^i -> 2^(i+1) */
    if (next <= p) next = p + 1;
    p = next < nlist ? next : nlist;
  }
  free(exact);
  if (!rc) *nprobe = p, *recall = r;
  return rc;
}
