/* tests/ranking/test_rank.c - hard rules and the top-k cut, on a hand-made
 * catalog where every answer can be checked by eye. */
#include "ranking/rank.h"
#include "tests/test.h"

#include <string.h>

/* rows: 0 a books 5 in-stock | 1 b books 15 OUT | 2 c toys 25 | 3 d toys 35 | 4 e food 45 */
static catalog *make(void) {
  const char *p = test_path("rank_items.tsv");
  test_write_file(p, "item_id\tcategory\tprice\tin_stock\tpopularity\n"
                     "a\tbooks\t5\t1\t50\nb\tbooks\t15\t0\t40\nc\ttoys\t25\t1\t30\n"
                     "d\ttoys\t35\t1\t20\ne\tfood\t45\t1\t10\n");
  catalog *c = NULL;
  CU_ASSERT_EQUAL(catalog_load(p, &c, NULL), 0);
  return c;
}

/* ANN candidates with scores chosen so the best is 'e'. */
static void cands(rec_candidate *cs) {
  const float s[5] = {0.5f, 0.9f, 0.7f, 0.7f, 0.95f};
  for (uint32_t i = 0; i < 5; i++) {
    memset(&cs[i], 0, sizeof cs[i]);
    cs[i].item = i;
    cs[i].sources = 1u << REC_SRC_ANN;
    cs[i].raw[REC_SRC_ANN] = s[i];
  }
}

static size_t run(catalog *c, rank_req *r, rank_item *out) {
  rec_candidate cs[5];
  cands(cs);
  size_t n = 99;
  CU_ASSERT_EQUAL(rank_slate(c, cs, 5, r, out, &n), 0);
  return n;
}

static void best_first_ties_by_row_out_of_stock_never(void) {
  catalog *c = make();
  rank_req r = {.k = 10};
  rank_item out[10];
  size_t n = run(c, &r, out);
  CU_ASSERT_EQUAL_FATAL(n, 4); /* b is out of stock */
  uint32_t want[] = {4, 2, 3, 0};
  for (size_t i = 0; i < n; i++) CU_ASSERT_EQUAL(out[i].item, want[i]);
  r.k = 2;
  CU_ASSERT_EQUAL(run(c, &r, out), 2);
  CU_ASSERT_EQUAL(out[1].item, 2);
  catalog_free(c);
}

static void exclusions_categories_and_price(void) {
  catalog *c = make();
  rank_item out[10];
  uint32_t excl[] = {2, 4};
  rank_req r = {.k = 10, .exclude = excl, .n_exclude = 2};
  CU_ASSERT_EQUAL(run(c, &r, out), 2); /* d, a */
  CU_ASSERT_EQUAL(out[0].item, 3);
  uint32_t toys;
  catalog_find_category(c, "toys", 4, &toys);
  rank_req inc = {.k = 10, .include_cats = &toys, .n_include_cats = 1};
  CU_ASSERT_EQUAL(run(c, &inc, out), 2);
  CU_ASSERT_EQUAL(out[0].item, 2);
  CU_ASSERT_EQUAL(out[1].item, 3);
  rank_req exc = {.k = 10, .exclude_cats = &toys, .n_exclude_cats = 1};
  CU_ASSERT_EQUAL(run(c, &exc, out), 2); /* e, a */
  rank_req price = {.k = 10, .has_price = true, .min_price = 20, .max_price = 40};
  CU_ASSERT_EQUAL(run(c, &price, out), 2); /* c, d */
  rank_req open_top = {.k = 10, .has_price = true, .min_price = 30, .max_price = 0};
  CU_ASSERT_EQUAL(run(c, &open_top, out), 2); /* e, d: max 0 = no bound */
  CU_ASSERT_STRING_EQUAL(rank_ineligible_reason(c, &r, 1), "out of stock");
  CU_ASSERT_STRING_EQUAL(rank_ineligible_reason(c, &r, 2), "excluded by request");
  CU_ASSERT_PTR_NULL(rank_ineligible_reason(c, &r, 0));
  catalog_free(c);
}

static void popularity_scaled_to_unit(void) {
  catalog *c = make();
  rec_candidate cs[2] = {{.item = 0, .sources = 1u << REC_SRC_POPULARITY},
                         {.item = 2, .sources = 1u << REC_SRC_POPULARITY}};
  cs[0].raw[REC_SRC_POPULARITY] = 50;
  cs[1].raw[REC_SRC_POPULARITY] = 30;
  rank_req r = {.k = 2};
  rank_item out[2];
  size_t n;
  CU_ASSERT_EQUAL(rank_slate(c, cs, 2, &r, out, &n), 0);
  CU_ASSERT_EQUAL(n, 2);
  CU_ASSERT_DOUBLE_EQUAL(out[0].score, 1.0, 1e-6);
  CU_ASSERT_DOUBLE_EQUAL(out[1].score, 0.6, 1e-6);
  catalog_free(c);
}

void suite_rank(void) {
  static const test_case cases[] = {
      {"best_first_ties_by_row_out_of_stock_never", best_first_ties_by_row_out_of_stock_never},
      {"exclusions_categories_and_price", exclusions_categories_and_price},
      {"popularity_scaled_to_unit", popularity_scaled_to_unit},
      {NULL, NULL}};
  test_add_suite("rank", cases);
}
