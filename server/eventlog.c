/* server/eventlog.c - see eventlog.h. Appenders write under 'mu' and queue
 * their batch; the commit thread makes what they wrote durable and reports
 * it. Replay reads a whole segment into memory and walks it record by
 * record, resynchronising past damage. */
#include "server/eventlog.h"
#include "common/clock.h"
#include "common/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#define MAGIC 0x45434552u /* "RECE" little-endian */
enum {
  HEADER = 16, TRAILER = 4, FIXED = 8 + 4 + 4 + 8 + 2 + 2, MAX_ID = 128,
  MAX_PAYLOAD = FIXED + 2 * MAX_ID,
  MIN_RECORD = HEADER + FIXED + 2 + TRAILER, /* one-byte user and item: 50 bytes */
  MAX_RECORD = HEADER + MAX_PAYLOAD + TRAILER, /* 304 bytes */
  NAME_LEN = 31,                             /* events-<20 digits>.log */
};
#define MAX_DELAY_US INT64_C(3600000000)
#define REFUSED "event log: the disk refused a write; events not recorded"

/* A batch written and not yet reported to its appender. */
typedef struct batch {
  uint64_t last_seq;
  ev_done_fn done;
  void *arg;
  struct batch *next;
} batch;

struct eventlog {
  char dir[4096];
  size_t segment_bytes, segment_size;
  size_t durable_size;       /* bytes of the current segment known to be on disk */
  pthread_mutex_t mu;
  pthread_cond_t work;       /* to the commit thread: a first batch, a new delay, a failure, closing */
  pthread_t committer;
  bool closing, failed;
  int fd;                    /* the segment appended to */
  int *retired;              /* full segments the commit thread has still to sync and close */
  size_t n_retired, cap_retired;
  bool dir_dirty;            /* a segment was created since the directory was last synced */
  batch *head, *tail;        /* in sequence order */
  uint64_t next_seq;         /* sequence of the next record */
  uint64_t written, durable; /* last sequence written / made durable */
  uint64_t syncs, corrupt;
  int64_t commit_delay_us;
};

/* ---- fault injection (tests walk every allocation failure, as SQLite does) ---- */

static atomic_ulong fail_countdown;

void eventlog__fail_alloc(unsigned long nth) { atomic_store(&fail_countdown, nth); }

static bool alloc_fails(void) {
  unsigned long c = atomic_load(&fail_countdown);
  while (c && !atomic_compare_exchange_weak(&fail_countdown, &c, c - 1)) {
  }
  return c == 1;
}

static void *xmalloc(size_t n) { return alloc_fails() ? NULL : malloc(n); }
static void *xrealloc(void *p, size_t n) { return alloc_fails() ? NULL : realloc(p, n); }

/* ---- records ---- */

static void put_u16(unsigned char *p, uint16_t v) { p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8); }
static void put_u32(unsigned char *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static void put_u64(unsigned char *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static uint16_t get_u16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t get_u32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get_u64(const unsigned char *p) { return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32; }

static size_t record_size(const ev_record *r) { return HEADER + FIXED + r->user_len + r->item_len + TRAILER; }

/* Encodes one record at 'out' (room for record_size(r)); returns its size. */
static size_t encode(const ev_record *r, uint64_t seq, unsigned char *out) {
  unsigned char *p = out + HEADER;
  uint64_t t;
  memcpy(&t, &r->time_ms, 8);
  put_u64(p, t);
  put_u32(p + 8, (uint32_t)r->type);
  put_u32(p + 12, (uint32_t)r->quantity);
  uint64_t price;
  memcpy(&price, &r->price, 8);
  put_u64(p + 16, price);
  put_u16(p + 24, r->user_len);
  put_u16(p + 26, r->item_len);
  memcpy(p + FIXED, r->user, r->user_len);
  memcpy(p + FIXED + r->user_len, r->item, r->item_len);
  uint32_t len = FIXED + r->user_len + r->item_len;
  put_u32(out, MAGIC);
  put_u32(out + 4, len);
  put_u64(out + 8, seq);
  put_u32(out + HEADER + len, XXH32(out, HEADER + len, 0));
  return HEADER + len + TRAILER;
}

/* Decodes the record at p (avail bytes); 0 if it is not a whole, valid record. */
static size_t decode(const unsigned char *p, size_t avail, uint64_t *seq, ev_record *r) {
  if (avail < HEADER + TRAILER || get_u32(p) != MAGIC) return 0;
  uint32_t len = get_u32(p + 4);
  if (len < FIXED || len > MAX_PAYLOAD || avail < HEADER + len + TRAILER) return 0;
  if (XXH32(p, HEADER + len, 0) != get_u32(p + HEADER + len)) return 0;
  const unsigned char *q = p + HEADER;
  uint64_t t = get_u64(q), price = get_u64(q + 16);
  memcpy(&r->time_ms, &t, 8);
  memcpy(&r->price, &price, 8);
  r->type = (int32_t)get_u32(q + 8);
  r->quantity = (int32_t)get_u32(q + 12);
  r->user_len = get_u16(q + 24);
  r->item_len = get_u16(q + 26);
  if ((uint32_t)FIXED + r->user_len + r->item_len != len || !r->user_len || !r->item_len) return 0;
  r->user = (const char *)q + FIXED;
  r->item = (const char *)q + FIXED + r->user_len;
  *seq = get_u64(p + 8);
  return HEADER + len + TRAILER;
}

/* ---- segments ---- */

typedef struct seg_name {
  char name[NAME_LEN + 1];
  uint64_t first;            /* the sequence in the name */
} seg_name;

/* Only names the writer makes: 20 digits keep name order = sequence order. */
static bool parse_name(const char *s, uint64_t *first) {
  if (strlen(s) != NAME_LEN || strncmp(s, "events-", 7) != 0 || strcmp(s + 27, ".log") != 0) return false;
  uint64_t v = 0;
  for (int i = 7; i < 27; i++) {
    unsigned d = (unsigned)(s[i] - '0');
    if (d > 9 || v > (UINT64_MAX - d) / 10) return false;
    v = v * 10 + d;
  }
  *first = v;
  return true;
}

static int by_first(const void *a, const void *b) {
  uint64_t x = ((const seg_name *)a)->first, y = ((const seg_name *)b)->first;
  return (x > y) - (x < y);
}

/* The segments in 'dir', oldest first (caller frees *out). On failure
 * nothing stays allocated and *out, *n are untouched. */
static int list_segments(const char *dir, seg_name **out, size_t *n, rec_error *err) {
  DIR *d = opendir(dir);
  if (!d) return rec_fail(err, REC_EIO, "%s: %s", dir, strerror(errno));
  seg_name *segs = NULL;
  size_t len = 0, cap = 0;
  int rc = 0;
  for (;;) {
    errno = 0;
    struct dirent *e = readdir(d);
    uint64_t first;
    if (!e) {
      if (errno) rc = rec_fail(err, REC_EIO, "%s: %s", dir, strerror(errno));
      break;
    }
    if (!parse_name(e->d_name, &first)) continue;
    if (len == cap) {
      size_t grown_cap = cap ? 2 * cap : 16;
      seg_name *grown = xrealloc(segs, grown_cap * sizeof *grown);
      if (!grown) {
        rc = rec_fail(err, REC_ENOMEM, "%s: out of memory listing segments", dir);
        break;
      }
      segs = grown;
      cap = grown_cap;
    }
    memcpy(segs[len].name, e->d_name, NAME_LEN + 1);
    segs[len++].first = first;
  }
  closedir(d);
  if (rc) {
    free(segs);
    return rc;
  }
  if (len) qsort(segs, len, sizeof *segs, by_first);
  *out = segs;
  *n = len;
  return 0;
}

static void seg_path(char *out, size_t cap, const char *dir, uint64_t first) {
  snprintf(out, cap, "%s/events-%020llu.log", dir, (unsigned long long)first);
}

static int sync_dir(const char *dir) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return -1;
  int rc = fsync(fd);
  close(fd);
  return rc;
}

static int read_all(int fd, unsigned char *buf, size_t n) {
  for (size_t got = 0; got < n;) {
    ssize_t r = pread(fd, buf + got, n - got, (off_t)got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    got += (size_t)r;
  }
  return 0;
}

/* ---- replay ---- */

/* Where replay stands across the segments of one open or scan. */
typedef struct replay {
  const char *dir;
  ev_replay_fn fn;
  void *arg;
  uint64_t expected;         /* the next sequence to replay; 0 before the first segment */
  uint64_t corrupt;          /* records skipped */
  size_t count;              /* records replayed */
} replay;

/* What replay found in one segment. */
typedef struct seg_state {
  size_t size;               /* bytes, after a torn tail was cut */
  bool damaged;              /* records were skipped: the file is evidence, left as it is */
} seg_state;

/* The offset of the first valid record at or after 'from' (its sequence in
 * *seq, its size in *used), or 'size' when there is none. */
static size_t next_valid(const unsigned char *buf, size_t from, size_t size, uint64_t *seq, size_t *used) {
  ev_record r;
  for (size_t p = from; p + MIN_RECORD <= size; p++) {
    const unsigned char *m = memchr(buf + p, 'R', size - MIN_RECORD + 1 - p);
    if (!m) break;
    p = (size_t)(m - buf);
    if ((*used = decode(buf + p, size - p, seq, &r))) return p;
  }
  return size;
}

/* Whether 'span' damaged bytes could have held exactly k records. */
static bool could_hold(size_t span, uint64_t k) {
  if (k == 0) return span <= MAX_RECORD; /* damaged bytes that cost no sequence */
  return k <= span / MIN_RECORD && span <= k * MAX_RECORD;
}

/* Where replay may resume after a bad record at 'bad', expecting sequence
 * 'expected': the next valid record whose sequence s is at least
 * 'expected', whose jump the skipped bytes could hold, and which is followed
 * by the sequence s + 1, the end of the file or nothing valid (a torn tail).
 * Magic and checksum alone could be matched by a record-shaped item id; the
 * sequence and what follows cannot. Returns 'size' when there is none. */
static size_t resync(const unsigned char *buf, size_t size, size_t bad, uint64_t expected, uint64_t *seq) {
  size_t used, next_used;
  uint64_t next_seq;
  for (size_t p = next_valid(buf, bad + 1, size, seq, &used); p < size;
       p = next_valid(buf, p + 1, size, seq, &used)) {
    if (*seq < expected || !could_hold(p - bad, *seq - expected)) continue;
    size_t q = next_valid(buf, p + used, size, &next_seq, &next_used);
    if (q == size || (q == p + used && next_seq == *seq + 1)) return p;
  }
  return size;
}

/* Replays buf[0, size) of the segment at 'path', skipping bad records where
 * a resync is possible. Returns where the unusable tail starts (size: none). */
static size_t replay_records(replay *rp, const char *path, const unsigned char *buf, size_t size,
                             seg_state *st) {
  size_t off = 0;
  while (off < size) {
    ev_record r;
    uint64_t seq;
    size_t used = decode(buf + off, size - off, &seq, &r);
    if (used && seq == rp->expected) {
      if (rp->fn) rp->fn(rp->arg, seq, &r);
      rp->expected = seq + 1;
      rp->count++;
      off += used;
      continue;
    }
    size_t next = resync(buf, size, off, rp->expected, &seq);
    if (next == size) return off;
    if (seq > rp->expected)
      LOG_ERROR("event log: corrupt records skipped",
                "file=%s offset=%zu bytes=%zu missing=%llu-%llu records=%llu", path, off, next - off,
                (unsigned long long)rp->expected, (unsigned long long)seq - 1,
                (unsigned long long)(seq - rp->expected));
    else
      LOG_ERROR("event log: corrupt bytes skipped", "file=%s offset=%zu bytes=%zu missing=none", path, off,
                next - off);
    rp->corrupt += seq - rp->expected;
    rp->expected = seq;
    st->damaged = true;
    off = next;
  }
  return size;
}

/* The bytes of 'path' from 'tail' on hold nothing replay can use. Without a
 * valid record among them, the last segment's are a torn tail: the writer's
 * open cuts them ('fd' writable) unless the file is damaged anyway; a scan
 * skips them. Anything else is damage, logged and kept. */
static int end_segment(replay *rp, const char *path, int fd, const unsigned char *buf, size_t tail,
                       bool last, seg_state *st, rec_error *err) {
  uint64_t seq, valid = 0;
  size_t used;
  for (size_t p = next_valid(buf, tail, st->size, &seq, &used); p < st->size;
       p = next_valid(buf, p + used, st->size, &seq, &used))
    valid++;
  if (!valid && last && fd >= 0 && !st->damaged) {
    LOG_WARN("event log: torn tail truncated", "file=%s offset=%zu dropped_bytes=%zu", path, tail,
             st->size - tail);
    if (ftruncate(fd, (off_t)tail) != 0 || fsync(fd) != 0)
      return rec_fail(err, REC_EIO, "%s: truncate: %s", path, strerror(errno));
    st->size = tail;
  } else if (!valid && last) {
    if (fd >= 0)
      LOG_WARN("event log: torn tail kept in a damaged segment", "file=%s offset=%zu bytes=%zu", path, tail,
               st->size - tail);
  } else {
    LOG_ERROR("event log: corrupt segment tail skipped, file kept",
              "file=%s offset=%zu bytes=%zu first_missing=%llu valid_records_refused=%llu", path, tail,
              st->size - tail, (unsigned long long)rp->expected, (unsigned long long)valid);
    rp->corrupt += valid;
    st->damaged = true;
  }
  return 0;
}

/* Replays one segment. A gap before it (a missing file, or a tail lost
 * to a crash right after a rotation) is logged, counted and stepped over.
 * 'repair': the writer's open, which may cut the last segment's torn tail. */
static int replay_segment(replay *rp, const seg_name *sg, bool last, bool repair, seg_state *st,
                          rec_error *err) {
  char path[4200];
  snprintf(path, sizeof path, "%s/%s", rp->dir, sg->name);
  if (!rp->expected) {
    rp->expected = sg->first ? sg->first : 1;
  } else if (sg->first > rp->expected) {
    LOG_ERROR("event log: sequences missing before a segment", "file=%s missing=%llu-%llu records=%llu", path,
              (unsigned long long)rp->expected, (unsigned long long)sg->first - 1,
              (unsigned long long)(sg->first - rp->expected));
    rp->corrupt += sg->first - rp->expected;
    rp->expected = sg->first;
  }
  bool writable = repair && last;
  int fd = open(path, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC);
  struct stat sb;
  if (fd < 0 || fstat(fd, &sb) != 0) {
    int rc = rec_fail(err, REC_EIO, "%s: %s", path, strerror(errno));
    if (fd >= 0) close(fd);
    return rc;
  }
  *st = (seg_state){.size = (size_t)sb.st_size};
  unsigned char *buf = xmalloc(st->size + 1);
  int rc = 0;
  if (!buf) rc = rec_fail(err, REC_ENOMEM, "%s: out of memory (%zu bytes)", path, st->size);
  else if (read_all(fd, buf, st->size) != 0) rc = rec_fail(err, REC_EIO, "%s: read failed", path);
  size_t tail = rc ? st->size : replay_records(rp, path, buf, st->size, st);
  if (tail < st->size) rc = end_segment(rp, path, writable ? fd : -1, buf, tail, last, st, err);
  free(buf);
  close(fd);
  return rc;
}

/* ---- open, scan, close ---- */

static void destroy(eventlog *l) {
  for (size_t i = 0; i < l->n_retired; i++) close(l->retired[i]);
  free(l->retired);
  if (l->fd >= 0) close(l->fd);
  pthread_mutex_destroy(&l->mu);
  pthread_cond_destroy(&l->work);
  free(l);
}

/* Opens the segment appends go to: the last one if it is sound, has room and
 * ends where the log does; else a new one, its name made durable now. */
static int first_segment(eventlog *l, const seg_name *last, const seg_state *st, rec_error *err) {
  char path[4200];
  bool reuse = last && !st->damaged && st->size < l->segment_bytes &&
               (st->size || last->first == l->next_seq);
  if (!reuse && last && last->first == l->next_seq)
    return rec_fail(err, REC_ECORRUPT, "%s/%s: damaged, and no record in it could be replayed; move it aside",
                    l->dir, last->name);
  seg_path(path, sizeof path, l->dir, reuse ? last->first : l->next_seq);
  l->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (l->fd < 0) return rec_fail(err, REC_EIO, "%s: %s", path, strerror(errno));
  l->segment_size = l->durable_size = reuse ? st->size : 0; /* what is there was replayed: durable */
  if (!reuse && sync_dir(l->dir) != 0)
    return rec_fail(err, REC_EIO, "%s: fsync: %s", l->dir, strerror(errno));
  return 0;
}

static void *commit_main(void *arg);

int eventlog_open(const char *dir, size_t segment_bytes, ev_replay_fn fn, void *arg,
                  eventlog **out, size_t *replayed, rec_error *err) {
  if (strlen(dir) > 4000) return rec_fail(err, REC_EINVAL, "event log: directory name too long");
  if (mkdir(dir, 0755) != 0 && errno != EEXIST) return rec_fail(err, REC_EIO, "%s: %s", dir, strerror(errno));
  eventlog *l = xmalloc(sizeof *l);
  if (!l) return rec_fail(err, REC_ENOMEM, "out of memory");
  *l = (eventlog){.segment_bytes = segment_bytes, .fd = -1};
  snprintf(l->dir, sizeof l->dir, "%s", dir);
  pthread_mutex_init(&l->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* the commit delay is measured with rec_mono_ns */
  pthread_cond_init(&l->work, &ca);
  pthread_condattr_destroy(&ca);
  seg_name *segs = NULL;
  size_t n = 0;
  replay rp = {.dir = dir, .fn = fn, .arg = arg};
  seg_state st = {0};
  int rc = list_segments(dir, &segs, &n, err);
  for (size_t i = 0; !rc && i < n; i++) rc = replay_segment(&rp, &segs[i], i + 1 == n, true, &st, err);
  if (!rc) {
    l->next_seq = rp.expected ? rp.expected : 1;
    l->written = l->durable = l->next_seq - 1;
    l->corrupt = rp.corrupt;
    rc = first_segment(l, n ? &segs[n - 1] : NULL, &st, err);
  }
  free(segs);
  if (!rc && pthread_create(&l->committer, NULL, commit_main, l) != 0)
    rc = rec_fail(err, REC_ENOMEM, "event log: cannot start the commit thread");
  if (rc) {
    destroy(l);
    return rc;
  }
  *replayed = rp.count;
  *out = l;
  return 0;
}

int eventlog_scan(const char *dir, ev_replay_fn fn, void *arg, size_t *count, rec_error *err) {
  seg_name *segs;
  size_t n;
  int rc = list_segments(dir, &segs, &n, err);
  if (rc) return rc;
  replay rp = {.dir = dir, .fn = fn, .arg = arg};
  seg_state st;
  for (size_t i = 0; !rc && i < n; i++) rc = replay_segment(&rp, &segs[i], i + 1 == n, false, &st, err);
  free(segs);
  if (!rc) *count = rp.count;
  return rc;
}

void eventlog_close(eventlog *l) {
  if (!l) return;
  pthread_mutex_lock(&l->mu);
  l->closing = true;
  pthread_cond_signal(&l->work);
  pthread_mutex_unlock(&l->mu);
  pthread_join(l->committer, NULL); /* it reports every batch still queued first */
  destroy(l);
}

/* ---- the commit thread ---- */

/* Lets more batches join this round for the commit delay; closing or a
 * failure cuts it short. Caller holds mu. */
static void gather(eventlog *l) {
  int64_t start = rec_mono_ns();
  for (;;) {
    int64_t until = start + l->commit_delay_us * 1000;
    if (l->closing || l->failed || rec_mono_ns() >= until) return;
    struct timespec ts = {.tv_sec = until / 1000000000, .tv_nsec = until % 1000000000};
    pthread_cond_timedwait(&l->work, &l->mu, &ts);
  }
}

/* Detaches the queued batches up to sequence 'upto', oldest first. Caller holds mu. */
static batch *take(eventlog *l, uint64_t upto) {
  batch *first = l->head, *last = NULL;
  for (batch *b = l->head; b && b->last_seq <= upto; b = b->next) last = b;
  if (!last) return NULL;
  l->head = last->next;
  if (!l->head) l->tail = NULL;
  last->next = NULL;
  return first;
}

/* After a failure nothing written but not yet durable will ever be
 * acknowledged, so it must not come back at the next start either: the
 * current segment is cut back to what was durable (best effort; the disk
 * just failed). Full segments not yet synced are left alone: their batches
 * are reported failed too, and a restart may replay them. Caller holds mu. */
static void fail(eventlog *l) {
  if (l->failed) return;
  l->failed = true;
  if (l->segment_size > l->durable_size &&
      (ftruncate(l->fd, (off_t)l->durable_size) != 0 || fdatasync(l->fd) != 0))
    LOG_ERROR("event log: cannot cut the unacknowledged tail", "dir=%s error=\"%s\"", l->dir, strerror(errno));
  else if (l->segment_size > l->durable_size)
    LOG_WARN("event log: unacknowledged tail cut after the failure", "dir=%s bytes=%zu", l->dir,
             l->segment_size - l->durable_size);
  l->segment_size = l->durable_size;
}

/* Notes which call failed, and why, for the round's one log line. */
static bool succeeded(int rc, const char *what, const char **call, int *e) {
  if (rc == 0) return true;
  *call = what;
  *e = errno;
  return false;
}

/* One round: makes everything written so far durable - the full segments
 * handed over by rotations, the directory that names the new ones, then the
 * current segment - and reports every batch that covered, in order. Caller
 * holds mu; it is released for the syncs and the callbacks. After a failed
 * sync nothing is ever reported durable again: Linux may drop the dirty pages
 * and let a later fdatasync succeed. */
static void commit_round(eventlog *l) {
  uint64_t target = l->written;
  size_t target_size = l->segment_size;
  int fd = l->fd, *retired = l->retired, e = 0;
  size_t n_retired = l->n_retired;
  bool dir = l->dir_dirty, ok = !l->failed;
  const char *call = NULL;
  l->retired = NULL;
  l->n_retired = l->cap_retired = 0;
  l->dir_dirty = false;
  pthread_mutex_unlock(&l->mu);
  for (size_t i = 0; i < n_retired; i++) {
    ok = ok && succeeded(fdatasync(retired[i]), "fdatasync", &call, &e);
    close(retired[i]);
  }
  free(retired);
  ok = ok && (!dir || succeeded(sync_dir(l->dir), "fsync of the directory", &call, &e));
  ok = ok && succeeded(fdatasync(fd), "fdatasync", &call, &e);
  if (call)
    LOG_ERROR("event log: sync failed; refusing every append from now on", "dir=%s call=\"%s\" error=\"%s\"",
              l->dir, call, strerror(e));
  pthread_mutex_lock(&l->mu);
  l->syncs++;
  ok = ok && !l->failed; /* a write failed meanwhile: it cut back what this sync covered */
  if (!ok) {
    fail(l);
  } else {
    if (target > l->durable) l->durable = target;
    if (fd == l->fd && target_size > l->durable_size) l->durable_size = target_size;
  }
  batch *b = take(l, ok ? target : UINT64_MAX);
  pthread_mutex_unlock(&l->mu);
  while (b) {
    batch *next = b->next;
    b->done(b->arg, ok ? 0 : REC_EIO, b->last_seq);
    free(b);
    b = next;
  }
  pthread_mutex_lock(&l->mu);
}

static void *commit_main(void *arg) {
  eventlog *l = arg;
  pthread_mutex_lock(&l->mu);
  for (;;) {
    while (!l->head && !l->closing) pthread_cond_wait(&l->work, &l->mu);
    if (!l->head) break; /* closing, and every batch reported */
    gather(l);
    commit_round(l);
  }
  pthread_mutex_unlock(&l->mu);
  return NULL;
}

/* ---- appends ---- */

/* Starts the next segment. The full one goes to the commit thread, which
 * fdatasyncs and closes it, and fsyncs the directory, before it reports any
 * record written to the new one: no appender waits for the disk (creating
 * the file is a metadata update in memory). A file that cannot be created
 * fails this append only: nothing was written. Caller holds mu. */
static int rotate(eventlog *l, rec_error *err) {
  if (l->n_retired == l->cap_retired) {
    size_t cap = l->cap_retired ? 2 * l->cap_retired : 4;
    int *grown = xrealloc(l->retired, cap * sizeof *grown);
    if (!grown) return rec_fail(err, REC_ENOMEM, "out of memory");
    l->retired = grown;
    l->cap_retired = cap;
  }
  char path[4200];
  seg_path(path, sizeof path, l->dir, l->next_seq);
  int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return rec_fail(err, REC_EIO, "%s: %s", path, strerror(errno));
  l->retired[l->n_retired++] = l->fd;
  l->fd = fd;
  l->segment_size = l->durable_size = 0;
  l->dir_dirty = true;
  return 0;
}

static int write_all(int fd, const unsigned char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Encodes, writes and queues one batch ('b' is its node). Caller holds mu. */
static int write_batch(eventlog *l, const ev_record *recs, size_t n, unsigned char *buf, batch *b,
                       rec_error *err) {
  size_t len = 0;
  for (size_t i = 0; i < n; i++) len += encode(&recs[i], l->next_seq + i, buf + len);
  if (write_all(l->fd, buf, len) != 0) {
    int e = errno;
    LOG_ERROR("event log: write failed; refusing every append from now on", "dir=%s error=\"%s\"", l->dir,
              strerror(e));
    l->segment_size += len; /* as far as we know: fail() cuts it back */
    fail(l);
    pthread_cond_signal(&l->work); /* the batches still queued fail now, not after the delay */
    return rec_fail(err, REC_EIO, "event log: write: %s; events not recorded", strerror(e));
  }
  l->next_seq += n;
  l->written = l->next_seq - 1;
  l->segment_size += len;
  b->last_seq = l->written;
  b->next = NULL;
  if (l->tail) l->tail->next = b;
  else l->head = b, pthread_cond_signal(&l->work); /* the commit thread waits for a first batch only */
  l->tail = b;
  return 0;
}

int eventlog_append_async(eventlog *l, const ev_record *recs, size_t n, ev_done_fn done, void *arg,
                          rec_error *err) {
  if (n == 0 || n > SIZE_MAX / MAX_RECORD) return rec_fail(err, REC_EINVAL, "event log: an empty batch");
  size_t len = 0;
  for (size_t i = 0; i < n; i++) {
    if (!recs[i].user_len || recs[i].user_len > MAX_ID || !recs[i].item_len || recs[i].item_len > MAX_ID)
      return rec_fail(err, REC_EINVAL, "event log: records[%zu]: user and item must be 1 to %d bytes", i,
                      MAX_ID);
    len += record_size(&recs[i]);
  }
  unsigned char *buf = xmalloc(len);
  batch *b = xmalloc(sizeof *b);
  int rc = buf && b ? 0 : rec_fail(err, REC_ENOMEM, "out of memory");
  if (!rc) {
    *b = (batch){.done = done, .arg = arg};
    pthread_mutex_lock(&l->mu);
    if (l->closing) rc = rec_fail(err, REC_EUNAVAIL, "event log: closing");
    else if (l->failed) rc = rec_fail(err, REC_EIO, REFUSED);
    else if (l->segment_size >= l->segment_bytes) rc = rotate(l, err);
    if (!rc) rc = write_batch(l, recs, n, buf, b, err);
    pthread_mutex_unlock(&l->mu);
  }
  if (rc) free(b);
  free(buf);
  return rc;
}

/* eventlog_append waits on its own stack for the commit thread. */
typedef struct waiter {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool done;
  int rc;
  uint64_t last_seq;
} waiter;

static void wake(void *arg, int rc, uint64_t last_seq) {
  waiter *w = arg;
  pthread_mutex_lock(&w->mu);
  w->done = true;
  w->rc = rc;
  w->last_seq = last_seq;
  pthread_cond_signal(&w->cv); /* under the lock: the waiter frees 'w' as soon as it sees 'done' */
  pthread_mutex_unlock(&w->mu);
}

int eventlog_append(eventlog *l, const ev_record *recs, size_t n, uint64_t *last_seq, rec_error *err) {
  waiter w = {.done = false};
  pthread_mutex_init(&w.mu, NULL);
  pthread_cond_init(&w.cv, NULL);
  int rc = eventlog_append_async(l, recs, n, wake, &w, err);
  if (!rc) {
    pthread_mutex_lock(&w.mu);
    while (!w.done) pthread_cond_wait(&w.cv, &w.mu);
    pthread_mutex_unlock(&w.mu);
    if (w.rc) rc = rec_fail(err, w.rc, REFUSED);
    else *last_seq = w.last_seq;
  }
  pthread_mutex_destroy(&w.mu);
  pthread_cond_destroy(&w.cv);
  return rc;
}

void eventlog_set_commit_delay(eventlog *l, int64_t us) {
  pthread_mutex_lock(&l->mu);
  l->commit_delay_us = us < 0 ? 0 : us > MAX_DELAY_US ? MAX_DELAY_US : us;
  pthread_cond_signal(&l->work);
  pthread_mutex_unlock(&l->mu);
}

static uint64_t locked_read(eventlog *l, const uint64_t *field) {
  pthread_mutex_lock(&l->mu);
  uint64_t v = *field;
  pthread_mutex_unlock(&l->mu);
  return v;
}

uint64_t eventlog_last_seq(eventlog *l) { return locked_read(l, &l->durable); }
uint64_t eventlog_corrupt_records(eventlog *l) { return locked_read(l, &l->corrupt); }
uint64_t eventlog_syncs(eventlog *l) { return locked_read(l, &l->syncs); }
