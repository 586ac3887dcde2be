/* tests/server/test_recommend.c - the Recommend pipeline without gRPC: the
 * page is full whenever enough eligible items exist, pages continue each
 * other, and absent items are explained. */
#include "server/recommend.h"
#include "tests/test.h"
#include "tools/synth.h"

#include <string.h>

static bundle *load(void) {
  bundle *b = NULL;
  CU_ASSERT_EQUAL(bundle_load(test_synth_bundle("p_hnsw", 1000, "HNSW32"), &b, NULL), 0);
  return b;
}

static rec_request req(const char *user, size_t k) {
  rec_request r = {.user_id = user, .user_len = strlen(user)};
  r.rules.k = k;
  return r;
}

/* A category the user is not drawn to holds few of its nearest 100 items, so
 * filling the page needs the candidate set widened. */
static void full_page_under_a_selective_filter(void) {
  bundle *b = load();
  CU_ASSERT_PTR_NOT_NULL_FATAL(b);
  synth_opts o = {.categories = 4};
  char name[64];
  synth_category_name((synth_user_category(&o, 0) + 1) % 4, name, sizeof name);
  uint32_t other;
  CU_ASSERT_TRUE_FATAL(catalog_find_category(b->catalog, name, strlen(name), &other));
  arena a;
  arena_init(&a, 0);
  rec_request r = req("U00000", 40);
  r.rules.include_cats = &other;
  r.rules.n_include_cats = 1;
  rec_result res;
  CU_ASSERT_EQUAL_FATAL(recommend_run(b, &r, &a, &res), 0);
  CU_ASSERT_TRUE(res.personalized);
  CU_ASSERT_EQUAL(res.n, 40);
  CU_ASSERT_FALSE(res.short_catalog);
  CU_ASSERT(res.candidates > 100); /* it had to widen */
  for (size_t i = 0; i < res.n; i++) {
    CU_ASSERT_EQUAL(b->catalog->category[res.items[i].item], other);
    CU_ASSERT_TRUE(b->catalog->in_stock[res.items[i].item]);
    if (i) CU_ASSERT(res.items[i].score <= res.items[i - 1].score);
  }
  arena_destroy(&a);
  bundle_unref(b);
}

static void short_catalog_returns_every_eligible_item(void) {
  bundle *b = load();
  CU_ASSERT_PTR_NOT_NULL_FATAL(b);
  arena a;
  arena_init(&a, 0);
  rec_request r = req("U00001", 200);
  r.rules.has_price = true;
  r.rules.min_price = 20;
  r.rules.max_price = 22;
  size_t eligible = 0;
  for (uint32_t i = 0; i < b->catalog->count; i++) eligible += rank_eligible(b->catalog, &r.rules, i);
  CU_ASSERT(eligible > 0 && eligible < 200);
  rec_result res;
  CU_ASSERT_EQUAL_FATAL(recommend_run(b, &r, &a, &res), 0);
  CU_ASSERT_EQUAL(res.n, eligible);
  CU_ASSERT_TRUE(res.short_catalog);
  CU_ASSERT_FALSE(res.more);
  arena_destroy(&a);
  bundle_unref(b);
}

static void pages_continue_each_other(void) {
  bundle *b = load();
  CU_ASSERT_PTR_NOT_NULL_FATAL(b);
  arena a;
  arena_init(&a, 0);
  rec_request whole = req("U00002", 20), p1 = req("U00002", 10), p2 = req("U00002", 10);
  p2.offset = 10;
  rec_result rw, r1, r2;
  CU_ASSERT_EQUAL_FATAL(recommend_run(b, &whole, &a, &rw), 0);
  CU_ASSERT_EQUAL_FATAL(recommend_run(b, &p1, &a, &r1), 0);
  CU_ASSERT_EQUAL_FATAL(recommend_run(b, &p2, &a, &r2), 0);
  CU_ASSERT_EQUAL_FATAL(r1.n, 10);
  CU_ASSERT_EQUAL_FATAL(r2.n, 10);
  CU_ASSERT_TRUE(r1.more);
  for (size_t i = 0; i < 10; i++) {
    CU_ASSERT_EQUAL(r1.items[i].item, rw.items[i].item);
    CU_ASSERT_EQUAL(r2.items[i].item, rw.items[10 + i].item);
  }
  arena_destroy(&a);
  bundle_unref(b);
}

static void cold_user_gets_popular_items(void) {
  bundle *b = load();
  CU_ASSERT_PTR_NOT_NULL_FATAL(b);
  arena a;
  arena_init(&a, 0);
  rec_request r = req("never-seen", 5);
  rec_result res;
  CU_ASSERT_EQUAL_FATAL(recommend_run(b, &r, &a, &res), 0);
  CU_ASSERT_FALSE(res.personalized);
  /* The five most popular in-stock items, in popularity order. */
  size_t j = 0;
  for (size_t i = 0; i < b->catalog->count && j < res.n; i++) {
    uint32_t item = b->catalog->by_popularity[i];
    if (!b->catalog->in_stock[item]) continue;
    CU_ASSERT_EQUAL(res.items[j].item, item);
    j++;
  }
  CU_ASSERT_EQUAL(j, 5);
  arena_destroy(&a);
  bundle_unref(b);
}

static void absent_items_are_explained(void) {
  bundle *b = load();
  CU_ASSERT_PTR_NOT_NULL_FATAL(b);
  uint32_t out_of_stock = 0;
  while (b->catalog->in_stock[out_of_stock]) out_of_stock++;
  arena a;
  arena_init(&a, 0);
  rec_request r = req("U00003", 5);
  rec_result first;
  CU_ASSERT_EQUAL_FATAL(recommend_run(b, &r, &a, &first), 0);
  const char *shown = b->catalog->ids[first.items[0].item];
  uint32_t excluded = first.items[1].item;
  r.rules.exclude = &excluded;
  r.rules.n_exclude = 1;
  const char *ids[] = {"no-such-item", b->catalog->ids[out_of_stock], shown,
                       b->catalog->ids[excluded]};
  r.explain_ids = ids;
  r.n_explain = 4;
  rec_result res;
  CU_ASSERT_EQUAL_FATAL(recommend_run(b, &r, &a, &res), 0);
  CU_ASSERT_EQUAL_FATAL(res.n_verdicts, 3); /* the shown item needs no verdict */
  CU_ASSERT_STRING_EQUAL(res.verdicts[0].stage, "unknown_item");
  CU_ASSERT_STRING_EQUAL(res.verdicts[1].stage, "rule");
  CU_ASSERT_STRING_EQUAL(res.verdicts[1].reason, "out of stock");
  CU_ASSERT_STRING_EQUAL(res.verdicts[2].reason, "excluded by request");
  arena_destroy(&a);
  bundle_unref(b);
}

void suite_recommend(void) {
  static const test_case cases[] = {
      {"full_page_under_a_selective_filter", full_page_under_a_selective_filter},
      {"short_catalog_returns_every_eligible_item", short_catalog_returns_every_eligible_item},
      {"pages_continue_each_other", pages_continue_each_other},
      {"cold_user_gets_popular_items", cold_user_gets_popular_items},
      {"absent_items_are_explained", absent_items_are_explained},
      {NULL, NULL}};
  test_add_suite("recommend", cases);
}
