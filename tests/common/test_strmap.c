/* tests/common/test_strmap.c - id -> row lookups. */
#include "common/err.h"
#include "common/strmap.h"
#include "tests/test.h"

#include <stdio.h>
#include <string.h>

static void put_and_get(void) {
  strmap *m;
  CU_ASSERT_EQUAL_FATAL(strmap_new(1000, &m), 0);
  static char keys[1000][16];
  for (uint32_t i = 0; i < 1000; i++) {
    snprintf(keys[i], sizeof keys[i], "item-%u", i);
    CU_ASSERT_EQUAL(strmap_put(m, keys[i], strlen(keys[i]), i * 3), 0);
  }
  CU_ASSERT_EQUAL(strmap_count(m), 1000);
  for (uint32_t i = 0; i < 1000; i++) {
    uint32_t v = 0;
    CU_ASSERT_TRUE(strmap_get(m, keys[i], strlen(keys[i]), &v));
    CU_ASSERT_EQUAL(v, i * 3);
  }
  uint32_t v = 77;
  CU_ASSERT_FALSE(strmap_get(m, "item-1000", 9, &v));
  CU_ASSERT_EQUAL(v, 77); /* untouched on a miss */
  CU_ASSERT_FALSE(strmap_get(m, "item-1", 5, &v)); /* a prefix is not a key */
  strmap_free(m);
}

static void duplicates_and_capacity(void) {
  strmap *m;
  CU_ASSERT_EQUAL_FATAL(strmap_new(2, &m), 0);
  CU_ASSERT_EQUAL(strmap_put(m, "a", 1, 1), 0);
  CU_ASSERT_EQUAL(strmap_put(m, "a", 1, 2), REC_EINVAL);
  CU_ASSERT_EQUAL(strmap_put(m, "b", 1, 2), 0);
  CU_ASSERT_EQUAL(strmap_put(m, "c", 1, 3), REC_ETOOBIG);
  uint32_t v;
  CU_ASSERT_TRUE(strmap_get(m, "a", 1, &v));
  CU_ASSERT_EQUAL(v, 1);
  strmap_free(m);
}

void suite_strmap(void) {
  static const test_case cases[] = {{"put_and_get", put_and_get},
                                    {"duplicates_and_capacity", duplicates_and_capacity},
                                    {NULL, NULL}};
  test_add_suite("strmap", cases);
}
