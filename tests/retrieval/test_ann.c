/* tests/retrieval/test_ann.c - FAISS through the C API: exact and HNSW
 * indexes over normalised vectors, written and read back. */
#include "retrieval/ann.h"
#include "retrieval/ann_tune.h"
#include "tests/test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { N = 2000, D = 16, K = 10 };

static float *random_unit_vectors(unsigned seed) {
  float *v = malloc(sizeof(float) * N * D);
  srand(seed);
  for (int i = 0; i < N; i++) {
    double s = 0;
    for (int j = 0; j < D; j++) {
      v[i * D + j] = (float)rand() / RAND_MAX - 0.5f;
      s += v[i * D + j] * v[i * D + j];
    }
    for (int j = 0; j < D; j++) v[i * D + j] /= (float)sqrt(s);
  }
  return v;
}

static void exact_index_finds_self_first(void) {
  float *v = random_unit_vectors(1);
  ann_index *idx;
  CU_ASSERT_EQUAL_FATAL(ann_index_build(v, N, D, "Flat", &idx, NULL), 0);
  CU_ASSERT_EQUAL(ann_count(idx), N);
  CU_ASSERT_EQUAL(ann_dim(idx), D);
  int64_t items[K];
  float scores[K];
  size_t n;
  CU_ASSERT_EQUAL(ann_search(idx, v + 5 * D, K, items, scores, &n), 0);
  CU_ASSERT_EQUAL(n, K);
  CU_ASSERT_EQUAL(items[0], 5);
  CU_ASSERT_DOUBLE_EQUAL(scores[0], 1.0, 1e-5);
  for (size_t i = 1; i < n; i++) CU_ASSERT(scores[i] <= scores[i - 1]);
  /* Flat has no efSearch. */
  CU_ASSERT_EQUAL(ann_set_ef_search(idx, 64, NULL), REC_EINVAL);
  ann_index_free(idx);
  free(v);
}

/* HNSW must agree with exact search on most of the top 10 (recall@10). */
static void hnsw_recall_against_exact(void) {
  float *v = random_unit_vectors(2);
  ann_index *flat, *hnsw;
  CU_ASSERT_EQUAL_FATAL(ann_index_build(v, N, D, "Flat", &flat, NULL), 0);
  CU_ASSERT_EQUAL_FATAL(ann_index_build(v, N, D, "HNSW32", &hnsw, NULL), 0);
  CU_ASSERT_EQUAL(ann_set_ef_search(hnsw, 64, NULL), 0);
  int hits = 0, total = 0;
  for (int q = 0; q < 50; q++) {
    int64_t a[K], b[K];
    float sa[K], sb[K];
    size_t na, nb;
    ann_search(flat, v + q * 37 * D, K, a, sa, &na);
    ann_search(hnsw, v + q * 37 * D, K, b, sb, &nb);
    for (size_t i = 0; i < na; i++)
      for (size_t j = 0; j < nb; j++) hits += a[i] == b[j];
    total += K;
  }
  CU_ASSERT((double)hits / total >= 0.95);
  ann_index_free(flat);
  ann_index_free(hnsw);
  free(v);
}

/* A narrower search for one call: still finds the query's own vector, and
 * the index's own breadth is unchanged for the next call. */
static void per_call_breadth(void) {
  float *v = random_unit_vectors(5);
  ann_index *idx;
  CU_ASSERT_EQUAL_FATAL(ann_index_build(v, N, D, "HNSW32", &idx, NULL), 0);
  CU_ASSERT_EQUAL(ann_set_ef_search(idx, 64, NULL), 0);
  int64_t items[K];
  float scores[K];
  size_t n;
  CU_ASSERT_EQUAL(ann_search_ef(idx, v + 11 * D, K, 16, items, scores, &n), 0);
  CU_ASSERT_EQUAL(n, K);
  CU_ASSERT_EQUAL(items[0], 11);
  ann_index *flat;
  CU_ASSERT_EQUAL_FATAL(ann_index_build(v, N, D, "Flat", &flat, NULL), 0);
  CU_ASSERT_EQUAL(ann_search_ef(flat, v + 3 * D, K, 16, items, scores, &n), 0); /* ef ignored */
  CU_ASSERT_EQUAL(items[0], 3);
  ann_index_free(flat);
  ann_index_free(idx);
  free(v);
}

/* recd's own HNSW search (ann_ef.cpp: a vectorised inner product, the
 * thread's reused visited table): its scores are the inner products for
 * any dimension (the 8-wide kernel's tail too), and searches of indexes of
 * other sizes in between, on the same thread, change no answer. */
static void hnsw_scores_are_inner_products_on_any_dimension(void) {
  static const size_t dims[] = {13, 16, 37};
  for (size_t t = 0; t < sizeof dims / sizeof dims[0]; t++) {
    size_t d = dims[t], n = 600;
    float *v = malloc(sizeof(float) * n * d);
    srand(7 + (unsigned)t);
    for (size_t i = 0; i < n * d; i++) v[i] = (float)rand() / RAND_MAX - 0.5f;
    ann_index *big, *small;
    CU_ASSERT_EQUAL_FATAL(ann_index_build(v, n, d, "HNSW16", &big, NULL), 0);
    CU_ASSERT_EQUAL_FATAL(ann_index_build(v, 50, d, "HNSW16", &small, NULL), 0);
    int64_t items[K], again[K], other[K];
    float scores[K], s2[K];
    size_t got, got2, got3;
    for (int q = 0; q < 20; q++) {
      const float *x = v + (size_t)(q * 29 % 600) * d;
      CU_ASSERT_EQUAL(ann_search_ef(big, x, K, 32, items, scores, &got), 0);
      CU_ASSERT_EQUAL(got, K);
      for (size_t i = 0; i < got; i++) {
        double dot = 0;
        for (size_t j = 0; j < d; j++) dot += (double)x[j] * v[(size_t)items[i] * d + j];
        CU_ASSERT_DOUBLE_EQUAL(scores[i], dot, 1e-5);
        if (i) CU_ASSERT(scores[i] <= scores[i - 1]);
      }
      /* FAISS's stock search finds the same items. */
      CU_ASSERT_EQUAL(ann_search_faiss(big, x, K, 32, other, s2, &got3), 0);
      CU_ASSERT_EQUAL(got3, got);
      CU_ASSERT_EQUAL(memcmp(other, items, sizeof items), 0);
      CU_ASSERT_EQUAL(ann_search_ef(small, x, K, 32, other, s2, &got3), 0);
      CU_ASSERT_EQUAL(ann_search_ef(big, x, K, 32, again, s2, &got2), 0);
      CU_ASSERT_EQUAL(got2, got);
      CU_ASSERT_EQUAL(memcmp(again, items, sizeof items), 0);
    }
    ann_index_free(big);
    ann_index_free(small);
    free(v);
  }
}

static void write_and_open(void) {
  float *v = random_unit_vectors(3);
  ann_index *idx, *back;
  const char *p = test_path("t.faiss");
  CU_ASSERT_EQUAL_FATAL(ann_index_build(v, N, D, "HNSW16", &idx, NULL), 0);
  CU_ASSERT_EQUAL_FATAL(ann_index_write(idx, p, NULL), 0);
  CU_ASSERT_EQUAL_FATAL(ann_index_open(p, &back, NULL), 0);
  CU_ASSERT_EQUAL(ann_count(back), N);
  int64_t items[K];
  float scores[K];
  size_t n;
  ann_search(back, v + 9 * D, K, items, scores, &n);
  CU_ASSERT_EQUAL(items[0], 9);
  ann_index_free(idx);
  ann_index_free(back);
  free(v);
  rec_error e = {0};
  test_write_file(test_path("junk.faiss"), "junk");
  CU_ASSERT_EQUAL(ann_index_open(test_path("junk.faiss"), &back, &e), REC_ECORRUPT);
}

static void more_wanted_than_stored(void) {
  float *v = random_unit_vectors(4);
  ann_index *idx;
  CU_ASSERT_EQUAL_FATAL(ann_index_build(v, 5, D, "Flat", &idx, NULL), 0);
  int64_t items[K];
  float scores[K];
  size_t n;
  CU_ASSERT_EQUAL(ann_search(idx, v, K, items, scores, &n), 0);
  CU_ASSERT_EQUAL(n, 5); /* FAISS pads with -1; we count only real hits */
  ann_index_free(idx);
  free(v);
  CU_ASSERT_EQUAL(ann_index_build(NULL, 0, D, "NoSuchIndex", &idx, NULL), REC_EINVAL);
}

/* The k best of an exact index are the first k of its whole order (score,
 * then row, as FAISS's heap keeps the first seen), whatever k: with 10,000
 * rows the selection bounds the k-th score from a sample first, and with
 * only 50 distinct vectors most scores tie across that bound. */
static void top_k_is_a_prefix_of_the_whole_order(void) {
  enum { M = 10000 };
  float *base = random_unit_vectors(9), *v = malloc(sizeof(float) * M * D);
  for (size_t i = 0; i < M; i++) memcpy(v + i * D, base + (i * 7919 % 50) * D, sizeof(float) * D);
  ann_index *idx;
  CU_ASSERT_EQUAL_FATAL(ann_index_build(v, M, D, "Flat", &idx, NULL), 0);
  int64_t *all = malloc(sizeof *all * M), *some = malloc(sizeof *some * M);
  float *s_all = malloc(sizeof *s_all * M), *s_some = malloc(sizeof *s_some * M);
  size_t n;
  for (int q = 0; q < 3; q++) {
    const float *x = base + (size_t)(60 + q) * D;
    CU_ASSERT_EQUAL_FATAL(ann_search(idx, x, M, all, s_all, &n), 0);
    CU_ASSERT_EQUAL_FATAL(n, M);
    for (size_t i = 1; i < M; i++)
      CU_ASSERT(s_all[i] < s_all[i - 1] || (s_all[i] == s_all[i - 1] && all[i] > all[i - 1]));
    static const size_t KS[] = {1, 7, 199, 200, 201, 500, 1249, 2499};
    for (size_t t = 0; t < sizeof KS / sizeof *KS; t++) {
      CU_ASSERT_EQUAL(ann_search(idx, x, KS[t], some, s_some, &n), 0);
      CU_ASSERT_EQUAL(n, KS[t]);
      CU_ASSERT_EQUAL(memcmp(some, all, KS[t] * sizeof *some), 0);
      CU_ASSERT_EQUAL(memcmp(s_some, s_all, KS[t] * sizeof *s_some), 0);
    }
  }
  ann_index_free(idx);
  free(all), free(some), free(s_all), free(s_some), free(v), free(base);
}

/* Items around 40 centres, as catalogs cluster. */
static float *clustered(size_t n, size_t d, unsigned seed) {
  float *c = malloc(sizeof(float) * 40 * d), *v = malloc(sizeof(float) * n * d);
  srand(seed);
  for (size_t i = 0; i < 40 * d; i++) c[i] = (float)rand() / RAND_MAX - 0.5f;
  for (size_t i = 0; i < n; i++) {
    double s = 0;
    for (size_t j = 0; j < d; j++) {
      v[i * d + j] = c[(i % 40) * d + j] + 0.15f * ((float)rand() / RAND_MAX - 0.5f);
      s += (double)v[i * d + j] * v[i * d + j];
    }
    for (size_t j = 0; j < d; j++) v[i * d + j] /= (float)sqrt(s);
  }
  free(c);
  return v;
}

/* An inverted file: trained, searched by recd's scan with the same answers
 * as FAISS's, every list probed is exact, nprobe bounded by the lists. */
static void ivf_matches_faiss_and_exact(void) {
  enum { n = 4000, d = 24, k = 50 };
  float *v = clustered(n, d, 11);
  ann_index *idx;
  rec_error e = {0};
  CU_ASSERT_EQUAL_FATAL(ann_index_build(v, n, d, "IVF32,Flat", &idx, &e), 0);
  size_t nlist = 0;
  CU_ASSERT_EQUAL(ann_nprobe(idx, &nlist), 1); /* FAISS's default */
  CU_ASSERT_EQUAL(nlist, 32);
  CU_ASSERT_EQUAL(ann_set_nprobe(idx, 0, &e), REC_EINVAL);
  CU_ASSERT_EQUAL(ann_set_nprobe(idx, 33, &e), REC_EINVAL);
  CU_ASSERT_EQUAL(ann_set_ef_search(idx, 64, &e), REC_EINVAL);
  CU_ASSERT_EQUAL(ann_set_nprobe(idx, 4, &e), 0);
  int64_t a[k], b[k];
  float sa[k], sb[k];
  size_t na, nb;
  for (int q = 0; q < 30; q++) {
    const float *x = v + (size_t)(q * 131 % n) * d;
    CU_ASSERT_EQUAL(ann_search(idx, x, k, a, sa, &na), 0);
    CU_ASSERT_EQUAL(ann_search_faiss(idx, x, k, 0, b, sb, &nb), 0);
    CU_ASSERT_EQUAL(na, nb);
    CU_ASSERT_EQUAL(memcmp(a, b, na * sizeof *a), 0);
    CU_ASSERT_EQUAL(a[0], q * 131 % n);
    for (size_t i = 1; i < na; i++) CU_ASSERT(sa[i] <= sa[i - 1]);
  }
  /* Every list probed: exact. */
  CU_ASSERT_EQUAL(ann_set_nprobe(idx, 32, &e), 0);
  int64_t *exact = malloc(sizeof *exact * 20 * k);
  CU_ASSERT_EQUAL_FATAL(ann_exact_topk(v, n, d, v, 20, k, exact, &e), 0);
  CU_ASSERT_DOUBLE_EQUAL(ann_recall(idx, v, 20, d, k, exact), 1.0, 1e-9);
  /* Tuning finds the fewest lists reaching the target. */
  size_t np = 0;
  double r = 0;
  CU_ASSERT_EQUAL(ann_tune_nprobe(idx, v, n, d, v, 20, k, 0.9, &np, &r, &e), 0);
  CU_ASSERT(r >= 0.9);
  CU_ASSERT(np >= 1 && np <= 32);
  CU_ASSERT_EQUAL(ann_nprobe(idx, NULL), np);
  if (np > 1) {
    CU_ASSERT_EQUAL(ann_set_nprobe(idx, np == 2 ? 1 : np * 2 / 3, &e), 0);
    CU_ASSERT(ann_recall(idx, v, 20, d, k, exact) < 0.9);
  }
  free(exact);
  ann_index_free(idx);
  free(v);
}

/* Grouped: rows reordered list by list, searched as recd's own view over
 * the matrix: the same items (through the order) as the FAISS index. */
static void grouped_view_answers_as_the_index(void) {
  enum { n = 3000, d = 16, k = 20 };
  float *v = clustered(n, d, 12);
  ann_index *idx, *view;
  rec_error e = {0};
  CU_ASSERT_EQUAL_FATAL(ann_index_build(v, n, d, "IVF24,Flat", &idx, &e), 0);
  CU_ASSERT_EQUAL(ann_set_nprobe(idx, 3, &e), 0);
  int64_t *order = malloc(sizeof *order * n);
  size_t sizes[24];
  float *cent = malloc(sizeof *cent * 24 * d), *rows = malloc(sizeof *rows * n * d);
  CU_ASSERT_EQUAL_FATAL(ann_ivf_group(idx, order, sizes, cent, &e), 0);
  char *seen = calloc(n, 1);
  size_t total = 0;
  for (size_t l = 0; l < 24; l++) total += sizes[l];
  CU_ASSERT_EQUAL(total, n);
  for (size_t r = 0; r < n; r++) {
    CU_ASSERT_FATAL(order[r] >= 0 && order[r] < n && !seen[order[r]]);
    seen[order[r]] = 1;
    memcpy(rows + r * d, v + (size_t)order[r] * d, d * sizeof *rows);
  }
  CU_ASSERT_EQUAL_FATAL(ann_index_grouped(cent, 24, sizes, rows, n, d, 3, &view, &e), 0);
  CU_ASSERT_EQUAL(ann_count(view), n);
  CU_ASSERT_EQUAL(ann_dim(view), d);
  CU_ASSERT_EQUAL(ann_index_write(view, test_path("grouped.faiss"), &e), REC_EINVAL);
  int64_t a[k], b[k];
  float sa[k], sb[k];
  size_t na, nb;
  for (int q = 0; q < 30; q++) {
    const float *x = rows + (size_t)(q * 97 % n) * d;
    CU_ASSERT_EQUAL(ann_search(idx, x, k, a, sa, &na), 0); /* labels are rows after grouping */
    CU_ASSERT_EQUAL(ann_search(view, x, k, b, sb, &nb), 0);
    CU_ASSERT_EQUAL(na, nb);
    CU_ASSERT_EQUAL(memcmp(a, b, na * sizeof *a), 0);
    CU_ASSERT_EQUAL(b[0], q * 97 % n);
    /* A per-call breadth below 128 probes fewer lists: never more hits. */
    CU_ASSERT_EQUAL(ann_search_ef(view, x, k, 16, b, sb, &nb), 0);
    CU_ASSERT(nb <= na);
  }
  /* Lengths that do not add up to the rows are refused. */
  sizes[0]++;
  CU_ASSERT_EQUAL(ann_index_grouped(cent, 24, sizes, rows, n, d, 3, &view, &e), REC_EMISMATCH);
  sizes[0] -= 2;
  CU_ASSERT_EQUAL(ann_index_grouped(cent, 24, sizes, rows, n, d, 3, &view, &e), REC_EMISMATCH);
  sizes[0]++;
  CU_ASSERT_EQUAL(ann_index_grouped(cent, 24, sizes, rows, n, d, 25, &view, &e), REC_EINVAL);
  ann_index_free(idx);
  ann_index_free(view);
  free(order), free(cent), free(rows), free(seen), free(v);
}

void suite_ann(void) {
  static const test_case cases[] = {{"exact_index_finds_self_first", exact_index_finds_self_first},
                                    {"hnsw_recall_against_exact", hnsw_recall_against_exact},
                                    {"per_call_breadth", per_call_breadth},
      {"hnsw_scores_are_inner_products_on_any_dimension", hnsw_scores_are_inner_products_on_any_dimension},
                                    {"write_and_open", write_and_open},
                                    {"more_wanted_than_stored", more_wanted_than_stored},
                                    {"ivf_matches_faiss_and_exact", ivf_matches_faiss_and_exact},
                                    {"grouped_view_answers_as_the_index", grouped_view_answers_as_the_index},
                                    {"top_k_is_a_prefix_of_the_whole_order", top_k_is_a_prefix_of_the_whole_order},
                                    {NULL, NULL}};
  test_add_suite("ann", cases);
}
