/* tests/retrieval/test_retrieve.c - candidates for known and unknown users. */
#include "retrieval/retrieve.h"
#include "tests/test.h"
#include "tools/synth.h"

#include <string.h>

static bundle *load(void) {
  bundle *b = NULL;
  CU_ASSERT_EQUAL(bundle_load(test_synth_bundle("r_flat", 400, "Flat"), &b, NULL), 0);
  return b;
}

static void known_user_gets_nearest_items(void) {
  bundle *b = load();
  CU_ASSERT_PTR_NOT_NULL_FATAL(b);
  arena a;
  arena_init(&a, 0);
  retrieve_req r = {"U00003", 6, 50};
  retrieve_result res;
  CU_ASSERT_EQUAL_FATAL(retrieve_candidates(b, &r, &a, &res), 0);
  CU_ASSERT_TRUE(res.known_user);
  CU_ASSERT_FALSE(res.exhausted);
  CU_ASSERT_EQUAL(res.n, 50);
  /* Scores descend and are inner products of unit vectors. */
  for (size_t i = 0; i < res.n; i++) {
    CU_ASSERT(res.cands[i].sources == 1u << REC_SRC_ANN);
    CU_ASSERT(res.cands[i].raw[REC_SRC_ANN] <= 1.0001f);
    if (i) CU_ASSERT(res.cands[i].raw[REC_SRC_ANN] <= res.cands[i - 1].raw[REC_SRC_ANN]);
  }
  /* The synthetic user is drawn to one category: the top 10 are mostly in it. */
  synth_opts o = {.categories = 4};
  char name[64];
  synth_category_name(synth_user_category(&o, 3), name, sizeof name);
  uint32_t cat;
  size_t in_cat = 0;
  CU_ASSERT_TRUE(catalog_find_category(b->catalog, name, strlen(name), &cat));
  for (size_t i = 0; i < 10; i++) in_cat += b->catalog->category[res.cands[i].item] == cat;
  CU_ASSERT(in_cat >= 8);
  arena_destroy(&a);
  bundle_unref(b);
}

static void unknown_user_gets_popularity(void) {
  bundle *b = load();
  CU_ASSERT_PTR_NOT_NULL_FATAL(b);
  arena a;
  arena_init(&a, 0);
  retrieve_req r = {"stranger", 8, 5000};
  retrieve_result res;
  CU_ASSERT_EQUAL_FATAL(retrieve_candidates(b, &r, &a, &res), 0);
  CU_ASSERT_FALSE(res.known_user);
  CU_ASSERT_TRUE(res.exhausted); /* 5000 wanted, 400 exist */
  CU_ASSERT_EQUAL(res.n, 400);
  for (size_t i = 0; i < res.n; i++) {
    CU_ASSERT_EQUAL(res.cands[i].item, b->catalog->by_popularity[i]);
    CU_ASSERT(res.cands[i].sources == 1u << REC_SRC_POPULARITY);
  }
  arena_destroy(&a);
  bundle_unref(b);
}

void suite_retrieve(void) {
  static const test_case cases[] = {{"known_user_gets_nearest_items", known_user_gets_nearest_items},
                                    {"unknown_user_gets_popularity", unknown_user_gets_popularity},
                                    {NULL, NULL}};
  test_add_suite("retrieve", cases);
}
