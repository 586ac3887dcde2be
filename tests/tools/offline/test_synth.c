/* tests/tools/offline/test_synth.c - the synthetic bundle is deterministic, byte
 * for byte, HNSW index included, however many OpenMP threads the caller has;
 * and a 20,000-item one, the README's size, passes recd's load-time recall
 * check. */
#include "common/fileio.h"
#include "retrieval/bundle.h"
#include "retrieval/bundle_write.h"
#include "tests/test.h"
#include "tools/offline/synth.h"

#include <dirent.h>
#include <omp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t hash_of(const char *dir, const char *file) {
  char p[600];
  snprintf(p, sizeof p, "%s/%s", dir, file);
  uint64_t h = 0, n;
  CU_ASSERT_EQUAL(rec_hash_file(p, &h, &n, NULL), 0);
  return h;
}

/* Every file of bundle 'a' is in 'b' with the same bytes, and 'b' has no other. */
static void same_files(const char *a, const char *b) {
  DIR *d = opendir(a);
  CU_ASSERT_PTR_NOT_NULL_FATAL(d);
  size_t na = 0, nb = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    char pa[600], pb[600];
    snprintf(pa, sizeof pa, "%s/%s", a, e->d_name);
    snprintf(pb, sizeof pb, "%s/%s", b, e->d_name);
    size_t la, lb;
    char *ta = rec_read_file(pa, &la, NULL), *tb = rec_read_file(pb, &lb, NULL);
    CU_ASSERT_PTR_NOT_NULL(ta);
    CU_ASSERT_PTR_NOT_NULL(tb);
    bool same = ta && tb && la == lb && memcmp(ta, tb, la) == 0;
    if (!same) fprintf(stderr, "\n  %s differs between %s and %s\n", e->d_name, a, b);
    CU_ASSERT_TRUE(same);
    free(ta);
    free(tb);
    na++;
  }
  closedir(d);
  CU_ASSERT_PTR_NOT_NULL_FATAL(d = opendir(b));
  while ((e = readdir(d)) != NULL) nb += e->d_name[0] != '.';
  closedir(d);
  CU_ASSERT_EQUAL(na, nb);
  CU_ASSERT(na >= 9);
}

static void same_options_same_bytes(void) {
  synth_opts o = {.items = 300, .users = 50, .dim = 8, .categories = 3, .seed = 11,
                  .index_type = "Flat"};
  const char *a = test_path("synth_a"), *b = test_path("synth_b");
  CU_ASSERT_EQUAL_FATAL(synth_bundle(a, &o, NULL), 0);
  CU_ASSERT_EQUAL_FATAL(synth_bundle(b, &o, NULL), 0);
  same_files(a, b);
  o.seed = 12;
  const char *c = test_path("synth_c");
  CU_ASSERT_EQUAL_FATAL(synth_bundle(c, &o, NULL), 0);
  CU_ASSERT_NOT_EQUAL(hash_of(a, "item_embeddings.npy"), hash_of(c, "item_embeddings.npy"));
}

/* FAISS inserts into an HNSW graph from every OpenMP thread at once, and
 * which thread wins a node's lock changes the graph; the index is built on
 * one thread whatever the caller's setting, so the bytes never change. */
static void hnsw_same_options_same_bytes(void) {
  synth_opts o = {.items = 3000, .users = 100, .dim = 16, .categories = 6, .seed = 7};
  const char *a = test_path("synth_hnsw_a"), *b = test_path("synth_hnsw_b");
  int threads = omp_get_max_threads();
  omp_set_num_threads(4);
  CU_ASSERT_EQUAL_FATAL(synth_bundle(a, &o, NULL), 0);
  omp_set_num_threads(2);
  CU_ASSERT_EQUAL_FATAL(synth_bundle(b, &o, NULL), 0);
  CU_ASSERT_EQUAL(omp_get_max_threads(), 2); /* the caller's setting is left alone */
  omp_set_num_threads(threads);
  same_files(a, b);
}

/* The README's `recctl synth --items 20000 --users 2000` was refused by recd
 * in about half the builds (recall@10 0.86 to 0.89): FAISS's default
 * efConstruction (40) left whole categories unreachable. Seed 7 is a catalog
 * where it does so even on one thread (0.83, every time). The breadths chosen
 * from the catalog size must pass the check recd runs, with recd's floor. */
static void synth_20k_passes_recall_check(void) {
  synth_opts o = {.items = 20000, .users = 2000, .dim = 32, .categories = 8, .seed = 7};
  const char *dir = test_path("synth_20k");
  rec_error e = {0};
  CU_ASSERT_EQUAL_FATAL(synth_bundle(dir, &o, &e), 0);
  bundle *b = NULL;
  CU_ASSERT_EQUAL_FATAL(bundle_load(dir, &b, &e), 0);
  CU_ASSERT_STRING_EQUAL(b->index_type, "HNSW32");
  CU_ASSERT_EQUAL(b->ef_search, bundle_hnsw_ef_search(20000));
  double recall = 0;
  int rc = bundle_check_recall(b, 32, 10, 0.9, &recall, &e);
  if (rc) fprintf(stderr, "\n  %s\n", e.msg);
  CU_ASSERT_EQUAL(rc, 0);
  CU_ASSERT(recall >= 0.97);
  bundle_unref(b);
}

static void refuses_nonsense_options(void) {
  synth_opts o = {.items = 3, .users = 1, .dim = 8, .categories = 5, .seed = 1};
  rec_error e = {0};
  CU_ASSERT_EQUAL(synth_bundle(test_path("synth_bad"), &o, &e), REC_EINVAL);
  o = (synth_opts){.items = 30, .users = 1, .dim = 8, .categories = 2, .seed = 1, .ef_search = -1};
  CU_ASSERT_EQUAL(synth_bundle(test_path("synth_bad_ef"), &o, &e), REC_EINVAL);
}

void suite_synth(void) {
  static const test_case cases[] = {{"same_options_same_bytes", same_options_same_bytes},
                                    {"hnsw_same_options_same_bytes", hnsw_same_options_same_bytes},
                                    {"synth_20k_passes_recall_check", synth_20k_passes_recall_check},
                                    {"refuses_nonsense_options", refuses_nonsense_options},
                                    {NULL, NULL}};
  test_add_suite("synth", cases);
}
