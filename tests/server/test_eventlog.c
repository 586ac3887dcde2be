/* tests/server/test_eventlog.c - the event log on real files: replay in
 * order across segments, asynchronous appends completed once each by the
 * commit thread, group commit, close with batches pending, torn tails cut,
 * damage skipped (never truncated) and counted, gaps between segments, a
 * scan that writes nothing, a disk that refuses, and every allocation
 * failure. */
#include "server/eventlog.h"
#include "tests/test.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

/* Records built by the tests are 60 bytes each: 6-byte user and item. */
enum { REC_BYTES = 16 + 28 + 6 + 6 + 4, BIG_SEGMENT = 64 << 20 };

/* ---- fixtures ---- */

typedef struct seen {
  uint64_t seq;
  char user[129], item[129];
  int64_t time_ms;
  int32_t type, quantity;
  double price;
} seen;

typedef struct collector {
  seen *v;
  size_t n, cap;
} collector;

static void collect(void *arg, uint64_t seq, const ev_record *r) {
  collector *c = arg;
  if (c->n == c->cap) {
    c->cap = c->cap ? 2 * c->cap : 1024;
    c->v = realloc(c->v, c->cap * sizeof *c->v);
  }
  seen *s = &c->v[c->n++];
  *s = (seen){.seq = seq, .time_ms = r->time_ms, .type = r->type, .quantity = r->quantity, .price = r->price};
  memcpy(s->user, r->user, r->user_len);
  memcpy(s->item, r->item, r->item_len);
}

static void collector_reset(collector *c) {
  free(c->v);
  *c = (collector){0};
}

/* Record i of a test: user "u%05zu" (i % 1000), item "i%05zu", all fields
 * derived from i so replay can be checked against it. */
static ev_record make(size_t i, char user[8], char item[8]) {
  snprintf(user, 8, "u%05zu", i % 1000);
  snprintf(item, 8, "i%05zu", i % 100000);
  return (ev_record){.time_ms = 1700000000000 + (int64_t)i, .type = 1 + (int32_t)(i % 3),
                     .quantity = 1 + (int32_t)(i % 5), .price = 0.25 * (double)i, .user = user, .item = item,
                     .user_len = 6, .item_len = 6};
}

static bool matches(const seen *s, size_t i) {
  char user[8], item[8];
  ev_record r = make(i, user, item);
  return strcmp(s->user, user) == 0 && strcmp(s->item, item) == 0 && s->time_ms == r.time_ms &&
         s->type == r.type && s->quantity == r.quantity && s->price == r.price;
}

/* Appends records first..first+n-1 (by make) in batches of 'batch'. */
static void append_range(eventlog *l, size_t first, size_t n, size_t batch) {
  ev_record recs[1000];
  char users[1000][8], items[1000][8];
  for (size_t done = 0; done < n;) {
    size_t k = n - done < batch ? n - done : batch;
    for (size_t j = 0; j < k; j++) recs[j] = make(first + done + j, users[j], items[j]);
    uint64_t last = 0;
    rec_error e = {0};
    CU_ASSERT_EQUAL_FATAL(eventlog_append(l, recs, k, &last, &e), 0);
    CU_ASSERT_EQUAL(last, first + done + k - 1);
    done += k;
  }
}

static eventlog *open_log(const char *dir, size_t segment_bytes, collector *c, size_t *replayed) {
  eventlog *l = NULL;
  rec_error e = {0};
  collector_reset(c);
  int rc = eventlog_open(dir, segment_bytes, collect, c, &l, replayed, &e);
  if (rc) fprintf(stderr, "eventlog_open: %s\n", e.msg);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  return l;
}

/* A fresh directory under the test's tmpdir (16 names live at a time). */
static const char *fresh_dir(const char *name) {
  static char bufs[16][600];
  static int slot;
  char *d = bufs[slot++ % 16];
  snprintf(d, 600, "%s", test_path(name));
  CU_ASSERT_EQUAL_FATAL(mkdir(d, 0755), 0);
  return d;
}

static const char *seg(const char *dir, uint64_t first) {
  static char bufs[4][600];
  static int slot;
  char *b = bufs[slot++ % 4];
  snprintf(b, 600, "%s/events-%020llu.log", dir, (unsigned long long)first);
  return b;
}

static long long file_size(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

static unsigned char *slurp(const char *path, size_t *n) {
  FILE *fp = fopen(path, "rb");
  CU_ASSERT_PTR_NOT_NULL_FATAL(fp);
  fseek(fp, 0, SEEK_END);
  *n = (size_t)ftell(fp);
  fseek(fp, 0, SEEK_SET);
  unsigned char *b = malloc(*n + 1);
  CU_ASSERT_EQUAL(fread(b, 1, *n, fp), *n);
  fclose(fp);
  return b;
}

static void spit(const char *path, const unsigned char *b, size_t n) {
  FILE *fp = fopen(path, "wb");
  CU_ASSERT_PTR_NOT_NULL_FATAL(fp);
  CU_ASSERT_EQUAL(fwrite(b, 1, n, fp), n);
  fclose(fp);
}

static void flip_byte(const char *path, long long off) {
  size_t n;
  unsigned char *b = slurp(path, &n);
  CU_ASSERT_FATAL(off >= 0 && (size_t)off < n);
  b[off] ^= 0x5a;
  spit(path, b, n);
  free(b);
}

static void copy_file(const char *from, const char *to) {
  size_t n;
  unsigned char *b = slurp(from, &n);
  spit(to, b, n);
  free(b);
}

/* stderr (where common/log.h writes) captured into a file for one step. */
static int capture_begin(void) {
  int saved = dup(STDERR_FILENO);
  int fd = open(test_path("stderr.txt"), O_CREAT | O_TRUNC | O_WRONLY, 0644);
  dup2(fd, STDERR_FILENO);
  close(fd);
  return saved;
}

static char *capture_end(int saved) {
  dup2(saved, STDERR_FILENO);
  close(saved);
  size_t n;
  char *s = (char *)slurp(test_path("stderr.txt"), &n);
  s[n] = '\0';
  return s;
}

/* Every 'done' call: how many, with which rc and last_seq, in which order,
 * and how many sync rounds the log had run by then. */
enum { MAX_CALLS = 4096 };
typedef struct tracker {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  eventlog *l;
  size_t calls;
  uint64_t order[MAX_CALLS], syncs[MAX_CALLS];
} tracker;

typedef struct ticket {
  tracker *t;
  int append_rc;             /* what eventlog_append_async returned */
  int calls, rc;
  uint64_t last;
  size_t n;
} ticket;

static void tracker_init(tracker *t, eventlog *l) {
  memset(t, 0, sizeof *t);
  pthread_mutex_init(&t->mu, NULL);
  pthread_cond_init(&t->cv, NULL);
  t->l = l;
}

static void tracker_destroy(tracker *t) {
  pthread_mutex_destroy(&t->mu);
  pthread_cond_destroy(&t->cv);
}

static void on_done(void *arg, int rc, uint64_t last) {
  ticket *k = arg;
  tracker *t = k->t;
  pthread_mutex_lock(&t->mu);
  k->calls++;
  k->rc = rc;
  k->last = last;
  if (t->calls < MAX_CALLS) {
    t->order[t->calls] = last;
    t->syncs[t->calls] = eventlog_syncs(t->l);
  }
  t->calls++;
  pthread_cond_broadcast(&t->cv);
  pthread_mutex_unlock(&t->mu);
}

static void wait_calls(tracker *t, size_t n) {
  pthread_mutex_lock(&t->mu);
  while (t->calls < n) pthread_cond_wait(&t->cv, &t->mu);
  pthread_mutex_unlock(&t->mu);
}

static size_t calls_now(tracker *t) {
  pthread_mutex_lock(&t->mu);
  size_t n = t->calls;
  pthread_mutex_unlock(&t->mu);
  return n;
}

static int append_async(eventlog *l, size_t first, size_t n, ticket *k) {
  ev_record recs[64];
  char users[64][8], items[64][8];
  for (size_t j = 0; j < n; j++) recs[j] = make(first + j, users[j], items[j]);
  k->n = n;
  rec_error e = {0};
  return eventlog_append_async(l, recs, n, on_done, k, &e);
}

/* ---- tests ---- */

static void append_and_reopen_replays_in_order(void) {
  const char *dir = fresh_dir("ev_order");
  collector c = {0};
  size_t n;
  eventlog *l = open_log(dir, 20 * REC_BYTES, &c, &n); /* a new segment every 20 records */
  CU_ASSERT_EQUAL(n, 0);
  CU_ASSERT_EQUAL(eventlog_last_seq(l), 0);
  append_range(l, 1, 1, 1);
  append_range(l, 2, 99, 7);
  CU_ASSERT_EQUAL(eventlog_last_seq(l), 100);
  eventlog_close(l);
  CU_ASSERT(file_size(seg(dir, 1)) > 0);
  CU_ASSERT(file_size(seg(dir, 23)) > 0); /* 1 + 7 + 7 + 7 records fill the first file */

  l = open_log(dir, 20 * REC_BYTES, &c, &n);
  CU_ASSERT_EQUAL(n, 100);
  CU_ASSERT_EQUAL_FATAL(c.n, 100);
  for (size_t i = 0; i < c.n; i++) {
    CU_ASSERT_EQUAL(c.v[i].seq, i + 1);
    CU_ASSERT(matches(&c.v[i], i + 1));
  }
  CU_ASSERT_EQUAL(eventlog_last_seq(l), 100);
  CU_ASSERT_EQUAL(eventlog_corrupt_records(l), 0);
  append_range(l, 101, 5, 5);
  eventlog_close(l);

  collector_reset(&c);
  rec_error e = {0};
  CU_ASSERT_EQUAL(eventlog_scan(dir, collect, &c, &n, &e), 0);
  CU_ASSERT_EQUAL(n, 105);
  CU_ASSERT_EQUAL(c.n, 105);
  CU_ASSERT(c.n == 105 && c.v[104].seq == 105 && matches(&c.v[104], 105));
  collector_reset(&c);
}

static void bad_batches_are_refused(void) {
  const char *dir = fresh_dir("ev_bad");
  collector c = {0};
  size_t n;
  eventlog *l = open_log(dir, BIG_SEGMENT, &c, &n);
  char user[8], item[8];
  ev_record r = make(1, user, item);
  uint64_t last = 7;
  rec_error e = {0};
  CU_ASSERT_EQUAL(eventlog_append(l, &r, 0, &last, &e), REC_EINVAL);
  r.item_len = 0;
  CU_ASSERT_EQUAL(eventlog_append(l, &r, 1, &last, &e), REC_EINVAL);
  r.item_len = 129;
  CU_ASSERT_EQUAL(eventlog_append(l, &r, 1, &last, &e), REC_EINVAL);
  CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "1 to 128 bytes"));
  CU_ASSERT_EQUAL(last, 7); /* untouched */
  CU_ASSERT_EQUAL(eventlog_last_seq(l), 0);
  eventlog_close(l);
  collector_reset(&c);
}

typedef struct appender {
  eventlog *l;
  int id;
  ticket tickets[100];
} appender;

static void *append_many(void *arg) {
  appender *a = arg;
  for (int b = 0; b < 100; b++) {
    /* Records carry (thread, batch, index) in their item id through make(). */
    size_t n = 1 + (size_t)(b % 4);
    size_t first = (size_t)a->id * 10000 + (size_t)b * 10;
    a->tickets[b].append_rc = append_async(a->l, first, n, &a->tickets[b]); /* CUnit is not thread-safe */
  }
  return NULL;
}

static void async_done_once_per_batch_from_many_threads(void) {
  const char *dir = fresh_dir("ev_threads");
  collector c = {0};
  size_t n;
  eventlog *l = open_log(dir, 50 * REC_BYTES, &c, &n); /* rotations under load too */
  eventlog_set_commit_delay(l, 200);
  tracker t;
  tracker_init(&t, l);
  enum { THREADS = 8 };
  static appender a[THREADS];
  pthread_t th[THREADS];
  for (int i = 0; i < THREADS; i++) {
    a[i] = (appender){.l = l, .id = i + 1};
    for (int b = 0; b < 100; b++) a[i].tickets[b].t = &t;
    pthread_create(&th[i], NULL, append_many, &a[i]);
  }
  for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
  wait_calls(&t, THREADS * 100);
  uint64_t total = eventlog_last_seq(l);
  eventlog_close(l);

  CU_ASSERT_EQUAL(t.calls, THREADS * 100); /* nothing more came with the close */
  for (size_t i = 1; i < t.calls; i++) CU_ASSERT(t.order[i] > t.order[i - 1]); /* in sequence order */
  uint64_t sum = 0;
  for (int i = 0; i < THREADS; i++)
    for (int b = 0; b < 100; b++) {
      const ticket *k = &a[i].tickets[b];
      CU_ASSERT_EQUAL(k->append_rc, 0);
      CU_ASSERT_EQUAL(k->calls, 1);
      CU_ASSERT_EQUAL(k->rc, 0);
      if (b) CU_ASSERT(k->last > a[i].tickets[b - 1].last);
      sum += k->n;
    }
  CU_ASSERT_EQUAL(total, sum);

  /* Each batch's records sit together, ending at the sequence its 'done' got. */
  l = open_log(dir, 50 * REC_BYTES, &c, &n);
  CU_ASSERT_EQUAL_FATAL(n, sum);
  for (int i = 0; i < THREADS; i++)
    for (int b = 0; b < 100; b++) {
      const ticket *k = &a[i].tickets[b];
      size_t first = (size_t)(i + 1) * 10000 + (size_t)b * 10;
      for (size_t j = 0; j < k->n; j++) {
        const seen *s = &c.v[k->last - k->n + j]; /* seq s at index s - 1 */
        CU_ASSERT(s->seq == k->last - k->n + 1 + j && matches(s, first + j));
      }
    }
  eventlog_close(l);
  tracker_destroy(&t);
  collector_reset(&c);
}

static void commit_delay_groups_batches_into_one_sync(void) {
  const char *dir = fresh_dir("ev_group");
  collector c = {0};
  size_t n;
  eventlog *l = open_log(dir, 4 * REC_BYTES, &c, &n); /* the batches span three segments */
  tracker t;
  tracker_init(&t, l);
  eventlog_set_commit_delay(l, 3600000000); /* an hour: the commit thread waits for more */
  uint64_t syncs = eventlog_syncs(l);
  ticket k[5];
  for (size_t i = 0; i < 5; i++) {
    k[i] = (ticket){.t = &t};
    CU_ASSERT_EQUAL(append_async(l, 1 + 2 * i, 2, &k[i]), 0);
  }
  /* Every append returned, and none waited for the disk: nothing is done yet. */
  CU_ASSERT_EQUAL(calls_now(&t), 0);
  CU_ASSERT_EQUAL(eventlog_last_seq(l), 0);
  eventlog_set_commit_delay(l, 0); /* applies at once */
  wait_calls(&t, 5);
  for (size_t i = 0; i < 5; i++) {
    CU_ASSERT_EQUAL(k[i].calls, 1);
    CU_ASSERT_EQUAL(k[i].rc, 0);
    CU_ASSERT_EQUAL(k[i].last, 2 * i + 2);
    CU_ASSERT_EQUAL(t.syncs[i], syncs + 1); /* all five reported by one sync round */
  }
  CU_ASSERT_EQUAL(eventlog_syncs(l), syncs + 1);
  CU_ASSERT_EQUAL(eventlog_last_seq(l), 10);
  eventlog_close(l);
  CU_ASSERT(file_size(seg(dir, 5)) > 0 && file_size(seg(dir, 9)) > 0);
  l = open_log(dir, 4 * REC_BYTES, &c, &n);
  CU_ASSERT_EQUAL(n, 10);
  eventlog_close(l);
  tracker_destroy(&t);
  collector_reset(&c);
}

static void close_completes_pending_batches(void) {
  const char *dir = fresh_dir("ev_close");
  collector c = {0};
  size_t n;
  eventlog *l = open_log(dir, BIG_SEGMENT, &c, &n);
  tracker t;
  tracker_init(&t, l);
  eventlog_set_commit_delay(l, 3600000000);
  ticket k[3];
  for (size_t i = 0; i < 3; i++) {
    k[i] = (ticket){.t = &t};
    CU_ASSERT_EQUAL(append_async(l, 1 + i, 1, &k[i]), 0);
  }
  CU_ASSERT_EQUAL(calls_now(&t), 0);
  eventlog_close(l); /* cuts the hour short */
  CU_ASSERT_EQUAL(t.calls, 3);
  for (size_t i = 0; i < 3; i++) CU_ASSERT(k[i].calls == 1 && k[i].rc == 0 && k[i].last == i + 1);
  l = open_log(dir, BIG_SEGMENT, &c, &n);
  CU_ASSERT_EQUAL(n, 3);
  eventlog_close(l);
  tracker_destroy(&t);
  collector_reset(&c);
}

static void torn_tail_is_cut_and_appends_go_on(void) {
  const char *dir = fresh_dir("ev_torn");
  collector c = {0};
  size_t n;
  eventlog *l = open_log(dir, BIG_SEGMENT, &c, &n);
  append_range(l, 1, 10, 10);
  eventlog_close(l);
  const char *p = seg(dir, 1);
  CU_ASSERT_EQUAL(file_size(p), 10 * REC_BYTES);
  CU_ASSERT_EQUAL(truncate(p, 10 * REC_BYTES - 7), 0); /* the last record half written */

  int saved = capture_begin();
  l = open_log(dir, BIG_SEGMENT, &c, &n);
  char *log = capture_end(saved);
  CU_ASSERT_PTR_NOT_NULL(strstr(log, "torn tail truncated"));
  free(log);
  CU_ASSERT_EQUAL(n, 9);
  CU_ASSERT_EQUAL(eventlog_corrupt_records(l), 0); /* a crash, not damage */
  CU_ASSERT_EQUAL(file_size(p), 9 * REC_BYTES);
  append_range(l, 10, 3, 3); /* sequences 10..12, in the same file */
  eventlog_close(l);
  CU_ASSERT_EQUAL(file_size(p), 12 * REC_BYTES);

  /* A damaged last record with nothing after it is a torn tail too. */
  flip_byte(p, 11 * REC_BYTES + 20);
  l = open_log(dir, BIG_SEGMENT, &c, &n);
  CU_ASSERT_EQUAL(n, 11);
  CU_ASSERT_EQUAL(file_size(p), 11 * REC_BYTES);
  eventlog_close(l);
  l = open_log(dir, BIG_SEGMENT, &c, &n);
  CU_ASSERT_EQUAL(n, 11);
  for (size_t i = 0; i < c.n; i++) CU_ASSERT(c.v[i].seq == i + 1 && matches(&c.v[i], i + 1));
  eventlog_close(l);
  collector_reset(&c);
}

/* A flip in a middle record at byte 'at' of the record: exactly that record
 * is missing, the file is untouched, the damage logged and counted. */
static void flipped_byte_skips_one_record(const char *pristine, const char *name, int at) {
  const char *dir = fresh_dir(name);
  const char *p = seg(dir, 1);
  copy_file(pristine, p);
  long long off = 4999LL * REC_BYTES + at; /* record 5000 */
  flip_byte(p, off);
  size_t before_n;
  unsigned char *before = slurp(p, &before_n);

  collector c = {0};
  size_t n;
  int saved = capture_begin();
  eventlog *l = open_log(dir, BIG_SEGMENT, &c, &n);
  char *log = capture_end(saved);
  char want[200];
  snprintf(want, sizeof want, "offset=%lld bytes=%d missing=5000-5000 records=1", 4999LL * REC_BYTES, REC_BYTES);
  if (!strstr(log, want)) fprintf(stderr, "\n  log: %s  want: %s\n", log, want);
  CU_ASSERT_PTR_NOT_NULL(strstr(log, want));
  CU_ASSERT_PTR_NOT_NULL(strstr(log, "level=error"));
  CU_ASSERT_PTR_NOT_NULL(strstr(log, p));
  free(log);
  CU_ASSERT_EQUAL(n, 9999);
  CU_ASSERT_EQUAL(eventlog_corrupt_records(l), 1);
  CU_ASSERT_EQUAL_FATAL(c.n, 9999);
  bool all = true;
  for (size_t i = 0; i < c.n; i++) {
    size_t want_seq = i < 4999 ? i + 1 : i + 2;
    all &= c.v[i].seq == want_seq && matches(&c.v[i], want_seq);
  }
  CU_ASSERT(all);
  /* Appends go on after the highest sequence, in a new file. */
  append_range(l, 10001, 1, 1);
  eventlog_close(l);
  size_t after_n;
  unsigned char *after = slurp(p, &after_n);
  CU_ASSERT(after_n == before_n && memcmp(before, after, before_n) == 0); /* never rewritten */
  free(before);
  free(after);
  CU_ASSERT_EQUAL(file_size(seg(dir, 10001)), REC_BYTES);

  l = open_log(dir, BIG_SEGMENT, &c, &n);
  CU_ASSERT_EQUAL(n, 10000);
  CU_ASSERT_EQUAL(eventlog_corrupt_records(l), 1);
  CU_ASSERT(c.n == 10000 && c.v[9999].seq == 10001);
  eventlog_close(l);
  collector_reset(&c);
}

static void damage_in_the_middle_is_skipped_not_truncated(void) {
  const char *dir = fresh_dir("ev_pristine");
  collector c = {0};
  size_t n;
  eventlog *l = open_log(dir, BIG_SEGMENT, &c, &n);
  append_range(l, 1, 10000, 1000);
  eventlog_close(l);
  collector_reset(&c);
  char pristine[600];
  snprintf(pristine, sizeof pristine, "%s", seg(dir, 1));
  CU_ASSERT_EQUAL_FATAL(file_size(pristine), 10000LL * REC_BYTES);
  flipped_byte_skips_one_record(pristine, "ev_flip_payload", 30);
  flipped_byte_skips_one_record(pristine, "ev_flip_magic", 0);
  flipped_byte_skips_one_record(pristine, "ev_flip_length", 4);
  flipped_byte_skips_one_record(pristine, "ev_flip_seq", 9);
  flipped_byte_skips_one_record(pristine, "ev_flip_checksum", REC_BYTES - 1);
}

static void damaged_first_record_resyncs(void) {
  const char *dir = fresh_dir("ev_first");
  collector c = {0};
  size_t n;
  eventlog *l = open_log(dir, 10 * REC_BYTES, &c, &n);
  append_range(l, 1, 30, 10); /* events-1, events-11, events-21 */
  eventlog_close(l);
  flip_byte(seg(dir, 1), 2);  /* the log's very first record */
  flip_byte(seg(dir, 11), 5); /* the first record of a later segment */
  l = open_log(dir, 10 * REC_BYTES, &c, &n);
  CU_ASSERT_EQUAL(n, 28);
  CU_ASSERT_EQUAL(eventlog_corrupt_records(l), 2);
  CU_ASSERT(c.n == 28 && c.v[0].seq == 2 && c.v[9].seq == 12 && c.v[27].seq == 30);
  append_range(l, 31, 1, 1);
  eventlog_close(l);
  CU_ASSERT_EQUAL(file_size(seg(dir, 1)), 10 * REC_BYTES);
  CU_ASSERT_EQUAL(file_size(seg(dir, 11)), 10 * REC_BYTES);
  collector_reset(&c);
}

static void empty_segment_files(void) {
  /* The only file, empty: appends start at 1 in it. */
  const char *dir = fresh_dir("ev_empty");
  test_write_file(seg(dir, 1), "");
  collector c = {0};
  size_t n;
  eventlog *l = open_log(dir, BIG_SEGMENT, &c, &n);
  CU_ASSERT_EQUAL(n, 0);
  append_range(l, 1, 10, 10);
  eventlog_close(l);
  CU_ASSERT_EQUAL(file_size(seg(dir, 1)), 10 * REC_BYTES);

  /* An empty file after a full one (a crash right after a rotation): no
   * damage, no gap, and the next record goes into it. */
  test_write_file(seg(dir, 11), "");
  l = open_log(dir, BIG_SEGMENT, &c, &n);
  CU_ASSERT_EQUAL(n, 10);
  CU_ASSERT_EQUAL(eventlog_corrupt_records(l), 0);
  append_range(l, 11, 1, 1);
  eventlog_close(l);
  CU_ASSERT_EQUAL(file_size(seg(dir, 11)), REC_BYTES);
  l = open_log(dir, BIG_SEGMENT, &c, &n);
  CU_ASSERT_EQUAL(n, 11);
  eventlog_close(l);
  collector_reset(&c);
}

static void missing_segment_is_a_counted_gap(void) {
  const char *dir = fresh_dir("ev_gap");
  collector c = {0};
  size_t n;
  eventlog *l = open_log(dir, 10 * REC_BYTES, &c, &n);
  append_range(l, 1, 30, 10);
  eventlog_close(l);
  CU_ASSERT_EQUAL_FATAL(unlink(seg(dir, 11)), 0);
  int saved = capture_begin();
  l = open_log(dir, 10 * REC_BYTES, &c, &n);
  char *log = capture_end(saved);
  CU_ASSERT_PTR_NOT_NULL(strstr(log, "level=error msg=\"event log: sequences missing before a segment\""));
  CU_ASSERT_PTR_NOT_NULL(strstr(log, "missing=11-20 records=10"));
  free(log);
  CU_ASSERT_EQUAL(n, 20);
  CU_ASSERT_EQUAL(eventlog_corrupt_records(l), 10);
  CU_ASSERT(c.n == 20 && c.v[9].seq == 10 && c.v[10].seq == 21);
  append_range(l, 31, 1, 1); /* never reuses a sequence the missing file may hold */
  eventlog_close(l);
  collector_reset(&c);
}

/* Valid records whose sequences the damage before them cannot explain
 * (here: records 50..55 of another log) are refused, not replayed. */
static void records_no_resync_explains_are_refused(void) {
  const char *other = fresh_dir("ev_other");
  collector c = {0};
  size_t n;
  eventlog *l = open_log(other, BIG_SEGMENT, &c, &n);
  append_range(l, 1, 60, 60);
  eventlog_close(l);
  size_t other_n, n_bytes;
  unsigned char *theirs = slurp(seg(other, 1), &other_n);
  unsigned char bytes[12 * REC_BYTES];
  memcpy(bytes, theirs, 6 * REC_BYTES);                            /* records 1..6 */
  bytes[5 * REC_BYTES + 30] ^= 0x5a;                              /* record 6 damaged */
  memcpy(bytes + 6 * REC_BYTES, theirs + 49 * REC_BYTES, 6 * REC_BYTES); /* then 50..55 */
  n_bytes = sizeof bytes;

  const char *dir = fresh_dir("ev_untrusted");
  spit(seg(dir, 1), bytes, n_bytes);
  int saved = capture_begin();
  l = open_log(dir, BIG_SEGMENT, &c, &n);
  char *log = capture_end(saved);
  CU_ASSERT_PTR_NOT_NULL(strstr(log, "offset=300 bytes=420 first_missing=6 valid_records_refused=6"));
  free(log);
  CU_ASSERT_EQUAL(n, 5);
  CU_ASSERT_EQUAL(eventlog_corrupt_records(l), 6);
  append_range(l, 6, 1, 1); /* into a new file: the damaged one stays as it is */
  eventlog_close(l);
  CU_ASSERT_EQUAL(file_size(seg(dir, 1)), (long long)n_bytes);
  CU_ASSERT_EQUAL(file_size(seg(dir, 6)), REC_BYTES);

  /* A last file with nothing replayable in it and the name the next file
   * would take: recd cannot go on without someone looking at it. */
  const char *bad = fresh_dir("ev_untrusted_only");
  spit(seg(bad, 1), theirs + 49 * REC_BYTES, 6 * REC_BYTES);
  rec_error e = {0};
  l = NULL;
  saved = capture_begin();
  CU_ASSERT_EQUAL(eventlog_open(bad, BIG_SEGMENT, collect, &c, &l, &n, &e), REC_ECORRUPT);
  free(capture_end(saved));
  CU_ASSERT_PTR_NULL(l);
  CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "move it aside"));
  saved = capture_begin();
  CU_ASSERT_EQUAL(eventlog_scan(bad, collect, &c, &n, &e), 0); /* reading it is fine */
  free(capture_end(saved));
  CU_ASSERT_EQUAL(n, 0);
  free(theirs);
  collector_reset(&c);
}

static void scan_reads_like_open_and_writes_nothing(void) {
  const char *dir = fresh_dir("ev_scan");
  collector c = {0};
  size_t n;
  eventlog *l = open_log(dir, BIG_SEGMENT, &c, &n);
  append_range(l, 1, 20, 20);
  eventlog_close(l);
  const char *p = seg(dir, 1);
  flip_byte(p, 5 * REC_BYTES + 40);
  FILE *fp = fopen(p, "ab");
  fputs("RECE\x30", fp); /* and a torn tail */
  fclose(fp);
  size_t before_n;
  unsigned char *before = slurp(p, &before_n);
  collector_reset(&c);
  rec_error e = {0};
  int saved = capture_begin();
  CU_ASSERT_EQUAL(eventlog_scan(dir, collect, &c, &n, &e), 0);
  char *log = capture_end(saved);
  CU_ASSERT_PTR_NOT_NULL(strstr(log, "missing=6-6"));
  free(log);
  CU_ASSERT_EQUAL(n, 19);
  CU_ASSERT(c.n == 19 && c.v[5].seq == 7);
  size_t after_n;
  unsigned char *after = slurp(p, &after_n);
  CU_ASSERT(after_n == before_n && memcmp(before, after, before_n) == 0);
  free(before);
  free(after);
  CU_ASSERT_EQUAL(eventlog_scan(test_path("ev_no_such_dir"), collect, &c, &n, &e), REC_EIO);
  collector_reset(&c);
}

static void a_refusing_disk_fails_pending_and_later_appends(void) {
  const char *dir = fresh_dir("ev_full");
  collector c = {0};
  size_t n;
  eventlog *l = open_log(dir, BIG_SEGMENT, &c, &n);
  append_range(l, 1, 2, 2);
  tracker t;
  tracker_init(&t, l);
  eventlog_set_commit_delay(l, 3600000000);
  ticket k = {.t = &t};
  CU_ASSERT_EQUAL(append_async(l, 3, 1, &k), 0); /* written, waiting for its sync */
  /* The file may not grow past its size now: the next write fails (EFBIG). */
  struct rlimit old, lim;
  getrlimit(RLIMIT_FSIZE, &old);
  lim = old;
  lim.rlim_cur = (rlim_t)file_size(seg(dir, 1));
  void (*old_sig)(int) = signal(SIGXFSZ, SIG_IGN);
  CU_ASSERT_EQUAL(setrlimit(RLIMIT_FSIZE, &lim), 0);
  char user[8], item[8];
  ev_record r = make(4, user, item);
  uint64_t last = 0;
  rec_error e = {0};
  CU_ASSERT_EQUAL(eventlog_append(l, &r, 1, &last, &e), REC_EIO);
  setrlimit(RLIMIT_FSIZE, &old);
  signal(SIGXFSZ, old_sig);
  wait_calls(&t, 1);
  CU_ASSERT(k.calls == 1 && k.rc == REC_EIO); /* not durable when the log failed: refused */
  CU_ASSERT_EQUAL(eventlog_append(l, &r, 1, &last, &e), REC_EIO); /* and from now on */
  CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "disk refused"));
  CU_ASSERT_EQUAL(eventlog_last_seq(l), 2);
  eventlog_close(l);
  tracker_destroy(&t);
  collector_reset(&c);
}

static void every_allocation_failure_is_clean(void) {
  const char *dir = fresh_dir("ev_alloc");
  collector c = {0};
  size_t n;
  eventlog *l = open_log(dir, 2 * REC_BYTES, &c, &n);
  append_range(l, 1, 40, 2); /* 20 segments: the list of names grows twice */
  eventlog_close(l);
  size_t failed = 0;
  for (unsigned long nth = 1; nth < 100; nth++) {
    collector_reset(&c);
    rec_error e = {0};
    l = NULL;
    eventlog__fail_alloc(nth);
    int rc = eventlog_open(dir, 2 * REC_BYTES, collect, &c, &l, &n, &e);
    eventlog__fail_alloc(0);
    if (rc == 0) break;
    CU_ASSERT_EQUAL(rc, REC_ENOMEM);
    CU_ASSERT_PTR_NULL(l);
    failed++;
  }
  CU_ASSERT(failed >= 22); /* the log, two list sizes, 20 segment buffers */
  CU_ASSERT_PTR_NOT_NULL_FATAL(l);
  CU_ASSERT_EQUAL(n, 40);
  append_range(l, 41, 2, 2); /* fills the segment open() started */
  /* Appends: the buffer, the batch, and the rotation's list of full files. */
  char user[8], item[8];
  ev_record r = make(43, user, item);
  uint64_t last = 0;
  for (unsigned long nth = 1; nth <= 3; nth++) {
    rec_error e = {0};
    eventlog__fail_alloc(nth);
    CU_ASSERT_EQUAL(eventlog_append(l, &r, 1, &last, &e), REC_ENOMEM);
    eventlog__fail_alloc(0);
    CU_ASSERT_EQUAL(eventlog_last_seq(l), 42);
  }
  rec_error e = {0};
  CU_ASSERT_EQUAL(eventlog_append(l, &r, 1, &last, &e), 0);
  CU_ASSERT_EQUAL(last, 43);
  eventlog_close(l);
  collector_reset(&c);
}

void suite_eventlog(void) {
  static const test_case cases[] = {
      {"append and reopen replays in order", append_and_reopen_replays_in_order},
      {"bad batches are refused", bad_batches_are_refused},
      {"async: done once per batch, many threads", async_done_once_per_batch_from_many_threads},
      {"commit delay groups batches into one sync", commit_delay_groups_batches_into_one_sync},
      {"close completes pending batches", close_completes_pending_batches},
      {"torn tail is cut, appends go on", torn_tail_is_cut_and_appends_go_on},
      {"damage in the middle is skipped, not truncated", damage_in_the_middle_is_skipped_not_truncated},
      {"damaged first record resyncs", damaged_first_record_resyncs},
      {"empty segment files", empty_segment_files},
      {"a missing segment is a counted gap", missing_segment_is_a_counted_gap},
      {"records no resync explains are refused", records_no_resync_explains_are_refused},
      {"scan reads like open and writes nothing", scan_reads_like_open_and_writes_nothing},
      {"a refusing disk fails pending and later appends", a_refusing_disk_fails_pending_and_later_appends},
      {"every allocation failure is clean", every_allocation_failure_is_clean},
      {NULL, NULL}};
  test_add_suite("eventlog", cases);
}
