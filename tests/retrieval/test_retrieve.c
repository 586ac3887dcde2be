/* tests/retrieval/test_retrieve.c - candidates from each source. */
#include "retrieval/retrieve.h"
#include "tests/test.h"
#include "tools/offline/synth.h"

#include <math.h>
#include <string.h>

static bundle *load(void) {
  bundle *b = NULL;
  CU_ASSERT_EQUAL(bundle_load(test_synth_bundle("r_flat", 400, "Flat"), &b, NULL), 0);
  return b;
}

static retrieve_req req(const char *user, size_t ann, size_t pop) {
  return (retrieve_req){.user_id = user, .user_len = user ? strlen(user) : 0, .want_ann = ann,
                        .want_pop = pop, .segment = -1};
}

static const rec_candidate *find(const retrieve_result *r, uint32_t item) {
  for (size_t i = 0; i < r->n; i++)
    if (r->cands[i].item == item) return &r->cands[i];
  return NULL;
}

static void known_user_gets_nearest_items(void) {
  bundle *b = load();
  CU_ASSERT_PTR_NOT_NULL_FATAL(b);
  arena a;
  arena_init(&a, 0);
  retrieve_req r = req("U00003", 50, 0);
  retrieve_result res;
  CU_ASSERT_EQUAL_FATAL(retrieve_candidates(b, &r, &a, &res), 0);
  CU_ASSERT_TRUE(res.known_user);
  CU_ASSERT_FALSE(res.exhausted);
  CU_ASSERT_EQUAL(res.n, 50);
  /* The synthetic user is drawn to one category: its nearest items are mostly in it. */
  synth_opts o = {.categories = 4};
  char name[64];
  synth_category_name(synth_user_category(&o, 3), name, sizeof name);
  uint32_t cat;
  size_t in_cat = 0;
  CU_ASSERT_TRUE(catalog_find_category(b->catalog, name, strlen(name), &cat));
  for (size_t i = 0; i < res.n; i++) {
    CU_ASSERT(res.cands[i].sources == 1u << REC_SRC_ANN);
    CU_ASSERT(res.cands[i].raw[REC_SRC_ANN] <= 1.0001f);
    in_cat += b->catalog->category[res.cands[i].item] == cat;
  }
  CU_ASSERT(in_cat >= 40);
  arena_destroy(&a);
  bundle_unref(b);
}

static void unknown_user_gets_popularity_in_order(void) {
  bundle *b = load();
  CU_ASSERT_PTR_NOT_NULL_FATAL(b);
  arena a;
  arena_init(&a, 0);
  retrieve_req r = req("stranger", 100, 20);
  retrieve_result res;
  CU_ASSERT_EQUAL_FATAL(retrieve_candidates(b, &r, &a, &res), 0);
  CU_ASSERT_FALSE(res.known_user);
  CU_ASSERT_EQUAL(res.n, 20);
  for (size_t i = 0; i < res.n; i++) {
    CU_ASSERT_EQUAL(res.cands[i].item, b->catalog->by_popularity[i]);
    CU_ASSERT(res.cands[i].sources == 1u << REC_SRC_POPULARITY);
  }
  r.want_pop = 5000; /* more than the catalog: every item, exhausted */
  CU_ASSERT_EQUAL_FATAL(retrieve_candidates(b, &r, &a, &res), 0);
  CU_ASSERT_TRUE(res.exhausted);
  CU_ASSERT_EQUAL(res.n, 400);
  arena_destroy(&a);
  bundle_unref(b);
}

/* Sources merge: an item proposed by two sources is one candidate with both scores. */
static void sources_merge_into_one_candidate(void) {
  bundle *b = load();
  CU_ASSERT_PTR_NOT_NULL_FATAL(b);
  arena a;
  arena_init(&a, 0);
  retrieve_req r = req("U00003", 300, 400); /* ANN past a quarter: an exact scan */
  retrieve_result res;
  CU_ASSERT_EQUAL_FATAL(retrieve_candidates(b, &r, &a, &res), 0);
  CU_ASSERT_TRUE(res.exhausted);
  CU_ASSERT_EQUAL(res.n, 400);
  const rec_candidate *c = find(&res, b->catalog->by_popularity[0]);
  CU_ASSERT_PTR_NOT_NULL_FATAL(c);
  CU_ASSERT_EQUAL(c->sources, (1u << REC_SRC_ANN) | (1u << REC_SRC_POPULARITY));
  arena_destroy(&a);
  bundle_unref(b);
}

/* SimilarItems: the seeds' mean embedding finds the seed's own neighbourhood. */
static void similar_items_query_the_seed_embedding(void) {
  bundle *b = load();
  CU_ASSERT_PTR_NOT_NULL_FATAL(b);
  arena a;
  arena_init(&a, 0);
  uint32_t seed = 17;
  retrieve_req r = {.want_ann = 10, .seeds = &seed, .n_seeds = 1, .similar = true, .segment = -1};
  retrieve_result res;
  CU_ASSERT_EQUAL_FATAL(retrieve_candidates(b, &r, &a, &res), 0);
  CU_ASSERT_FALSE(res.known_user);
  const rec_candidate *self = find(&res, seed);
  CU_ASSERT_PTR_NOT_NULL_FATAL(self);
  CU_ASSERT_DOUBLE_EQUAL(self->raw[REC_SRC_ANN], 1.0, 1e-4);
  for (size_t i = 0; i < res.n; i++) CU_ASSERT(!(res.cands[i].sources & (1u << REC_SRC_POPULARITY)));
  arena_destroy(&a);
  bundle_unref(b);
}

/* An include filter: ANN proposes only the filter's items, the nearest of
 * them by exact score when they are few (here one category of four, 100
 * rows: 100^2 <= 30 x 400), in one call, not in rounds that find a few
 * each; all of them, and exhausted, when they are no more than asked for.
 * A bundle without popularity lists serves a cold user the category's own
 * most popular items. */
static void include_filter_scans_its_items(void) {
  bundle *b = load();
  CU_ASSERT_PTR_NOT_NULL_FATAL(b);
  arena a;
  arena_init(&a, 0);
  const catalog *c = b->catalog;
  uint32_t cat = c->category[b->catalog->by_popularity[0]];
  size_t rows = c->category_start[cat + 1] - c->category_start[cat];
  CU_ASSERT_FATAL(rows > 30 && rows * rows <= 30 * c->count);
  retrieve_req r = req("U00003", 30, 0);
  r.categories = &cat;
  r.n_categories = 1;
  retrieve_result res;
  CU_ASSERT_EQUAL_FATAL(retrieve_candidates(b, &r, &a, &res), 0);
  CU_ASSERT_TRUE(res.known_user);
  CU_ASSERT_FALSE(res.exhausted);
  CU_ASSERT_EQUAL_FATAL(res.n, 30);
  float worst = INFINITY;
  for (size_t i = 0; i < res.n; i++) {
    CU_ASSERT_EQUAL(c->category[res.cands[i].item], cat);
    worst = fminf(worst, res.cands[i].raw[REC_SRC_ANN]);
  }
  /* Exact: no item of the category left out scores above the worst kept. */
  retrieve_req all = req("U00003", 400, 0);
  retrieve_result every;
  CU_ASSERT_EQUAL_FATAL(retrieve_candidates(b, &all, &a, &every), 0);
  size_t above = 0;
  for (size_t i = 0; i < every.n; i++)
    above += c->category[every.cands[i].item] == cat && every.cands[i].raw[REC_SRC_ANN] > worst + 1e-5f;
  CU_ASSERT(above < 30);
  r.want_ann = rows; /* every item of the category: all of them, and nothing wider can come */
  CU_ASSERT_EQUAL_FATAL(retrieve_candidates(b, &r, &a, &res), 0);
  CU_ASSERT_TRUE(res.exhausted);
  CU_ASSERT_EQUAL(res.n, rows);
  retrieve_req cold = req("stranger", 30, 10);
  cold.categories = &cat;
  cold.n_categories = 1;
  CU_ASSERT_PTR_NULL_FATAL(b->sig.category_pop);
  CU_ASSERT_EQUAL_FATAL(retrieve_candidates(b, &cold, &a, &res), 0);
  CU_ASSERT_EQUAL_FATAL(res.n, 10);
  for (size_t i = 0; i < res.n; i++)
    CU_ASSERT_EQUAL(res.cands[i].item, c->by_category_popularity[c->category_start[cat] + i]);
  arena_destroy(&a);
  bundle_unref(b);
}

void suite_retrieve(void) {
  static const test_case cases[] = {
      {"known_user_gets_nearest_items", known_user_gets_nearest_items},
      {"unknown_user_gets_popularity_in_order", unknown_user_gets_popularity_in_order},
      {"sources_merge_into_one_candidate", sources_merge_into_one_candidate},
      {"similar_items_query_the_seed_embedding", similar_items_query_the_seed_embedding},
      {"include_filter_scans_its_items", include_filter_scans_its_items},
      {NULL, NULL}};
  test_add_suite("retrieve", cases);
}
