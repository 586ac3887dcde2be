/* tests/retrieval/test_retrieve.c - candidates from each source. */
#include "retrieval/retrieve.h"
#include "tests/test.h"
#include "tools/offline/synth.h"

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

void suite_retrieve(void) {
  static const test_case cases[] = {
      {"known_user_gets_nearest_items", known_user_gets_nearest_items},
      {"unknown_user_gets_popularity_in_order", unknown_user_gets_popularity_in_order},
      {"sources_merge_into_one_candidate", sources_merge_into_one_candidate},
      {"similar_items_query_the_seed_embedding", similar_items_query_the_seed_embedding},
      {NULL, NULL}};
  test_add_suite("retrieve", cases);
}
