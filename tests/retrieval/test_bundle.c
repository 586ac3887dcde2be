/* tests/retrieval/test_bundle.c - bundles written, loaded, and refused when
 * any file disagrees with the manifest. */
#include "common/fileio.h"
#include "retrieval/bundle.h"
#include "retrieval/bundle_write.h"
#include "tests/test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void round_trip(void) {
  const char *dir = test_synth_bundle("b_hnsw", 1000, "HNSW32");
  bundle *b;
  rec_error e = {0};
  CU_ASSERT_EQUAL_FATAL(bundle_load(dir, &b, &e), 0);
  CU_ASSERT_STRING_EQUAL(b->version, "synth-7-1000");
  CU_ASSERT_EQUAL(b->catalog->count, 1000);
  CU_ASSERT_EQUAL(b->user_count, 200);
  CU_ASSERT_EQUAL(b->dim, 16);
  CU_ASSERT_EQUAL(b->feature_dim, 18);
  CU_ASSERT_STRING_EQUAL(b->index_type, "HNSW32");
  CU_ASSERT_EQUAL(b->ef_search, 64);
  uint32_t row;
  CU_ASSERT_TRUE(bundle_find_user(b, "U00199", 6, &row));
  CU_ASSERT_STRING_EQUAL(b->user_ids[row], "U00199");
  CU_ASSERT_FALSE(bundle_find_user(b, "U00200", 6, &row));
  CU_ASSERT_TRUE(catalog_find(b->catalog, "P000999", 7, &row));
  CU_ASSERT_EQUAL(row, 999);
  /* References: the last unref frees (ASan reports a leak or double free). */
  bundle *again = bundle_ref(b);
  bundle_unref(b);
  CU_ASSERT_STRING_EQUAL(again->version, "synth-7-1000");
  bundle_unref(again);
}

static void edit_manifest(const char *dir, const char *from, const char *to);
static void expect_refused(const char *dir, int code, const char *needle);

/* An inverted file is written grouped: rows reordered list by list, nprobe
 * tuned, and recd searches its own view of the embedding matrix. */
static void grouped_inverted_file(void) {
  const char *dir = test_synth_bundle("b_ivf", 3000, "IVF40,Flat");
  bundle *b;
  rec_error e = {0};
  CU_ASSERT_EQUAL_FATAL(bundle_load(dir, &b, &e), 0);
  CU_ASSERT_STRING_EQUAL(b->index_type, "IVF40,Flat");
  size_t nlist = 0, nprobe = ann_nprobe(b->ann, &nlist);
  CU_ASSERT_EQUAL(nlist, 40);
  CU_ASSERT(nprobe >= 1 && nprobe <= 40);
  /* Every id is there, under another row than its number for most. */
  size_t moved = 0;
  for (size_t i = 0; i < 3000; i++) {
    char id[16];
    uint32_t row;
    snprintf(id, sizeof id, "P%06zu", i);
    CU_ASSERT_TRUE_FATAL(catalog_find(b->catalog, id, strlen(id), &row));
    moved += row != i;
  }
  CU_ASSERT(moved > 1000);
  /* Each row's own vector finds that row first: rows, ids and the lists
   * agree. */
  for (uint32_t r = 0; r < 3000; r += 7) {
    int64_t got[3];
    float sc[3];
    size_t n;
    CU_ASSERT_EQUAL(ann_search(b->ann, bundle_item_embedding(b, r), 3, got, sc, &n), 0);
    CU_ASSERT_EQUAL(got[0], r);
  }
  bundle_unref(b);
  /* A manifest whose lists or nprobe disagree with the rows is refused. */
  char cmd[1200], bad[512];
  snprintf(bad, sizeof bad, "%s", test_path("b_ivf_bad"));
  snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -r '%s' '%s'", bad, dir, bad);
  CU_ASSERT_EQUAL_FATAL(system(cmd), 0);
  char from[64], to[64];
  snprintf(from, sizeof from, "\"nprobe\":\t%zu,", nprobe);
  edit_manifest(bad, from, "\"nprobe\":\t41,");
  expect_refused(bad, REC_ECORRUPT, "index.nprobe must be in [1, 40]");
  edit_manifest(bad, "\"nprobe\":\t41,", from);
  /* One more row in the first list than the rows hold. */
  snprintf(cmd, sizeof cmd, "%s/manifest.json", bad);
  char *text = rec_read_file(cmd, &(size_t){0}, NULL);
  CU_ASSERT_PTR_NOT_NULL_FATAL(text);
  char *at = strstr(text, "\"list_sizes\":\t[");
  CU_ASSERT_PTR_NOT_NULL_FATAL(at);
  long first = strtol(at + strlen("\"list_sizes\":\t["), NULL, 10);
  free(text);
  snprintf(from, sizeof from, "\"list_sizes\":\t[%ld,", first);
  snprintf(to, sizeof to, "\"list_sizes\":\t[%ld,", first + 1);
  edit_manifest(bad, from, to);
  expect_refused(bad, REC_EMISMATCH, "the lists hold more than the 3000 vectors");
  edit_manifest(bad, to, from);
  snprintf(to, sizeof to, "\"layout\":\t\"sorted\"");
  edit_manifest(bad, "\"layout\":\t\"grouped\"", to);
  expect_refused(bad, REC_ECORRUPT, "unknown index.layout");
}

/* A copy of the good bundle to damage. */
static const char *copy_bundle(const char *name) {
  const char *src = test_synth_bundle("b_flat", 300, "Flat");
  static char dst[512];
  snprintf(dst, sizeof dst, "%s", test_path(name));
  char cmd[1200];
  snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -r '%s' '%s'", dst, src, dst);
  CU_ASSERT_EQUAL_FATAL(system(cmd), 0);
  return dst;
}

static void edit_manifest(const char *dir, const char *from, const char *to) {
  char path[600];
  snprintf(path, sizeof path, "%s/manifest.json", dir);
  size_t len;
  char *text = rec_read_file(path, &len, NULL);
  CU_ASSERT_PTR_NOT_NULL_FATAL(text);
  char *at = strstr(text, from);
  CU_ASSERT_PTR_NOT_NULL_FATAL(at);
  FILE *fp = fopen(path, "w");
  fprintf(fp, "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
  fclose(fp);
  free(text);
}

static void expect_refused(const char *dir, int code, const char *needle) {
  bundle *b = NULL;
  rec_error e = {0};
  CU_ASSERT_EQUAL(bundle_load(dir, &b, &e), code);
  CU_ASSERT_PTR_NULL(b);
  if (!strstr(e.msg, needle)) fprintf(stderr, "\n  got: %s\n  want: %s\n", e.msg, needle);
  CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, needle));
}

static void refuses_a_changed_byte(void) {
  const char *dir = copy_bundle("flip");
  char path[600];
  snprintf(path, sizeof path, "%s/items.tsv", dir);
  FILE *fp = fopen(path, "r+b");
  fseek(fp, 60, SEEK_SET);
  int ch = fgetc(fp);
  fseek(fp, 60, SEEK_SET);
  fputc(ch == '1' ? '2' : '1', fp);
  fclose(fp);
  expect_refused(dir, REC_ECORRUPT, "items.tsv: checksum");
}

static void refuses_a_missing_file(void) {
  const char *dir = copy_bundle("missing");
  char path[600];
  snprintf(path, sizeof path, "%s/index.faiss", dir);
  remove(path);
  expect_refused(dir, REC_EIO, "index.faiss");
}

static void refuses_mismatched_dimensions(void) {
  const char *dir = copy_bundle("dim");
  edit_manifest(dir, "\"dim\":\t16", "\"dim\":\t17");
  expect_refused(dir, REC_EMISMATCH, "item_embeddings.npy: shape (300, 16), manifest wants (300, 17)");
}

static void refuses_wrong_item_count(void) {
  const char *dir = copy_bundle("count");
  edit_manifest(dir, "\"item_count\":\t300", "\"item_count\":\t301");
  expect_refused(dir, REC_EMISMATCH, "300 items, manifest says 301");
}

static void refuses_unlisted_and_escaping_files(void) {
  const char *dir = copy_bundle("unlisted");
  edit_manifest(dir, "\"items\":\t\"items.tsv\"", "\"items\":\t\"extra.tsv\"");
  expect_refused(dir, REC_ECORRUPT, "extra.tsv is not listed in \"files\"");
  dir = copy_bundle("escape");
  edit_manifest(dir, "\"items\":\t\"items.tsv\"", "\"items\":\t\"../items.tsv\"");
  expect_refused(dir, REC_ECORRUPT, "plain names");
  dir = copy_bundle("format");
  edit_manifest(dir, "\"format\":\t1", "\"format\":\t2");
  expect_refused(dir, REC_ECORRUPT, "\"format\" must be 1");
  expect_refused(test_path("no_such_bundle"), REC_EIO, "manifest.json");
}

/* The signal tables (item_cf, popularity, ...) are optional, but one the
 * manifest names must be checksummed like every other file: a table read
 * from outside "files" would serve unverified data, and "../x" would read
 * outside the bundle. */
static void refuses_unlisted_and_escaping_signal_tables(void) {
  const char *dir = copy_bundle("cf_unlisted");
  char path[600];
  snprintf(path, sizeof path, "%s/item_cf.tsv", dir);
  test_write_file(path, "item_id\tneighbour_id\tscore\nP000000\tP000001\t0.5\n");
  edit_manifest(dir, "\"format\":\t1", "\"format\":\t1,\n\t\"item_cf\":\t\"item_cf.tsv\"");
  expect_refused(dir, REC_ECORRUPT, "item_cf.tsv is not listed in \"files\"");
  dir = copy_bundle("cf_escape");
  edit_manifest(dir, "\"format\":\t1", "\"format\":\t1,\n\t\"popularity\":\t\"../cf_unlisted/item_cf.tsv\"");
  expect_refused(dir, REC_ECORRUPT, "plain names");
}

static bundle_spec tiny_spec(float *emb, const char **ids) {
  static const char *cats[2] = {"a", "b"};
  static const float price[2] = {1, 2}, pop[2] = {1, 1};
  static const bool stock[2] = {true, true};
  static float w[4] = {1, 0, 0, 1}, bias[2] = {0, 0}, feat[2] = {1, 0};
  static const char *users[1] = {"u"};
  static tower_layer layer = {2, 2, w, bias, TOWER_LINEAR};
  return (bundle_spec){.version = "tiny", .dim = 2, .item_count = 2, .item_ids = ids,
                       .item_categories = cats, .item_price = price, .item_in_stock = stock,
                       .item_popularity = pop, .item_emb = emb, .user_count = 1,
                       .feature_dim = 2, .user_ids = users, .user_features = feat,
                       .n_layers = 1, .layers = &layer, .index_type = "Flat", .ef_search = 0};
}

static void refuses_unnormalised_embeddings(void) {
  float emb[4] = {3, 4, 0, 1};
  const char *ids[2] = {"x", "y"};
  bundle_spec s = tiny_spec(emb, ids);
  const char *dir = test_path("unnormalised");
  CU_ASSERT_EQUAL_FATAL(bundle_write(dir, &s, NULL), 0);
  expect_refused(dir, REC_ECORRUPT, "row 0 has L2 norm 5.0000");
}

static void write_is_all_or_nothing(void) {
  float emb[4] = {1, 0, 0, 1};
  const char *ids[2] = {"x", "bad\tid"};
  bundle_spec s = tiny_spec(emb, ids);
  const char *dir = test_path("never");
  rec_error e = {0};
  CU_ASSERT_EQUAL(bundle_write(dir, &s, &e), REC_EINVAL);
  struct stat st;
  CU_ASSERT_NOT_EQUAL(stat(dir, &st), 0);
  ids[1] = "y";
  s.index_type = "NoSuchIndex";
  CU_ASSERT_EQUAL(bundle_write(dir, &s, &e), REC_EINVAL);
  CU_ASSERT_NOT_EQUAL(stat(dir, &st), 0);
  char tmp[600];
  snprintf(tmp, sizeof tmp, "%s.tmp-%d", dir, (int)getpid());
  CU_ASSERT_NOT_EQUAL(stat(tmp, &st), 0); /* no half-written sibling left */
  s.index_type = "Flat";
  CU_ASSERT_EQUAL(bundle_write(dir, &s, &e), 0);
  CU_ASSERT_EQUAL(bundle_write(dir, &s, &e), REC_EINVAL); /* bundles are immutable */
  CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "already exists"));
}

void suite_bundle(void) {
  static const test_case cases[] = {
      {"round_trip", round_trip},
      {"grouped_inverted_file", grouped_inverted_file},
      {"refuses_a_changed_byte", refuses_a_changed_byte},
      {"refuses_a_missing_file", refuses_a_missing_file},
      {"refuses_mismatched_dimensions", refuses_mismatched_dimensions},
      {"refuses_wrong_item_count", refuses_wrong_item_count},
      {"refuses_unlisted_and_escaping_files", refuses_unlisted_and_escaping_files},
      {"refuses_unlisted_and_escaping_signal_tables", refuses_unlisted_and_escaping_signal_tables},
      {"refuses_unnormalised_embeddings", refuses_unnormalised_embeddings},
      {"write_is_all_or_nothing", write_is_all_or_nothing},
      {NULL, NULL}};
  test_add_suite("bundle", cases);
}
