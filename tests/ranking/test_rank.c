/* tests/ranking/test_rank.c - the ranking tier on a hand-made catalog where
 * every number can be checked by hand: each hard rule, normalisation and
 * renormalised weights, each soft rule, MMR, the category cap (beyond the
 * pool, stopping short for a wider round, giving way), promotions, and
 * rounds: a prefix kept, positions that do not depend on k, pages counted
 * from their phase, the served order against the score. */
#include "ranking/rank.h"
#include "tests/test.h"

#include <string.h>

#define DAY 86400
enum { A, B, C, D, E }; /* catalog rows */

/* rows: a books 5 (margin 0.2) | b books 15 OUT | c toys 25 | d toys 35 | e food 45 */
static catalog *make(void) {
  const char *p = test_path("rank_items.tsv");
  test_write_file(p, "item_id\tcategory\tprice\tin_stock\tpopularity\tmargin\n"
                     "a\tbooks\t5\t1\t50\t0.2\nb\tbooks\t15\t0\t40\t0\nc\ttoys\t25\t1\t30\t0\n"
                     "d\ttoys\t35\t1\t20\t0\ne\tfood\t45\t1\t10\t0\n");
  catalog *c = NULL;
  CU_ASSERT_EQUAL(catalog_load(p, &c, NULL), 0);
  return c;
}

static rank_config *config(const char *const *kv) {
  rank_config *cfg = NULL;
  rec_error e = {0};
  CU_ASSERT_EQUAL_FATAL(rank_config_load(NULL, &cfg, &e), 0);
  for (; kv && *kv; kv += 2) {
    int rc = rank_config_set(cfg, kv[0], kv[1], &e);
    if (rc) fprintf(stderr, "\n  %s\n", e.msg);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
  }
  return cfg;
}

static rank_req req(const rank_config *cfg, size_t k) {
  return (rank_req){.k = k, .cfg = cfg, .segment = -1, .now = 1000 * DAY};
}

static rec_candidate cand(uint32_t item, float ann, float cf, float pop) {
  rec_candidate c = {.item = item};
  const float raw[REC_SRC_COUNT] = {[REC_SRC_ANN] = ann, [REC_SRC_ITEM_CF] = cf, [REC_SRC_POPULARITY] = pop,
                                    [REC_SRC_EASE] = -1};
  for (int s = 0; s < REC_SRC_COUNT; s++)
    if (raw[s] >= 0) {
      c.sources |= 1u << s;
      c.raw[s] = raw[s];
    }
  return c;
}

static void hard_rules_each(void) {
  catalog *c = make();
  rank_config *cfg = config(NULL);
  float cycle[5] = {0, 0, 30, 0, 0};
  rank_items it = {.catalog = c, .cycle_days = cycle};
  rank_req r = req(cfg, 5);
  CU_ASSERT_STRING_EQUAL(rank_ineligible_reason(&it, &r, B), "out of stock");
  CU_ASSERT_PTR_NULL(rank_ineligible_reason(&it, &r, A));
  uint32_t blocked = C, excl = D, toys;
  catalog_find_category(c, "toys", 4, &toys);
  rank_req r1 = r;
  r1.blocked = &blocked, r1.n_blocked = 1, r1.exclude = &excl, r1.n_exclude = 1;
  CU_ASSERT_STRING_EQUAL(rank_ineligible_reason(&it, &r1, C), "blocked (rules.blocked_items)");
  CU_ASSERT_STRING_EQUAL(rank_ineligible_reason(&it, &r1, D), "excluded by request");
  rank_req r2 = r;
  r2.include_cats = &toys, r2.n_include_cats = 1;
  CU_ASSERT_STRING_EQUAL(rank_ineligible_reason(&it, &r2, A), "category not in filters.include_categories");
  rank_req r3 = r;
  r3.exclude_cats = &toys, r3.n_exclude_cats = 1;
  CU_ASSERT_STRING_EQUAL(rank_ineligible_reason(&it, &r3, C), "category in filters.exclude_categories");
  rank_req r4 = r;
  r4.has_price = true, r4.min_price = 20, r4.max_price = 40;
  CU_ASSERT_STRING_EQUAL(rank_ineligible_reason(&it, &r4, A), "price outside filters.price");
  CU_ASSERT_PTR_NULL(rank_ineligible_reason(&it, &r4, D));
  /* Mean price 10, cap 2.0: nothing above 20. */
  rank_req r5 = r;
  r5.mean_price = 10;
  CU_ASSERT_PTR_NOT_NULL(strstr(rank_ineligible_reason(&it, &r5, C), "cap"));
  CU_ASSERT_PTR_NULL(rank_ineligible_reason(&it, &r5, A));
  /* Cycle of c is 30 days: bought 10 days ago blocks it (< 0.5 x 30), 20 does not. */
  rec_purchase p = {.item = C, .count = 1, .last_time = r.now - 10 * DAY};
  rank_req r6 = r;
  r6.purchases = &p, r6.n_purchases = 1;
  CU_ASSERT_PTR_NOT_NULL(strstr(rank_ineligible_reason(&it, &r6, C), "repurchase window"));
  p.last_time = r.now - 20 * DAY;
  CU_ASSERT_PTR_NULL(rank_ineligible_reason(&it, &r6, C));
  /* An item without a cycle that the user bought is not offered again... */
  rec_purchase q = {.item = D, .count = 1, .last_time = r.now - 300 * DAY};
  r6.purchases = &q;
  CU_ASSERT_PTR_NOT_NULL(strstr(rank_ineligible_reason(&it, &r6, D), "already bought"));
  /* ...unless the configuration allows it. */
  rank_config_set(cfg, "rules.exclude_purchased", "false", NULL);
  CU_ASSERT_PTR_NULL(rank_ineligible_reason(&it, &r6, D));
  rank_config_free(cfg);
  catalog_free(c);
}

static rank_result run(const rank_items *it, const rec_candidate *cs, size_t n, const rank_req *r,
                       arena *a) {
  rank_result res;
  CU_ASSERT_EQUAL(rank_slate(it, cs, n, r, a, &res), 0);
  return res;
}

static const rank_item *find(const rank_result *res, uint32_t item) {
  for (size_t i = 0; i < res->n; i++)
    if (res->items[i].item == item) return &res->items[i];
  return NULL;
}

/* Rank normalisation (the tests' numbers are worked out for it; the default is minmax). */
static const char *const PLAIN[] = {"diversity.mmr", "false", "diversity.category_share", "0",
                                    "upsell.factor", "0", "blend.normalization", "rank", NULL};

/* ANN raws 0.9, 0.5, 0.5, 0.1: rank-based gives 1, 3/4, 3/4 (a tie shares the
 * better rank), 1/4; min-max gives 1, 0.5, 0.5, 0. Only ANN present: blend = norm. */
static void normalisation_rank_and_minmax(void) {
  catalog *c = make();
  rank_config *cfg = config(PLAIN);
  rank_items it = {.catalog = c};
  rec_candidate cs[4] = {cand(A, 0.9f, -1, -1), cand(C, 0.5f, -1, -1), cand(D, 0.5f, -1, -1),
                         cand(E, 0.1f, -1, -1)};
  arena a;
  arena_init(&a, 0);
  rank_req r = req(cfg, 4);
  rank_result res = run(&it, cs, 4, &r, &a);
  CU_ASSERT_EQUAL_FATAL(res.n, 4);
  CU_ASSERT_DOUBLE_EQUAL(find(&res, A)->norm[REC_SRC_ANN], 1.0, 1e-6);
  CU_ASSERT_DOUBLE_EQUAL(find(&res, C)->norm[REC_SRC_ANN], 0.75, 1e-6);
  CU_ASSERT_DOUBLE_EQUAL(find(&res, D)->norm[REC_SRC_ANN], 0.75, 1e-6);
  CU_ASSERT_DOUBLE_EQUAL(find(&res, E)->blended, 0.25, 1e-6);
  CU_ASSERT_EQUAL(res.items[0].item, A);
  CU_ASSERT_EQUAL(res.items[3].item, E);
  rank_config_set(cfg, "blend.normalization", "minmax", NULL);
  res = run(&it, cs, 4, &r, &a);
  CU_ASSERT_DOUBLE_EQUAL(find(&res, C)->blended, 0.5, 1e-6);
  CU_ASSERT_DOUBLE_EQUAL(find(&res, E)->blended, 0.0, 1e-6);
  arena_destroy(&a);
  rank_config_free(cfg);
  catalog_free(c);
}

/* No item-CF candidates: ANN 0.4 and popularity 0.2 renormalise to 2/3 and
 * 1/3. a: ANN 1 (alone), popularity 1 -> 1.0; c: popularity 0.5 -> 1/6. */
static void missing_source_renormalises(void) {
  catalog *c = make();
  rank_config *cfg = config(PLAIN);
  rank_items it = {.catalog = c};
  rec_candidate cs[2] = {cand(A, 0.9f, -1, 50), cand(C, -1, -1, 30)};
  arena a;
  arena_init(&a, 0);
  rank_req r = req(cfg, 2);
  rank_result res = run(&it, cs, 2, &r, &a);
  CU_ASSERT_EQUAL(res.missing, (1u << REC_SRC_ITEM_CF) | (1u << REC_SRC_EASE));
  CU_ASSERT_DOUBLE_EQUAL(find(&res, A)->blended, 1.0, 1e-6);
  CU_ASSERT_DOUBLE_EQUAL(find(&res, C)->blended, 1.0 / 6, 1e-6);
  arena_destroy(&a);
  rank_config_free(cfg);
  catalog_free(c);
}

static float factor_of(const rank_item *x, const char *rule) {
  for (size_t i = 0; x && i < x->n_adj; i++)
    if (strcmp(x->adj[i].rule, rule) == 0) return x->adj[i].factor;
  return 1.0f;
}

static void soft_rules_each(void) {
  catalog *c = make();
  rank_config *cfg = config((const char *const[]){"diversity.mmr", "false", "diversity.category_share",
                                                  "0", "margin.weight", "0.5", "upsell.factor", "0", NULL});
  float cycle[5] = {30, 0, 0, 0, 0};
  rank_items it = {.catalog = c, .cycle_days = cycle};
  rec_candidate cs[4] = {cand(A, 0.9f, -1, -1), cand(C, 0.8f, -1, -1), cand(D, 0.7f, -1, -1),
                         cand(E, 0.6f, -1, -1)};
  rec_purchase p = {.item = A, .count = 2, .last_time = 1000 * DAY - 40 * DAY};
  rank_boost_row boost = {.item = D, .factor = 2.0f};
  arena a;
  arena_init(&a, 0);
  rank_req r = req(cfg, 4);
  r.mean_price = 20, r.purchases = &p, r.n_purchases = 1, r.boosts = &boost, r.n_boosts = 1;
  rank_result res = run(&it, cs, 4, &r, &a);
  CU_ASSERT_EQUAL(res.n, 3);                  /* e at 45 is above 2.0 x 20 */
  CU_ASSERT_PTR_NULL(find(&res, E));
  const rank_item *ra = find(&res, A), *rc = find(&res, C), *rd = find(&res, D);
  CU_ASSERT_DOUBLE_EQUAL(factor_of(ra, "repurchase_due"), 1.15, 1e-6); /* 40 days >= 1.0 x 30 */
  CU_ASSERT_DOUBLE_EQUAL(factor_of(ra, "margin"), 1.1, 1e-6);           /* 1 + 0.5 x 0.2 */
  CU_ASSERT_DOUBLE_EQUAL(factor_of(rc, "upsell"), 1.0, 1e-6);           /* upsell off here */
  CU_ASSERT_DOUBLE_EQUAL(factor_of(rd, "price_penalty"), 0.8, 1e-6);    /* 35 > 1.5 x 20 */
  CU_ASSERT_DOUBLE_EQUAL(factor_of(rd, "promotion"), 2.0, 1e-6);
  CU_ASSERT_DOUBLE_EQUAL(rd->score, rd->blended * 0.8 * 2.0, 1e-5);
  CU_ASSERT_DOUBLE_EQUAL(factor_of(rc, "price_penalty"), 1.0, 1e-6);    /* 25 < 30 */
  /* Upsell 0.1, weight 0.2: c at 1.25x -> 1 + 0.1 (1 + 0.2 x 0.25) = 1.105. */
  rank_config_set(cfg, "upsell.factor", "0.1", NULL);
  res = run(&it, cs, 4, &r, &a);
  CU_ASSERT_DOUBLE_EQUAL(factor_of(find(&res, C), "upsell"), 1.105, 1e-5);
  CU_ASSERT_DOUBLE_EQUAL(factor_of(find(&res, A), "upsell"), 1.0, 1e-6); /* cheaper than mean */
  arena_destroy(&a);
  rank_config_free(cfg);
  catalog_free(c);
}

static void segment_overrides_apply(void) {
  catalog *c = make();
  rank_config *cfg = config((const char *const[]){"segment.high.price.penalty", "0.5",
                                                  "upsell.factor", "0", NULL});
  rank_items it = {.catalog = c};
  rec_candidate cs[1] = {cand(D, 0.7f, -1, -1)};
  arena a;
  arena_init(&a, 0);
  rank_req r = req(cfg, 1);
  r.mean_price = 20;
  rank_result res = run(&it, cs, 1, &r, &a);
  CU_ASSERT_DOUBLE_EQUAL(factor_of(&res.items[0], "price_penalty"), 0.8, 1e-6);
  r.segment = 3; /* high spenders */
  res = run(&it, cs, 1, &r, &a);
  CU_ASSERT_DOUBLE_EQUAL(factor_of(&res.items[0], "price_penalty"), 0.5, 1e-6);
  arena_destroy(&a);
  rank_config_free(cfg);
  catalog_free(c);
}

/* a and c point the same way, d elsewhere. Min-max relevance 1, 0.5, 0.
 * MMR with lambda 0.5 after a: c scores 0.5*0.5 - 0.5*1 = -0.25, d 0 -> d. */
static void mmr_prefers_the_different_item(void) {
  catalog *c = make();
  rank_config *cfg = config((const char *const[]){"diversity.mmr_lambda", "0.5",
      "diversity.category_share", "0", "blend.normalization", "minmax", "upsell.factor", "0", NULL});
  const float emb[5 * 2] = {1, 0, 0, 1, 1, 0, 0, 1, 0.6f, 0.8f};
  rank_items it = {.catalog = c, .emb = emb, .dim = 2};
  rec_candidate cs[3] = {cand(A, 0.9f, -1, -1), cand(C, 0.8f, -1, -1), cand(D, 0.7f, -1, -1)};
  arena a;
  arena_init(&a, 0);
  rank_req r = req(cfg, 3);
  rank_result res = run(&it, cs, 3, &r, &a);
  uint32_t want[3] = {A, D, C};
  for (int i = 0; i < 3; i++) CU_ASSERT_EQUAL(res.items[i].item, want[i]);
  rank_config_set(cfg, "diversity.mmr", "false", NULL);
  res = run(&it, cs, 3, &r, &a);
  uint32_t plain[3] = {A, C, D};
  for (int i = 0; i < 3; i++) CU_ASSERT_EQUAL(res.items[i].item, plain[i]);
  arena_destroy(&a);
  rank_config_free(cfg);
  catalog_free(c);
}

static catalog *cap_catalog(void) {
  const char *p = test_path("cap_items.tsv");
  test_write_file(p, "item_id\tcategory\tprice\tin_stock\tpopularity\n"
                     "x1\tX\t1\t1\t1\nx2\tX\t1\t1\t1\nx3\tX\t1\t1\t1\nx4\tX\t1\t1\t1\n"
                     "y1\tY\t1\t1\t1\ny2\tY\t1\t1\t1\n");
  catalog *c = NULL;
  CU_ASSERT_EQUAL(catalog_load(p, &c, NULL), 0);
  return c;
}

enum { X1, X2, X3, X4, Y1, Y2 }; /* cap_catalog rows */

/* x1..x4 outscore y1 and y2, in that order. */
static const rec_candidate *cap_cands(void) {
  static rec_candidate cs[6];
  for (int i = 0; i < 6; i++) cs[i] = cand((uint32_t)i, 0.9f - 0.1f * (float)i, -1, -1);
  return cs;
}

static void expect(const rank_result *res, const uint32_t *want, size_t n) {
  CU_ASSERT_EQUAL_FATAL(res->n, n);
  for (size_t i = 0; i < n; i++) CU_ASSERT_EQUAL(res->items[i].item, want[i]);
}

/* k 4 with share 0.5: at most 2 per category: x1 x2 y1 y2. With y2 not a
 * candidate and no wider set to come, the cap gives way: x1 x2 y1 x3. */
static void category_cap_gives_way_before_a_short_slate(void) {
  catalog *c = cap_catalog();
  rank_config *cfg = config((const char *const[]){"diversity.mmr", "false", NULL});
  rank_items it = {.catalog = c};
  arena a;
  arena_init(&a, 0);
  rank_req r = req(cfg, 4);
  rank_result res = run(&it, cap_cands(), 6, &r, &a);
  expect(&res, (const uint32_t[]){X1, X2, Y1, Y2}, 4);
  res = run(&it, cap_cands(), 5, &r, &a);
  expect(&res, (const uint32_t[]){X1, X2, Y1, X3}, 4);
  arena_destroy(&a);
  rank_config_free(cfg);
  catalog_free(c);
}

/* The MMR pool holds one item (mmr_pool 1): after x1 and x2 it holds x3,
 * which the cap forbids; the cap reaches past it for y1 and y2 instead of
 * giving way. */
static void category_cap_reaches_beyond_the_pool(void) {
  catalog *c = cap_catalog();
  rank_config *cfg = config((const char *const[]){"diversity.mmr_pool", "1", NULL});
  const float emb[6 * 2] = {1, 0, 1, 0, 1, 0, 1, 0, 0, 1, 0, 1};
  rank_items it = {.catalog = c, .emb = emb, .dim = 2};
  arena a;
  arena_init(&a, 0);
  rank_req r = req(cfg, 4);
  rank_result res = run(&it, cap_cands(), 6, &r, &a);
  expect(&res, (const uint32_t[]){X1, X2, Y1, Y2}, 4);
  CU_ASSERT_EQUAL(res.n_ranked, 4);
  arena_destroy(&a);
  rank_config_free(cfg);
  catalog_free(c);
}

/* No Y item left, but the caller can bring more candidates: the slate stops
 * at x1 x2 y1 rather than give way. A filter on X alone can never keep the
 * cap, so there it gives way at once. */
static void category_cap_stops_short_when_a_wider_round_can_come(void) {
  catalog *c = cap_catalog();
  rank_config *cfg = config((const char *const[]){"diversity.mmr", "false", NULL});
  rank_items it = {.catalog = c};
  arena a;
  arena_init(&a, 0);
  rank_req r = req(cfg, 4);
  r.can_widen = true;
  rank_result res = run(&it, cap_cands(), 5, &r, &a);
  expect(&res, (const uint32_t[]){X1, X2, Y1}, 3);
  uint32_t x;
  CU_ASSERT_TRUE_FATAL(catalog_find_category(c, "X", 1, &x));
  r.include_cats = &x, r.n_include_cats = 1;
  res = run(&it, cap_cands(), 6, &r, &a);
  expect(&res, (const uint32_t[]){X1, X2, X3, X4}, 4);
  arena_destroy(&a);
  rank_config_free(cfg);
  catalog_free(c);
}

/* Pages of 2 from phase 1 (an offset of 1): [0,1) [1,3) [3,5), one X each. */
static void pages_count_from_their_phase(void) {
  catalog *c = cap_catalog();
  rank_config *cfg = config((const char *const[]){"diversity.mmr", "false", NULL});
  rank_items it = {.catalog = c};
  arena a;
  arena_init(&a, 0);
  rank_req r = req(cfg, 5);
  r.page = 2;
  rank_result res = run(&it, cap_cands(), 6, &r, &a);
  expect(&res, (const uint32_t[]){X1, Y1, X2, Y2, X3}, 5);
  r.page_phase = 1;
  res = run(&it, cap_cands(), 6, &r, &a);
  expect(&res, (const uint32_t[]){X1, X2, Y1, X3, Y2}, 5);
  arena_destroy(&a);
  rank_config_free(cfg);
  catalog_free(c);
}

/* A wider round keeps the positions an earlier one filled, even when it
 * finds a better item (y1 at 0.95), and continues after them; the kept
 * items' scores come from the wider set (x1: rank 2 of 4 -> 0.75). */
static void a_prefix_is_kept(void) {
  catalog *c = cap_catalog();
  rank_config *cfg = config(PLAIN);
  rank_items it = {.catalog = c};
  arena a;
  arena_init(&a, 0);
  rank_req r = req(cfg, 2);
  rank_result first = run(&it, cap_cands(), 3, &r, &a);
  expect(&first, (const uint32_t[]){X1, X2}, 2);
  CU_ASSERT_DOUBLE_EQUAL(first.items[0].score, 1.0, 1e-6);
  rec_candidate wider[4] = {cand(X1, .9f, -1, -1), cand(X2, .8f, -1, -1), cand(X3, .7f, -1, -1),
                            cand(Y1, .95f, -1, -1)};
  r.k = 4, r.prefix = first.items, r.n_prefix = first.n;
  rank_result res = run(&it, wider, 4, &r, &a);
  expect(&res, (const uint32_t[]){X1, X2, Y1, X3}, 4);
  CU_ASSERT_DOUBLE_EQUAL(res.items[0].score, 0.75, 1e-6);
  CU_ASSERT_DOUBLE_EQUAL(res.items[2].score, 1.0, 1e-6);
  arena_destroy(&a);
  rank_config_free(cfg);
  catalog_free(c);
}

/* Items that join the pool mid-page are weighed against what the page
 * already shows. A pool of 2: x1 and y1 fill it and are picked; x2 and y2
 * join then, and x2, x1's twin, loses to y2. Rank-normalised relevance 1,
 * 0.75, 0.5, 0.25; lambda 0.5: x2 0.25 - 0.5 x 1 < y2 0.125 - 0.5 x 0.6. */
static void mmr_weighs_items_joining_the_pool(void) {
  catalog *c = cap_catalog();
  rank_config *cfg = config((const char *const[]){"diversity.mmr_pool", "2", "diversity.mmr_lambda", "0.5",
      "diversity.category_share", "0", "upsell.factor", "0", NULL});
  const float emb[6 * 2] = {1, 0, 1, 0, 1, 0, 1, 0, 0, 1, 0.6f, -0.8f};
  rank_items it = {.catalog = c, .emb = emb, .dim = 2};
  rec_candidate cs[4] = {cand(X1, .9f, -1, -1), cand(Y1, .8f, -1, -1), cand(X2, .7f, -1, -1),
                         cand(Y2, .6f, -1, -1)};
  arena a;
  arena_init(&a, 0);
  rank_req r = req(cfg, 4);
  rank_result res = run(&it, cs, 4, &r, &a);
  expect(&res, (const uint32_t[]){X1, Y1, Y2, X2}, 4);
  arena_destroy(&a);
  rank_config_free(cfg);
  catalog_free(c);
}

/* MMR measures relevance against the best eligible candidate, x1, even
 * when a prefix holds it, so going on from [x1] picks what one call picks.
 * Relevance (rank-normalised) 1, 2/3, 1/3; lambda 0.5: y1 1/3 - 0.5 x 0.4 <
 * x2 1/6 - 0. */
static void relevance_is_against_the_best_candidate(void) {
  catalog *c = cap_catalog();
  rank_config *cfg = config((const char *const[]){"diversity.mmr_lambda", "0.5", "diversity.category_share",
                                                  "0", "upsell.factor", "0", "blend.normalization", "rank", NULL});
  const float emb[6 * 2] = {1, 0, 0, 1, 1, 0, 1, 0, 0.4f, 0.916515f, 1, 0};
  rank_items it = {.catalog = c, .emb = emb, .dim = 2};
  rec_candidate cs[3] = {cand(X1, .9f, -1, -1), cand(Y1, .8f, -1, -1), cand(X2, .7f, -1, -1)};
  arena a;
  arena_init(&a, 0);
  rank_req r = req(cfg, 3);
  rank_result one = run(&it, cs, 3, &r, &a);
  expect(&one, (const uint32_t[]){X1, X2, Y1}, 3);
  r.k = 1;
  rank_result first = run(&it, cs, 3, &r, &a);
  r.k = 3, r.page = 3, r.prefix = first.items, r.n_prefix = first.n;
  rank_result res = run(&it, cs, 3, &r, &a);
  expect(&res, (const uint32_t[]){X1, X2, Y1}, 3);
  arena_destroy(&a);
  rank_config_free(cfg);
  catalog_free(c);
}

/* With MMR (a pool of 2), the cap and a pin, the first k positions are the
 * same for every k: a shallow page is a prefix of a deep one. */
static void positions_do_not_depend_on_k(void) {
  catalog *c = cap_catalog();
  rank_config *cfg = config((const char *const[]){"diversity.mmr_pool", "2", "diversity.mmr_lambda",
                                                  "0.5", NULL});
  const float emb[6 * 2] = {1, 0, 0.8f, 0.6f, 0.6f, 0.8f, 0, 1, 1, 0, 0.6f, 0.8f};
  rank_items it = {.catalog = c, .emb = emb, .dim = 2};
  rank_pin_row pin = {X4, 3, NULL};
  arena a;
  arena_init(&a, 0);
  rank_req r = req(cfg, 6);
  r.page = 3, r.pins = &pin, r.n_pins = 1;
  rank_result deep = run(&it, cap_cands(), 6, &r, &a);
  CU_ASSERT_EQUAL_FATAL(deep.n, 6);
  CU_ASSERT_EQUAL(deep.items[2].item, X4);
  /* A page's first pick is on relevance alone: the best item left. */
  CU_ASSERT_EQUAL(deep.items[0].item, X1);
  for (size_t i = 4; i < 6; i++) CU_ASSERT_TRUE(deep.items[3].score >= deep.items[i].score);
  for (size_t k = 1; k < 6; k++) {
    r.k = k;
    rank_result res = run(&it, cap_cands(), 6, &r, &a);
    CU_ASSERT_EQUAL_FATAL(res.n, k);
    for (size_t i = 0; i < k; i++) CU_ASSERT_EQUAL(res.items[i].item, deep.items[i].item);
  }
  arena_destroy(&a);
  rank_config_free(cfg);
  catalog_free(c);
}

/* The contract (ranking.proto, docs/api.md): items come in the order to
 * show them and each score is the item's relevance, the blend times its
 * adjustments, untouched by the order: MMR serves d (0) before c (0.5).
 * Without diversity and pins the order is the scores'. */
static void order_is_served_and_score_is_relevance(void) {
  catalog *c = make();
  rank_config *cfg = config((const char *const[]){"diversity.mmr_lambda", "0.5", "diversity.category_share",
      "0", "blend.normalization", "minmax", "margin.weight", "0.5", NULL});
  const float emb[5 * 2] = {1, 0, 0, 1, 1, 0, 0, 1, 0.6f, 0.8f};
  rank_items it = {.catalog = c, .emb = emb, .dim = 2};
  rec_candidate cs[3] = {cand(A, 0.9f, -1, -1), cand(C, 0.8f, -1, -1), cand(D, 0.7f, -1, -1)};
  arena a;
  arena_init(&a, 0);
  rank_req r = req(cfg, 3);
  rank_result res = run(&it, cs, 3, &r, &a);
  expect(&res, (const uint32_t[]){A, D, C}, 3);
  CU_ASSERT_TRUE(res.items[1].score < res.items[2].score);
  for (size_t i = 0; i < res.n; i++) {
    double s = res.items[i].blended;
    for (size_t j = 0; j < res.items[i].n_adj; j++) s *= res.items[i].adj[j].factor;
    CU_ASSERT_DOUBLE_EQUAL(res.items[i].score, s, 1e-6);
  }
  CU_ASSERT_DOUBLE_EQUAL(res.items[0].score, 1.1, 1e-6); /* a: blend 1, margin 0.2 -> x 1.1 */
  rank_config_set(cfg, "diversity.mmr", "false", NULL);
  res = run(&it, cs, 3, &r, &a);
  for (size_t i = 1; i < res.n; i++) CU_ASSERT_TRUE(res.items[i - 1].score >= res.items[i].score);
  arena_destroy(&a);
  rank_config_free(cfg);
  catalog_free(c);
}

static void pins_take_their_slots(void) {
  catalog *c = make();
  rank_config *cfg = config(PLAIN);
  rank_items it = {.catalog = c};
  rec_candidate cs[4] = {cand(A, 0.9f, -1, -1), cand(C, 0.8f, -1, -1), cand(D, 0.7f, -1, -1),
                         cand(E, 0.1f, -1, -1)};
  rank_pin_row pins[2] = {{E, 1, NULL}, {D, 9, NULL}};
  arena a;
  arena_init(&a, 0);
  rank_req r = req(cfg, 4);
  r.pins = pins, r.n_pins = 2;
  rank_result res = run(&it, cs, 4, &r, &a);
  uint32_t want[4] = {E, A, C, D}; /* e pinned first; d's slot 9 is past the end: last */
  CU_ASSERT_EQUAL_FATAL(res.n, 4);
  for (int i = 0; i < 4; i++) CU_ASSERT_EQUAL(res.items[i].item, want[i]);
  CU_ASSERT_TRUE(res.items[0].pinned);
  arena_destroy(&a);
  rank_config_free(cfg);
  catalog_free(c);
}

void suite_rank(void) {
  static const test_case cases[] = {
      {"hard_rules_each", hard_rules_each},
      {"normalisation_rank_and_minmax", normalisation_rank_and_minmax},
      {"missing_source_renormalises", missing_source_renormalises},
      {"soft_rules_each", soft_rules_each},
      {"segment_overrides_apply", segment_overrides_apply},
      {"mmr_prefers_the_different_item", mmr_prefers_the_different_item},
      {"category_cap_gives_way_before_a_short_slate", category_cap_gives_way_before_a_short_slate},
      {"category_cap_reaches_beyond_the_pool", category_cap_reaches_beyond_the_pool},
      {"category_cap_stops_short_when_a_wider_round_can_come",
       category_cap_stops_short_when_a_wider_round_can_come},
      {"pages_count_from_their_phase", pages_count_from_their_phase},
      {"a_prefix_is_kept", a_prefix_is_kept},
      {"mmr_weighs_items_joining_the_pool", mmr_weighs_items_joining_the_pool},
      {"relevance_is_against_the_best_candidate", relevance_is_against_the_best_candidate},
      {"positions_do_not_depend_on_k", positions_do_not_depend_on_k},
      {"order_is_served_and_score_is_relevance", order_is_served_and_score_is_relevance},
      {"pins_take_their_slots", pins_take_their_slots},
      {NULL, NULL}};
  test_add_suite("rank", cases);
}
