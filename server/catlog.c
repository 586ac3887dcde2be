/* server/catlog.c - see catlog.h. */
#include "server/catlog.h"
#include "common/le.h"
#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#define MAGIC "RECC"
enum { HEADER = 4 + 4 + 8, TRAILER = 8 };

struct catlog {
  int fd;
  char path[4200];
  uint64_t generation;
  off_t size;            /* bytes of good records */
  bool failed;           /* the disk refused: no more appends */
};

/* The length of the good record at p (avail bytes), or 0. */
static size_t record_at(const uint8_t *p, size_t avail) {
  if (avail < HEADER + TRAILER || memcmp(p, MAGIC, 4) != 0) return 0;
  uint32_t len = le_get32(p + 4);
  if (len > CATLOG_MAX_PAYLOAD || avail - HEADER - TRAILER < len) return 0;
  if (XXH3_64bits(p, HEADER + len) != le_get64(p + HEADER + len)) return 0;
  return HEADER + len + TRAILER;
}

/* True when a good record starts anywhere in p[from, n). */
static bool good_record_after(const uint8_t *p, size_t n, size_t from) {
  for (size_t i = from; i + HEADER + TRAILER <= n; i++) {
    const uint8_t *m = memchr(p + i, 'R', n - i);
    if (!m) return false;
    i = (size_t)(m - p);
    if (record_at(m, n - i)) return true;
  }
  return false;
}

static int read_all(int fd, const char *path, uint8_t **buf, size_t *n, rec_error *err) {
  struct stat st;
  if (fstat(fd, &st) != 0) return rec_fail(err, REC_EIO, "%s: %s", path, strerror(errno));
  *n = (size_t)st.st_size;
  *buf = malloc(*n ? *n : 1);
  if (!*buf) return rec_fail(err, REC_ENOMEM, "%s: out of memory for %zu bytes", path, *n);
  for (size_t got = 0; got < *n;) {
    ssize_t r = pread(fd, *buf + got, *n - got, (off_t)got);
    if (r <= 0) {
      free(*buf);
      return rec_fail(err, REC_EIO, "%s: %s", path, r < 0 ? strerror(errno) : "file shrank while read");
    }
    got += (size_t)r;
  }
  return 0;
}

static int replay(catlog *l, const uint8_t *buf, size_t n, catlog_replay_fn fn, void *arg, rec_error *err) {
  size_t at = 0;
  while (at < n) {
    size_t len = record_at(buf + at, n - at);
    if (!len) {
      if (good_record_after(buf, n, at + 1))
        return rec_fail(err, REC_ECORRUPT, "%s: damaged record at byte %zu with good records after it; "
                        "recd will not guess which catalog changes to drop (restore the file, or move it "
                        "away to start the live catalog afresh)", l->path, at);
      LOG_WARN("catalog log: torn tail truncated", "file=%s offset=%zu bytes=%zu", l->path, at, n - at);
      if (ftruncate(l->fd, (off_t)at) != 0 || fdatasync(l->fd) != 0)
        return rec_fail(err, REC_EIO, "%s: cannot cut the torn tail: %s", l->path, strerror(errno));
      break;
    }
    uint64_t gen = le_get64(buf + at + 8);
    if (gen != l->generation + 1)
      return rec_fail(err, REC_ECORRUPT, "%s: byte %zu: generation %llu follows %llu", l->path, at,
                      (unsigned long long)gen, (unsigned long long)l->generation);
    uint32_t plen = le_get32(buf + at + 4);
    if (fn) {
      int rc = fn(arg, gen, buf + at + HEADER, plen, err);
      if (rc) return rc;
    }
    l->generation = gen;
    at += len;
  }
  l->size = (off_t)(at < n ? at : n);
  return 0;
}

int catlog_open(const char *dir, catlog_replay_fn fn, void *arg, catlog **out, rec_error *err) {
  if (mkdir(dir, 0750) != 0 && errno != EEXIST)
    return rec_fail(err, REC_EIO, "%s: %s", dir, strerror(errno));
  catlog *l = calloc(1, sizeof *l);
  if (!l) return rec_fail(err, REC_ENOMEM, "out of memory");
  snprintf(l->path, sizeof l->path, "%s/catalog.log", dir);
  l->fd = open(l->path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
  if (l->fd < 0) {
    int rc = rec_fail(err, REC_EIO, "%s: %s", l->path, strerror(errno));
    free(l);
    return rc;
  }
  int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC); /* the file's name survives a crash */
  if (dfd >= 0) {
    if (fsync(dfd) != 0) LOG_WARN("catalog log: cannot fsync its directory", "dir=%s", dir);
    close(dfd);
  }
  uint8_t *buf = NULL;
  size_t n = 0;
  int rc = read_all(l->fd, l->path, &buf, &n, err);
  if (!rc) {
    rc = replay(l, buf, n, fn, arg, err);
    free(buf);
  }
  if (rc) {
    catlog_close(l);
    return rc;
  }
  *out = l;
  return 0;
}

uint64_t catlog_generation(const catlog *l) { return l->generation; }

int catlog_append(catlog *l, const uint8_t *payload, size_t len, rec_error *err) {
  if (l->failed) return rec_fail(err, REC_EIO, "catalog log: the disk refused an earlier write; restart recd");
  if (len > CATLOG_MAX_PAYLOAD) return rec_fail(err, REC_EINVAL, "catalog batch too large (%zu bytes)", len);
  size_t total = HEADER + len + TRAILER;
  uint8_t *rec = malloc(total);
  if (!rec) return rec_fail(err, REC_ENOMEM, "out of memory");
  memcpy(rec, MAGIC, 4);
  le_put32(rec + 4, (uint32_t)len);
  le_put64(rec + 8, l->generation + 1);
  memcpy(rec + HEADER, payload, len);
  le_put64(rec + HEADER + len, XXH3_64bits(rec, HEADER + len));
  size_t done = 0;
  int e = 0;
  while (done < total) {
    ssize_t w = pwrite(l->fd, rec + done, total - done, l->size + (off_t)done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      e = w < 0 ? errno : ENOSPC;
      break;
    }
    done += (size_t)w;
  }
  free(rec);
  if (!e && fdatasync(l->fd) != 0) e = errno;
  if (e) {
    l->failed = true;
    /* Cut what was written so a later start does not see half a record
     * as a torn tail it must judge; whatever happens, nothing was acked. */
    if (ftruncate(l->fd, l->size) != 0) {
    }
    LOG_ERROR("catalog log: the disk refused a write; catalog updates stop", "file=%s error=\"%s\"", l->path,
              strerror(e));
    return rec_fail(err, REC_EIO, "catalog log: the disk refused the write (%s); batch not applied", strerror(e));
  }
  l->size += (off_t)total;
  l->generation++;
  return 0;
}

void catlog_close(catlog *l) {
  if (!l) return;
  if (l->fd >= 0) close(l->fd);
  free(l);
}

/* Where the record of 'generation' ends in buf (0 for generation 0). */
static int prefix_end(const char *path, const uint8_t *buf, size_t n, uint64_t generation, size_t *end,
                      rec_error *err) {
  size_t at = 0;
  for (uint64_t gen = 0; gen < generation; gen++) {
    size_t len = at < n ? record_at(buf + at, n - at) : 0;
    if (!len)
      return at < n ? rec_fail(err, REC_ECORRUPT, "%s: damaged record at byte %zu", path, at)
                    : rec_fail(err, REC_ENOTFOUND, "%s: the log ends at generation %llu, before %llu", path,
                               (unsigned long long)gen, (unsigned long long)generation);
    if (le_get64(buf + at + 8) != gen + 1)
      return rec_fail(err, REC_ECORRUPT, "%s: byte %zu: generation %llu follows %llu", path, at,
                      (unsigned long long)le_get64(buf + at + 8), (unsigned long long)gen);
    at += len;
  }
  *end = at;
  return 0;
}

int catlog_copy_prefix(const char *dir, uint64_t generation, const char *out_dir, rec_error *err) {
  char src[4200], dst[4200];
  snprintf(src, sizeof src, "%s/catalog.log", dir);
  snprintf(dst, sizeof dst, "%s/catalog.log", out_dir);
  int fd = open(src, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return rec_fail(err, REC_EIO, "%s: %s", src, strerror(errno));
  uint8_t *buf = NULL;
  size_t n = 0, end = 0;
  int rc = read_all(fd, src, &buf, &n, err);
  close(fd);
  if (rc) return rc;
  if ((rc = prefix_end(src, buf, n, generation, &end, err))) goto free_buf;
  if (mkdir(out_dir, 0750) != 0 && errno != EEXIST) {
    rc = rec_fail(err, REC_EIO, "%s: %s", out_dir, strerror(errno));
    goto free_buf;
  }
  FILE *fp = fopen(dst, "wb");
  if (!fp || fwrite(buf, 1, end, fp) != end) rc = rec_fail(err, REC_EIO, "%s: %s", dst, strerror(errno));
  if (fp && fclose(fp) != 0 && !rc) rc = rec_fail(err, REC_EIO, "%s: %s", dst, strerror(errno));
free_buf:
  free(buf);
  return rc;
}
