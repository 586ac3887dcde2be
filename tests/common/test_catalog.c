/* tests/common/test_catalog.c - items.tsv: what loads, and file:line errors. */
#include "common/catalog.h"
#include "tests/test.h"

#include <string.h>

#define HDR "item_id\tcategory\tprice\tin_stock\tpopularity\n"

static void loads_columns_and_popularity_order(void) {
  const char *p = test_path("items.tsv");
  test_write_file(p, HDR "a\tbooks\t9.5\t1\t3\nb\ttoys\t0\t0\t10\nc\tbooks\t2\t1\t3\n");
  catalog *c;
  rec_error e = {0};
  CU_ASSERT_EQUAL_FATAL(catalog_load(p, &c, &e), 0);
  CU_ASSERT_EQUAL(c->count, 3);
  CU_ASSERT_EQUAL(c->category_count, 2);
  uint32_t row;
  CU_ASSERT_TRUE(catalog_find(c, "b", 1, &row));
  CU_ASSERT_EQUAL(row, 1);
  CU_ASSERT_FALSE(c->in_stock[row]);
  CU_ASSERT_EQUAL(c->price[row], 0.0f); /* zero-price promotions are valid */
  CU_ASSERT_STRING_EQUAL(c->categories[c->category[2]], "books");
  /* Most popular first; ties in file order. */
  CU_ASSERT_EQUAL(c->by_popularity[0], 1);
  CU_ASSERT_EQUAL(c->by_popularity[1], 0);
  CU_ASSERT_EQUAL(c->by_popularity[2], 2);
  catalog_free(c);
}

static void expect_error(const char *body, const char *needle) {
  const char *p = test_path("bad_items.tsv");
  test_write_file(p, body);
  catalog *c = NULL;
  rec_error e = {0};
  CU_ASSERT_EQUAL(catalog_load(p, &c, &e), REC_ECORRUPT);
  CU_ASSERT_PTR_NULL(c);
  if (!strstr(e.msg, needle)) fprintf(stderr, "\n  got: %s\n  want: %s\n", e.msg, needle);
  CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, needle));
}

static void errors_name_file_and_line(void) {
  expect_error("id\tcat\n", "bad_items.tsv:1: header");
  expect_error(HDR "a\tbooks\tabc\t1\t1\n", "bad_items.tsv:2: price 'abc'");
  expect_error(HDR "a\tbooks\t1\t1\t1\na\tbooks\t1\t1\t1\n", "bad_items.tsv:3: duplicate item_id 'a'");
  expect_error(HDR "a\tbooks\t1\t1\n", "bad_items.tsv:2: want 5 tab-separated fields");
  expect_error(HDR "a\tbooks\t1\t2\t1\n", "bad_items.tsv:2: in_stock '2'");
  expect_error(HDR "a\tbooks\t-1\t1\t1\n", "bad_items.tsv:2: price '-1'");
  expect_error(HDR "\tbooks\t1\t1\t1\n", "bad_items.tsv:2: item_id must be");
  expect_error(HDR, "no items");
}

void suite_catalog(void) {
  static const test_case cases[] = {
      {"loads_columns_and_popularity_order", loads_columns_and_popularity_order},
      {"errors_name_file_and_line", errors_name_file_and_line},
      {NULL, NULL}};
  test_add_suite("catalog", cases);
}
