/* tests/ranking/test_rank.c - the ranking tier on a hand-made catalog where
 * every number can be checked by hand: each hard rule, normalisation and
 * renormalised weights, each soft rule, MMR, the category cap, promotions. */
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
  const float raw[REC_SRC_COUNT] = {ann, cf, pop};
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

static const char *const PLAIN[] = {"diversity.mmr", "false", "diversity.category_share", "0",
                                    "upsell.factor", "0", NULL};

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
  CU_ASSERT_EQUAL(res.missing, 1u << REC_SRC_ITEM_CF);
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

/* Six X items outscore two Y items; k 4 with share 0.5 -> at most 2 per
 * category: x1 x2 y1 y2. With one Y item only, the cap gives way: x1 x2 y1 x3. */
static void category_cap_gives_way_before_a_short_slate(void) {
  const char *p = test_path("cap_items.tsv");
  test_write_file(p, "item_id\tcategory\tprice\tin_stock\tpopularity\n"
                     "x1\tX\t1\t1\t1\nx2\tX\t1\t1\t1\nx3\tX\t1\t1\t1\nx4\tX\t1\t1\t1\n"
                     "y1\tY\t1\t1\t1\ny2\tY\t1\t1\t1\n");
  catalog *c = NULL;
  CU_ASSERT_EQUAL_FATAL(catalog_load(p, &c, NULL), 0);
  rank_config *cfg = config((const char *const[]){"diversity.mmr", "false", NULL});
  rank_items it = {.catalog = c};
  rec_candidate cs[6] = {cand(0, .9f, -1, -1), cand(1, .8f, -1, -1), cand(2, .7f, -1, -1),
                         cand(3, .6f, -1, -1), cand(4, .5f, -1, -1), cand(5, .4f, -1, -1)};
  arena a;
  arena_init(&a, 0);
  rank_req r = req(cfg, 4);
  rank_result res = run(&it, cs, 6, &r, &a);
  uint32_t want[4] = {0, 1, 4, 5};
  CU_ASSERT_EQUAL_FATAL(res.n, 4);
  for (int i = 0; i < 4; i++) CU_ASSERT_EQUAL(res.items[i].item, want[i]);
  res = run(&it, cs, 5, &r, &a); /* y2 not a candidate */
  uint32_t relaxed[4] = {0, 1, 4, 2};
  CU_ASSERT_EQUAL_FATAL(res.n, 4);
  for (int i = 0; i < 4; i++) CU_ASSERT_EQUAL(res.items[i].item, relaxed[i]);
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
  rank_pin_row pins[2] = {{E, 1}, {D, 9}};
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
      {"pins_take_their_slots", pins_take_their_slots},
      {NULL, NULL}};
  test_add_suite("rank", cases);
}
