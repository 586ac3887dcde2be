/* tests/tools/offline/test_als.c - implicit ALS recovers planted structure, descends
 * its own objective, is reproducible per seed, refuses bad input with a
 * message, and copes with users and items that have no interactions. */
#include "tests/test.h"
#include "tools/offline/als.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_NNZ = 2048, MAX_ROWS = 64 };

/* A small CSR matrix built row by row in fixed storage. */
typedef struct mat {
  csr m;
  size_t rowptr[MAX_ROWS + 1];
  uint32_t colidx[MAX_NNZ];
  float vals[MAX_NNZ];
} mat;

static void mat_start(mat *a, size_t rows, size_t cols) {
  memset(a, 0, sizeof *a);
  a->m = (csr){rows, cols, 0, a->rowptr, a->colidx, a->vals};
}

/* Entries must be added in row order; row r ends when row r + 1 starts. */
static void mat_add(mat *a, size_t r, uint32_t c, float v) {
  CU_ASSERT_FATAL(a->m.nnz < MAX_NNZ && r < a->m.rows);
  a->colidx[a->m.nnz] = c;
  a->vals[a->m.nnz++] = v;
  for (size_t i = r + 1; i <= a->m.rows; i++) a->rowptr[i] = a->m.nnz;
}

static uint64_t mix(uint64_t z) { /* splitmix64 finaliser, for test patterns */
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* 40 users x 30 items in two blocks: users 0-19 like items 0-14, users 20-39
 * items 15-29. Each user has a pseudo-random fifth of the own block held out
 * (a fixed pattern would plant sub-clusters of users missing the same items),
 * sees about two thirds of the rest, and touches one other-block item. */
enum { P_USERS = 40, P_ITEMS = 30, BLOCK = 15 };

static size_t own_base(size_t u) { return u < P_USERS / 2 ? 0 : BLOCK; }
static size_t other_base(size_t u) { return u < P_USERS / 2 ? BLOCK : 0; }
static bool held_out(size_t u, size_t j) { return mix(u * 64 + j) % 5 == 0; }

static void planted(mat *a) {
  mat_start(a, P_USERS, P_ITEMS);
  for (size_t u = 0; u < P_USERS; u++) {
    uint32_t noise = (uint32_t)(other_base(u) + mix(u) % BLOCK);
    for (uint32_t i = 0; i < P_ITEMS; i++) {
      size_t j = i - own_base(u);
      bool own = i >= own_base(u) && j < BLOCK;
      if (own && !held_out(u, j) && mix(u * 131 + i + 7777) % 3 != 0)
        mat_add(a, u, i, (float)(1 + (u + i) % 3));
      else if (i == noise)
        mat_add(a, u, i, 1.0f);
    }
  }
}

/* Regularisation strong enough that 8 factors cannot memorise the held-out
 * zeros: with lambda near 1 they fit them and the test rightly fails. */
static als_opts small_opts(void) {
  return (als_opts){.factors = 8, .iterations = 15, .regularization = 20.0f, .alpha = 5.0f,
                    .cg_steps = 3, .seed = 42};
}

static float score(const float *U, const float *V, size_t u, size_t i, size_t k) {
  float s = 0;
  for (size_t j = 0; j < k; j++) s += U[u * k + j] * V[i * k + j];
  return s;
}

static bool seen(const mat *a, size_t u, size_t i) {
  for (size_t e = a->rowptr[u]; e < a->rowptr[u + 1]; e++)
    if (a->colidx[e] == i) return true;
  return false;
}

/* Does every held-out item of user u outscore every other-block item u has
 * not seen? False when u has nothing held out. */
static bool held_out_wins(const mat *a, const float *U, const float *V, size_t u, size_t k) {
  float worst_held = INFINITY, best_other = -INFINITY;
  for (size_t j = 0; j < BLOCK; j++) {
    if (held_out(u, j)) worst_held = fminf(worst_held, score(U, V, u, own_base(u) + j, k));
    size_t i = other_base(u) + j;
    if (!seen(a, u, i)) best_other = fmaxf(best_other, score(U, V, u, i, k));
  }
  return isfinite(worst_held) && worst_held > best_other;
}

static void recovers_planted_blocks(void) {
  static mat a;
  planted(&a);
  als_opts o = small_opts();
  float U[P_USERS * 8], V[P_ITEMS * 8];
  rec_error e = {0};
  CU_ASSERT_EQUAL_FATAL(als_train(&a.m, &o, U, V, &e), 0);
  int wins = 0, eligible = 0;
  for (size_t u = 0; u < P_USERS; u++) {
    bool any = false;
    for (size_t j = 0; j < BLOCK; j++) any |= held_out(u, j);
    eligible += any;
    wins += held_out_wins(&a, U, V, u, o.factors);
  }
  CU_ASSERT_FATAL(eligible >= P_USERS - 2);
  CU_ASSERT(wins >= eligible - 1);
}

/* With at least as many CG steps as factors CG is exact, so after the last
 * items half-step every item's factors solve its normal equations
 *   (lambda I + sum_u c_ui u u^T) v_i = sum_u c_ui p_ui u
 * summed densely here over all users. This checks the solver, the confidence
 * weighting and the internal transpose against the definition. */
static void item_factors_solve_normal_equations(void) {
  static mat a;
  planted(&a);
  als_opts o = small_opts();
  o.factors = 4, o.regularization = 0.5f, o.iterations = 2, o.cg_steps = 12;
  float U[P_USERS * 4], V[P_ITEMS * 4];
  CU_ASSERT_EQUAL_FATAL(als_train(&a.m, &o, U, V, NULL), 0);
  static double r[P_USERS][P_ITEMS];
  memset(r, 0, sizeof r);
  for (size_t u = 0; u < P_USERS; u++)
    for (size_t e = a.rowptr[u]; e < a.rowptr[u + 1]; e++) r[u][a.colidx[e]] = a.vals[e];
  for (size_t i = 0; i < P_ITEMS; i++) {
    double res[4] = {0}, b[4] = {0}, rn = 0, bn = 0;
    for (size_t j = 0; j < 4; j++) res[j] = o.regularization * V[i * 4 + j];
    for (size_t u = 0; u < P_USERS; u++) {
      double c = 1 + o.alpha * r[u][i], s = score(U, V, u, i, 4), p = r[u][i] > 0;
      for (size_t j = 0; j < 4; j++) res[j] += c * s * U[u * 4 + j];
      for (size_t j = 0; j < 4; j++) b[j] += c * p * U[u * 4 + j];
    }
    for (size_t j = 0; j < 4; j++) rn += (res[j] - b[j]) * (res[j] - b[j]), bn += b[j] * b[j];
    CU_ASSERT(sqrt(rn) <= 1e-3 * sqrt(bn) + 1e-6);
  }
}

typedef struct trace {
  int n, iters[32];
  double loss[32];
} trace;

static void record(void *arg, int iteration, double loss) {
  trace *t = arg;
  if (t->n < 32) {
    t->iters[t->n] = iteration;
    t->loss[t->n++] = loss;
  }
}

/* CG started from the current factors can only lower each row's quadratic,
 * so the objective must not rise from one sweep to the next. */
static void loss_decreases(void) {
  static mat a;
  planted(&a);
  als_opts o = small_opts();
  o.iterations = 10;
  o.cg_steps = 2;
  trace t = {0};
  o.progress = record;
  o.progress_arg = &t;
  float U[P_USERS * 8], V[P_ITEMS * 8];
  CU_ASSERT_EQUAL_FATAL(als_train(&a.m, &o, U, V, NULL), 0);
  CU_ASSERT_EQUAL_FATAL(t.n, 10);
  for (int i = 0; i < t.n; i++) {
    CU_ASSERT_EQUAL(t.iters[i], i + 1);
    CU_ASSERT(isfinite(t.loss[i]) && t.loss[i] > 0);
    if (i > 0) CU_ASSERT(t.loss[i] <= t.loss[i - 1] * (1 + 1e-6));
  }
  CU_ASSERT(t.loss[9] < 0.9 * t.loss[0]);
  /* The callback reports exactly what als_loss says of the final factors. */
  CU_ASSERT_DOUBLE_EQUAL(als_loss(&a.m, &o, U, V), t.loss[9], 1e-9 * t.loss[9]);
}

/* The u^T (V^T V) u shortcut against the definition, on a 3 x 4 matrix. */
static void loss_matches_dense_sum(void) {
  static mat a;
  mat_start(&a, 3, 4);
  mat_add(&a, 0, 1, 2.0f);
  mat_add(&a, 0, 3, 1.0f);
  mat_add(&a, 2, 0, 0.5f);
  als_opts o = {.factors = 2, .regularization = 0.3f, .alpha = 4.0f};
  const float U[] = {0.5f, -1, 0.25f, 2, 1, 1};
  const float V[] = {1, 0, -0.5f, 0.5f, 2, 1, 0.1f, -0.3f};
  double obs[3][4] = {{0}};
  obs[0][1] = 2, obs[0][3] = 1, obs[2][0] = 0.5;
  double sum = 0, norms = 0;
  for (size_t u = 0; u < 3; u++) {
    for (size_t i = 0; i < 4; i++) {
      double s = U[u * 2] * V[i * 2] + U[u * 2 + 1] * V[i * 2 + 1];
      double p = obs[u][i] > 0, c = 1 + 4.0 * obs[u][i];
      sum += c * (p - s) * (p - s);
    }
  }
  for (size_t j = 0; j < 6; j++) norms += (double)U[j] * U[j];
  for (size_t j = 0; j < 8; j++) norms += (double)V[j] * V[j];
  double want = (sum + 0.3 * norms) / 3;
  CU_ASSERT_DOUBLE_EQUAL(als_loss(&a.m, &o, U, V), want, 1e-5 * want);
}

static void same_seed_same_bytes(void) {
  static mat a;
  planted(&a);
  als_opts o = small_opts();
  o.iterations = 3;
  static float U1[P_USERS * 8], V1[P_ITEMS * 8], U2[P_USERS * 8], V2[P_ITEMS * 8];
  CU_ASSERT_EQUAL_FATAL(als_train(&a.m, &o, U1, V1, NULL), 0);
  CU_ASSERT_EQUAL_FATAL(als_train(&a.m, &o, U2, V2, NULL), 0);
  CU_ASSERT_EQUAL(memcmp(U1, U2, sizeof U1), 0);
  CU_ASSERT_EQUAL(memcmp(V1, V2, sizeof V1), 0);
  o.seed = 43;
  CU_ASSERT_EQUAL_FATAL(als_train(&a.m, &o, U2, V2, NULL), 0);
  CU_ASSERT_NOT_EQUAL(memcmp(U1, U2, sizeof U1), 0);
  CU_ASSERT_NOT_EQUAL(memcmp(V1, V2, sizeof V1), 0);
}

static int calls;
static void count_call(void *arg, int iteration, double loss) {
  (void)arg, (void)iteration, (void)loss;
  calls++;
}

/* Trains a 2 x 3 matrix whose entry 1 is (column c, value v) under options
 * 'o'; expects REC_EINVAL, a message containing 'want', and U, V and the
 * callback untouched. */
static void expect_refusal(uint32_t c, float v, als_opts o, const char *want) {
  static mat a;
  mat_start(&a, 2, 3);
  mat_add(&a, 0, 0, 1.0f);
  mat_add(&a, 1, c, v);
  o.progress = count_call;
  calls = 0;
  float U[2 * 4], V[3 * 4];
  for (size_t i = 0; i < 8; i++) U[i] = 7.0f;
  rec_error e = {0};
  CU_ASSERT_EQUAL(als_train(&a.m, &o, U, V, &e), REC_EINVAL);
  CU_ASSERT_EQUAL(e.code, REC_EINVAL);
  CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, want));
  for (size_t i = 0; i < 8; i++) CU_ASSERT_EQUAL(U[i], 7.0f);
  CU_ASSERT_EQUAL(calls, 0);
}

static void refuses_bad_input(void) {
  als_opts ok = small_opts();
  ok.factors = 4;
  expect_refusal(3, 1.0f, ok, "row 1: column 3 is out of range (3 columns)");
  expect_refusal(2, 0.0f, ok, "row 1 column 2: value 0 must be finite and > 0");
  expect_refusal(2, -1.5f, ok, "value -1.5 must be");
  expect_refusal(2, NAN, ok, "value nan must be");
  als_opts o = ok;
  o.factors = 0;
  expect_refusal(2, 1.0f, o, "factors is 0, must be 1..1024");
  o = ok, o.factors = 1025;
  expect_refusal(2, 1.0f, o, "factors is 1025");
  o = ok, o.iterations = 0;
  expect_refusal(2, 1.0f, o, "iterations is 0");
  o = ok, o.alpha = 0;
  expect_refusal(2, 1.0f, o, "alpha is 0");
  o = ok, o.regularization = -0.5f;
  expect_refusal(2, 1.0f, o, "regularization is -0.5");
  o = ok, o.cg_steps = 0;
  expect_refusal(2, 1.0f, o, "cg_steps is 0");
}

static bool all_finite(const float *x, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!isfinite(x[i])) return false;
  return true;
}

/* Item 4 and user 5 have no entries, so their systems are (G + lambda I) x
 * = 0. With lambda > 0 CG drives them to 0. With lambda = 0 and more factors
 * than users G is singular: nothing pulls them anywhere, and what matters is
 * that CG neither divides by the zero curvature nor amplifies rounding noise,
 * so they stay near their initial N(0, 0.01^2) draw. */
static void empty_rows_and_columns_stay_finite(void) {
  static mat a;
  mat_start(&a, 6, 5);
  for (size_t u = 0; u < 5; u++)
    for (uint32_t i = 0; i < 4; i++)
      if ((u + i) % 2 == 0) mat_add(&a, u, i, 1.0f + (float)i);
  const float lambdas[] = {0.05f, 0.0f}, bounds[] = {1e-4f, 0.1f};
  for (size_t l = 0; l < 2; l++) {
    als_opts o = small_opts();
    o.factors = 16;
    o.regularization = lambdas[l];
    float U[6 * 16], V[5 * 16];
    CU_ASSERT_EQUAL_FATAL(als_train(&a.m, &o, U, V, NULL), 0);
    CU_ASSERT(all_finite(U, 6 * 16) && all_finite(V, 5 * 16));
    for (size_t j = 0; j < 16; j++) CU_ASSERT(fabsf(V[4 * 16 + j]) < bounds[l]);
    for (size_t j = 0; j < 16; j++) CU_ASSERT(fabsf(U[5 * 16 + j]) < bounds[l]);
    CU_ASSERT(isfinite(als_loss(&a.m, &o, U, V)));
  }
  /* No entries at all is not an error either. */
  mat_start(&a, 3, 2);
  als_opts o = small_opts();
  float U[3 * 8], V[2 * 8];
  CU_ASSERT_EQUAL(als_train(&a.m, &o, U, V, NULL), 0);
  CU_ASSERT(all_finite(U, 3 * 8) && all_finite(V, 2 * 8));
}

void suite_als(void) {
  static const test_case cases[] = {
      {"recovers_planted_blocks", recovers_planted_blocks},
      {"item_factors_solve_normal_equations", item_factors_solve_normal_equations},
      {"loss_decreases", loss_decreases},
      {"loss_matches_dense_sum", loss_matches_dense_sum},
      {"same_seed_same_bytes", same_seed_same_bytes},
      {"refuses_bad_input", refuses_bad_input},
      {"empty_rows_and_columns_stay_finite", empty_rows_and_columns_stay_finite},
      {NULL, NULL}};
  test_add_suite("als", cases);
}
