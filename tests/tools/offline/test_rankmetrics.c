/* tests/tools/offline/test_rankmetrics.c - ranking metrics on lists small
 * enough to score by hand (the arithmetic is in the comments), and the
 * bootstrap's promises: reproducible, degenerate on constant data, about the
 * right width. */
#include "tests/test.h"
#include "tools/offline/rankmetrics.h"

#define EPS 1e-12
/* 1/log2(r + 1), the discount at rank r (ranks start at 1). */
#define D1 1.0
#define D2 0.63092975357145743 /* 1/log2 3 */
#define D3 0.5                 /* 1/log2 4 */
#define D4 0.43067655807339306 /* 1/log2 5 */
#define D5 0.38685280723454163 /* 1/log2 6 */

static void check(rankmetrics_user u, double recall, double ndcg, double map, double hit) {
  CU_ASSERT_DOUBLE_EQUAL(u.recall, recall, EPS);
  CU_ASSERT_DOUBLE_EQUAL(u.ndcg, ndcg, EPS);
  CU_ASSERT_DOUBLE_EQUAL(u.map, map, EPS);
  CU_ASSERT_DOUBLE_EQUAL(u.hit, hit, EPS);
}

/* ranked [5,1,9,3], relevant {1,3,7}: 1 is at rank 2, 3 at rank 4. */
static void hand_case_at_k3_and_k4(void) {
  const uint32_t ranked[] = {5, 1, 9, 3}, rel[] = {7, 3, 1};
  /* k=3: top-3 = 5,1,9, one hit (1 at rank 2); min(m,k) = 3.
   *   recall = 1/3
   *   ndcg   = D2 / (D1 + D2 + D3) = 0.6309 / 2.1309 = 0.2961
   *   map    = (1/3) * (1/2) = 1/6 */
  check(rankmetrics_score(ranked, 4, rel, 3, 3), 1.0 / 3, D2 / (D1 + D2 + D3), 1.0 / 6, 1);
  /* k=4: hits at ranks 2 and 4; min(m,k) = 3.
   *   recall = 2/3
   *   ndcg   = (D2 + D4) / (D1 + D2 + D3) = 1.0616 / 2.1309 = 0.4982
   *   map    = (1/3) * (1/2 + 2/4) = 1/3 */
  check(rankmetrics_score(ranked, 4, rel, 3, 4), 2.0 / 3, (D2 + D4) / (D1 + D2 + D3), 1.0 / 3, 1);
  /* k=1: top-1 = 5, no hit; all zero. */
  check(rankmetrics_score(ranked, 4, rel, 3, 1), 0, 0, 0, 0);
  /* k=2: one hit (1 at rank 2) of m = 3 relevant: recall 1/3 (the
   * literature's), capped recall 1/min(3, 2) = 1/2. */
  rankmetrics_user u = rankmetrics_score(ranked, 4, rel, 3, 2);
  CU_ASSERT_DOUBLE_EQUAL(u.recall, 1.0 / 3, EPS);
  CU_ASSERT_DOUBLE_EQUAL(u.recall_capped, 1.0 / 2, EPS);
}

/* k=10 > n=4: only the four listed items can hit, but the ideal still has
 * min(m,k) = 3 hits, so the short list is not excused: same as k=4. */
static void k_beyond_the_list(void) {
  const uint32_t ranked[] = {5, 1, 9, 3}, rel[] = {1, 3, 7};
  check(rankmetrics_score(ranked, 4, rel, 3, 10), 2.0 / 3, (D2 + D4) / (D1 + D2 + D3), 1.0 / 3, 1);
  /* An empty list against the same set scores nothing. */
  check(rankmetrics_score(NULL, 0, rel, 3, 10), 0, 0, 0, 0);
}

static void nothing_relevant_or_k0_is_zero(void) {
  const uint32_t ranked[] = {5, 1, 9}, rel[] = {1};
  check(rankmetrics_score(ranked, 3, NULL, 0, 3), 0, 0, 0, 0);
  check(rankmetrics_score(ranked, 3, rel, 1, 0), 0, 0, 0, 0);
}

/* A repeated item scores once, at its first rank; the copy wastes a slot. */
static void duplicates_in_ranked_count_once(void) {
  /* ranked [1,1,3], relevant {1,3}, k=3: hits at ranks 1 and 3; min(m,k) = 2.
   *   recall = 2/2 = 1  (counting the copy would give 3/2)
   *   ndcg   = (D1 + D3) / (D1 + D2) = 1.5 / 1.6309 = 0.9197
   *   map    = (1/2) * (1/1 + 2/3) = 5/6 */
  const uint32_t a[] = {1, 1, 3}, rel[] = {3, 1};
  check(rankmetrics_score(a, 3, rel, 2, 3), 1, (D1 + D3) / (D1 + D2), 5.0 / 6, 1);
  /* ranked [1,1,1], relevant {1,3}, k=3: one hit at rank 1.
   *   recall = 1/2, ndcg = D1 / (D1 + D2) = 0.6131, map = (1/2) * 1 = 1/2 */
  const uint32_t b[] = {1, 1, 1};
  check(rankmetrics_score(b, 3, rel, 2, 3), 0.5, D1 / (D1 + D2), 0.5, 1);
}

/* relevant {1,1,3} is the set {1,3}: ranked [1,3,9], k=3 finds all of it.
 * (Taking m = 3 would give recall 2/3.) */
static void duplicates_in_relevant_count_once(void) {
  const uint32_t ranked[] = {1, 3, 9}, rel[] = {1, 1, 3};
  check(rankmetrics_score(ranked, 3, rel, 3, 3), 1, 1, 1, 1);
}

static void perfect_list_scores_one(void) {
  const uint32_t ranked[] = {7, 3, 1, 8}, rel[] = {1, 3, 7};
  check(rankmetrics_score(ranked, 4, rel, 3, 3), 1, 1, 1, 1);
  check(rankmetrics_score(ranked, 4, rel, 3, 4), 1, 1, 1, 1);
  /* More relevant items than slots: min(m,k) = 2, and two hits fill it;
   * the literature's recall is still 2 of 5. */
  const uint32_t five[] = {1, 2, 3, 4, 5}, top2[] = {4, 2};
  check(rankmetrics_score(top2, 2, five, 5, 2), 0.4, 1, 1, 1);
  CU_ASSERT_DOUBLE_EQUAL(rankmetrics_score(top2, 2, five, 5, 2).recall_capped, 1, EPS);
}

/* 600 relevant items (more than fit the stack copy): the even numbers
 * 0..1198, stored shuffled. ranked [1,2,3,4,2], k=5: hits 2 at rank 2 and
 * 4 at rank 4, the second 2 is a copy; min(m,k) = 5.
 *   recall = 2/600 (capped: 2/5)
 *   ndcg   = (D2 + D4) / (D1 + D2 + D3 + D4 + D5) = 1.0616 / 2.9485 = 0.3601
 *   map    = (1/5) * (1/2 + 2/4) = 1/5 */
static void large_relevant_set(void) {
  uint32_t rel[600];
  for (uint32_t i = 0; i < 600; i++) rel[i] = 2 * ((i * 7919) % 600);
  const uint32_t ranked[] = {1, 2, 3, 4, 2};
  check(rankmetrics_score(ranked, 5, rel, 600, 5), 2.0 / 600, (D2 + D4) / (D1 + D2 + D3 + D4 + D5),
        0.2, 1);
  CU_ASSERT_DOUBLE_EQUAL(rankmetrics_score(ranked, 5, rel, 600, 5).recall_capped, 0.4, EPS);
}

/* lists: u0 [1,2,5], u1 [3,4,42], u2 []; 10 items (42 is outside).
 * k=2: {1,2,3,4} = 4/10. k=3: {1,2,5,3,4} = 5/10, 42 ignored. */
static void coverage_hand_case(void) {
  const uint32_t u0[] = {1, 2, 5}, u1[] = {3, 4, 42};
  const uint32_t *lists[] = {u0, u1, NULL};
  const size_t lens[] = {3, 3, 0};
  CU_ASSERT_DOUBLE_EQUAL(rankmetrics_coverage(lists, lens, 3, 2, 10), 0.4, EPS);
  CU_ASSERT_DOUBLE_EQUAL(rankmetrics_coverage(lists, lens, 3, 3, 10), 0.5, EPS);
  /* The same item for every user counts once: {1,2} of 4 items. */
  const uint32_t *same[] = {u0, u0};
  CU_ASSERT_DOUBLE_EQUAL(rankmetrics_coverage(same, lens, 2, 2, 4), 0.5, EPS);
  CU_ASSERT_DOUBLE_EQUAL(rankmetrics_coverage(lists, lens, 3, 3, 0), 0, EPS);
}

/* 8 training users; item 0 seen by 8 (p=1, 0 bits), item 1 by 4 (p=1/2,
 * 1 bit), item 2 by 2 (p=1/4, 2 bits), item 3 by none (counts as 1: p=1/8,
 * 3 bits). lists u0 [1,2], u1 [3,0,2].
 * k=2: slots 1,2,3,0 -> (1 + 2 + 3 + 0) / 4 = 1.5 bits.
 * k=3: adds item 2 -> (6 + 2) / 5 = 1.6 bits. */
static void novelty_hand_case(void) {
  const uint32_t item_users[] = {8, 4, 2, 0};
  const uint32_t u0[] = {1, 2}, u1[] = {3, 0, 2};
  const uint32_t *lists[] = {u0, u1};
  const size_t lens[] = {2, 3};
  CU_ASSERT_DOUBLE_EQUAL(rankmetrics_novelty(lists, lens, 2, 2, item_users, 8), 1.5, EPS);
  CU_ASSERT_DOUBLE_EQUAL(rankmetrics_novelty(lists, lens, 2, 3, item_users, 8), 1.6, EPS);
  const size_t none[] = {0, 0};
  CU_ASSERT_DOUBLE_EQUAL(rankmetrics_novelty(lists, none, 2, 3, item_users, 8), 0, EPS);
}

static void bootstrap_constant_values(void) {
  double v[50];
  for (int i = 0; i < 50; i++) v[i] = 0.1;
  rankmetrics_ci ci = rankmetrics_bootstrap(v, 50, 1000, 1);
  CU_ASSERT_DOUBLE_EQUAL(ci.mean, 0.1, EPS);
  CU_ASSERT_EQUAL(ci.lo, ci.mean);
  CU_ASSERT_EQUAL(ci.hi, ci.mean);
  /* One user: every resample is that user. */
  ci = rankmetrics_bootstrap(v, 1, 1000, 1);
  CU_ASSERT_EQUAL(ci.lo, 0.1);
  CU_ASSERT_EQUAL(ci.hi, 0.1);
  ci = rankmetrics_bootstrap(v, 0, 1000, 1);
  CU_ASSERT(ci.mean == 0 && ci.lo == 0 && ci.hi == 0);
}

/* values 0.00, 0.01, .., 0.99: mean 0.495, sd 0.2887, so the standard error
 * of the mean is 0.2887 / sqrt(100) = 0.0289 and a 95% interval is about
 * 2 * 1.96 * 0.0289 = 0.113 wide. */
static void bootstrap_interval_brackets_the_mean(void) {
  double v[100];
  for (int i = 0; i < 100; i++) v[i] = (double)((i * 37) % 100) / 100;
  rankmetrics_ci ci = rankmetrics_bootstrap(v, 100, 2000, 42);
  CU_ASSERT_DOUBLE_EQUAL(ci.mean, 0.495, EPS);
  CU_ASSERT(ci.lo < ci.mean && ci.mean < ci.hi);
  CU_ASSERT(ci.hi - ci.lo > 0.09 && ci.hi - ci.lo < 0.14);
  CU_ASSERT_DOUBLE_EQUAL((ci.lo + ci.hi) / 2, ci.mean, 0.01);
  /* Beyond the stack buffer of resample means too. */
  rankmetrics_ci big = rankmetrics_bootstrap(v, 100, 5000, 42);
  CU_ASSERT(big.lo < big.mean && big.mean < big.hi);
  CU_ASSERT(big.hi - big.lo > 0.09 && big.hi - big.lo < 0.14);
  /* No resamples: no spread. */
  rankmetrics_ci none = rankmetrics_bootstrap(v, 100, 0, 42);
  CU_ASSERT(none.lo == none.mean && none.hi == none.mean);
}

static void bootstrap_same_seed_same_interval(void) {
  double v[30];
  for (int i = 0; i < 30; i++) v[i] = (i % 3 == 0) ? 1.0 : (double)i / 60;
  rankmetrics_ci a = rankmetrics_bootstrap(v, 30, 500, 7), b = rankmetrics_bootstrap(v, 30, 500, 7);
  CU_ASSERT_EQUAL(a.lo, b.lo);
  CU_ASSERT_EQUAL(a.hi, b.hi);
  CU_ASSERT_EQUAL(a.mean, b.mean);
  rankmetrics_ci c = rankmetrics_bootstrap(v, 30, 500, 8);
  CU_ASSERT(c.lo != a.lo || c.hi != a.hi);
}

/* The interval pinned for one case, from an independent Python model of the
 * same algorithm (splitmix64 draws, 2^64 mod n rejected, numpy.percentile):
 * a change of RNG or percentile rule changes every published interval. */
static void bootstrap_matches_reference(void) {
  const double v[] = {0.0, 0.5, 1.0, 0.25, 0.0, 1.0, 0.75, 0.0, 0.125, 1.0};
  rankmetrics_ci ci = rankmetrics_bootstrap(v, 10, 200, 42);
  CU_ASSERT_DOUBLE_EQUAL(ci.mean, 0.4625, EPS);
  CU_ASSERT_DOUBLE_EQUAL(ci.lo, 0.1871875, EPS);
  CU_ASSERT_DOUBLE_EQUAL(ci.hi, 0.725, EPS);
}

void suite_rankmetrics(void) {
  static const test_case cases[] = {
      {"hand_case_at_k3_and_k4", hand_case_at_k3_and_k4},
      {"k_beyond_the_list", k_beyond_the_list},
      {"nothing_relevant_or_k0_is_zero", nothing_relevant_or_k0_is_zero},
      {"duplicates_in_ranked_count_once", duplicates_in_ranked_count_once},
      {"duplicates_in_relevant_count_once", duplicates_in_relevant_count_once},
      {"perfect_list_scores_one", perfect_list_scores_one},
      {"large_relevant_set", large_relevant_set},
      {"coverage_hand_case", coverage_hand_case},
      {"novelty_hand_case", novelty_hand_case},
      {"bootstrap_constant_values", bootstrap_constant_values},
      {"bootstrap_interval_brackets_the_mean", bootstrap_interval_brackets_the_mean},
      {"bootstrap_same_seed_same_interval", bootstrap_same_seed_same_interval},
      {"bootstrap_matches_reference", bootstrap_matches_reference},
      {NULL, NULL}};
  test_add_suite("rankmetrics", cases);
}
