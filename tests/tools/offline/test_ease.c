/* tests/tools/offline/test_ease.c - EASE against the closed form worked out
 * here by Gauss-Jordan elimination on a small random matrix: every weight,
 * the zero diagonal, the heaviest-first truncation, the frequency cap, and
 * the scores as X times B. */
#include "tests/test.h"
#include "tools/offline/ease.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { U = 30, I = 9 };

/* A user x item binary matrix with a fixed pattern (item 8 never met). */
static void make(ui_matrix *R, float x[U][I]) {
  uint64_t s = 12345;
  memset(x, 0, sizeof(float) * U * I);
  R->rows = U, R->cols = I, R->nnz = 0;
  R->rowptr = calloc(U + 1, sizeof *R->rowptr);
  R->colidx = malloc(U * I * sizeof *R->colidx);
  R->vals = malloc(U * I * sizeof *R->vals);
  for (size_t u = 0; u < U; u++) {
    for (size_t i = 0; i + 1 < I; i++) {
      s ^= s << 13, s ^= s >> 7, s ^= s << 17;
      if (s % 100 < 20 + 8 * i) {
        x[u][i] = 1;
        R->colidx[R->nnz] = (uint32_t)i;
        R->vals[R->nnz++] = 0.5f + (float)(s % 5); /* strengths: EASE reads only the pattern */
      }
    }
    R->rowptr[u + 1] = R->nnz;
  }
}

/* B by the definition: P = (X^T X + lambda I)^-1 over items 0..n-1, then
 * B[a][b] = -P[a][b] / P[b][b], B[a][a] = 0. */
static void reference(float x[U][I], size_t n, double lambda, double B[I][I]) {
  double A[I][2 * I];
  for (size_t a = 0; a < n; a++)
    for (size_t b = 0; b < 2 * n; b++) {
      A[a][b] = b < n ? 0 : (b - n == a);
      if (b < n)
        for (size_t u = 0; u < U; u++) A[a][b] += x[u][a] * x[u][b];
    }
  for (size_t a = 0; a < n; a++) A[a][a] += lambda;
  for (size_t c = 0; c < n; c++) { /* SPD: no pivoting needed */
    double p = A[c][c];
    for (size_t b = 0; b < 2 * n; b++) A[c][b] /= p;
    for (size_t r = 0; r < n; r++)
      if (r != c) {
        double f = A[r][c];
        for (size_t b = 0; b < 2 * n; b++) A[r][b] -= f * A[c][b];
      }
  }
  for (size_t a = 0; a < n; a++)
    for (size_t b = 0; b < n; b++) B[a][b] = a == b ? 0 : -A[a][n + b] / A[b][n + b];
}

static double weight(const ease_table *t, uint32_t a, uint32_t b, bool *found) {
  *found = false;
  for (size_t e = t->off[a]; e < t->off[a + 1]; e++)
    if (t->nbr[e] == b) {
      *found = true;
      return t->w[e];
    }
  return 0;
}

static void matches_the_closed_form(void) {
  ui_matrix R = {0};
  float x[U][I];
  make(&R, x);
  double B[I][I];
  reference(x, I - 1, 3.0, B);
  ease_table t;
  ease_report rep;
  ease_opts o = {.lambda = 3.0, .per_item = 100};
  CU_ASSERT_EQUAL_FATAL(ease_build(&R, &o, &t, &rep, NULL), 0);
  CU_ASSERT_EQUAL(rep.items_seen, I - 1);
  CU_ASSERT_EQUAL(rep.items_solved, I - 1);
  CU_ASSERT_EQUAL(t.off[I] - t.off[I - 1], 0); /* item 8: never met, no row */
  for (uint32_t a = 0; a + 1 < I; a++) {
    CU_ASSERT_EQUAL(t.off[a + 1] - t.off[a], I - 2); /* every other solved item */
    for (uint32_t b = 0; b + 1 < I; b++) {
      bool found;
      double w = weight(&t, a, b, &found);
      CU_ASSERT_EQUAL(found, a != b);
      CU_ASSERT_DOUBLE_EQUAL(w, B[a][b], 1e-5);
    }
    for (size_t e = t.off[a] + 1; e < t.off[a + 1]; e++) /* heaviest first */
      CU_ASSERT(fabsf(t.w[e]) <= fabsf(t.w[e - 1]));
  }
  /* Scores are X B over every item. */
  float scores[I];
  for (uint32_t u = 0; u < U; u += 7) {
    ease_scores(&t, &R, u, scores);
    for (size_t b = 0; b < I; b++) {
      double want = 0;
      for (size_t a = 0; a + 1 < I; a++) want += x[u][a] * B[a][b];
      if (b == I - 1) want = 0;
      CU_ASSERT_DOUBLE_EQUAL(scores[b], want, 1e-4);
    }
  }
  ease_table_destroy(&t);
  /* Truncated: the 3 heaviest per item, the same weights. */
  o.per_item = 3;
  CU_ASSERT_EQUAL_FATAL(ease_build(&R, &o, &t, &rep, NULL), 0);
  for (uint32_t a = 0; a + 1 < I; a++) {
    CU_ASSERT_EQUAL(t.off[a + 1] - t.off[a], 3);
    double lightest_kept = INFINITY, heaviest_dropped = 0;
    for (uint32_t b = 0; b + 1 < I; b++) {
      bool found;
      double w = weight(&t, a, b, &found);
      if (found) {
        CU_ASSERT_DOUBLE_EQUAL(w, B[a][b], 1e-5);
        lightest_kept = fmin(lightest_kept, fabs(w));
      } else if (a != b) {
        heaviest_dropped = fmax(heaviest_dropped, fabs(B[a][b]));
      }
    }
    CU_ASSERT(heaviest_dropped <= lightest_kept);
  }
  ease_table_destroy(&t);
  ui_matrix_destroy(&R);
}

/* A cap of 4 items solves over the 4 most frequent (items 4..7 here, by
 * construction), as if the others did not exist. */
static void the_cap_keeps_the_most_frequent(void) {
  ui_matrix R = {0};
  float x[U][I], y[U][I];
  make(&R, x);
  memset(y, 0, sizeof y);
  for (size_t u = 0; u < U; u++)
    for (size_t i = 4; i < 8; i++) y[u][i - 4] = x[u][i];
  double B[I][I];
  reference(y, 4, 3.0, B);
  ease_table t;
  ease_report rep;
  ease_opts o = {.lambda = 3.0, .max_items = 4, .per_item = 100};
  CU_ASSERT_EQUAL_FATAL(ease_build(&R, &o, &t, &rep, NULL), 0);
  CU_ASSERT_EQUAL(rep.items_solved, 4);
  for (uint32_t a = 0; a < 4; a++) CU_ASSERT_EQUAL(t.off[a + 1] - t.off[a], 0);
  for (uint32_t a = 4; a < 8; a++)
    for (uint32_t b = 4; b < 8; b++) {
      bool found;
      double w = weight(&t, a, b, &found);
      CU_ASSERT_EQUAL(found, a != b);
      CU_ASSERT_DOUBLE_EQUAL(w, B[a - 4][b - 4], 1e-5);
    }
  ease_table_destroy(&t);
  ui_matrix_destroy(&R);
}

/* The factorisation behind `--model ease`: at full rank L R^T is B itself;
 * at rank 3 its error is the optimal one, the energy of the singular values
 * it leaves out (Eckart-Young: with 9 items the sketch spans every
 * direction); the same seed gives the same bytes; a rank outside [1, n] is
 * refused. */
static void the_factorisation_reproduces_the_weights(void) {
  ui_matrix R = {0};
  float x[U][I];
  make(&R, x);
  ease_table t;
  ease_opts o = {.lambda = 3.0, .per_item = 100};
  CU_ASSERT_EQUAL_FATAL(ease_build(&R, &o, &t, NULL, NULL), 0);
  double B[I][I] = {{0}};
  for (uint32_t a = 0; a < I; a++)
    for (size_t e = t.off[a]; e < t.off[a + 1]; e++) B[a][t.nbr[e]] = t.w[e];
  float L[I * I], Rf[I * I], L2[I * I], R2[I * I];
  double sg[I], sg3[3];
  CU_ASSERT_EQUAL_FATAL(ease_factorise(&t, I, 7, L, Rf, sg, NULL), 0);
  for (size_t a = 0; a < I; a++)
    for (size_t b = 0; b < I; b++) {
      double v = 0;
      for (size_t k = 0; k < I; k++) v += (double)L[a * I + k] * Rf[b * I + k];
      CU_ASSERT_DOUBLE_EQUAL(v, B[a][b], 1e-4);
    }
  for (size_t k = 1; k < I; k++) CU_ASSERT(sg[k] <= sg[k - 1] + 1e-9 && sg[k] >= 0);
  CU_ASSERT_EQUAL_FATAL(ease_factorise(&t, 3, 7, L, Rf, sg3, NULL), 0);
  double err2 = 0, tail = 0;
  for (size_t a = 0; a < I; a++)
    for (size_t b = 0; b < I; b++) {
      double v = 0;
      for (size_t k = 0; k < 3; k++) v += (double)L[a * 3 + k] * Rf[b * 3 + k];
      err2 += (v - B[a][b]) * (v - B[a][b]);
    }
  for (size_t k = 3; k < I; k++) tail += sg[k] * sg[k];
  CU_ASSERT_DOUBLE_EQUAL(sqrt(err2), sqrt(tail), 1e-4);
  for (size_t k = 0; k < 3; k++) CU_ASSERT_DOUBLE_EQUAL(sg3[k], sg[k], 1e-5);
  CU_ASSERT_EQUAL_FATAL(ease_factorise(&t, 3, 7, L2, R2, NULL, NULL), 0);
  CU_ASSERT_EQUAL(memcmp(L, L2, 3 * I * sizeof *L), 0);
  CU_ASSERT_EQUAL(memcmp(Rf, R2, 3 * I * sizeof *Rf), 0);
  CU_ASSERT_EQUAL(ease_factorise(&t, 0, 7, L, Rf, NULL, NULL), REC_EINVAL);
  CU_ASSERT_EQUAL(ease_factorise(&t, I + 1, 7, L, Rf, NULL, NULL), REC_EINVAL);
  ease_table_destroy(&t);
  ui_matrix_destroy(&R);
}

void suite_ease(void) {
  static const test_case cases[] = {{"matches_the_closed_form", matches_the_closed_form},
                                    {"the_cap_keeps_the_most_frequent", the_cap_keeps_the_most_frequent},
                                    {"the_factorisation_reproduces_the_weights",
                                     the_factorisation_reproduces_the_weights},
                                    {NULL, NULL}};
  test_add_suite("ease", cases);
}
