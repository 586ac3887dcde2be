/* tests/server/test_catlog.c - the live catalog's log on real files:
 * records replayed in order after a reopen, a torn tail cut, damage with
 * good records after it refused (the file left as it was), a generation
 * out of sequence refused, and a replay callback's error stopping the open. */
#include "server/catlog.h"
#include "tests/test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct seen {
  uint64_t gen[16];
  char payload[16][32];
  size_t n;
  int fail_at;               /* replay fails on this generation; 0 never */
} seen;

static int collect(void *arg, uint64_t gen, const uint8_t *p, size_t len, rec_error *err) {
  seen *s = arg;
  if (s->fail_at && (int)gen == s->fail_at) return rec_fail(err, REC_ECORRUPT, "refused %llu", (unsigned long long)gen);
  if (s->n < 16) {
    s->gen[s->n] = gen;
    snprintf(s->payload[s->n++], 32, "%.*s", (int)len, (const char *)p);
  }
  return 0;
}

static long file_size(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 ? (long)st.st_size : -1;
}

static void write_three(const char *dir) {
  catlog *l;
  rec_error e = {0};
  CU_ASSERT_EQUAL_FATAL(catlog_open(dir, NULL, NULL, &l, &e), 0);
  CU_ASSERT_EQUAL(catlog_generation(l), 0);
  const char *p[] = {"first", "second", "third"};
  for (int i = 0; i < 3; i++) CU_ASSERT_EQUAL(catlog_append(l, (const uint8_t *)p[i], strlen(p[i]), &e), 0);
  CU_ASSERT_EQUAL(catlog_generation(l), 3);
  catlog_close(l);
}

static void records_come_back_in_order(void) {
  const char *dir = test_path("catlog-order");
  write_three(dir);
  seen s = {0};
  catlog *l;
  rec_error e = {0};
  CU_ASSERT_EQUAL_FATAL(catlog_open(dir, collect, &s, &l, &e), 0);
  CU_ASSERT_EQUAL(s.n, 3);
  CU_ASSERT_EQUAL(s.gen[2], 3);
  CU_ASSERT_STRING_EQUAL(s.payload[1], "second");
  CU_ASSERT_EQUAL(catlog_append(l, (const uint8_t *)"4th", 3, &e), 0); /* appends go on after them */
  CU_ASSERT_EQUAL(catlog_generation(l), 4);
  catlog_close(l);
  seen again = {0};
  CU_ASSERT_EQUAL_FATAL(catlog_open(dir, collect, &again, &l, &e), 0);
  CU_ASSERT_EQUAL(again.n, 4);
  CU_ASSERT_STRING_EQUAL(again.payload[3], "4th");
  catlog_close(l);
}

static void flip(const char *path, long at) {
  FILE *f = fopen(path, "r+b");
  CU_ASSERT_PTR_NOT_NULL_FATAL(f);
  fseek(f, at, SEEK_SET);
  int c = fgetc(f);
  fseek(f, at, SEEK_SET);
  fputc(c ^ 0x5a, f);
  fclose(f);
}

static void a_torn_tail_is_cut_and_damage_is_refused(void) {
  const char *dir = test_path("catlog-damage");
  write_three(dir);
  char path[600];
  snprintf(path, sizeof path, "%s/catalog.log", dir);
  long size = file_size(path);
  /* A crash mid-append: half a record at the end. */
  FILE *f = fopen(path, "ab");
  fwrite("RECC\x40\0\0\0\x04", 1, 9, f);
  fclose(f);
  seen s = {0};
  catlog *l;
  rec_error e = {0};
  CU_ASSERT_EQUAL_FATAL(catlog_open(dir, collect, &s, &l, &e), 0);
  CU_ASSERT_EQUAL(s.n, 3);
  CU_ASSERT_EQUAL(file_size(path), size);
  catlog_close(l);
  /* The last record damaged: a torn tail too (nothing good after it). */
  flip(path, size - 3);
  seen t = {0};
  CU_ASSERT_EQUAL_FATAL(catlog_open(dir, collect, &t, &l, &e), 0);
  CU_ASSERT_EQUAL(t.n, 2);
  CU_ASSERT_EQUAL(catlog_generation(l), 2);
  CU_ASSERT_EQUAL(catlog_append(l, (const uint8_t *)"again", 5, &e), 0);
  CU_ASSERT_EQUAL(catlog_generation(l), 3);
  catlog_close(l);
  /* The first record damaged with good ones after it: refused, untouched. */
  size = file_size(path);
  flip(path, 18);
  seen u = {0};
  l = NULL;
  CU_ASSERT_EQUAL(catlog_open(dir, collect, &u, &l, &e), REC_ECORRUPT);
  CU_ASSERT_PTR_NULL(l);
  CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "damaged record at byte 0 with good records after it"));
  CU_ASSERT_EQUAL(file_size(path), size);
}

static void a_replay_error_stops_the_open(void) {
  const char *dir = test_path("catlog-refuse");
  write_three(dir);
  seen s = {.fail_at = 2};
  catlog *l = NULL;
  rec_error e = {0};
  CU_ASSERT_EQUAL(catlog_open(dir, collect, &s, &l, &e), REC_ECORRUPT);
  CU_ASSERT_STRING_EQUAL(e.msg, "refused 2");
  CU_ASSERT_PTR_NULL(l);
  CU_ASSERT_EQUAL(catlog_open("/proc/no-such-dir/x", NULL, NULL, &l, &e), REC_EIO);
}

static void a_prefix_is_the_catalog_at_a_generation(void) {
  const char *dir = test_path("catlog-prefix"), *out = test_path("catlog-prefix-2");
  write_three(dir);
  long size = file_size(test_path("catlog-prefix/catalog.log"));
  rec_error e = {0};
  CU_ASSERT_EQUAL_FATAL(catlog_copy_prefix(dir, 2, out, &e), 0);
  seen s = {0};
  catlog *l = NULL;
  CU_ASSERT_EQUAL_FATAL(catlog_open(out, collect, &s, &l, &e), 0);
  CU_ASSERT_EQUAL(s.n, 2);
  CU_ASSERT_STRING_EQUAL(s.payload[1], "second");
  catlog_close(l);
  CU_ASSERT_EQUAL(catlog_copy_prefix(dir, 0, out, &e), 0);
  CU_ASSERT_EQUAL(file_size(test_path("catlog-prefix-2/catalog.log")), 0);
  CU_ASSERT_EQUAL(catlog_copy_prefix(dir, 4, out, &e), REC_ENOTFOUND);
  CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "ends at generation 3, before 4"));
  CU_ASSERT_EQUAL(file_size(test_path("catlog-prefix/catalog.log")), size); /* only read */
}

void suite_catlog(void) {
  static const test_case cases[] = {
      {"records come back in order", records_come_back_in_order},
      {"a torn tail is cut and damage is refused", a_torn_tail_is_cut_and_damage_is_refused},
      {"a replay error stops the open", a_replay_error_stops_the_open},
      {"a prefix is the catalog at a generation", a_prefix_is_the_catalog_at_a_generation},
      {NULL, NULL}};
  test_add_suite("catlog", cases);
}
