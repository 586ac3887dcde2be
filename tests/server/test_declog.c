/* tests/server/test_declog.c - the decision log on real files: records come
 * back as written, in order; a flipped byte, a cut-off tail and a bad
 * length are each refused with the record's byte offset; rotation keeps
 * each file under the cap and the number of old files asked for; sampling
 * by request id is stable; and the queue counts what it drops. */
#include "server/declog.h"
#include "tests/test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static long file_size(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 ? (long)st.st_size : -1;
}

static uint8_t *payload(int i, size_t *n) {
  char text[64];
  *n = (size_t)snprintf(text, sizeof text, "record-%04d", i);
  uint8_t *p = malloc(*n);
  memcpy(p, text, *n);
  return p;
}

/* Writes 'count' records "record-0000".. to 'path' through the writer. */
static void write_records(const char *path, int count, int64_t max_bytes, int keep) {
  declog *l;
  rec_error e = {0};
  declog_opts o = {.path = path, .max_bytes = max_bytes, .keep = keep, .queue = 64};
  CU_ASSERT_EQUAL_FATAL(declog_open(&o, &l, &e), 0);
  for (int i = 0; i < count; i++) {
    size_t n;
    uint8_t *p = payload(i, &n);
    while (declog_submit(l, p, n) != 0) { /* the queue is full: wait for the writer, try again */
      declog_flush(l);
      p = payload(i, &n);
    }
  }
  declog_flush(l);
  CU_ASSERT_EQUAL(declog_failed(l), 0);
  declog_close(l);
}

/* Reads 'path' whole: the records' texts into 'out' (up to 'cap'); returns
 * the reader's last code (0 at a clean end) and fills 'err'. */
static int read_records(const char *path, char out[][32], size_t cap, size_t *n, rec_error *err) {
  declog_reader *r;
  int rc = declog_reader_open(path, &r, err);
  if (rc) return rc;
  const uint8_t *p;
  size_t len;
  uint64_t off, expect = 0;
  *n = 0;
  while ((rc = declog_next(r, &p, &len, &off, err)) == 1) {
    CU_ASSERT_EQUAL(off, expect);
    expect += DECLOG_OVERHEAD + len;
    if (*n < cap) snprintf(out[*n], 32, "%.*s", (int)len, (const char *)p);
    (*n)++;
  }
  declog_reader_free(r);
  return rc;
}

static void test_round_trip(void) {
  const char *path = test_path("round.log");
  write_records(path, 10, 1 << 20, 2);
  char got[16][32];
  size_t n;
  rec_error e = {0};
  CU_ASSERT_EQUAL(read_records(path, got, 16, &n, &e), 0);
  CU_ASSERT_EQUAL(n, 10);
  CU_ASSERT_STRING_EQUAL(got[0], "record-0000");
  CU_ASSERT_STRING_EQUAL(got[9], "record-0009");
  CU_ASSERT_EQUAL(file_size(path), 10 * (DECLOG_OVERHEAD + 11));
  /* A second open appends after what is there. */
  write_records(path, 2, 1 << 20, 2);
  CU_ASSERT_EQUAL(read_records(path, got, 16, &n, &e), 0);
  CU_ASSERT_EQUAL(n, 12);
  CU_ASSERT_STRING_EQUAL(got[11], "record-0001");
}

/* 'path' with the byte at 'at' changed by 'x' (or cut at 'at' when cut). */
static void damage(const char *path, long at, bool cut, const char *out) {
  FILE *f = fopen(path, "rb");
  CU_ASSERT_PTR_NOT_NULL_FATAL(f);
  uint8_t buf[4096];
  size_t n = fread(buf, 1, sizeof buf, f);
  fclose(f);
  if (cut) n = (size_t)at;
  else buf[at] ^= 0x40;
  f = fopen(out, "wb");
  CU_ASSERT_PTR_NOT_NULL_FATAL(f);
  fwrite(buf, 1, n, f);
  fclose(f);
}

static void test_damage_named_by_offset(void) {
  char path[1024], bad[1024]; /* test_path's slots rotate */
  snprintf(path, sizeof path, "%s", test_path("damaged.log"));
  snprintf(bad, sizeof bad, "%s", test_path("bad.log"));
  write_records(path, 3, 1 << 20, 0);
  long rec = DECLOG_OVERHEAD + 11; /* each record's size */
  struct { long at; bool cut; const char *msg; } cases[] = {
      {rec + 10, false, "offset 27: checksum mismatch"},       /* a payload byte of the second */
      {rec + 1, false, "offset 27: not a record (bad magic)"},
      {rec + 7, false, "offset 27: record length"},            /* the length's high byte: too long */
      {2 * rec + 5, true, "offset 54: truncated record (5 of 8 header bytes)"},
      {3 * rec - 3, true, "offset 54: truncated record (24 of 27 bytes)"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    damage(path, cases[i].at, cases[i].cut, bad);
    char got[4][32];
    size_t n;
    rec_error e = {0};
    CU_ASSERT_EQUAL(read_records(bad, got, 4, &n, &e), REC_ECORRUPT);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, cases[i].msg));
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "bad.log"));
    CU_ASSERT_EQUAL(n, cases[i].at < 2 * rec ? 1u : 2u); /* the good records before it were read */
  }
  rec_error e = {0};
  declog_reader *r;
  CU_ASSERT_EQUAL(declog_reader_open(test_path("missing.log"), &r, &e), REC_EIO);
}

static void test_rotation_at_the_cap(void) {
  const char *path = test_path("rot.log");
  long rec = DECLOG_OVERHEAD + 11;
  write_records(path, 25, 4 * rec + 5, 2); /* four records a file */
  char name[1100];
  char got[8][32];
  size_t n;
  rec_error e = {0};
  CU_ASSERT_EQUAL(file_size(path), rec); /* 25 = 6 x 4 + 1 */
  CU_ASSERT_EQUAL(read_records(path, got, 8, &n, &e), 0);
  CU_ASSERT_STRING_EQUAL(got[0], "record-0024");
  snprintf(name, sizeof name, "%s.1", path);
  CU_ASSERT_EQUAL(file_size(name), 4 * rec);
  CU_ASSERT_EQUAL(read_records(name, got, 8, &n, &e), 0);
  CU_ASSERT_STRING_EQUAL(got[0], "record-0020");
  snprintf(name, sizeof name, "%s.2", path);
  CU_ASSERT_EQUAL(read_records(name, got, 8, &n, &e), 0);
  CU_ASSERT_STRING_EQUAL(got[3], "record-0019");
  snprintf(name, sizeof name, "%s.3", path);
  CU_ASSERT_EQUAL(file_size(name), -1); /* only two kept */
  /* keep 0: the full file goes. */
  const char *none = test_path("none.log");
  write_records(none, 9, 4 * rec, 0);
  CU_ASSERT_EQUAL(file_size(none), rec);
  snprintf(name, sizeof name, "%s.1", none);
  CU_ASSERT_EQUAL(file_size(name), -1);
}

static void test_queue_full_drops_and_counts(void) {
  declog *l;
  rec_error e = {0};
  declog_opts o = {.path = test_path("drops.log"), .max_bytes = 1 << 20, .keep = 1, .queue = 2};
  CU_ASSERT_EQUAL_FATAL(declog_open(&o, &l, &e), 0);
  size_t accepted = 0;
  for (int i = 0; i < 2000; i++) {
    size_t n;
    uint8_t *p = payload(i, &n);
    accepted += declog_submit(l, p, n) == 0;
  }
  declog_flush(l);
  CU_ASSERT_EQUAL(declog_written(l), accepted);
  CU_ASSERT_EQUAL(declog_dropped(l), 2000 - accepted);
  declog_close(l);
  CU_ASSERT_EQUAL(file_size(o.path), (long)accepted * (DECLOG_OVERHEAD + 11));
}

static void test_sampling_by_request_id(void) {
  size_t in = 0;
  char id[32];
  for (int i = 0; i < 10000; i++) {
    snprintf(id, sizeof id, "req-%d", i);
    bool s = declog_sampled(0.1, id, strlen(id));
    CU_ASSERT_EQUAL(s, declog_sampled(0.1, id, strlen(id)));
    if (s) CU_ASSERT_TRUE(declog_sampled(0.5, id, strlen(id))); /* a larger sample holds the smaller */
    in += s;
  }
  CU_ASSERT_TRUE(in > 800 && in < 1200);
  CU_ASSERT_TRUE(declog_sampled(1, "x", 1));
  CU_ASSERT_FALSE(declog_sampled(0, "x", 1));
}

void suite_declog(void) {
  static const test_case cases[] = {
      {"round trip", test_round_trip},
      {"damage named by offset", test_damage_named_by_offset},
      {"rotation at the cap", test_rotation_at_the_cap},
      {"queue full drops and counts", test_queue_full_drops_and_counts},
      {"sampling by request id", test_sampling_by_request_id},
      {NULL, NULL}};
  test_add_suite("declog", cases);
}
