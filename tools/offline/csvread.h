/* tools/offline/csvread.h - reads a CSV file (RFC 4180 quoting, via libcsv) row by
 * row, mapping header names to column positions, and keeps the physical line
 * number so every error can say file:line. Keeps no state between calls. */
#ifndef REC_CSVREAD_H
#define REC_CSVREAD_H
#include <stddef.h>
#include "common/err.h"

typedef struct csv_row {
  const char *path;
  size_t line;          /* physical line where the row ends (header = 1) */
  char **f;             /* fields, NUL-terminated */
  size_t n;
} csv_row;

/* Called for the header row (is_header true) and then for each data row.
 * Returns 0 to go on, or a negative code (with 'err' filled) to stop. */
typedef int (*csv_row_fn)(void *ctx, const csv_row *row, int is_header, rec_error *err);

/* Reads 'path' whole. Returns 0; the first non-zero code a callback returned;
 * REC_EIO for an unreadable file; REC_ECORRUPT for an empty file, a file with
 * only a header, or malformed quoting (all naming the file). */
int csv_read(const char *path, csv_row_fn fn, void *ctx, rec_error *err);

/* The position of 'name' among the header's fields, or -1. */
int csv_column(const csv_row *header, const char *name);
#endif
