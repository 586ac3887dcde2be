/* server/declog.c - see declog.h. A ring of queued records under one mutex,
 * a writer thread that frames, appends and rotates, and a reader that checks
 * every record before handing it out. */
#include "server/declog.h"
#include "common/le.h"
#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#define MAGIC "RDL1"
enum { HEADER = 8, TRAILER = 8 };

typedef struct pending {
  uint8_t *p;
  size_t n;
} pending;

struct declog {
  char path[4096];
  int64_t max_bytes;
  int keep;
  int fd;
  int64_t size;              /* bytes in the current file */
  pthread_t writer;
  pthread_mutex_t mu;
  pthread_cond_t more, done; /* 'more': queued or closing; 'done': a batch written */
  pending *ring;
  size_t cap, head, count;
  uint64_t queued, finished; /* records taken into / out of the ring, for flush */
  bool closing;
  atomic_uint_fast64_t written, dropped, failed;
};

bool declog_sampled(double rate, const char *id, size_t len) {
  if (rate >= 1) return true;
  if (rate <= 0) return false;
  /* The top 53 bits as a fraction in [0, 1): exact in a double. */
  return (double)(XXH3_64bits(id, len) >> 11) / 9007199254740992.0 < rate;
}

static int open_file(declog *l, rec_error *err) {
  l->fd = open(l->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  struct stat st;
  if (l->fd < 0 || fstat(l->fd, &st) != 0) {
    if (l->fd >= 0) close(l->fd);
    l->fd = -1;
    return rec_fail(err, REC_EIO, "%s: %s", l->path, strerror(errno));
  }
  l->size = st.st_size;
  return 0;
}

/* PATH -> PATH.1 -> ... -> PATH.keep; what falls off the end is deleted. */
static void rotate(declog *l) {
  char from[4200], to[4200];
  if (l->fd >= 0) close(l->fd);
  l->fd = -1;
  if (l->keep == 0) {
    unlink(l->path);
  } else {
    for (int i = l->keep - 1; i >= 1; i--) {
      snprintf(from, sizeof from, "%s.%d", l->path, i);
      snprintf(to, sizeof to, "%s.%d", l->path, i + 1);
      if (rename(from, to) != 0 && errno != ENOENT) LOG_WARN("decision log: cannot rotate", "file=%s", from);
    }
    snprintf(to, sizeof to, "%s.1", l->path);
    if (rename(l->path, to) != 0) LOG_WARN("decision log: cannot rotate", "file=%s", l->path);
  }
  rec_error e = {0};
  if (open_file(l, &e) != 0) LOG_WARN("decision log: cannot open", "error=\"%s\"", e.msg);
}

static bool write_all(int fd, const uint8_t *p, size_t n) {
  while (n) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= (size_t)w;
  }
  return true;
}

/* Frames one record and appends it; a failed append is cut off again so
 * the records after it stay readable. */
static void append(declog *l, const uint8_t *payload, size_t n) {
  size_t total = DECLOG_OVERHEAD + n;
  if (l->fd < 0) open_file(l, NULL); /* a rotation could not open the next file: try again */
  if (l->size > 0 && l->size + (int64_t)total > l->max_bytes) rotate(l);
  uint8_t *rec = malloc(total);
  bool ok = rec && l->fd >= 0;
  if (ok) {
    memcpy(rec, MAGIC, 4);
    le_put32(rec + 4, (uint32_t)n);
    memcpy(rec + HEADER, payload, n);
    le_put64(rec + HEADER + n, XXH3_64bits(rec, HEADER + n));
    ok = write_all(l->fd, rec, total);
  }
  free(rec);
  if (ok) {
    l->size += (int64_t)total;
    atomic_fetch_add(&l->written, 1);
    return;
  }
  if (l->fd >= 0 && ftruncate(l->fd, l->size) != 0) rotate(l); /* what follows would be unreadable: a new file */
  if (atomic_fetch_add(&l->failed, 1) == 0)
    LOG_WARN("decision log: a record could not be written", "file=%s error=\"%s\"", l->path, strerror(errno));
}

static void *writer_main(void *arg) {
  declog *l = arg;
  pthread_mutex_lock(&l->mu);
  for (;;) {
    while (!l->count && !l->closing) pthread_cond_wait(&l->more, &l->mu);
    if (!l->count) break;
    pending x = l->ring[l->head];
    l->head = (l->head + 1) % l->cap;
    l->count--;
    pthread_mutex_unlock(&l->mu);
    if (x.n <= DECLOG_MAX_PAYLOAD) append(l, x.p, x.n);
    else atomic_fetch_add(&l->failed, 1);
    free(x.p);
    pthread_mutex_lock(&l->mu);
    l->finished++;
    pthread_cond_broadcast(&l->done);
  }
  pthread_mutex_unlock(&l->mu);
  return NULL;
}

int declog_open(const declog_opts *o, declog **out, rec_error *err) {
  if (!o->path[0] || o->max_bytes < 1 || o->keep < 0 || o->queue < 1)
    return rec_fail(err, REC_EINVAL, "decision log: bad options");
  declog *l = calloc(1, sizeof *l);
  if (!l || !(l->ring = calloc(o->queue, sizeof *l->ring))) {
    free(l);
    return rec_fail(err, REC_ENOMEM, "out of memory");
  }
  snprintf(l->path, sizeof l->path, "%s", o->path);
  l->max_bytes = o->max_bytes;
  l->keep = o->keep;
  l->cap = o->queue;
  int rc = open_file(l, err);
  if (rc) goto free_log;
  pthread_mutex_init(&l->mu, NULL);
  pthread_cond_init(&l->more, NULL);
  pthread_cond_init(&l->done, NULL);
  if (pthread_create(&l->writer, NULL, writer_main, l) != 0) {
    rc = rec_fail(err, REC_ENOMEM, "decision log: cannot start its writer thread");
    goto destroy_sync;
  }
  *out = l;
  return 0;
destroy_sync:
  pthread_cond_destroy(&l->done);
  pthread_cond_destroy(&l->more);
  pthread_mutex_destroy(&l->mu);
  close(l->fd);
free_log:
  free(l->ring);
  free(l);
  return rc;
}

void declog_close(declog *l) {
  if (!l) return;
  pthread_mutex_lock(&l->mu);
  l->closing = true;
  pthread_cond_signal(&l->more);
  pthread_mutex_unlock(&l->mu);
  pthread_join(l->writer, NULL);
  if (l->fd >= 0) close(l->fd);
  pthread_cond_destroy(&l->done);
  pthread_cond_destroy(&l->more);
  pthread_mutex_destroy(&l->mu);
  free(l->ring);
  free(l);
}

int declog_submit(declog *l, uint8_t *payload, size_t len) {
  pthread_mutex_lock(&l->mu);
  if (l->count == l->cap || l->closing) {
    pthread_mutex_unlock(&l->mu);
    free(payload);
    atomic_fetch_add(&l->dropped, 1);
    return REC_EOVERLOAD;
  }
  l->ring[(l->head + l->count) % l->cap] = (pending){payload, len};
  l->count++;
  l->queued++;
  pthread_cond_signal(&l->more);
  pthread_mutex_unlock(&l->mu);
  return 0;
}

void declog_flush(declog *l) {
  pthread_mutex_lock(&l->mu);
  uint64_t until = l->queued;
  while (l->finished < until) pthread_cond_wait(&l->done, &l->mu);
  pthread_mutex_unlock(&l->mu);
}

uint64_t declog_written(declog *l) { return atomic_load(&l->written); }
uint64_t declog_dropped(declog *l) { return atomic_load(&l->dropped); }
uint64_t declog_failed(declog *l) { return atomic_load(&l->failed); }

/* ---- reading ---- */

struct declog_reader {
  FILE *fp;
  char path[4096];
  uint64_t offset;           /* where the next record starts */
  uint8_t *buf;
  size_t cap;
  bool broken;
  rec_error last;
};

int declog_reader_open(const char *path, declog_reader **out, rec_error *err) {
  declog_reader *r = calloc(1, sizeof *r);
  if (!r) return rec_fail(err, REC_ENOMEM, "out of memory");
  if (!(r->fp = fopen(path, "rb"))) {
    int rc = rec_fail(err, REC_EIO, "%s: %s", path, strerror(errno));
    free(r);
    return rc;
  }
  snprintf(r->path, sizeof r->path, "%s", path);
  *out = r;
  return 0;
}

static int broken(declog_reader *r, int code, rec_error *err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int broken(declog_reader *r, int code, rec_error *err, const char *fmt, ...) {
  char msg[160];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  rec_fail(&r->last, code, "%s: offset %llu: %s", r->path, (unsigned long long)r->offset, msg);
  r->broken = true;
  if (err) *err = r->last;
  return code;
}

int declog_next(declog_reader *r, const uint8_t **p, size_t *n, uint64_t *offset, rec_error *err) {
  if (r->broken) {
    if (err) *err = r->last;
    return r->last.code;
  }
  uint8_t head[HEADER];
  size_t got = fread(head, 1, HEADER, r->fp);
  if (got == 0 && feof(r->fp)) return 0;
  if (got < HEADER)
    return ferror(r->fp) ? broken(r, REC_EIO, err, "read error (%zu of %zu header bytes)", got, (size_t)HEADER)
                         : broken(r, REC_ECORRUPT, err, "truncated record (%zu of %zu header bytes)", got, (size_t)HEADER);
  if (memcmp(head, MAGIC, 4) != 0) return broken(r, REC_ECORRUPT, err, "not a record (bad magic)");
  size_t len = le_get32(head + 4);
  if (len > DECLOG_MAX_PAYLOAD)
    return broken(r, REC_ECORRUPT, err, "record length %zu is past the limit %zu", len, (size_t)DECLOG_MAX_PAYLOAD);
  size_t need = HEADER + len + TRAILER;
  if (need > r->cap) {
    uint8_t *b = realloc(r->buf, need);
    if (!b) return broken(r, REC_ENOMEM, err, "out of memory for %zu bytes", need);
    r->buf = b;
    r->cap = need;
  }
  memcpy(r->buf, head, HEADER);
  got = fread(r->buf + HEADER, 1, len + TRAILER, r->fp);
  if (got < len + TRAILER)
    return ferror(r->fp) ? broken(r, REC_EIO, err, "read error (%zu of %zu bytes)", HEADER + got, need)
                         : broken(r, REC_ECORRUPT, err, "truncated record (%zu of %zu bytes)", HEADER + got, need);
  if (XXH3_64bits(r->buf, HEADER + len) != le_get64(r->buf + HEADER + len))
    return broken(r, REC_ECORRUPT, err, "checksum mismatch (record of %zu bytes)", need);
  *p = r->buf + HEADER;
  *n = len;
  *offset = r->offset;
  r->offset += need;
  return 1;
}

void declog_reader_free(declog_reader *r) {
  if (!r) return;
  if (r->fp) fclose(r->fp);
  free(r->buf);
  free(r);
}
