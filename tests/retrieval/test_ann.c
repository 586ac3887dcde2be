/* tests/retrieval/test_ann.c - FAISS through the C API: exact and HNSW
 * indexes over normalised vectors, written and read back. */
#include "retrieval/ann.h"
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

void suite_ann(void) {
  static const test_case cases[] = {{"exact_index_finds_self_first", exact_index_finds_self_first},
                                    {"hnsw_recall_against_exact", hnsw_recall_against_exact},
                                    {"per_call_breadth", per_call_breadth},
      {"hnsw_scores_are_inner_products_on_any_dimension", hnsw_scores_are_inner_products_on_any_dimension},
                                    {"write_and_open", write_and_open},
                                    {"more_wanted_than_stored", more_wanted_than_stored},
                                    {NULL, NULL}};
  test_add_suite("ann", cases);
}
