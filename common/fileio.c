/* common/fileio.c - see fileio.h. */
#include "common/fileio.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

char *rec_read_file(const char *path, size_t *len, rec_error *err) {
  FILE *fp = fopen(path, "rb");
  if (!fp) {
    rec_fail(err, REC_EIO, "%s: %s", path, strerror(errno));
    return NULL;
  }
  char *buf = NULL;
  size_t cap = 0, n = 0;
  for (;;) {
    if (cap - n < 65536) {
      size_t ncap = cap ? cap * 2 : 65536;
      char *nb = realloc(buf, ncap + 1);
      if (!nb) {
        free(buf);
        fclose(fp);
        rec_fail(err, REC_ENOMEM, "%s: out of memory", path);
        return NULL;
      }
      buf = nb;
      cap = ncap;
    }
    size_t r = fread(buf + n, 1, cap - n, fp);
    n += r;
    if (r == 0) break;
  }
  int bad = ferror(fp);
  fclose(fp);
  if (bad) {
    free(buf);
    rec_fail(err, REC_EIO, "%s: read error", path);
    return NULL;
  }
  buf[n] = '\0';
  *len = n;
  return buf;
}

int rec_hash_file(const char *path, uint64_t *hash, uint64_t *bytes, rec_error *err) {
  FILE *fp = fopen(path, "rb");
  if (!fp) return rec_fail(err, REC_EIO, "%s: %s", path, strerror(errno));
  XXH3_state_t *st = XXH3_createState();
  unsigned char *buf = malloc(1 << 20);
  int rc = 0;
  if (!st || !buf) {
    rc = rec_fail(err, REC_ENOMEM, "%s: out of memory", path);
    goto done;
  }
  XXH3_64bits_reset(st);
  uint64_t total = 0;
  size_t r;
  while ((r = fread(buf, 1, 1 << 20, fp)) > 0) {
    XXH3_64bits_update(st, buf, r);
    total += r;
  }
  if (ferror(fp)) {
    rc = rec_fail(err, REC_EIO, "%s: read error", path);
    goto done;
  }
  *hash = XXH3_64bits_digest(st);
  *bytes = total;
done:
  free(buf);
  XXH3_freeState(st);
  fclose(fp);
  return rc;
}
