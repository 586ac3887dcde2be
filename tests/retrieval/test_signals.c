/* tests/retrieval/test_signals.c - a bundle's signal tables read by
 * signals_load: purchases grouped per profile and sorted by item, tables
 * with no rows (a shop with no repeat buyers writes those), and a table
 * holding a NUL byte refused rather than read up to it. */
#include "retrieval/signals.h"
#include "tests/test.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static const char *const KEYS[5] = {"item_cf", "popularity", "profiles", "purchases", "repurchase"};
static const char *const HEADERS[5] = {
    "item_id\tneighbour_id\tscore\n", "list\titem_id\tscore\n",
    "user_id\tmean_price\tsegment\trecent_items\n", "user_id\titem_id\tlast_time\tcount\n",
    "item_id\tcycle_days\tsamples\n"};

typedef struct fixture {
  char dir[512];
  catalog *cat;
  cJSON *manifest;
} fixture;

/* A directory with a three-item catalog and, for each table, 'rows[i]'
 * after its header (NULL: the header alone), named and listed in the
 * manifest as a bundle's would be. */
static void open_tables(fixture *fx, const char *name, const char *const rows[5]) {
  snprintf(fx->dir, sizeof fx->dir, "%s", test_path(name));
  mkdir(fx->dir, 0700);
  char path[700], text[1024];
  snprintf(path, sizeof path, "%s/items.tsv", fx->dir);
  test_write_file(path, "item_id\tcategory\tprice\tin_stock\tpopularity\n"
                        "A\tfruit\t2\t1\t5\nB\tfruit\t4\t1\t3\nC\tdairy\t1\t1\t1\n");
  rec_error e = {0};
  CU_ASSERT_EQUAL_FATAL(catalog_load(path, &fx->cat, &e), 0);
  fx->manifest = cJSON_CreateObject();
  cJSON *files = cJSON_AddObjectToObject(fx->manifest, "files");
  for (int i = 0; i < 5; i++) {
    char file[32];
    snprintf(file, sizeof file, "%s.tsv", KEYS[i]);
    snprintf(path, sizeof path, "%s/%s", fx->dir, file);
    snprintf(text, sizeof text, "%s%s", HEADERS[i], rows && rows[i] ? rows[i] : "");
    test_write_file(path, text);
    cJSON_AddStringToObject(fx->manifest, KEYS[i], file);
    cJSON_AddObjectToObject(files, file); /* signals_load checks listing; bundle_load the checksum */
  }
}

static void close_tables(fixture *fx) {
  catalog_free(fx->cat);
  cJSON_Delete(fx->manifest);
}

static void purchases_are_grouped_per_profile(void) {
  static const char *const rows[5] = {
      NULL, NULL, "u1\t3.0\tlow\tB\tA\nu2\t1.5\tsmall\tC\n",
      "u2\tC\t1700000000\t1\nu1\tB\t1690000000\t2\nu1\tA\t1695000000\t1\n", NULL};
  fixture fx;
  open_tables(&fx, "sig_purchases", rows);
  signals s;
  rec_error e = {0};
  CU_ASSERT_EQUAL_FATAL(signals_load(fx.dir, fx.manifest, fx.cat, &s, &e), 0);
  CU_ASSERT_EQUAL_FATAL(s.n_profiles, 2);
  /* u1 (profile 0) bought A then B, sorted by item row; u2 bought C. */
  CU_ASSERT_EQUAL(s.purch_off[0], 0);
  CU_ASSERT_EQUAL(s.purch_off[1], 2);
  CU_ASSERT_EQUAL(s.purch_off[2], 3);
  CU_ASSERT_EQUAL(s.purch[0].item, 0);
  CU_ASSERT_EQUAL(s.purch[0].last_time, 1695000000);
  CU_ASSERT_EQUAL(s.purch[1].item, 1);
  CU_ASSERT_EQUAL(s.purch[1].count, 2);
  CU_ASSERT_EQUAL(s.purch[2].item, 2);
  signals_destroy(&s);
  close_tables(&fx);
}

/* Every table with its header and no rows: a valid, empty set of signals
 * (an empty purchases table once handed qsort a NULL array, which UBSan
 * stopped; found by tests/fuzz/fuzz_bundle). */
static void tables_without_rows_load(void) {
  fixture fx;
  open_tables(&fx, "sig_empty", NULL);
  signals s;
  rec_error e = {0};
  CU_ASSERT_EQUAL_FATAL(signals_load(fx.dir, fx.manifest, fx.cat, &s, &e), 0);
  CU_ASSERT_EQUAL(s.n_profiles, 0);
  CU_ASSERT_EQUAL(s.cf.max, 0);
  CU_ASSERT_EQUAL(s.segment_pop[0].n, 0);
  CU_ASSERT_PTR_NOT_NULL(s.purch_off);
  CU_ASSERT_EQUAL(s.purch_off[0], 0);
  signals_destroy(&s);
  close_tables(&fx);
}

/* Rows are read as C strings, so a NUL byte would end the table there and
 * drop every row after it without a word. */
static void a_nul_byte_is_refused(void) {
  fixture fx;
  open_tables(&fx, "sig_nul", NULL);
  char path[700];
  snprintf(path, sizeof path, "%s/repurchase.tsv", fx.dir);
  static const char text[] = "item_id\tcycle_days\tsamples\nA\t30\t4\n\0B\t7\t2\n";
  FILE *fp = fopen(path, "wb");
  CU_ASSERT_PTR_NOT_NULL_FATAL(fp);
  fwrite(text, 1, sizeof text - 1, fp);
  fclose(fp);
  signals s;
  rec_error e = {0};
  CU_ASSERT_EQUAL(signals_load(fx.dir, fx.manifest, fx.cat, &s, &e), REC_ECORRUPT);
  CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "repurchase.tsv: contains a NUL byte"));
  close_tables(&fx);
}

void suite_signals(void) {
  static const test_case cases[] = {
      {"purchases are grouped per profile", purchases_are_grouped_per_profile},
      {"tables without rows load", tables_without_rows_load},
      {"a NUL byte is refused", a_nul_byte_is_refused},
      {NULL, NULL}};
  test_add_suite("signals", cases);
}
