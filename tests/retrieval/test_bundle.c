/* tests/retrieval/test_bundle.c - bundles written, loaded, and refused when
 * any file disagrees with the manifest. */
#include "common/fileio.h"
#include "retrieval/bundle.h"
#include "retrieval/bundle_shard.h"
#include "retrieval/bundle_write.h"
#include "retrieval/retrieve.h"
#include "tests/test.h"

#include <cjson/cJSON.h>
#include <inttypes.h>

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

/* Adds table 'name' (text) to the bundle in 'dir' under manifest key 'key',
 * listed with its size and checksum as a writer would. */
static void add_table(const char *dir, const char *key, const char *name, const char *text) {
  char path[600];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  test_write_file(path, text);
  uint64_t hash, bytes;
  CU_ASSERT_EQUAL_FATAL(rec_hash_file(path, &hash, &bytes, NULL), 0);
  snprintf(path, sizeof path, "%s/manifest.json", dir);
  char *json = rec_read_file(path, &(size_t){0}, NULL);
  cJSON *m = cJSON_Parse(json);
  free(json);
  CU_ASSERT_PTR_NOT_NULL_FATAL(m);
  char hex[17];
  snprintf(hex, sizeof hex, "%016" PRIx64, hash);
  cJSON_AddStringToObject(m, key, name);
  cJSON *f = cJSON_AddObjectToObject(cJSON_GetObjectItem(m, "files"), name);
  cJSON_AddNumberToObject(f, "bytes", (double)bytes);
  cJSON_AddStringToObject(f, "xxh3_64", hex);
  json = cJSON_Print(m);
  test_write_file(path, json);
  free(json);
  cJSON_Delete(m);
}

/* The manifest's key 'key' set to the JSON 'value'. */
static void set_manifest(const char *dir, const char *key, const char *value) {
  char path[600];
  snprintf(path, sizeof path, "%s/manifest.json", dir);
  char *json = rec_read_file(path, &(size_t){0}, NULL);
  cJSON *m = cJSON_Parse(json);
  free(json);
  CU_ASSERT_PTR_NOT_NULL_FATAL(m);
  cJSON_DeleteItemFromObjectCaseSensitive(m, key);
  cJSON_AddItemToObject(m, key, cJSON_Parse(value));
  json = cJSON_Print(m);
  test_write_file(path, json);
  free(json);
  cJSON_Delete(m);
}

/* EASE's raw score of 'id' among b's candidates for 'history' (NAN: none). */
static float ease_of(const bundle *b, const char *const *history, const uint32_t *pos, size_t n, const char *id) {
  uint32_t h[8], item;
  for (size_t i = 0; i < n; i++) CU_ASSERT_FATAL(catalog_find(b->catalog, history[i], strlen(history[i]), &h[i]));
  CU_ASSERT_FATAL(catalog_find(b->catalog, id, strlen(id), &item));
  retrieve_req r = {.want_ease = 10, .segment = -1, .history = h, .history_pos = pos, .n_history = n};
  arena a;
  arena_init(&a, 0);
  retrieve_result res;
  float got = NAN;
  CU_ASSERT_EQUAL_FATAL(retrieve_candidates(b, &r, &a, &res), 0);
  for (size_t i = 0; i < res.n; i++)
    if (res.cands[i].item == item && res.cands[i].sources & 1u << REC_SRC_EASE) got = res.cands[i].raw[REC_SRC_EASE];
  arena_destroy(&a);
  return got;
}

/* The manifest's "ease_recency" weighs a history's items by their place,
 * the most recent (first) most; a shard weighs a seed by its place in the
 * list as the ranking tier sent it; partitions keep the weights. */
static void ease_weighs_the_recent_history_more(void) {
  const char *dir = copy_bundle("b_recency");
  add_table(dir, "ease", "ease.tsv", "item_id\tneighbour_id\tweight\nP000000\tP000010\t1\nP000001\tP000011\t1\n");
  const char *hist[] = {"P000000", "P000001"};
  bundle *b = NULL;
  CU_ASSERT_EQUAL_FATAL(bundle_load(dir, &b, NULL), 0);
  CU_ASSERT_EQUAL(ease_of(b, hist, NULL, 2, "P000010"), 1.0f); /* without it, every item weighs 1 */
  CU_ASSERT_EQUAL(ease_of(b, hist, NULL, 2, "P000011"), 1.0f);
  bundle_unref(b);
  set_manifest(dir, "ease_recency", "{\"boost\": 10, \"scale\": 2}");
  CU_ASSERT_EQUAL_FATAL(bundle_load(dir, &b, NULL), 0);
  CU_ASSERT_EQUAL(ease_of(b, hist, NULL, 2, "P000010"), 11.0f);
  CU_ASSERT_EQUAL(ease_of(b, hist, NULL, 2, "P000011"), 1.0f + 10.0f * expf(-0.5f));
  CU_ASSERT_EQUAL(sig_ease_weight(&b->sig, 1), 1.0f + 10.0f * expf(-0.5f));
  uint32_t pos[] = {4, 0}; /* as a shard sees them: places in the list sent */
  CU_ASSERT_EQUAL(ease_of(b, hist, pos, 2, "P000010"), 1.0f + 10.0f * expf(-2.0f));
  CU_ASSERT_EQUAL(ease_of(b, hist, pos, 2, "P000011"), 11.0f);
  char out[600];
  size_t kept = 0;
  snprintf(out, sizeof out, "%s-0", dir);
  CU_ASSERT_EQUAL_FATAL(bundle_write_partition(b, 0, 2, out, &kept, NULL), 0);
  bundle *p = NULL;
  CU_ASSERT_EQUAL_FATAL(bundle_load(out, &p, NULL), 0);
  CU_ASSERT_EQUAL(p->sig.ease_boost, 10.0f);
  CU_ASSERT_EQUAL(p->sig.ease_scale, 2.0f);
  bundle_unref(p);
  bundle_unref(b);
  static const char *const BAD[] = {"{\"boost\": -1, \"scale\": 2}", "{\"boost\": 3}", "{\"boost\": 3, \"scale\": 0}",
                                    "{\"boost\": 1e9, \"scale\": 2}", "[3, 2]", "\"3\""};
  for (size_t i = 0; i < sizeof BAD / sizeof *BAD; i++) {
    set_manifest(dir, "ease_recency", BAD[i]);
    expect_refused(dir, REC_ECORRUPT, "\"ease_recency\" must be");
  }
}

/* The nearest k ids to q over several bundles' indexes, best first. */
static void nearest(bundle *const *parts, size_t n, const float *q, size_t k, const char **ids) {
  float best[10];
  size_t have = 0;
  for (size_t p = 0; p < n; p++) {
    int64_t got[10];
    float sc[10];
    size_t m;
    CU_ASSERT_EQUAL_FATAL(ann_search(parts[p]->ann, q, k, got, sc, &m), 0);
    for (size_t i = 0; i < m; i++) { /* insertion into the best k so far */
      size_t at = have < k ? have++ : k;
      if (at == k && sc[i] <= best[k - 1]) continue;
      if (at == k) at = k - 1;
      while (at > 0 && best[at - 1] < sc[i]) best[at] = best[at - 1], ids[at] = ids[at - 1], at--;
      best[at] = sc[i];
      ids[at] = parts[p]->catalog->ids[got[i]];
    }
  }
}

/* recctl shard: each partition holds only its items, knows every category,
 * and the shards' merged nearest items are the whole's. */
static void partitions_hold_only_their_items(void) {
  const char *src = test_synth_bundle("b_ivf", 3000, "IVF40,Flat");
  char dir[512], cmd[2200];
  snprintf(dir, sizeof dir, "%s", test_path("p_whole"));
  snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'-* && cp -r '%s' '%s'", dir, dir, src, dir);
  CU_ASSERT_EQUAL_FATAL(system(cmd), 0);
  /* Signals: item i's neighbours i+1 and i+2, a segment list, a profile. */
  size_t cap = 64 * 1024, len = 0;
  char *cf = malloc(cap);
  len += (size_t)snprintf(cf + len, cap - len, "item_id\tneighbour_id\tscore\n");
  for (int i = 0; i < 300; i++)
    len += (size_t)snprintf(cf + len, cap - len, "P%06d\tP%06d\t0.9\nP%06d\tP%06d\t0.5\n", i, i + 1, i, i + 2);
  add_table(dir, "item_cf", "item_cf.tsv", cf);
  char *ease = malloc(cap + 8); /* the same rows, as EASE weights */
  snprintf(ease, cap + 8, "item_id\tneighbour_id\tweight\n%s", cf + strlen("item_id\tneighbour_id\tscore\n"));
  add_table(dir, "ease", "ease.tsv", ease);
  free(ease);
  len = (size_t)snprintf(cf, cap, "list\titem_id\tscore\n");
  for (int i = 0; i < 100; i++) len += (size_t)snprintf(cf + len, cap - len, "segment:small\tP%06d\t%d\n", i * 7, 100 - i);
  add_table(dir, "popularity", "popularity.tsv", cf);
  add_table(dir, "profiles", "profiles.tsv", "user_id\tmean_price\tsegment\trecent_items\nU00001\t10\tsmall\tP000001\tP000002\n");
  free(cf);
  bundle *whole, *part[3];
  rec_error e = {0};
  CU_ASSERT_EQUAL_FATAL(bundle_load(dir, &whole, &e), 0);
  size_t total = 0;
  for (uint32_t s = 0; s < 3; s++) {
    char out[600];
    size_t kept = 0;
    snprintf(out, sizeof out, "%s-%u", dir, s);
    CU_ASSERT_EQUAL_FATAL(bundle_write_partition(whole, s, 3, out, &kept, &e), 0);
    if (bundle_load(out, &part[s], &e) != 0) fprintf(stderr, "\n  %s\n", e.msg);
    CU_ASSERT_PTR_NOT_NULL_FATAL(part[s]);
    bundle *p = part[s];
    CU_ASSERT_EQUAL(p->catalog->count, kept);
    CU_ASSERT(kept > 800 && kept < 1200);
    total += kept;
    CU_ASSERT_TRUE(p->partition);
    CU_ASSERT_EQUAL(p->shard, s);
    CU_ASSERT_EQUAL(p->shards, 3);
    CU_ASSERT_EQUAL(p->catalog->category_count, whole->catalog->category_count);
    for (size_t c = 0; c < whole->catalog->category_count; c++) {
      uint32_t k;
      CU_ASSERT_TRUE(catalog_find_category(p->catalog, whole->catalog->categories[c],
                                           strlen(whole->catalog->categories[c]), &k));
    }
    CU_ASSERT_EQUAL(p->sig.n_profiles, 0); /* the ranking tier's */
    CU_ASSERT_EQUAL(ann_nprobe(p->ann, NULL), ann_nprobe(whole->ann, NULL));
    /* Another shard's partition is not this process's. */
    CU_ASSERT_EQUAL(bundle_set_shard(p, (s + 1) % 3, 3, &e), REC_EMISMATCH);
    CU_ASSERT_EQUAL(bundle_set_shard(p, s, 3, &e), 0);
  }
  CU_ASSERT_EQUAL(total, 3000);
  for (size_t i = 0; i < 3000; i++) { /* each item in exactly the shard its id hashes to */
    const char *id = whole->catalog->ids[i];
    uint32_t row;
    for (uint32_t s = 0; s < 3; s++)
      CU_ASSERT_EQUAL(catalog_find(part[s]->catalog, id, strlen(id), &row), bundle_shard_of(id, 3) == s);
  }
  /* Merged, the partitions' lists find what the whole index finds. */
  for (uint32_t r = 0; r < 3000; r += 97) {
    const char *got[10], *want[10];
    nearest(part, 3, bundle_item_embedding(whole, r), 10, got);
    nearest(&whole, 1, bundle_item_embedding(whole, r), 10, want);
    for (int i = 0; i < 10; i++) CU_ASSERT_STRING_EQUAL(got[i], want[i]);
  }
  /* Item-CF: a seed's neighbours are on their own shards, whoever holds the
   * seed; popularity lists keep their order. */
  for (int i = 0; i < 300; i += 13) {
    char seed[16], nb[2][16];
    snprintf(seed, sizeof seed, "P%06d", i);
    snprintf(nb[0], sizeof nb[0], "P%06d", i + 1);
    snprintf(nb[1], sizeof nb[1], "P%06d", i + 2);
    for (uint32_t s = 0; s < 3; s++) {
      const signals *g = &part[s]->sig;
      uint32_t code, from = 0, to = 0;
      int here = (bundle_shard_of(nb[0], 3) == s) + (bundle_shard_of(nb[1], 3) == s);
      CU_ASSERT_EQUAL(sig_seed(&g->cf, part[s]->catalog, seed, strlen(seed), &code) &&
                          sig_range(&g->cf, code, &from, &to), here > 0 || bundle_shard_of(seed, 3) == s);
      CU_ASSERT_EQUAL(to - from, (uint32_t)here);
      for (uint32_t k = from; k < to; k++)
        CU_ASSERT_EQUAL(bundle_shard_of(part[s]->catalog->ids[g->cf.nbr[k]], 3), s);
      CU_ASSERT_EQUAL(sig_seed(&g->ease, part[s]->catalog, seed, strlen(seed), &code) &&
                          sig_range(&g->ease, code, &from, &to), here > 0 || bundle_shard_of(seed, 3) == s);
      CU_ASSERT_EQUAL(to - from, (uint32_t)here);
    }
  }
  for (uint32_t s = 0; s < 3; s++) {
    const sig_list *l = &part[s]->sig.segment_pop[0];
    for (size_t i = 1; i < l->n; i++) CU_ASSERT(l->scores[i] < l->scores[i - 1]);
    CU_ASSERT(l->n > 15 && l->n < 55);
  }
  /* A partition is not split again; a partition whose items hash elsewhere
   * is refused. */
  char again[600];
  snprintf(again, sizeof again, "%s-again", dir);
  CU_ASSERT_EQUAL(bundle_write_partition(part[0], 0, 2, again, NULL, &e), REC_EINVAL);
  for (uint32_t s = 0; s < 3; s++) bundle_unref(part[s]);
  bundle_unref(whole);
  snprintf(again, sizeof again, "%s-0", dir);
  edit_manifest(again, "\"shard\":\t0,", "\"shard\":\t1,");
  expect_refused(again, REC_ECORRUPT, "belongs to shard 0 of 3");
}

void suite_bundle(void) {
  static const test_case cases[] = {
      {"round_trip", round_trip},
      {"grouped_inverted_file", grouped_inverted_file},
      {"partitions_hold_only_their_items", partitions_hold_only_their_items},
      {"ease_weighs_the_recent_history_more", ease_weighs_the_recent_history_more},
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
