/* server/eventlog.c - see eventlog.h. */
#include "server/eventlog.h"
#include "common/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#define MAGIC 0x45434552u /* "RECE" little-endian */
enum { HEADER = 16, TRAILER = 4, FIXED = 8 + 4 + 4 + 8 + 2 + 2, MAX_PAYLOAD = FIXED + 2 * 128 };

struct eventlog {
  char dir[4096];
  size_t segment_bytes, segment_size;
  int fd;
  pthread_mutex_t mu;
  pthread_cond_t synced;
  uint64_t next_seq;         /* sequence of the next record */
  uint64_t written, durable; /* last sequence written / made durable */
  bool syncing, failed;
  int64_t commit_delay_us;
};

static void put_u16(unsigned char *p, uint16_t v) { p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8); }
static void put_u32(unsigned char *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static void put_u64(unsigned char *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static uint16_t get_u16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t get_u32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get_u64(const unsigned char *p) { return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32; }

/* Encodes one record at 'out' (room for HEADER + MAX_PAYLOAD + TRAILER); returns its size. */
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

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Segment file names in 'dir', oldest first (their names sort by sequence). */
static int list_segments(const char *dir, char ***out, size_t *n, rec_error *err) {
  DIR *d = opendir(dir);
  if (!d) return rec_fail(err, REC_EIO, "%s: %s", dir, strerror(errno));
  char **names = NULL;
  size_t cap = 0;
  *n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    unsigned long long seq;
    char tail[8];
    if (sscanf(e->d_name, "events-%20llu.%7s", &seq, tail) != 2 || strcmp(tail, "log") != 0) continue;
    if (*n == cap) {
      cap = cap ? cap * 2 : 16;
      char **nn = realloc(names, cap * sizeof *nn);
      if (!nn) break;
      names = nn;
    }
    if (!(names[*n] = strdup(e->d_name))) break;
    (*n)++;
  }
  closedir(d);
  if (*n) qsort(names, *n, sizeof *names, by_name);
  *out = names;
  return 0;
}

static int sync_dir(const char *dir) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY);
  if (fd < 0) return -1;
  int rc = fsync(fd);
  close(fd);
  return rc;
}

/* Replays one segment; truncates a torn tail when it is the last one (and
 * 'repair' is set: the writer's open, not a reader's scan). */
static int replay_segment(eventlog *l, const char *name, bool last, bool repair, ev_replay_fn fn,
                          void *arg, size_t *count, rec_error *err) {
  char path[4200];
  snprintf(path, sizeof path, "%s/%s", l->dir, name);
  int fd = open(path, repair ? O_RDWR : O_RDONLY);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0) {
    if (fd >= 0) close(fd);
    return rec_fail(err, REC_EIO, "%s: %s", path, strerror(errno));
  }
  unsigned char *buf = malloc((size_t)st.st_size + 1);
  ssize_t got = buf ? pread(fd, buf, (size_t)st.st_size, 0) : -1;
  int rc = 0;
  size_t off = 0;
  while (got == st.st_size && off < (size_t)st.st_size) {
    ev_record r;
    uint64_t seq;
    size_t used = decode(buf + off, (size_t)st.st_size - off, &seq, &r);
    if (!used || (l->next_seq && seq != l->next_seq)) break;
    fn(arg, seq, &r);
    l->next_seq = seq + 1;
    (*count)++;
    off += used;
  }
  if (got != st.st_size) {
    rc = rec_fail(err, REC_EIO, "%s: read failed", path);
  } else if (off < (size_t)st.st_size && !last) {
    rc = rec_fail(err, REC_ECORRUPT, "%s: invalid record at byte %zu in a closed segment", path, off);
  } else if (off < (size_t)st.st_size && repair) {
    LOG_WARN("event log: torn tail truncated", "file=%s offset=%zu dropped_bytes=%lld", path, off,
             (long long)st.st_size - (long long)off);
    if (ftruncate(fd, (off_t)off) != 0 || fsync(fd) != 0) rc = rec_fail(err, REC_EIO, "%s: truncate failed", path);
  }
  l->segment_size = off;
  free(buf);
  close(fd);
  return rc;
}

static int open_segment(eventlog *l, const char *name, bool fresh, rec_error *err) {
  char path[4200];
  snprintf(path, sizeof path, "%s/%s", l->dir, name);
  l->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (l->fd < 0) return rec_fail(err, REC_EIO, "%s: %s", path, strerror(errno));
  if (fresh) {
    l->segment_size = 0;
    if (sync_dir(l->dir) != 0) return rec_fail(err, REC_EIO, "%s: fsync: %s", l->dir, strerror(errno));
  }
  return 0;
}

static int new_segment(eventlog *l, rec_error *err) {
  char name[64];
  snprintf(name, sizeof name, "events-%020llu.log", (unsigned long long)l->next_seq);
  return open_segment(l, name, true, err);
}

int eventlog_open(const char *dir, size_t segment_bytes, ev_replay_fn fn, void *arg,
                  eventlog **out, size_t *replayed, rec_error *err) {
  if (mkdir(dir, 0755) != 0 && errno != EEXIST) return rec_fail(err, REC_EIO, "%s: %s", dir, strerror(errno));
  eventlog *l = calloc(1, sizeof *l);
  if (!l) return rec_fail(err, REC_ENOMEM, "out of memory");
  snprintf(l->dir, sizeof l->dir, "%s", dir);
  l->segment_bytes = segment_bytes;
  l->fd = -1;
  pthread_mutex_init(&l->mu, NULL);
  pthread_cond_init(&l->synced, NULL);
  char **names = NULL;
  size_t n = 0;
  *replayed = 0;
  int rc = list_segments(dir, &names, &n, err);
  for (size_t i = 0; !rc && i < n; i++)
    rc = replay_segment(l, names[i], i + 1 == n, true, fn, arg, replayed, err);
  if (!l->next_seq) l->next_seq = 1;
  l->written = l->durable = l->next_seq - 1;
  if (!rc) rc = n && l->segment_size < segment_bytes ? open_segment(l, names[n - 1], false, err)
                                                      : new_segment(l, err);
  for (size_t i = 0; i < n; i++) free(names[i]);
  free(names);
  if (rc) {
    eventlog_close(l);
    return rc;
  }
  *out = l;
  return 0;
}

int eventlog_scan(const char *dir, ev_replay_fn fn, void *arg, size_t *count, rec_error *err) {
  eventlog l = {.fd = -1};
  snprintf(l.dir, sizeof l.dir, "%s", dir);
  char **names = NULL;
  size_t n = 0;
  *count = 0;
  int rc = list_segments(dir, &names, &n, err);
  for (size_t i = 0; !rc && i < n; i++) rc = replay_segment(&l, names[i], i + 1 == n, false, fn, arg, count, err);
  for (size_t i = 0; i < n; i++) free(names[i]);
  free(names);
  return rc;
}

/* ---- appends ---- */

/* Caller holds mu and no sync is running: everything written so far is made
 * durable in the old segment before a new one starts. */
static int rotate(eventlog *l, rec_error *err) {
  if (fdatasync(l->fd) != 0) return rec_fail(err, REC_EIO, "event log: fdatasync: %s", strerror(errno));
  l->durable = l->written;
  close(l->fd);
  return new_segment(l, err);
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

/* Group commit: the first waiter to find no sync running syncs for all. */
static int wait_durable(eventlog *l, uint64_t seq, rec_error *err) {
  while (l->durable < seq && !l->failed) {
    if (l->syncing) {
      pthread_cond_wait(&l->synced, &l->mu);
      continue;
    }
    l->syncing = true;
    int64_t delay = l->commit_delay_us;
    pthread_mutex_unlock(&l->mu);
    if (delay > 0) nanosleep(&(struct timespec){delay / 1000000, (delay % 1000000) * 1000}, NULL);
    pthread_mutex_lock(&l->mu);
    uint64_t target = l->written; /* whatever joined during the delay rides along */
    int fd = l->fd;
    pthread_mutex_unlock(&l->mu);
    int rc = fdatasync(fd);
    pthread_mutex_lock(&l->mu);
    l->syncing = false;
    if (rc != 0) l->failed = true;
    else if (target > l->durable) l->durable = target;
    pthread_cond_broadcast(&l->synced);
  }
  return l->failed ? rec_fail(err, REC_EIO, "event log: the disk refused a write; events not recorded") : 0;
}

int eventlog_append(eventlog *l, const ev_record *recs, size_t n, uint64_t *last_seq, rec_error *err) {
  unsigned char *buf = malloc(n * (HEADER + MAX_PAYLOAD + TRAILER) + 1);
  if (!buf) return rec_fail(err, REC_ENOMEM, "out of memory");
  pthread_mutex_lock(&l->mu);
  int rc = 0;
  while (l->syncing && l->segment_size >= l->segment_bytes) pthread_cond_wait(&l->synced, &l->mu);
  if (l->failed) rc = rec_fail(err, REC_EIO, "event log: the disk refused a write; events not recorded");
  else if (l->segment_size >= l->segment_bytes && (rc = rotate(l, err))) l->failed = true;
  size_t len = 0;
  for (size_t i = 0; !rc && i < n; i++) len += encode(&recs[i], l->next_seq + i, buf + len);
  if (!rc && write_all(l->fd, buf, len) != 0) {
    l->failed = true;
    rc = rec_fail(err, REC_EIO, "event log: write: %s", strerror(errno));
  }
  if (!rc) {
    l->next_seq += n;
    l->written = l->next_seq - 1;
    l->segment_size += len;
    *last_seq = l->written;
    rc = wait_durable(l, l->written, err);
  }
  pthread_mutex_unlock(&l->mu);
  free(buf);
  return rc;
}

void eventlog_set_commit_delay(eventlog *l, int64_t us) {
  pthread_mutex_lock(&l->mu);
  l->commit_delay_us = us;
  pthread_mutex_unlock(&l->mu);
}

uint64_t eventlog_last_seq(eventlog *l) {
  pthread_mutex_lock(&l->mu);
  uint64_t s = l->durable;
  pthread_mutex_unlock(&l->mu);
  return s;
}

void eventlog_close(eventlog *l) {
  if (!l) return;
  if (l->fd >= 0) {
    fdatasync(l->fd);
    close(l->fd);
  }
  pthread_mutex_destroy(&l->mu);
  pthread_cond_destroy(&l->synced);
  free(l);
}
