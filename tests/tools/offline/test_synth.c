/* tests/tools/offline/test_synth.c - the synthetic bundle is deterministic. */
#include "common/fileio.h"
#include "tests/test.h"
#include "tools/offline/synth.h"

#include <stdio.h>

static uint64_t hash_of(const char *dir, const char *file) {
  char p[600];
  snprintf(p, sizeof p, "%s/%s", dir, file);
  uint64_t h = 0, n;
  CU_ASSERT_EQUAL(rec_hash_file(p, &h, &n, NULL), 0);
  return h;
}

static void same_options_same_bytes(void) {
  synth_opts o = {.items = 300, .users = 50, .dim = 8, .categories = 3, .seed = 11,
                  .index_type = "Flat"};
  const char *a = test_path("synth_a"), *b = test_path("synth_b");
  CU_ASSERT_EQUAL_FATAL(synth_bundle(a, &o, NULL), 0);
  CU_ASSERT_EQUAL_FATAL(synth_bundle(b, &o, NULL), 0);
  const char *files[] = {"manifest.json", "items.tsv", "item_embeddings.npy", "users.tsv",
                         "user_features.npy", "tower_0_w.npy", "index.faiss"};
  for (size_t i = 0; i < sizeof files / sizeof *files; i++)
    CU_ASSERT_EQUAL(hash_of(a, files[i]), hash_of(b, files[i]));
  o.seed = 12;
  const char *c = test_path("synth_c");
  CU_ASSERT_EQUAL_FATAL(synth_bundle(c, &o, NULL), 0);
  CU_ASSERT_NOT_EQUAL(hash_of(a, "item_embeddings.npy"), hash_of(c, "item_embeddings.npy"));
}

static void refuses_nonsense_options(void) {
  synth_opts o = {.items = 3, .users = 1, .dim = 8, .categories = 5, .seed = 1};
  rec_error e = {0};
  CU_ASSERT_EQUAL(synth_bundle(test_path("synth_bad"), &o, &e), REC_EINVAL);
}

void suite_synth(void) {
  static const test_case cases[] = {{"same_options_same_bytes", same_options_same_bytes},
                                    {"refuses_nonsense_options", refuses_nonsense_options},
                                    {NULL, NULL}};
  test_add_suite("synth", cases);
}
