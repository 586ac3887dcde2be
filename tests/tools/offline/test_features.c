/* tests/tools/offline/test_features.c - what `recctl build` derives from a dataset,
 * on files small enough to work out by hand: the strength matrix and its
 * transpose, item-CF cosines, decayed popularity, profiles and segments,
 * repurchase cycles; each with and without an event mask. Ratings make the
 * strengths easy: rating / 2.5, so 2.5 -> 1, 5 -> 2, 1.25 -> 0.5. */
#include "tests/test.h"
#include "tools/offline/features.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char CAT_TEXT[] =
    "item_id,category,price\n"
    "A,fruit,2\n"
    "B,fruit,4\n"
    "C,dairy,1\n"
    "D,dairy,3\n";

enum { A, B, C, D }; /* catalog order */

static dataset *load(const char *inter) {
  char ip[512], cp[512];
  snprintf(ip, sizeof ip, "%s", test_path("ft_inter.csv"));
  snprintf(cp, sizeof cp, "%s", test_path("ft_catalog.csv"));
  test_write_file(ip, inter);
  test_write_file(cp, CAT_TEXT);
  dataset *d = NULL;
  rec_error e = {0};
  int rc = dataset_load(ip, cp, &DS_SCHEMA_DEFAULT, &d, &e);
  if (rc) fprintf(stderr, "\n  %s\n", e.msg);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  return d;
}

/* Index of the event (user, time); fails the test when absent. */
static size_t event_at(const dataset *d, const char *user, int64_t t) {
  uint32_t u;
  CU_ASSERT_TRUE_FATAL(dataset_find_user(d, user, &u));
  for (size_t e = d->user_start[u]; e < d->user_start[u + 1]; e++)
    if (d->events[e].time == t) return e;
  CU_FAIL_FATAL("no such event");
  return 0;
}

static uint32_t user_of(const dataset *d, const char *id) {
  uint32_t u = UINT32_MAX;
  CU_ASSERT_TRUE_FATAL(dataset_find_user(d, id, &u));
  return u;
}

/* ---- the strength matrix ---- */

static void matrix_sums_repeats_and_respects_mask(void) {
  dataset *d = load("user_id,item_id,timestamp,rating\n"
                    "u1,B,1,5\n"      /* 2 */
                    "u1,A,2,2.5\n"    /* 1 */
                    "u1,A,3,5\n"      /* 2: A sums to 3 */
                    "u2,C,4,1.25\n"); /* 0.5 */
  ui_matrix m;
  CU_ASSERT_EQUAL_FATAL(ui_matrix_build(d, NULL, &m), 0);
  CU_ASSERT_EQUAL(m.rows, 2);
  CU_ASSERT_EQUAL(m.cols, 4);
  CU_ASSERT_EQUAL_FATAL(m.nnz, 3);
  uint32_t u1 = user_of(d, "u1"), u2 = user_of(d, "u2");
  CU_ASSERT_EQUAL(m.rowptr[u1 + 1] - m.rowptr[u1], 2);
  CU_ASSERT_EQUAL(m.colidx[m.rowptr[u1]], A);       /* columns ascend */
  CU_ASSERT_EQUAL(m.vals[m.rowptr[u1]], 3.0f);
  CU_ASSERT_EQUAL(m.colidx[m.rowptr[u1] + 1], B);
  CU_ASSERT_EQUAL(m.vals[m.rowptr[u1] + 1], 2.0f);
  CU_ASSERT_EQUAL(m.colidx[m.rowptr[u2]], C);
  CU_ASSERT_EQUAL(m.vals[m.rowptr[u2]], 0.5f);
  CU_ASSERT_EQUAL(m.rowptr[2], 3);
  csr c = ui_matrix_csr(&m);
  CU_ASSERT_EQUAL(c.nnz, 3);
  CU_ASSERT_PTR_EQUAL(c.vals, m.vals);
  ui_matrix_destroy(&m);

  /* Without u1's rating at time 3 and without u2 at all. */
  bool mask[4] = {true, true, true, true};
  mask[event_at(d, "u1", 3)] = false;
  mask[event_at(d, "u2", 4)] = false;
  CU_ASSERT_EQUAL_FATAL(ui_matrix_build(d, mask, &m), 0);
  CU_ASSERT_EQUAL(m.rows, 2);
  CU_ASSERT_EQUAL_FATAL(m.nnz, 2);
  CU_ASSERT_EQUAL(m.vals[m.rowptr[u1]], 1.0f);
  CU_ASSERT_EQUAL(m.vals[m.rowptr[u1] + 1], 2.0f);
  CU_ASSERT_EQUAL(m.rowptr[u2], m.rowptr[u2 + 1]);
  ui_matrix_destroy(&m);
  CU_ASSERT_PTR_NULL(m.vals);
  dataset_free(d);
}

/* u1: A=1 B=2; u2: A=2 B=1 C=1; u3: B=1 C=2; nobody has D. */
static const char CF_TEXT[] =
    "user_id,item_id,timestamp,rating\n"
    "u1,A,1,2.5\n"
    "u1,B,2,5\n"
    "u2,A,3,5\n"
    "u2,B,4,2.5\n"
    "u2,C,5,2.5\n"
    "u3,B,6,2.5\n"
    "u3,C,7,5\n";

static void transpose_swaps_rows_and_columns(void) {
  dataset *d = load(CF_TEXT);
  ui_matrix m, t;
  CU_ASSERT_EQUAL_FATAL(ui_matrix_build(d, NULL, &m), 0);
  CU_ASSERT_EQUAL_FATAL(ui_matrix_transpose(&m, &t), 0);
  CU_ASSERT_EQUAL(t.rows, 4);
  CU_ASSERT_EQUAL(t.cols, 3);
  CU_ASSERT_EQUAL(t.nnz, 7);
  const size_t rowptr[] = {0, 2, 5, 7, 7};
  for (size_t i = 0; i < 5; i++) CU_ASSERT_EQUAL(t.rowptr[i], rowptr[i]);
  /* Column B of R: users u1 (2), u2 (1), u3 (1), in user order. */
  const uint32_t users[] = {user_of(d, "u1"), user_of(d, "u2"), user_of(d, "u3")};
  const float vals[] = {2, 1, 1};
  for (size_t k = 0; k < 3; k++) {
    CU_ASSERT_EQUAL(t.colidx[t.rowptr[B] + k], users[k]);
    CU_ASSERT_EQUAL(t.vals[t.rowptr[B] + k], vals[k]);
  }
  /* Transposing twice gives R back. */
  ui_matrix back;
  CU_ASSERT_EQUAL_FATAL(ui_matrix_transpose(&t, &back), 0);
  CU_ASSERT_EQUAL(back.rows, m.rows);
  CU_ASSERT_EQUAL_FATAL(back.nnz, m.nnz);
  CU_ASSERT_EQUAL(memcmp(back.rowptr, m.rowptr, (m.rows + 1) * sizeof *m.rowptr), 0);
  CU_ASSERT_EQUAL(memcmp(back.colidx, m.colidx, m.nnz * sizeof *m.colidx), 0);
  CU_ASSERT_EQUAL(memcmp(back.vals, m.vals, m.nnz * sizeof *m.vals), 0);
  ui_matrix_destroy(&back);
  ui_matrix_destroy(&t);
  ui_matrix_destroy(&m);
  dataset_free(d);
}

/* Columns A = (1, 2, 0), B = (2, 1, 1), C = (0, 1, 2) over (u1, u2, u3):
 *   |A| = sqrt 5, |B| = sqrt 6, |C| = sqrt 5
 *   cos(A, B) = (2 + 2 + 0) / sqrt 30 = 0.730297
 *   cos(A, C) = (0 + 2 + 0) / 5       = 0.4
 *   cos(B, C) = (0 + 1 + 2) / sqrt 30 = 0.547723 */
static void itemcf_cosine_by_hand(void) {
  dataset *d = load(CF_TEXT);
  ui_matrix m;
  itemcf cf;
  CU_ASSERT_EQUAL_FATAL(ui_matrix_build(d, NULL, &m), 0);
  CU_ASSERT_EQUAL_FATAL(itemcf_build(&m, 5, &cf), 0);
  CU_ASSERT_EQUAL(cf.n_items, 4);
  CU_ASSERT_EQUAL(cf.per_item, 5);
  const uint32_t want_nbr[3][2] = {{B, C}, {A, C}, {B, A}};
  const double want_sim[3][2] = {{0.730297, 0.4}, {0.730297, 0.547723}, {0.547723, 0.4}};
  for (size_t i = 0; i < 3; i++) {
    CU_ASSERT_EQUAL_FATAL(cf.count[i], 2); /* the two others, never itself */
    for (size_t k = 0; k < 2; k++) {
      CU_ASSERT_EQUAL(cf.nbr[i * 5 + k], want_nbr[i][k]);
      CU_ASSERT_DOUBLE_EQUAL(cf.sim[i * 5 + k], want_sim[i][k], 1e-5);
    }
    CU_ASSERT(cf.sim[i * 5] >= cf.sim[i * 5 + 1]); /* descending */
  }
  CU_ASSERT_EQUAL(cf.count[D], 0); /* nobody bought D */
  itemcf_destroy(&cf);

  /* per_item caps the lists, keeping the best. */
  CU_ASSERT_EQUAL_FATAL(itemcf_build(&m, 1, &cf), 0);
  const uint32_t best[3] = {B, A, B};
  for (size_t i = 0; i < 3; i++) {
    CU_ASSERT_EQUAL(cf.count[i], 1);
    CU_ASSERT_EQUAL(cf.nbr[i], best[i]);
  }
  CU_ASSERT_DOUBLE_EQUAL(cf.sim[C], 0.547723, 1e-5);
  itemcf_destroy(&cf);
  CU_ASSERT_EQUAL_FATAL(itemcf_build(&m, 0, &cf), 0);
  for (size_t i = 0; i < 4; i++) CU_ASSERT_EQUAL(cf.count[i], 0);
  itemcf_destroy(&cf);
  ui_matrix_destroy(&m);
  dataset_free(d);
}

/* Only co-occurrence within a user counts: items bought by disjoint users
 * have no similarity and are not neighbours at all. */
static void itemcf_needs_a_shared_user(void) {
  dataset *d = load("user_id,item_id,timestamp,rating\n"
                    "u1,A,1,5\nu1,B,2,5\nu2,C,3,5\nu2,D,4,2.5\n");
  ui_matrix m;
  itemcf cf;
  CU_ASSERT_EQUAL_FATAL(ui_matrix_build(d, NULL, &m), 0);
  CU_ASSERT_EQUAL_FATAL(itemcf_build(&m, 3, &cf), 0);
  const uint32_t only[4] = {B, A, D, C};
  for (size_t i = 0; i < 4; i++) {
    CU_ASSERT_EQUAL_FATAL(cf.count[i], 1);
    CU_ASSERT_EQUAL(cf.nbr[i * 3], only[i]);
    CU_ASSERT_DOUBLE_EQUAL(cf.sim[i * 3], 1.0, 1e-6); /* one shared user: parallel columns */
  }
  itemcf_destroy(&cf);
  ui_matrix_destroy(&m);
  dataset_free(d);
}

/* ---- popularity ---- */

/* Day 10 is the newest event. Half-life one day:
 *   A: 1 (day 10) + 1 * 0.25 (day 8) = 1.25
 *   B: 2 * 0.5 (day 9)               = 1
 *   C: 2 * 0.25 (day 8)              = 0.5 */
static const char POP_TEXT[] =
    "user_id,item_id,timestamp,rating\n"
    "u1,A,864000,2.5\n"
    "u1,B,777600,5\n"
    "u2,C,691200,5\n"
    "u2,A,691200,2.5\n";

static void popularity_half_life(void) {
  dataset *d = load(POP_TEXT);
  profiles p;
  popularity pop;
  CU_ASSERT_EQUAL_FATAL(profiles_build(d, NULL, 10, &p), 0);
  CU_ASSERT_EQUAL_FATAL(popularity_build(d, NULL, &p, 1.0, &pop), 0);
  CU_ASSERT_EQUAL(pop.n_items, 4);
  CU_ASSERT_EQUAL(pop.reference_time, 864000);
  CU_ASSERT_DOUBLE_EQUAL(pop.global[A], 1.25, 1e-6);
  CU_ASSERT_DOUBLE_EQUAL(pop.global[B], 1.0, 1e-6);
  CU_ASSERT_DOUBLE_EQUAL(pop.global[C], 0.5, 1e-6);
  CU_ASSERT_EQUAL(pop.global[D], 0.0f);
  /* A ratings file has no prices: everyone is 'average', so that segment's
   * list is the global one and the others are empty. */
  for (size_t i = 0; i < 4; i++)
    for (size_t s = 0; s < SEG_COUNT; s++)
      CU_ASSERT_DOUBLE_EQUAL(pop.by_segment[s * 4 + i], s == SEG_AVERAGE ? pop.global[i] : 0, 1e-6);
  popularity_destroy(&pop);

  /* No decay: plain sums of strength. */
  CU_ASSERT_EQUAL_FATAL(popularity_build(d, NULL, &p, 0, &pop), 0);
  CU_ASSERT_DOUBLE_EQUAL(pop.global[A], 2.0, 1e-6);
  CU_ASSERT_DOUBLE_EQUAL(pop.global[B], 2.0, 1e-6);
  CU_ASSERT_DOUBLE_EQUAL(pop.global[C], 2.0, 1e-6);
  popularity_destroy(&pop);

  /* Masking out day 10 moves the reference to day 9: B 2, C 2 * 0.5, A 1 * 0.5. */
  bool mask[4] = {true, true, true, true};
  mask[event_at(d, "u1", 864000)] = false;
  CU_ASSERT_EQUAL_FATAL(popularity_build(d, mask, &p, 1.0, &pop), 0);
  CU_ASSERT_EQUAL(pop.reference_time, 777600);
  CU_ASSERT_DOUBLE_EQUAL(pop.global[A], 0.5, 1e-6);
  CU_ASSERT_DOUBLE_EQUAL(pop.global[B], 2.0, 1e-6);
  CU_ASSERT_DOUBLE_EQUAL(pop.global[C], 1.0, 1e-6);
  popularity_destroy(&pop);
  profiles_destroy(&p);
  dataset_free(d);
}

static void popularity_by_segment(void) {
  /* u1 pays 1 (small), u2 2 (low), u3 3 (average), u4 4 (high); each line
   * is its user's mean price and its item's only quantity: strength 1. */
  dataset *d = load("user_id,item_id,timestamp,price\n"
                    "u1,A,1,1\nu2,B,1,2\nu3,C,1,3\nu4,A,1,4\nu4,D,1,4\n");
  profiles p;
  popularity pop;
  CU_ASSERT_EQUAL_FATAL(profiles_build(d, NULL, 10, &p), 0);
  CU_ASSERT_EQUAL_FATAL(popularity_build(d, NULL, &p, 30, &pop), 0);
  CU_ASSERT_DOUBLE_EQUAL(pop.global[A], 2.0, 1e-6);
  CU_ASSERT_DOUBLE_EQUAL(pop.by_segment[SEG_SMALL * 4 + A], 1.0, 1e-6);
  CU_ASSERT_DOUBLE_EQUAL(pop.by_segment[SEG_HIGH * 4 + A], 1.0, 1e-6);
  CU_ASSERT_DOUBLE_EQUAL(pop.by_segment[SEG_LOW * 4 + B], 1.0, 1e-6);
  CU_ASSERT_DOUBLE_EQUAL(pop.by_segment[SEG_AVERAGE * 4 + C], 1.0, 1e-6);
  CU_ASSERT_DOUBLE_EQUAL(pop.by_segment[SEG_HIGH * 4 + D], 1.0, 1e-6);
  CU_ASSERT_EQUAL(pop.by_segment[SEG_AVERAGE * 4 + A], 0.0f);
  CU_ASSERT_EQUAL(pop.by_segment[SEG_SMALL * 4 + D], 0.0f);
  popularity_destroy(&pop);
  profiles_destroy(&p);
  dataset_free(d);
}

/* ---- profiles ---- */

static void profiles_recent_items(void) {
  dataset *d = load("user_id,item_id,timestamp,price\n"
                    "u1,A,1,1\nu1,B,2,1\nu1,A,3,1\nu1,C,4,1\nu1,D,5,1\nu2,B,9,1\n");
  uint32_t u1 = user_of(d, "u1"), u2 = user_of(d, "u2");
  profiles p;
  CU_ASSERT_EQUAL_FATAL(profiles_build(d, NULL, 3, &p), 0);
  CU_ASSERT_EQUAL(p.n_users, 2);
  CU_ASSERT_EQUAL(p.recent_max, 3);
  CU_ASSERT_EQUAL_FATAL(p.n_recent[u1], 3);
  const uint32_t want3[] = {D, C, A}; /* most recent first, A once, B cut */
  for (size_t k = 0; k < 3; k++) CU_ASSERT_EQUAL(p.recent[u1 * 3 + k], want3[k]);
  CU_ASSERT_EQUAL(p.n_recent[u2], 1);
  CU_ASSERT_EQUAL(p.recent[u2 * 3], B);
  profiles_destroy(&p);

  CU_ASSERT_EQUAL_FATAL(profiles_build(d, NULL, 10, &p), 0);
  CU_ASSERT_EQUAL_FATAL(p.n_recent[u1], 4);
  const uint32_t want10[] = {D, C, A, B};
  for (size_t k = 0; k < 4; k++) CU_ASSERT_EQUAL(p.recent[u1 * 10 + k], want10[k]);
  profiles_destroy(&p);

  /* Without the event at time 5 (D) and the one at 3 (the second A). */
  bool mask[6] = {true, true, true, true, true, true};
  mask[event_at(d, "u1", 5)] = false;
  mask[event_at(d, "u1", 3)] = false;
  CU_ASSERT_EQUAL_FATAL(profiles_build(d, mask, 10, &p), 0);
  CU_ASSERT_EQUAL_FATAL(p.n_recent[u1], 3);
  const uint32_t masked[] = {C, B, A};
  for (size_t k = 0; k < 3; k++) CU_ASSERT_EQUAL(p.recent[u1 * 10 + k], masked[k]);
  profiles_destroy(&p);
  dataset_free(d);
}

/* Eight users whose mean prices are 1..8: quartile cuts at the 3rd, 5th and
 * 7th values, two users per segment. u8 pays 6 and 10 (mean 8). */
static void profiles_segments_by_quartile(void) {
  dataset *d = load("user_id,item_id,timestamp,price\n"
                    "u1,A,1,1\nu2,A,1,2\nu3,B,1,3\nu4,B,1,4\n"
                    "u5,C,1,5\nu6,C,1,6\nu7,D,1,7\nu8,D,1,6\nu8,A,2,10\n");
  profiles p;
  CU_ASSERT_EQUAL_FATAL(profiles_build(d, NULL, 5, &p), 0);
  const char *ids[] = {"u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8"};
  const uint8_t want[] = {SEG_SMALL, SEG_SMALL, SEG_LOW, SEG_LOW,
                          SEG_AVERAGE, SEG_AVERAGE, SEG_HIGH, SEG_HIGH};
  for (size_t k = 0; k < 8; k++) {
    uint32_t u = user_of(d, ids[k]);
    CU_ASSERT_DOUBLE_EQUAL(p.mean_price[u], (double)(k + 1), 1e-6);
    CU_ASSERT_EQUAL(p.segment[u], want[k]);
  }
  CU_ASSERT_STRING_EQUAL(SEGMENT_NAMES[SEG_SMALL], "small");
  CU_ASSERT_STRING_EQUAL(SEGMENT_NAMES[SEG_HIGH], "high");
  profiles_destroy(&p);
  dataset_free(d);

  /* No prices at all: no spread to cut, everyone is average. */
  d = load(CF_TEXT);
  CU_ASSERT_EQUAL_FATAL(profiles_build(d, NULL, 5, &p), 0);
  for (size_t u = 0; u < p.n_users; u++) {
    CU_ASSERT_EQUAL(p.segment[u], SEG_AVERAGE);
    CU_ASSERT_EQUAL(p.mean_price[u], 0.0f);
  }
  profiles_destroy(&p);
  dataset_free(d);
}

/* ---- repurchase ---- */

/* Intervals in days: A: u1 10 and 20, u2 6 -> median of 3 is 10.
 * B: u1 4, u2 8 -> median of 2 is 6. C: bought once per user -> 0. */
static void repurchase_median_days(void) {
  dataset *d = load("user_id,item_id,timestamp\n"
                    "u1,A,0\nu1,A,864000\nu1,A,2592000\n"
                    "u2,A,0\nu2,A,518400\n"
                    "u1,B,0\nu1,B,345600\n"
                    "u2,B,0\nu2,B,691200\n"
                    "u1,C,0\nu2,C,100\n");
  float cycle[4];
  uint32_t samples[4];
  memset(cycle, 0xff, sizeof cycle); /* NaN: every entry must be written */
  memset(samples, 0xff, sizeof samples);
  CU_ASSERT_EQUAL_FATAL(repurchase_build(d, NULL, cycle, samples), 0);
  CU_ASSERT_DOUBLE_EQUAL(cycle[A], 10.0, 1e-4);
  CU_ASSERT_EQUAL(samples[A], 3);
  CU_ASSERT_DOUBLE_EQUAL(cycle[B], 6.0, 1e-4);
  CU_ASSERT_EQUAL(samples[B], 2);
  CU_ASSERT_EQUAL(cycle[C], 0.0f);
  CU_ASSERT_EQUAL(samples[C], 0);
  CU_ASSERT_EQUAL(cycle[D], 0.0f);
  CU_ASSERT_EQUAL(samples[D], 0);

  /* Without u1's day-30 A: intervals 10 and 6, median 8. */
  bool mask[11];
  for (size_t k = 0; k < 11; k++) mask[k] = true;
  CU_ASSERT_EQUAL_FATAL(d->n_events, 11);
  mask[event_at(d, "u1", 2592000)] = false;
  CU_ASSERT_EQUAL_FATAL(repurchase_build(d, mask, cycle, samples), 0);
  CU_ASSERT_DOUBLE_EQUAL(cycle[A], 8.0, 1e-4);
  CU_ASSERT_EQUAL(samples[A], 2);
  CU_ASSERT_DOUBLE_EQUAL(cycle[B], 6.0, 1e-4);
  dataset_free(d);
}

void suite_features(void) {
  static const test_case cases[] = {
      {"matrix_sums_repeats_and_respects_mask", matrix_sums_repeats_and_respects_mask},
      {"transpose_swaps_rows_and_columns", transpose_swaps_rows_and_columns},
      {"itemcf_cosine_by_hand", itemcf_cosine_by_hand},
      {"itemcf_needs_a_shared_user", itemcf_needs_a_shared_user},
      {"popularity_half_life", popularity_half_life},
      {"popularity_by_segment", popularity_by_segment},
      {"profiles_recent_items", profiles_recent_items},
      {"profiles_segments_by_quartile", profiles_segments_by_quartile},
      {"repurchase_median_days", repurchase_median_days},
      {NULL, NULL}};
  test_add_suite("features", cases);
}
