/* tests/tools/offline/test_pipeline.c - `recctl build` end to end on small CSVs: the
 * bundle it writes loads, has the expected shape and manifest, is
 * reproducible (same options, same content-hash version), works with ALS as
 * well, and a failed build leaves nothing behind; plus the holdout summary
 * `recctl build` records. */
#include "common/fileio.h"
#include "retrieval/bundle.h"
#include "tests/test.h"
#include "tools/offline/eval.h"
#include "tools/offline/pipeline.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { USERS = 40, ITEMS = 60, GROUPS = 3, PER_GROUP = ITEMS / GROUPS, OWN = 10 };

static char inter_path[512], catalog_path[512];
static size_t fixture_rows;

static uint64_t mix(uint64_t z) { /* splitmix64 finaliser, for test patterns */
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* 40 users in 3 taste groups, each buying 10 items of its group's 20 (some
 * twice, for repurchase cycles), at 1 to 3 units and the catalog price,
 * over a month from 2016-11-01. Written once per process. */
static void fixture(void) {
  if (inter_path[0]) return;
  snprintf(inter_path, sizeof inter_path, "%s", test_path("pl_inter.csv"));
  snprintf(catalog_path, sizeof catalog_path, "%s", test_path("pl_catalog.csv"));
  FILE *fp = fopen(catalog_path, "w");
  CU_ASSERT_PTR_NOT_NULL_FATAL(fp);
  fputs("item_id,category,price,in_stock,name\n", fp);
  for (size_t i = 0; i < ITEMS; i++)
    fprintf(fp, "P%03zu,group%zu,%zu.50,%d,\"Product %zu, size %zu\"\n", i, i / PER_GROUP,
            1 + i % 7, i % 11 != 0, i, i % 3);
  fclose(fp);
  fp = fopen(inter_path, "w");
  CU_ASSERT_PTR_NOT_NULL_FATAL(fp);
  fputs("user_id,item_id,timestamp,quantity,price\n", fp);
  fixture_rows = 0;
  for (size_t u = 0; u < USERS; u++) {
    size_t g = u % GROUPS;
    for (size_t k = 0; k < OWN; k++) {
      size_t i = g * PER_GROUP + mix(u * 100 + k) % PER_GROUP;
      int64_t t = 1477958400 + (int64_t)(u * 3600 + k * 86400);
      fprintf(fp, "C%03zu,P%03zu,%lld,%zu,%zu.50\n", u, i, (long long)t, 1 + (u + k) % 3, 1 + i % 7);
      fixture_rows++;
      if (k % 4 == 0) {
        fprintf(fp, "C%03zu,P%03zu,%lld,1,%zu.50\n", u, i, (long long)(t + 7 * 86400), 1 + i % 7);
        fixture_rows++;
      }
    }
  }
  fclose(fp);
}

static void small_opts(build_opts *o, const char *out) {
  fixture();
  build_opts_default(o);
  o->interactions = inter_path;
  o->catalog = catalog_path;
  o->out = out;
  o->tt.dim = 16;
  o->tt.id_dim = 16;
  o->tt.hidden = 32;
  o->tt.epochs = 3;
  o->tt.batch = 64;
  o->als.factors = 8;
  o->als.iterations = 3;
  o->itemcf_neighbours = 10;
  o->recent_max = 20;
  o->threads = 1;
  o->evaluate = false;
  o->tune = false;
  o->quiet = true;
}

static int build(const build_opts *o, rec_error *e) {
  int rc = pipeline_build(o, e);
  if (rc) fprintf(stderr, "\n  build: %s\n", e->msg);
  return rc;
}

static cJSON *read_manifest(const char *dir) {
  char path[600];
  snprintf(path, sizeof path, "%s/%s", dir, BUNDLE_MANIFEST);
  size_t len;
  char *text = rec_read_file(path, &len, NULL);
  CU_ASSERT_PTR_NOT_NULL_FATAL(text);
  cJSON *m = cJSON_Parse(text);
  free(text);
  CU_ASSERT_PTR_NOT_NULL_FATAL(m);
  return m;
}

static const char *str_of(const cJSON *o, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  return cJSON_IsString(v) ? v->valuestring : "";
}

static double num_of(const cJSON *o, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

static void builds_a_loadable_bundle(void) {
  build_opts o;
  char out[512];
  snprintf(out, sizeof out, "%s", test_path("pl_bundle_tt"));
  small_opts(&o, out);
  rec_error e = {0};
  CU_ASSERT_EQUAL_FATAL(build(&o, &e), 0);
  bundle *b = NULL;
  int rc = bundle_load(out, &b, &e);
  if (rc) fprintf(stderr, "\n  load: %s\n", e.msg);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  CU_ASSERT_EQUAL(b->catalog->count, ITEMS);
  CU_ASSERT_EQUAL(b->user_count, USERS);
  CU_ASSERT_EQUAL(b->dim, 16);
  CU_ASSERT_EQUAL(b->feature_dim, 16 + 1 + SEG_COUNT);
  CU_ASSERT_STRING_EQUAL(b->index_type, "Flat");
  CU_ASSERT_EQUAL(strncmp(b->version, "twotower-", 9), 0);
  CU_ASSERT_EQUAL(strlen(b->version), 9 + 16);
  uint32_t row;
  CU_ASSERT_TRUE(bundle_find_user(b, "C039", 4, &row));
  CU_ASSERT_STRING_EQUAL(b->user_ids[row], "C039");
  CU_ASSERT_FALSE(bundle_find_user(b, "C040", 4, &row));
  CU_ASSERT_TRUE(catalog_find(b->catalog, "P059", 4, &row));
  CU_ASSERT_EQUAL(row, 59);
  /* The item tower rides along: an item the model never saw, of any
   * category, gets a unit embedding that depends on its price. */
  CU_ASSERT_PTR_NOT_NULL_FATAL(b->item_tower);
  for (uint32_t k = 0; k < b->catalog->category_count; k++) {
    float cheap[16], dear[16];
    CU_ASSERT_EQUAL_FATAL(bundle_embed_item(b, k, 0.0f, cheap), 0);
    CU_ASSERT_EQUAL_FATAL(bundle_embed_item(b, k, 1e6f, dear), 0);
    double norm = 0, diff = 0;
    for (int d = 0; d < 16; d++) norm += cheap[d] * cheap[d], diff += fabs(cheap[d] - dear[d]);
    CU_ASSERT(fabs(norm - 1) < 1e-4);
    CU_ASSERT(diff > 1e-6);
  }
  float none[16];
  CU_ASSERT_EQUAL(bundle_embed_item(b, (uint32_t)b->catalog->category_count, 1, none), REC_ENOTFOUND);
  bundle_unref(b);

  cJSON *m = read_manifest(out);
  const char *extras[][2] = {{"item_cf", "item_cf.tsv"}, {"popularity", "popularity.tsv"},
                             {"profiles", "profiles.tsv"}, {"purchases", "purchases.tsv"},
                             {"repurchase", "repurchase.tsv"}};
  const cJSON *files = cJSON_GetObjectItemCaseSensitive(m, "files");
  for (size_t k = 0; k < 5; k++) {
    CU_ASSERT_STRING_EQUAL(str_of(m, extras[k][0]), extras[k][1]);
    CU_ASSERT_PTR_NOT_NULL(cJSON_GetObjectItemCaseSensitive(files, extras[k][1]));
  }
  const cJSON *t = cJSON_GetObjectItemCaseSensitive(m, "training");
  CU_ASSERT_PTR_NOT_NULL_FATAL(t);
  CU_ASSERT_STRING_EQUAL(str_of(t, "model"), "twotower");
  CU_ASSERT_EQUAL(num_of(t, "dim"), 16);
  CU_ASSERT_EQUAL(num_of(t, "epochs"), 3);
  CU_ASSERT_EQUAL(num_of(t, "seed"), 42);
  CU_ASSERT_EQUAL(num_of(t, "users"), USERS);
  CU_ASSERT_EQUAL(num_of(t, "items"), ITEMS);
  CU_ASSERT_EQUAL(num_of(t, "itemcf_neighbours"), 10);
  CU_ASSERT(num_of(t, "final_loss") > 0);
  const cJSON *data = cJSON_GetObjectItemCaseSensitive(t, "data");
  CU_ASSERT_EQUAL(num_of(data, "rows"), (double)fixture_rows);
  CU_ASSERT(num_of(data, "kept") > 0 && num_of(data, "kept") <= (double)fixture_rows);
  CU_ASSERT_EQUAL(num_of(data, "kept") + num_of(data, "dropped_duplicates") +
                      num_of(data, "dropped_returns"), (double)fixture_rows);
  /* evaluate = false: no holdout metrics. */
  CU_ASSERT_PTR_NULL(cJSON_GetObjectItemCaseSensitive(m, "metrics"));
  cJSON_Delete(m);

  /* A derived file, spot-checked: the repurchase cycle of 7 days. */
  char path[600];
  snprintf(path, sizeof path, "%s/repurchase.tsv", out);
  size_t len;
  char *text = rec_read_file(path, &len, NULL);
  CU_ASSERT_PTR_NOT_NULL_FATAL(text);
  CU_ASSERT_EQUAL(strncmp(text, "item_id\tcycle_days\tsamples\n", 27), 0);
  CU_ASSERT_PTR_NOT_NULL(strstr(text, "\t7.000\t"));
  free(text);
}

static void same_options_same_version(void) {
  build_opts o;
  char out1[512], out2[512];
  snprintf(out1, sizeof out1, "%s", test_path("pl_same_1"));
  snprintf(out2, sizeof out2, "%s", test_path("pl_same_2"));
  small_opts(&o, out1);
  rec_error e = {0};
  CU_ASSERT_EQUAL_FATAL(build(&o, &e), 0);
  o.out = out2;
  CU_ASSERT_EQUAL_FATAL(build(&o, &e), 0);
  cJSON *m1 = read_manifest(out1), *m2 = read_manifest(out2);
  CU_ASSERT_STRING_EQUAL(str_of(m1, "version"), str_of(m2, "version"));
  CU_ASSERT(strlen(str_of(m1, "version")) > 9);
  cJSON_Delete(m2);
  /* Another seed trains other weights: another version. */
  char out3[512];
  snprintf(out3, sizeof out3, "%s", test_path("pl_same_3"));
  o.out = out3;
  o.tt.seed = 43;
  CU_ASSERT_EQUAL_FATAL(build(&o, &e), 0);
  cJSON *m3 = read_manifest(out3);
  CU_ASSERT_STRING_NOT_EQUAL(str_of(m1, "version"), str_of(m3, "version"));
  cJSON_Delete(m3);
  cJSON_Delete(m1);
}

static void als_model_builds_too(void) {
  build_opts o;
  char out[512];
  snprintf(out, sizeof out, "%s", test_path("pl_bundle_als"));
  small_opts(&o, out);
  o.model = "als";
  o.evaluate = true; /* and the manifest records the holdout */
  rec_error e = {0};
  CU_ASSERT_EQUAL_FATAL(build(&o, &e), 0);
  bundle *b = NULL;
  int rc = bundle_load(out, &b, &e);
  if (rc) fprintf(stderr, "\n  load: %s\n", e.msg);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  CU_ASSERT_EQUAL(b->catalog->count, ITEMS);
  CU_ASSERT_EQUAL(b->user_count, USERS);
  CU_ASSERT_EQUAL(b->dim, 8 + 1);      /* factors + the cosine-mapping dimension */
  CU_ASSERT_EQUAL(b->feature_dim, 8);
  CU_ASSERT_EQUAL(strncmp(b->version, "als-", 4), 0);
  float v[9];
  CU_ASSERT_PTR_NULL(b->item_tower); /* ALS has no item tower: new items take their category's centroid */
  CU_ASSERT_EQUAL(bundle_embed_item(b, 0, 1, v), REC_ENOTFOUND);
  bundle_unref(b);
  cJSON *m = read_manifest(out);
  const cJSON *t = cJSON_GetObjectItemCaseSensitive(m, "training");
  CU_ASSERT_STRING_EQUAL(str_of(t, "model"), "als");
  CU_ASSERT_EQUAL(num_of(t, "factors"), 8);
  const cJSON *metrics = cJSON_GetObjectItemCaseSensitive(m, "metrics");
  CU_ASSERT_PTR_NOT_NULL_FATAL(metrics);
  CU_ASSERT(num_of(metrics, "test_users") > 0);
  const cJSON *als = cJSON_GetObjectItemCaseSensitive(metrics, "als");
  CU_ASSERT_PTR_NOT_NULL(cJSON_GetObjectItemCaseSensitive(als, "recall@50"));
  CU_ASSERT_PTR_NOT_NULL(cJSON_GetObjectItemCaseSensitive(metrics, "popularity"));
  cJSON_Delete(m);
}

/* Entries of the test directory named '<base>.tmp-...'. */
static int tmp_siblings(const char *base) {
  DIR *dir = opendir(test_tmpdir());
  CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
  char prefix[300];
  snprintf(prefix, sizeof prefix, "%s.tmp-", base);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(dir)) != NULL) n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
  closedir(dir);
  return n;
}

static void bad_csv_leaves_nothing(void) {
  fixture();
  char bad[512], out[512];
  snprintf(bad, sizeof bad, "%s", test_path("pl_bad_inter.csv"));
  snprintf(out, sizeof out, "%s", test_path("pl_bundle_bad"));
  test_write_file(bad, "user_id,item_id,timestamp,quantity,price\n"
                       "C000,P000,1477958400,1,1.50\n"
                       "C000,P001,1477958500,1,2.50\n"
                       "C001,P002,1477958600,1,3.50\n"
                       "C001,P003,1477958700,lots,4.50\n");
  build_opts o;
  small_opts(&o, out);
  o.interactions = bad;
  rec_error e = {0};
  CU_ASSERT_EQUAL(pipeline_build(&o, &e), REC_ECORRUPT);
  CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "pl_bad_inter.csv:5:"));
  CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "'lots'"));
  CU_ASSERT_EQUAL(access(out, F_OK), -1);
  CU_ASSERT_EQUAL(tmp_siblings("pl_bundle_bad"), 0);

  /* An unknown model fails after the data loaded: still nothing written. */
  small_opts(&o, out);
  o.model = "xgboost";
  CU_ASSERT_EQUAL(pipeline_build(&o, &e), REC_EINVAL);
  CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "xgboost"));
  CU_ASSERT_EQUAL(access(out, F_OK), -1);
  CU_ASSERT_EQUAL(tmp_siblings("pl_bundle_bad"), 0);

  /* Bad training options: refused, nothing written. */
  small_opts(&o, out);
  o.tt.temperature = 0;
  CU_ASSERT_EQUAL(pipeline_build(&o, &e), REC_EINVAL);
  CU_ASSERT_EQUAL(access(out, F_OK), -1);
  CU_ASSERT_EQUAL(tmp_siblings("pl_bundle_bad"), 0);
}

static void existing_output_is_refused(void) {
  char out[512];
  snprintf(out, sizeof out, "%s", test_path("pl_exists"));
  CU_ASSERT_EQUAL_FATAL(mkdir(out, 0755), 0);
  char keep[600];
  snprintf(keep, sizeof keep, "%s/keep.txt", out);
  test_write_file(keep, "mine\n");
  build_opts o;
  small_opts(&o, out);
  rec_error e = {0};
  CU_ASSERT_EQUAL(pipeline_build(&o, &e), REC_EINVAL);
  CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "already exists"));
  char manifest[600];
  snprintf(manifest, sizeof manifest, "%s/%s", out, BUNDLE_MANIFEST);
  CU_ASSERT_EQUAL(access(manifest, F_OK), -1);
  CU_ASSERT_EQUAL(access(keep, F_OK), 0);
  CU_ASSERT_EQUAL(tmp_siblings("pl_exists"), 0);
  /* Missing inputs are named. */
  char never[512];
  snprintf(never, sizeof never, "%s", test_path("pl_never"));
  small_opts(&o, never);
  o.catalog = NULL;
  CU_ASSERT_EQUAL(pipeline_build(&o, &e), REC_EINVAL);
  CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "--catalog"));
}

/* Tuning picks from its grids on a validation split, records every trial
 * and the choice, and never touches what the user fixed. */
static void tuning_chooses_and_records(void) {
  const char *out = test_path("pl_tuned");
  char cmd[700];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", out);
  CU_ASSERT_EQUAL_FATAL(system(cmd), 0);
  build_opts o;
  small_opts(&o, out);
  o.tune = true;
  o.tt.temperature = 0.3f;
  o.fixed = TUNE_TEMPERATURE;
  rec_error e = {0};
  int rc = pipeline_build(&o, &e);
  if (rc) fprintf(stderr, "\n  %s\n", e.msg);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  cJSON *m = read_manifest(out);
  const cJSON *t = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(m, "training"), "tuning");
  CU_ASSERT_PTR_NOT_NULL_FATAL(t);
  const cJSON *trials = cJSON_GetObjectItemCaseSensitive(t, "trials");
  const cJSON *c = cJSON_GetObjectItemCaseSensitive(t, "chosen");
  CU_ASSERT(cJSON_GetArraySize(trials) >= 5); /* four EASE lambdas, the two-tower's epochs */
  double lambda = num_of(c, "ease_lambda");
  CU_ASSERT(lambda == 100 || lambda == 300 || lambda == 1000 || lambda == 3000);
  CU_ASSERT_DOUBLE_EQUAL(num_of(c, "twotower_temperature"), 0.3, 1e-6); /* fixed by the user */
  CU_ASSERT(num_of(c, "twotower_epochs") == 3 || num_of(c, "twotower_epochs") == 6);
  /* The bundle was trained with the choice. */
  const cJSON *tr = cJSON_GetObjectItemCaseSensitive(m, "training");
  CU_ASSERT_DOUBLE_EQUAL(num_of(tr, "epochs"), num_of(c, "twotower_epochs"), 1e-9);
  CU_ASSERT_DOUBLE_EQUAL(num_of(cJSON_GetObjectItemCaseSensitive(tr, "ease"), "lambda"), lambda, 1e-9);
  for (const cJSON *x = trials ? trials->child : NULL; x; x = x->next)
    CU_ASSERT(strcmp(str_of(x, "model"), "als") != 0); /* only the model built, and EASE */
  cJSON_Delete(m);
  /* Out of time before the first trial: nothing tried, the values as given. */
  CU_ASSERT_EQUAL_FATAL(system(cmd), 0);
  small_opts(&o, out);
  o.tune = true;
  o.tune_seconds = 1e-9;
  rc = pipeline_build(&o, &e);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  m = read_manifest(out);
  t = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(m, "training"), "tuning");
  CU_ASSERT_EQUAL(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(t, "trials")), 0);
  CU_ASSERT_PTR_NOT_NULL(cJSON_GetObjectItemCaseSensitive(t, "out_of_time_after_s"));
  c = cJSON_GetObjectItemCaseSensitive(t, "chosen");
  CU_ASSERT_DOUBLE_EQUAL(num_of(c, "ease_lambda"), o.ease_lambda, 1e-9);
  CU_ASSERT_DOUBLE_EQUAL(num_of(c, "twotower_epochs"), o.tt.epochs, 1e-9);
  cJSON_Delete(m);
}

static void holdout_summary_reports_recall(void) {
  build_opts o;
  small_opts(&o, NULL);
  dataset *d = NULL;
  rec_error e = {0};
  CU_ASSERT_EQUAL_FATAL(dataset_load(o.interactions, o.catalog, &o.schema, &d, &e), 0);
  train_threads(1);
  char *json = NULL;
  int rc = eval_holdout_summary(d, &o, &json, &e);
  if (rc) fprintf(stderr, "\n  %s\n", e.msg);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  CU_ASSERT_PTR_NOT_NULL_FATAL(json);
  CU_ASSERT_PTR_NOT_NULL(strstr(json, "\"recall@50\""));
  cJSON *j = cJSON_Parse(json);
  const cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "metrics");
  CU_ASSERT_PTR_NOT_NULL_FATAL(m);
  /* Users whose held-out 20% only repeats training items have nothing to
   * find; the rest are test users. */
  CU_ASSERT(num_of(m, "test_users") >= USERS / 2 && num_of(m, "test_users") <= USERS);
  const char *models[] = {"two-tower", "popularity"};
  for (size_t k = 0; k < 2; k++) {
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(m, models[k]),
                                                      "recall@50");
    double mean = num_of(r, "mean");
    CU_ASSERT(mean >= 0 && mean <= 1);
    CU_ASSERT(num_of(r, "lo") <= mean && mean <= num_of(r, "hi"));
  }
  cJSON_Delete(j);
  free(json);
  dataset_free(d);
}

void suite_pipeline(void) {
  static const test_case cases[] = {
      {"builds_a_loadable_bundle", builds_a_loadable_bundle},
      {"same_options_same_version", same_options_same_version},
      {"als_model_builds_too", als_model_builds_too},
      {"bad_csv_leaves_nothing", bad_csv_leaves_nothing},
      {"existing_output_is_refused", existing_output_is_refused},
      {"holdout_summary_reports_recall", holdout_summary_reports_recall},
      {"tuning_chooses_and_records", tuning_chooses_and_records},
      {NULL, NULL}};
  test_add_suite("pipeline", cases);
}
