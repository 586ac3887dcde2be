/* common/npy.c - the .npy v1/v2 header is a Python dict literal padded to 64
 * bytes; we write exactly the form NumPy writes and read the three keys we
 * need, refusing anything we would misread. */
#include "common/npy.h"
#include "common/xmath.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char MAGIC[6] = {'\x93', 'N', 'U', 'M', 'P', 'Y'};

/* Parses "(R, C)", "(R,)" from the header's shape entry. */
static int parse_shape(const char *s, npy_f32 *a) {
  char *end;
  while (*s == ' ') s++;
  if (*s++ != '(') return -1;
  errno = 0;
  unsigned long long r = strtoull(s, &end, 10);
  if (end == s || errno) return -1;
  s = end;
  while (*s == ' ') s++;
  if (*s != ',') return -1;
  s++;
  while (*s == ' ') s++;
  if (*s == ')') {
    a->ndim = 1;
    a->rows = r;
    a->cols = 1;
    return 0;
  }
  unsigned long long c = strtoull(s, &end, 10);
  if (end == s || errno) return -1;
  s = end;
  while (*s == ' ') s++;
  if (*s == ',') s++;
  while (*s == ' ') s++;
  if (*s != ')') return -1;
  a->ndim = 2;
  a->rows = r;
  a->cols = c;
  return 0;
}

static int parse_header(const char *h, npy_f32 *a) {
  const char *d = strstr(h, "'descr':");
  const char *f = strstr(h, "'fortran_order':");
  const char *s = strstr(h, "'shape':");
  if (!d || !f || !s) return -1;
  d += 8;
  while (*d == ' ') d++;
  if (strncmp(d, "'<f4'", 5) != 0) return -2;
  f += 16;
  while (*f == ' ') f++;
  if (strncmp(f, "False", 5) != 0) return -3;
  return parse_shape(s + 8, a);
}

int npy_f32_read(const char *path, npy_f32 *out, rec_error *err) {
  FILE *fp = fopen(path, "rb");
  if (!fp) return rec_fail(err, REC_EIO, "%s: %s", path, strerror(errno));
  unsigned char pre[10];
  char *hdr = NULL;
  npy_f32 a = {0};
  int rc = REC_ECORRUPT;
  if (fread(pre, 1, 8, fp) != 8 || memcmp(pre, MAGIC, 6) != 0) {
    rec_fail(err, rc, "%s: not a .npy file (bad magic)", path);
    goto close_file;
  }
  size_t hlen;
  if (pre[6] == 1) {
    if (fread(pre + 8, 1, 2, fp) != 2) goto truncated;
    hlen = pre[8] | (size_t)pre[9] << 8;
  } else if (pre[6] == 2 || pre[6] == 3) {
    unsigned char l[4];
    if (fread(l, 1, 4, fp) != 4) goto truncated;
    hlen = l[0] | (size_t)l[1] << 8 | (size_t)l[2] << 16 | (size_t)l[3] << 24;
    if (hlen > 1 << 20) goto truncated;
  } else {
    rec_fail(err, rc, "%s: unsupported .npy version %d", path, pre[6]);
    goto close_file;
  }
  hdr = malloc(hlen + 1);
  if (!hdr) {
    rc = rec_fail(err, REC_ENOMEM, "%s: out of memory", path);
    goto close_file;
  }
  if (fread(hdr, 1, hlen, fp) != hlen) goto truncated;
  hdr[hlen] = '\0';
  int hrc = parse_header(hdr, &a);
  if (hrc == -2) {
    rec_fail(err, rc, "%s: dtype must be little-endian float32 ('<f4'); save with "
                      "arr.astype('<f4')", path);
    goto free_hdr;
  }
  if (hrc == -3) {
    rec_fail(err, rc, "%s: Fortran-ordered arrays are not supported; save "
                      "np.ascontiguousarray(arr)", path);
    goto free_hdr;
  }
  if (hrc != 0) {
    rec_fail(err, rc, "%s: cannot parse .npy header (want a 1-D or 2-D shape)", path);
    goto free_hdr;
  }
  size_t n, bytes;
  if (rec_mul_overflow(a.rows, a.cols, &n) || rec_mul_overflow(n, sizeof(float), &bytes)) {
    rec_fail(err, rc, "%s: shape too large", path);
    goto free_hdr;
  }
  /* The header is only a claim: check it against the file before
   * allocating what it asks for (a forged shape would ask for terabytes). */
  struct stat st;
  long at = ftell(fp);
  if (fstat(fileno(fp), &st) != 0 || at < 0 || st.st_size < at) goto truncated;
  uint64_t have = (uint64_t)st.st_size - (uint64_t)at;
  if (have != (uint64_t)bytes) {
    rec_fail(err, rc, "%s: %s: header says %zu x %zu floats (%zu bytes), the file holds %llu bytes of data", path,
             have < bytes ? "truncated" : "trailing bytes", a.rows, a.cols, bytes, (unsigned long long)have);
    goto free_hdr;
  }
  a.data = malloc(bytes ? bytes : 1);
  if (!a.data) {
    rc = rec_fail(err, REC_ENOMEM, "%s: out of memory for %zu bytes", path, bytes);
    goto free_hdr;
  }
  if (fread(a.data, 1, bytes, fp) != bytes) {
    free(a.data);
    goto truncated;
  }
  if (fgetc(fp) != EOF) {
    free(a.data);
    rec_fail(err, rc, "%s: trailing bytes after %zu x %zu floats", path, a.rows, a.cols);
    goto free_hdr;
  }
  *out = a;
  rc = 0;
  goto free_hdr;
truncated:
  rec_fail(err, rc, "%s: truncated .npy file", path);
free_hdr:
  free(hdr);
close_file:
  fclose(fp);
  return rc;
}

void npy_f32_destroy(npy_f32 *a) {
  free(a->data);
  a->data = NULL;
}

int npy_f32_write(const char *path, const float *data, size_t rows, size_t cols, int ndim,
                  rec_error *err) {
  char dict[128];
  int n = ndim == 1
      ? snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (%zu,), }", rows)
      : snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (%zu, %zu), }", rows, cols);
  if (ndim == 1) cols = 1;
  /* Header (magic + version + length + dict + '\n') padded with spaces to a
   * multiple of 64, as NumPy does. */
  size_t total = 10 + (size_t)n + 1;
  size_t pad = (64 - total % 64) % 64;
  size_t hlen = (size_t)n + pad + 1;
  unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0,
                           (unsigned char)(hlen & 0xff), (unsigned char)(hlen >> 8)};
  FILE *fp = fopen(path, "wb");
  if (!fp) return rec_fail(err, REC_EIO, "%s: %s", path, strerror(errno));
  int ok = fwrite(pre, 1, 10, fp) == 10 && fwrite(dict, 1, (size_t)n, fp) == (size_t)n;
  for (size_t i = 0; ok && i < pad; i++) ok = fputc(' ', fp) != EOF;
  ok = ok && fputc('\n', fp) != EOF;
  ok = ok && fwrite(data, sizeof(float), rows * cols, fp) == rows * cols;
  if (fclose(fp) != 0) ok = 0;
  if (!ok) return rec_fail(err, REC_EIO, "%s: write failed: %s", path, strerror(errno));
  return 0;
}
