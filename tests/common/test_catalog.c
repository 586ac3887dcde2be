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

/* Live updates make a new table over the file's: changed rows in place,
 * new rows after the last, deleted rows unfindable; the base is untouched. */
static void derive_applies_changes_and_leaves_the_base(void) {
  const char *p = test_path("items.tsv");
  test_write_file(p, HDR "a\tbooks\t9.5\t1\t3\nb\ttoys\t0\t0\t10\nc\tbooks\t2\t1\t3\n");
  catalog *c, *d;
  rec_error e = {0};
  CU_ASSERT_EQUAL_FATAL(catalog_load(p, &c, &e), 0);
  CU_ASSERT_EQUAL(c->base_count, 3);
  uint32_t toys, row;
  CU_ASSERT_TRUE_FATAL(catalog_find_category(c, "toys", 4, &toys));
  catalog_change ch[] = {
      {.id = "b", .id_len = 1, .has_stock = true, .in_stock = true, .has_price = true, .price = 4},
      {.id = "new1-extra", .id_len = 4, .has_category = true, .category = toys, .has_price = true, .price = 1},
      {.id = "c", .id_len = 1, .deleted = true},
      {.id = "b", .id_len = 1, .has_price = true, .price = 5}, /* the last change of a field wins */
  };
  CU_ASSERT_EQUAL_FATAL(catalog_derive(c, ch, 4, 7, &d, &e), 0);
  CU_ASSERT_EQUAL(d->count, 4);
  CU_ASSERT_EQUAL(d->base_count, 3);
  CU_ASSERT_EQUAL(d->generation, 7);
  CU_ASSERT_TRUE(catalog_find(d, "b", 1, &row));
  CU_ASSERT_EQUAL(row, 1);
  CU_ASSERT_TRUE(d->in_stock[1]);
  CU_ASSERT_EQUAL(d->price[1], 5.0f);
  CU_ASSERT_TRUE(catalog_find(d, "new1", 4, &row));
  CU_ASSERT_EQUAL(row, 3);
  CU_ASSERT_STRING_EQUAL(d->ids[3], "new1");
  CU_ASSERT_EQUAL(d->category[3], toys);
  CU_ASSERT_TRUE(d->in_stock[3]);               /* a new item is in stock unless told */
  CU_ASSERT_EQUAL(d->popularity[3], 0.0f);
  CU_ASSERT_EQUAL(d->by_popularity[3], 3);      /* last */
  CU_ASSERT_FALSE(catalog_find(d, "c", 1, &row)); /* deleted */
  CU_ASSERT_TRUE(d->deleted[2]);
  CU_ASSERT_FALSE(c->in_stock[1]);              /* the base is as it was */
  CU_ASSERT_EQUAL(c->price[1], 0.0f);
  CU_ASSERT_TRUE(catalog_find(c, "c", 1, &row));
  CU_ASSERT_FALSE(catalog_find(c, "new1", 4, &row));
  catalog_free(d);
  catalog_change bad[] = {{.id = "zz", .id_len = 2, .has_price = true, .price = 1}};
  CU_ASSERT_EQUAL(catalog_derive(c, bad, 1, 1, &d, &e), REC_EINVAL);
  CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "change 0: a new item needs a category and a price"));
  catalog_change gone[] = {{.id = "zz", .id_len = 2, .deleted = true}};
  CU_ASSERT_EQUAL(catalog_derive(c, gone, 1, 1, &d, &e), REC_EINVAL);
  catalog_change cat[] = {{.id = "a", .id_len = 1, .has_category = true, .category = 99}};
  CU_ASSERT_EQUAL(catalog_derive(c, cat, 1, 1, &d, &e), REC_EINVAL);
  catalog_free(c);
}

/* The rows of category 'name' from the category index, in 'list''s order. */
static size_t rows_of(const catalog *c, const uint32_t *list, const char *name, uint32_t *out) {
  uint32_t k;
  CU_ASSERT_TRUE_FATAL(catalog_find_category(c, name, strlen(name), &k));
  size_t n = 0;
  for (size_t j = c->category_start[k]; j < c->category_start[k + 1]; j++) out[n++] = list[j];
  return n;
}

/* Each category's rows, in row order and in popularity order, follow the
 * rows' categories through live changes (a row moved, one added) and new
 * category names (empty). */
static void category_index_follows_rows_and_changes(void) {
  const char *p = test_path("items.tsv");
  test_write_file(p, HDR "a\tbooks\t1\t1\t1\nb\ttoys\t1\t1\t5\nc\tbooks\t1\t1\t9\nd\tbooks\t1\t1\t4\n");
  catalog *c, *d;
  rec_error e = {0};
  uint32_t r[8];
  CU_ASSERT_EQUAL_FATAL(catalog_load(p, &c, &e), 0);
  CU_ASSERT_EQUAL(c->category_start[0], 0);
  CU_ASSERT_EQUAL(c->category_start[c->category_count], 4);
  CU_ASSERT_EQUAL(rows_of(c, c->by_category, "books", r), 3);
  CU_ASSERT(r[0] == 0 && r[1] == 2 && r[2] == 3);
  CU_ASSERT_EQUAL(rows_of(c, c->by_category_popularity, "books", r), 3);
  CU_ASSERT(r[0] == 2 && r[1] == 3 && r[2] == 0); /* popularity 9, 4, 1 */
  uint32_t toys;
  CU_ASSERT_TRUE_FATAL(catalog_find_category(c, "toys", 4, &toys));
  catalog_change ch[] = {{.id = "c", .id_len = 1, .has_category = true, .category = toys},
                         {.id = "e", .id_len = 1, .has_category = true, .category = toys, .has_price = true}};
  CU_ASSERT_EQUAL_FATAL(catalog_derive(c, ch, 2, 1, &d, &e), 0);
  CU_ASSERT_EQUAL(rows_of(d, d->by_category, "books", r), 2);
  CU_ASSERT(r[0] == 0 && r[1] == 3);
  CU_ASSERT_EQUAL(rows_of(d, d->by_category, "toys", r), 3);
  CU_ASSERT(r[0] == 1 && r[1] == 2 && r[2] == 4);
  CU_ASSERT_EQUAL(rows_of(d, d->by_category_popularity, "toys", r), 3);
  CU_ASSERT(r[0] == 2 && r[1] == 1 && r[2] == 4); /* 9, 5, then the new row */
  CU_ASSERT_EQUAL(rows_of(c, c->by_category, "toys", r), 1); /* the base is as it was */
  catalog_free(d);
  const char *names[] = {"garden", "books"};
  CU_ASSERT_EQUAL_FATAL(catalog_add_categories(c, names, 2, &e), 0);
  CU_ASSERT_EQUAL(c->category_count, 3);
  CU_ASSERT_EQUAL(rows_of(c, c->by_category, "garden", r), 0);
  CU_ASSERT_EQUAL(rows_of(c, c->by_category, "books", r), 3);
  catalog_free(c);
}

void suite_catalog(void) {
  static const test_case cases[] = {
      {"loads_columns_and_popularity_order", loads_columns_and_popularity_order},
      {"errors_name_file_and_line", errors_name_file_and_line},
      {"derive applies changes and leaves the base", derive_applies_changes_and_leaves_the_base},
      {"category_index_follows_rows_and_changes", category_index_follows_rows_and_changes},
      {NULL, NULL}};
  test_add_suite("catalog", cases);
}
