/* tests/tools/offline/test_dataset.c - CSV datasets: cleaning (returns, zero prices,
 * duplicates) and its report, the strength formulas on hand-worked values,
 * event order, RFC 4180 quoting, column schemas, time parsing, and every bad
 * input refused with file:line and the output left alone. */
#include "tests/test.h"
#include "tools/offline/dataset.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INTER "ds_inter.csv"
#define CATALOG "ds_catalog.csv"

static const char CAT_TEXT[] =
    "item_id,category,price,name\n"
    "A,fruit,2.0,Apple\n"
    "B,fruit,4.0,\"Banana, \"\"ripe\"\"\"\n"
    "C,dairy,1.0,Cheese\n"
    "D,dairy,3.0,Milk\n";

/* Writes both files (NULL catalog text: CAT_TEXT) and loads them. */
static int load(const char *inter, const char *cat, const ds_schema *s, dataset **out,
                rec_error *err) {
  char ip[512], cp[512];
  snprintf(ip, sizeof ip, "%s", test_path(INTER));
  snprintf(cp, sizeof cp, "%s", test_path(CATALOG));
  test_write_file(ip, inter);
  test_write_file(cp, cat ? cat : CAT_TEXT);
  return dataset_load(ip, cp, s ? s : &DS_SCHEMA_DEFAULT, out, err);
}

/* The event of (user, item, time), or NULL. */
static const ds_event *event_of(const dataset *d, const char *user, const char *item, int64_t t) {
  uint32_t u, i;
  if (!dataset_find_user(d, user, &u) || !dataset_find_item(d, item, &i)) return NULL;
  for (size_t e = d->user_start[u]; e < d->user_start[u + 1]; e++)
    if (d->events[e].item == i && d->events[e].time == t) return &d->events[e];
  return NULL;
}

/* ---- cleaning ---- */

static void cleaning_rules_and_report(void) {
  dataset *d;
  rec_error e = {0};
  int rc = load("user_id,item_id,timestamp,quantity,price\n"
                "u1,A,100,1,2.0\n"
                "u1,B,200,2,4.0\n"
                "u1,A,100,1,2.0\n"    /* exact duplicate of line 2: dropped */
                "u2,A,50,-1,2.0\n"    /* negative quantity: a return */
                "u2,B,60,1,-4.0\n"    /* negative price: a return */
                "u2,C,70,1,0\n"       /* zero price: a promotion, kept */
                "u2,D,80,3,3.0\n"
                "u2,D,80,2,3.0\n"     /* differs from the last in quantity: kept */
                "u1,C,300,1,\n"       /* no price given: kept, not a zero price */
                "u3,A,90,-2,2.0\n",   /* u3 only returned: no user at all */
                NULL, NULL, &d, &e);
  if (rc) fprintf(stderr, "\n  %s\n", e.msg);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  CU_ASSERT_EQUAL(d->report.rows, 10);
  CU_ASSERT_EQUAL(d->report.returns, 3);
  CU_ASSERT_EQUAL(d->report.duplicates, 1);
  CU_ASSERT_EQUAL(d->report.zero_price, 1);
  CU_ASSERT_EQUAL(d->report.kept, 6);
  CU_ASSERT_EQUAL(d->n_events, 6);
  CU_ASSERT_EQUAL(d->n_users, 2);
  CU_ASSERT_EQUAL(d->n_items, 4);
  CU_ASSERT_EQUAL(d->n_categories, 2);
  CU_ASSERT_TRUE(d->has_price);
  CU_ASSERT_FALSE(d->has_rating);
  uint32_t u;
  CU_ASSERT_FALSE(dataset_find_user(d, "u3", &u));
  CU_ASSERT_PTR_NULL(event_of(d, "u2", "A", 50));
  CU_ASSERT_PTR_NULL(event_of(d, "u2", "B", 60));
  const ds_event *z = event_of(d, "u2", "C", 70);
  CU_ASSERT_PTR_NOT_NULL_FATAL(z);
  CU_ASSERT_TRUE(z->priced);
  CU_ASSERT_EQUAL(z->price, 0.0f);
  CU_ASSERT(isnan(z->rating));
  const ds_event *unpriced = event_of(d, "u1", "C", 300);
  CU_ASSERT_PTR_NOT_NULL_FATAL(unpriced);
  CU_ASSERT_FALSE(unpriced->priced);
  dataset_free(d);
}

/* ---- strength ---- */

static void purchase_strength_worked_examples(void) {
  dataset *d;
  rec_error e = {0};
  /* u1 pays 2 and 4 (mean 3); u2 pays 0 and 3 (mean 1.5). Mean quantity:
   * A 1, B 2 (u1's 2 only), C 1, D (3 + 1) / 2 = 2.
   *   u1,A: s = 0.5*2/3 + 0.5*1/1 = 0.8333  log2(1.8333) = 0.874469
   *   u1,B: s = 0.5*4/3 + 0.5*2/2 = 1.1667  log2(2.1667) = 1.115477
   *   u2,C: s = 0.5*0/1.5 + 0.5*1/1 = 0.5   log2(1.5)    = 0.584963
   *   u2,D: s = 0.5*3/1.5 + 0.5*3/2 = 1.75  log2(2.75)   = 1.459432
   *   u3,D: one line, so its price is u3's mean; quantity 1 vs D's mean 2:
   *         s = 0.5*1 + 0.5*1/2 = 0.75      log2(1.75)   = 0.807355 */
  int rc = load("user_id,item_id,timestamp,quantity,price\n"
                "u1,A,100,1,2\n"
                "u1,B,200,2,4\n"
                "u2,C,70,1,0\n"
                "u2,D,80,3,3\n"
                "u3,D,90,1,7\n",
                NULL, NULL, &d, &e);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  CU_ASSERT_DOUBLE_EQUAL(event_of(d, "u1", "A", 100)->strength, 0.874469, 1e-5);
  CU_ASSERT_DOUBLE_EQUAL(event_of(d, "u1", "B", 200)->strength, 1.115477, 1e-5);
  CU_ASSERT_DOUBLE_EQUAL(event_of(d, "u2", "C", 70)->strength, 0.584963, 1e-5);
  CU_ASSERT_DOUBLE_EQUAL(event_of(d, "u2", "D", 80)->strength, 1.459432, 1e-5);
  CU_ASSERT_DOUBLE_EQUAL(event_of(d, "u3", "D", 90)->strength, 0.807355, 1e-5);
  dataset_free(d);

  /* The average line: price = the user's mean (2, 3, 4 -> 3), quantity =
   * the item's mean (1, 2, 3 -> 2) scores log2(1 + 0.5 + 0.5) = 1 exactly. */
  rc = load("user_id,item_id,timestamp,quantity,price\n"
            "u1,A,1,5,2\n"
            "u1,B,2,2,3\n"
            "u1,C,3,5,4\n"
            "u2,B,4,1,9\n"
            "u3,B,5,3,9\n",
            NULL, NULL, &d, &e);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  CU_ASSERT_EQUAL(event_of(d, "u1", "B", 2)->strength, 1.0f);
  dataset_free(d);
  CU_ASSERT_EQUAL(ds_strength_purchase(3.0f, 3.0f, 2.0f, 2.0f), 1.0f);
  CU_ASSERT_EQUAL(ds_strength_purchase(10.0f, 10.0f, 1.0f, 1.0f), 1.0f);
}

static void strength_is_clipped(void) {
  /* Nothing paid, nothing bought: log2(1) = 0, raised to the floor 0.1. */
  CU_ASSERT_EQUAL(ds_strength_purchase(0.0f, 10.0f, 0.0f, 2.0f), 0.1f);
  /* 1000x the user's mean: log2(1 + 500 + 0.5) = 8.97, capped at 5. */
  CU_ASSERT_EQUAL(ds_strength_purchase(1000.0f, 1.0f, 1.0f, 1.0f), 5.0f);
  CU_ASSERT_EQUAL(ds_strength_purchase(1.0f, 1.0f, 1000.0f, 1.0f), 5.0f);
  /* s = 31 is exactly log2(32) = 5: the cap is reached, not passed. */
  CU_ASSERT_DOUBLE_EQUAL(ds_strength_purchase(31.0f, 1.0f, 31.0f, 1.0f), 5.0, 1e-6);
  /* Just inside both bounds the formula is untouched: log2(1.25) = 0.321928. */
  CU_ASSERT_DOUBLE_EQUAL(ds_strength_purchase(0.25f, 1.0f, 0.25f, 1.0f), 0.321928, 1e-6);
  /* Means of 0 (no prices, no quantities) count the line as average. */
  CU_ASSERT_EQUAL(ds_strength_purchase(0.0f, 0.0f, 4.0f, 0.0f), 1.0f);

  /* In a loaded dataset: C's mean quantity is (4 + 0) / 2 = 2, u2 pays 0
   * with mean 3 (0 and 6): s = 0 + 0 -> floor 0.1. */
  dataset *d;
  rec_error e = {0};
  int rc = load("user_id,item_id,timestamp,quantity,price\n"
                "u1,C,1,4,1\n"
                "u2,C,2,0,0\n"
                "u2,A,3,1,6\n",
                NULL, NULL, &d, &e);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  CU_ASSERT_EQUAL(event_of(d, "u2", "C", 2)->strength, 0.1f);
  dataset_free(d);
}

static void rating_strength(void) {
  CU_ASSERT_EQUAL(ds_strength_rating(5.0f), 2.0f);
  CU_ASSERT_EQUAL(ds_strength_rating(2.5f), 1.0f);
  CU_ASSERT_EQUAL(ds_strength_rating(0.1f), 0.1f);  /* 0.04 -> floor */
  CU_ASSERT_EQUAL(ds_strength_rating(0.0f), 0.1f);
  CU_ASSERT_EQUAL(ds_strength_rating(100.0f), 5.0f); /* 40 -> cap */
  CU_ASSERT_DOUBLE_EQUAL(ds_strength_rating(3.0f), 1.2, 1e-6);

  /* A ratings file: no price column, so has_price is false and the rating
   * rule applies row by row; a row with an empty rating is a purchase. */
  dataset *d;
  rec_error e = {0};
  int rc = load("user_id,item_id,timestamp,rating\n"
                "u1,A,1,5\n"
                "u1,B,2,2.5\n"
                "u2,C,3,0.1\n"
                "u2,D,4,\n",
                NULL, NULL, &d, &e);
  if (rc) fprintf(stderr, "\n  %s\n", e.msg);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  CU_ASSERT_TRUE(d->has_rating);
  CU_ASSERT_FALSE(d->has_price);
  CU_ASSERT_EQUAL(event_of(d, "u1", "A", 1)->strength, 2.0f);
  CU_ASSERT_EQUAL(event_of(d, "u1", "B", 2)->strength, 1.0f);
  CU_ASSERT_EQUAL(event_of(d, "u2", "C", 3)->strength, 0.1f);
  CU_ASSERT_EQUAL(event_of(d, "u2", "C", 3)->rating, 0.1f);
  const ds_event *p = event_of(d, "u2", "D", 4);
  CU_ASSERT(isnan(p->rating));
  CU_ASSERT_FALSE(p->priced);
  CU_ASSERT_EQUAL(p->strength, 1.0f); /* no price, default quantity: average */
  CU_ASSERT_EQUAL(d->report.zero_price, 0); /* no price given is not a price of 0 */
  dataset_free(d);
}

/* ---- order ---- */

static void events_sorted_by_user_then_time(void) {
  dataset *d;
  rec_error e = {0};
  int rc = load("user_id,item_id,timestamp\n"
                "bob,C,500\n"
                "ann,B,300\n"
                "bob,A,100\n"
                "ann,A,2016-11-08\n"
                "ann,D,200\n"
                "cid,D,5\n"
                "bob,D,100\n",
                NULL, NULL, &d, &e);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  CU_ASSERT_EQUAL_FATAL(d->n_users, 3);
  CU_ASSERT_EQUAL(d->n_events, 7);
  CU_ASSERT_EQUAL(d->user_start[0], 0);
  CU_ASSERT_EQUAL(d->user_start[d->n_users], d->n_events);
  for (size_t u = 0; u < d->n_users; u++) {
    CU_ASSERT(d->user_start[u] <= d->user_start[u + 1]);
    for (size_t k = d->user_start[u]; k < d->user_start[u + 1]; k++) {
      CU_ASSERT_EQUAL(d->events[k].user, u);
      if (k > d->user_start[u]) CU_ASSERT(d->events[k - 1].time <= d->events[k].time);
    }
    uint32_t back;
    CU_ASSERT_TRUE(dataset_find_user(d, d->user_ids[u], &back));
    CU_ASSERT_EQUAL(back, u);
  }
  /* Users are numbered by first appearance; ann's events in time order. */
  CU_ASSERT_STRING_EQUAL(d->user_ids[0], "bob");
  CU_ASSERT_STRING_EQUAL(d->user_ids[1], "ann");
  CU_ASSERT_STRING_EQUAL(d->user_ids[2], "cid");
  const char *want[] = {"D", "B", "A"};
  for (size_t k = 0; k < 3; k++)
    CU_ASSERT_STRING_EQUAL(d->items[d->events[d->user_start[1] + k].item].id, want[k]);
  CU_ASSERT_EQUAL(d->events[d->user_start[1] + 2].time, 1478563200);
  /* bob's two events at time 100 are ordered by item: A (0) before D (3). */
  CU_ASSERT_STRING_EQUAL(d->items[d->events[0].item].id, "A");
  CU_ASSERT_STRING_EQUAL(d->items[d->events[1].item].id, "D");
  dataset_free(d);
}

/* ---- quoting and schemas ---- */

static void rfc4180_quoting(void) {
  dataset *d;
  rec_error e = {0};
  int rc = load("user_id,item_id,timestamp,quantity,price,event_type\n"
                "\"Smith, \"\"J\"\"\",\"B\",100,1,4,purchase\n"
                "u2,A,200,\"2\",\"3.5\",\"first\nsecond\"\n"
                "u9,C,300,1,1,\n",
                NULL, NULL, &d, &e);
  if (rc) fprintf(stderr, "\n  %s\n", e.msg);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  uint32_t i;
  CU_ASSERT_TRUE_FATAL(dataset_find_item(d, "B", &i));
  CU_ASSERT_STRING_EQUAL(d->items[i].name, "Banana, \"ripe\"");
  CU_ASSERT_STRING_EQUAL(d->items[i].category, "fruit");
  CU_ASSERT_EQUAL(d->items[i].price, 4.0f);
  CU_ASSERT_PTR_NOT_NULL(event_of(d, "Smith, \"J\"", "B", 100));
  const ds_event *ev = event_of(d, "u2", "A", 200);
  CU_ASSERT_PTR_NOT_NULL_FATAL(ev);
  CU_ASSERT_EQUAL(ev->quantity, 2.0f);
  CU_ASSERT_EQUAL(ev->price, 3.5f);
  CU_ASSERT_EQUAL(d->n_events, 3);
  CU_ASSERT_EQUAL(d->report.rows, 3);
  dataset_free(d);
  /* A field quoted across lines is one row: an error after it names the
   * physical line (5), not the row number (4). */
  rc = load("user_id,item_id,timestamp,quantity,price,event_type\n"
            "u1,\"A\",100,1,2,x\n"
            "u2,B,200,1,2,\"a\nb\"\n"
            "u3,B,soon,1,2,x\n",
            NULL, NULL, &d, &e);
  CU_ASSERT_EQUAL(rc, REC_ECORRUPT);
  if (!strstr(e.msg, INTER ":5:")) fprintf(stderr, "\n  got: %s\n", e.msg);
  CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, INTER ":5:"));
}

static const char OTHER_INTER[] =
    "customer;ignored,product,when,qty,amount\n"
    "c1,sku-1,2016-11-08,2,5\n"
    "c2,sku-2,1478563300,1,0\n";
static const char OTHER_CAT[] =
    "sku,dept,cost\n"
    "sku-1,toys,5\n"
    "sku-2,books,3\n";

static void check_other(const dataset *d) {
  CU_ASSERT_EQUAL(d->n_users, 2);
  CU_ASSERT_EQUAL(d->n_items, 2);
  CU_ASSERT_EQUAL(d->n_events, 2);
  CU_ASSERT_STRING_EQUAL(d->items[1].category, "books");
  CU_ASSERT_EQUAL(d->items[0].price, 5.0f);
  const ds_event *e = event_of(d, "c1", "sku-1", 1478563200);
  CU_ASSERT_PTR_NOT_NULL_FATAL(e);
  CU_ASSERT_EQUAL(e->quantity, 2.0f);
  CU_ASSERT_EQUAL(e->price, 5.0f);
  CU_ASSERT_EQUAL(d->report.zero_price, 1);
}

static void schema_set_maps_other_columns(void) {
  ds_schema s = DS_SCHEMA_DEFAULT;
  CU_ASSERT_EQUAL(ds_schema_set(&s, "user", "customer;ignored"), 0);
  CU_ASSERT_EQUAL(ds_schema_set(&s, "item", "product"), 0);
  CU_ASSERT_EQUAL(ds_schema_set(&s, "time", "when"), 0);
  CU_ASSERT_EQUAL(ds_schema_set(&s, "quantity", "qty"), 0);
  CU_ASSERT_EQUAL(ds_schema_set(&s, "price", "amount"), 0);
  CU_ASSERT_EQUAL(ds_schema_set(&s, "c_item", "sku"), 0);
  CU_ASSERT_EQUAL(ds_schema_set(&s, "c_category", "dept"), 0);
  CU_ASSERT_EQUAL(ds_schema_set(&s, "c_price", "cost"), 0);
  CU_ASSERT_EQUAL(ds_schema_set(&s, "colour", "red"), REC_EINVAL);
  CU_ASSERT_EQUAL(ds_schema_set(&s, "", "x"), REC_EINVAL);
  CU_ASSERT_STRING_EQUAL(s.user, "customer;ignored"); /* unchanged by the refusals */
  dataset *d;
  rec_error e = {0};
  int rc = load(OTHER_INTER, OTHER_CAT, &s, &d, &e);
  if (rc) fprintf(stderr, "\n  %s\n", e.msg);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  check_other(d);
  dataset_free(d);
  /* The default schema does not fit these files: the catalog (read first)
   * lacks its required column, which the message names. */
  rc = load(OTHER_INTER, OTHER_CAT, NULL, &d, &e);
  CU_ASSERT_EQUAL(rc, REC_ECORRUPT);
  CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, CATALOG ":1: missing required column 'item_id'"));
}

static void schema_load_from_file(void) {
  const char *path = test_path("ds_schema.txt");
  test_write_file(path,
                  "# columns of the shop export\n"
                  "user = customer;ignored\n"
                  "item=product\n"
                  "\ttime =  when \n"
                  "quantity = qty\r\n"
                  "price = amount\n"
                  "c_item = sku\n"
                  "c_category = dept\n"
                  "c_price = cost\n");
  ds_schema s = DS_SCHEMA_DEFAULT;
  char *storage = NULL;
  rec_error e = {0};
  int rc = ds_schema_load(path, &s, &storage, &e);
  if (rc) fprintf(stderr, "\n  %s\n", e.msg);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  CU_ASSERT_STRING_EQUAL(s.time, "when");
  CU_ASSERT_STRING_EQUAL(s.quantity, "qty");
  CU_ASSERT_STRING_EQUAL(s.rating, "rating"); /* not in the file: default kept */
  dataset *d;
  rc = load(OTHER_INTER, OTHER_CAT, &s, &d, &e);
  if (rc) fprintf(stderr, "\n  %s\n", e.msg);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  check_other(d);
  dataset_free(d);
  free(storage);
}

static void schema_file_errors(void) {
  const char *path = test_path("ds_schema_bad.txt");
  test_write_file(path, "# a comment\nuser = customer\ncolour = red\n");
  ds_schema s = DS_SCHEMA_DEFAULT;
  char *storage = NULL;
  rec_error e = {0};
  CU_ASSERT_EQUAL(ds_schema_load(path, &s, &storage, &e), REC_EINVAL);
  CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "ds_schema_bad.txt:3:"));
  CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "colour"));
  free(storage);
  storage = NULL;
  test_write_file(path, "user customer\n");
  CU_ASSERT_EQUAL(ds_schema_load(path, &s, &storage, &e), REC_EINVAL);
  CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "ds_schema_bad.txt:1:"));
  free(storage);
  storage = NULL;
  CU_ASSERT_EQUAL(ds_schema_load(test_path("ds_no_such_schema.txt"), &s, &storage, &e), REC_EINVAL);
  CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "ds_no_such_schema.txt"));
  free(storage);
}

/* A blank line is still a line: the error must name the physical line the
 * user sees in an editor (4 here). */
static void schema_file_error_counts_blank_lines(void) {
  const char *path = test_path("ds_schema_blank.txt");
  test_write_file(path, "user = customer\n\n\ncolour = red\n");
  ds_schema s = DS_SCHEMA_DEFAULT;
  char *storage = NULL;
  rec_error e = {0};
  CU_ASSERT_EQUAL(ds_schema_load(path, &s, &storage, &e), REC_EINVAL);
  if (!strstr(e.msg, "ds_schema_blank.txt:4:")) fprintf(stderr, "\n  got: %s\n", e.msg);
  CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "ds_schema_blank.txt:4:"));
  free(storage);
}

/* ---- time ---- */

static void parse_time_formats(void) {
  int64_t t = 0;
  CU_ASSERT_TRUE(ds_parse_time("1478563200", &t));
  CU_ASSERT_EQUAL(t, 1478563200);
  t = 0;
  CU_ASSERT_TRUE(ds_parse_time("2016-11-08", &t));
  CU_ASSERT_EQUAL(t, 1478563200);
  /* 1478563200 + 10 h 20 min 30 s = 1478600430. */
  CU_ASSERT_TRUE(ds_parse_time("2016-11-08T10:20:30Z", &t));
  CU_ASSERT_EQUAL(t, 1478600430);
  t = 0;
  CU_ASSERT_TRUE(ds_parse_time("2016-11-08T10:20:30", &t));
  CU_ASSERT_EQUAL(t, 1478600430);
  CU_ASSERT_TRUE(ds_parse_time("0", &t));
  CU_ASSERT_EQUAL(t, 0);
  CU_ASSERT_TRUE(ds_parse_time("2000-02-29", &t));
  CU_ASSERT_EQUAL(t, 951782400);
  const char *bad[] = {"", "garbage", "1478563200x", "12:00", "2016-11", "2016/11/08",
                       "2016-13-01", "2016-00-10", "2016-11-32", "2016-11-08T24:00:00",
                       "2016-11-08T10:61:00", "2016-11-08T10:20", "2016-11-08Z10",
                       "2016-11-08T10:20:30+02:00", "2016-11-08x"};
  for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
    t = 42;
    bool ok = ds_parse_time(bad[k], &t);
    if (ok) fprintf(stderr, "\n  accepted '%s'\n", bad[k]);
    CU_ASSERT_FALSE(ok);
    CU_ASSERT_EQUAL(t, 42);
  }
}

/* A day that does not exist is not a date: timegm would quietly roll
 * 2016-02-30 over to 2016-03-01 and misplace the event. */
static void parse_time_rejects_impossible_dates(void) {
  const char *bad[] = {"2016-02-30", "2015-02-29", "2016-04-31"};
  for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
    int64_t t = 42;
    bool ok = ds_parse_time(bad[k], &t);
    if (ok) fprintf(stderr, "\n  accepted '%s' as %lld\n", bad[k], (long long)t);
    CU_ASSERT_FALSE(ok);
  }
}

/* ---- bad input ---- */

typedef struct bad_case {
  const char *inter, *cat;   /* NULL cat: CAT_TEXT */
  int code;
  const char *want1, *want2; /* substrings of the message */
} bad_case;

#define H "user_id,item_id,timestamp,quantity,price\n"
static const bad_case BAD[] = {
    {H "u1,A,100,1,2\nu1,B,200,two,4\n", NULL, REC_ECORRUPT, INTER ":3:", "'two'"},
    {H "u1,A,100,1,2\nu1,Z,200,1,4\n", NULL, REC_ECORRUPT, INTER ":3:", "item 'Z' is not in the catalog"},
    {"user_id,timestamp,quantity,price\nu1,100,1,2\n", NULL, REC_ECORRUPT, INTER ":1:",
     "missing required column 'item_id'"},
    {H "u1,A,100,1,2\n", "item_id,price\nA,2\n", REC_ECORRUPT, CATALOG ":1:",
     "missing required column 'category'"},
    {"", NULL, REC_ECORRUPT, INTER, "empty"},
    {H, NULL, REC_ECORRUPT, INTER, "no rows"},
    {H "u1,A,100,1,2\nu1,\"B,200,1,4\nu2,A,300,1,2\n", NULL, REC_ECORRUPT, INTER ":", "unterminated"},
    {H "u1,A,100,1,2\nu1,\"B\"x,200,1,4\n", NULL, REC_ECORRUPT, INTER ":3:", ""},
    {H "u1,A,100,1,2\nu1,B,yesterday,1,4\n", NULL, REC_ECORRUPT, INTER ":3:", "'yesterday'"},
    {H "u1,A,100,1,2\n", "item_id,category\nA,x\nB,y\nA,z\n", REC_ECORRUPT, CATALOG ":4:",
     "duplicate item id 'A'"},
    {H "u1,A,100,1,2\nu1,B,200,1\n", NULL, REC_ECORRUPT, INTER ":3:", "4 fields, the header has 5"},
    {H "u1,A,100,1,2,9\n", NULL, REC_ECORRUPT, INTER ":2:", "6 fields"},
    {H "u1,A,100,1,2\n", "item_id,category,price\nA,x,1\nB,y\n", REC_ECORRUPT, CATALOG ":3:",
     "2 fields"},
    {H "u1,A,100,1,nan\n", NULL, REC_ECORRUPT, INTER ":2:", "'nan'"},
    {"user_id,item_id,timestamp,rating\nu1,A,1,4\nu1,B,2,-1\n", NULL, REC_ECORRUPT, INTER ":3:",
     "rating"},
    {H "u1,A,100,-1,2\nu2,B,100,1,-2\n", NULL, REC_ECORRUPT, INTER, "no usable interactions"},
    {H ",A,100,1,2\n", NULL, REC_ECORRUPT, INTER ":2:", "user id"},
    {H "u1,A,100,1,2\n", "item_id,category,price\nA,x,cheap\n", REC_ECORRUPT, CATALOG ":2:",
     "'cheap'"},
    {H "u1,A,100,1,2\n", "item_id,category,in_stock\nA,x,1\nB,x,maybe\n", REC_ECORRUPT,
     CATALOG ":3:", "'maybe'"},
    {H "u1,A,100,1,2\n", "item_id,category\nA,\n", REC_ECORRUPT, CATALOG ":2:", "category"},
};
#undef H

static void bad_input_names_file_and_line(void) {
  static int marker;
  for (size_t k = 0; k < sizeof BAD / sizeof *BAD; k++) {
    dataset *d = (dataset *)&marker;
    rec_error e = {0};
    int rc = load(BAD[k].inter, BAD[k].cat, NULL, &d, &e);
    bool ok = rc == BAD[k].code && e.code == rc && strstr(e.msg, BAD[k].want1) &&
              strstr(e.msg, BAD[k].want2) && d == (dataset *)&marker;
    if (!ok) fprintf(stderr, "\n  case %zu: rc %d, message '%s'\n", k, rc, e.msg);
    CU_ASSERT_TRUE(ok);
    if (d != (dataset *)&marker) dataset_free(d);
  }
  /* A file that is not there (beside a good catalog). */
  test_write_file(test_path(CATALOG), CAT_TEXT);
  dataset *d = (dataset *)&marker;
  rec_error e = {0};
  CU_ASSERT_EQUAL(dataset_load(test_path("ds_missing.csv"), test_path(CATALOG), &DS_SCHEMA_DEFAULT,
                               &d, &e), REC_EIO);
  CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "ds_missing.csv"));
  CU_ASSERT_PTR_EQUAL(d, &marker);
}

/* Windows line ends: the CR is not part of the last field, and line
 * numbers still count physical lines. */
static void crlf_line_endings(void) {
  dataset *d = NULL;
  rec_error e = {0};
  int rc = load("user_id,item_id,timestamp,price\r\nu1,A,1,2\r\nu1,B,2,4\r\n",
                "item_id,category,price\r\nA,x,2\r\nB,y,4\r\n", NULL, &d, &e);
  if (rc) fprintf(stderr, "\n  %s\n", e.msg);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  CU_ASSERT_EQUAL(d->n_events, 2);
  CU_ASSERT_STRING_EQUAL(d->items[1].category, "y");
  CU_ASSERT_EQUAL(d->events[1].price, 4.0f);
  dataset_free(d);
  d = NULL;
  rc = load("user_id,item_id,timestamp,price\r\nu1,A,1,2\r\nu1,B,2,four\r\n", NULL, NULL, &d, &e);
  CU_ASSERT_EQUAL(rc, REC_ECORRUPT);
  CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, INTER ":3:"));
  CU_ASSERT_PTR_NULL(d);
}

/* Excel's "CSV UTF-8" export starts the file with a byte-order mark. It is
 * not part of the first column's name: without skipping it the loader says
 * "missing required column 'user_id'" of a header that visibly has it. */
static void utf8_bom_is_not_part_of_the_header(void) {
  dataset *d = NULL;
  rec_error e = {0};
  int rc = load("\xEF\xBB\xBFuser_id,item_id,timestamp\nu1,A,1\n",
                "\xEF\xBB\xBFitem_id,category\nA,x\n", NULL, &d, &e);
  if (rc) fprintf(stderr, "\n  %s\n", e.msg);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  CU_ASSERT_EQUAL(d->n_events, 1);
  uint32_t i;
  CU_ASSERT_TRUE(dataset_find_item(d, "A", &i));
  dataset_free(d);
}

/* Spreadsheets on old Macs end lines with a lone CR, which libcsv reads as
 * row ends. The tables are sized by counting '\n' (count_lines), so such a
 * catalog of 4 items and 3 categories is read into tables with room for 1:
 * a heap overflow (ASan) or a false "duplicate item id". */
static void cr_line_endings(void) {
  dataset *d = NULL;
  rec_error e = {0};
  int rc = load("user_id,item_id,timestamp\ru1,A,1\ru1,B,2\ru2,C,3\ru3,D,4\r",
                "item_id,category\rA,x\rB,y\rC,z\rD,x\r", NULL, &d, &e);
  if (rc) fprintf(stderr, "\n  %s\n", e.msg);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  CU_ASSERT_EQUAL(d->n_items, 4);
  CU_ASSERT_EQUAL(d->n_categories, 3);
  CU_ASSERT_EQUAL(d->n_users, 3);
  CU_ASSERT_EQUAL(d->n_events, 4);
  dataset_free(d);
}

void suite_dataset(void) {
  static const test_case cases[] = {
      {"cleaning_rules_and_report", cleaning_rules_and_report},
      {"purchase_strength_worked_examples", purchase_strength_worked_examples},
      {"strength_is_clipped", strength_is_clipped},
      {"rating_strength", rating_strength},
      {"events_sorted_by_user_then_time", events_sorted_by_user_then_time},
      {"rfc4180_quoting", rfc4180_quoting},
      {"schema_set_maps_other_columns", schema_set_maps_other_columns},
      {"schema_load_from_file", schema_load_from_file},
      {"schema_file_errors", schema_file_errors},
      {"schema_file_error_counts_blank_lines", schema_file_error_counts_blank_lines},
      {"parse_time_formats", parse_time_formats},
      {"parse_time_rejects_impossible_dates", parse_time_rejects_impossible_dates},
      {"bad_input_names_file_and_line", bad_input_names_file_and_line},
      {"crlf_line_endings", crlf_line_endings},
      {"utf8_bom_is_not_part_of_the_header", utf8_bom_is_not_part_of_the_header},
      {"cr_line_endings", cr_line_endings},
      {NULL, NULL}};
  test_add_suite("dataset", cases);
}
