/* tools/offline/csvread.c - libcsv fed one physical line at a time, so when a row
 * ends the current line number is known exactly. */
#include "tools/offline/csvread.h"

#include <csv.h>
#include <stdbool.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct reader {
  csv_row row;
  size_t cap;
  size_t rows;
  csv_row_fn fn;
  void *ctx;
  rec_error *err;
  int rc;
} reader;

static void on_field(void *s, size_t len, void *data) {
  reader *r = data;
  if (r->rc) return;
  if (r->row.n == r->cap) {
    size_t cap = r->cap ? r->cap * 2 : 16;
    char **f = realloc(r->row.f, cap * sizeof *f);
    if (!f) {
      r->rc = rec_fail(r->err, REC_ENOMEM, "%s: out of memory", r->row.path);
      return;
    }
    r->row.f = f;
    r->cap = cap;
  }
  char *copy = malloc(len + 1);
  if (!copy) {
    r->rc = rec_fail(r->err, REC_ENOMEM, "%s: out of memory", r->row.path);
    return;
  }
  if (len) memcpy(copy, s, len);
  copy[len] = '\0';
  r->row.f[r->row.n++] = copy;
}

static void clear(reader *r) {
  for (size_t i = 0; i < r->row.n; i++) free(r->row.f[i]);
  r->row.n = 0;
}

static void on_row(int c, void *data) {
  (void)c;
  reader *r = data;
  /* A blank line is no row at all. */
  bool blank = r->row.n == 1 && r->row.f[0][0] == '\0';
  if (!r->rc && !blank) {
    r->rc = r->fn(r->ctx, &r->row, r->rows == 0, r->err);
    r->rows++;
  }
  clear(r);
}

int csv_read(const char *path, csv_row_fn fn, void *ctx, rec_error *err) {
  FILE *fp = fopen(path, "rb");
  if (!fp) return rec_fail(err, REC_EIO, "%s: %s", path, strerror(errno));
  struct csv_parser p;
  if (csv_init(&p, CSV_STRICT | CSV_STRICT_FINI | CSV_APPEND_NULL) != 0) {
    fclose(fp);
    return rec_fail(err, REC_ENOMEM, "%s: out of memory", path);
  }
  reader r = {.row = {.path = path}, .fn = fn, .ctx = ctx, .err = err};
  char *line = NULL;
  size_t cap = 0;
  ssize_t len;
  while (!r.rc && (len = getline(&line, &cap, fp)) > 0) {
    r.row.line++;
    char *at = line;
    /* A UTF-8 byte-order mark (Excel's "CSV UTF-8") is not part of the header. */
    if (r.row.line == 1 && len >= 3 && memcmp(line, "\xEF\xBB\xBF", 3) == 0) {
      at += 3;
      len -= 3;
    }
    if (csv_parse(&p, at, (size_t)len, on_field, on_row, &r) != (size_t)len && !r.rc)
      r.rc = rec_fail(err, REC_ECORRUPT, "%s:%zu: %s", path, r.row.line, csv_strerror(csv_error(&p)));
  }
  if (!r.rc && csv_fini(&p, on_field, on_row, &r) != 0)
    r.rc = rec_fail(err, REC_ECORRUPT, "%s:%zu: %s (unterminated quote?)", path, r.row.line,
                    csv_strerror(csv_error(&p)));
  if (!r.rc && ferror(fp)) r.rc = rec_fail(err, REC_EIO, "%s: read error", path);
  if (!r.rc && r.rows == 0) r.rc = rec_fail(err, REC_ECORRUPT, "%s: empty file (no header)", path);
  if (!r.rc && r.rows == 1) r.rc = rec_fail(err, REC_ECORRUPT, "%s: a header and no rows", path);
  clear(&r);
  free(r.row.f);
  free(line);
  csv_free(&p);
  fclose(fp);
  return r.rc;
}

int csv_column(const csv_row *header, const char *name) {
  for (size_t i = 0; name && *name && i < header->n; i++)
    if (strcmp(header->f[i], name) == 0) return (int)i;
  return -1;
}
