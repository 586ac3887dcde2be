/* common/cfgtable.h - configuration as data: a table of fields (name, type,
 * offset, default, range, help) that fills a caller's struct from defaults,
 * single "key = value" settings and files, with one-line errors naming the key
 * and its range. Keys the table cannot describe (lists, per-segment keys) go
 * to the table's fallback. Stateless: tables are const, so any thread may use
 * them on structs it owns. */
#ifndef REC_CFGTABLE_H
#define REC_CFGTABLE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include "common/err.h"

typedef enum cfg_type {
  CFG_INT,   /* int32_t or int64_t (size 4 or 8); unsigned fields work when min >= 0 */
  CFG_FLOAT, /* float or double (size 4 or 8) */
  CFG_BOOL,  /* bool; "true" or "false" */
  CFG_STR,   /* char[size], NUL-terminated; size counts the NUL */
  CFG_ENUM,  /* int (size sizeof(int)) holding an index into 'names' */
} cfg_type;

typedef struct cfg_field {
  const char *name;
  cfg_type type;
  size_t offset;            /* where the value lives in the caller's struct */
  size_t size;              /* bytes at 'offset' (see cfg_type) */
  const char *def;          /* default, parsed like any other value */
  double min, max;          /* CFG_INT, CFG_FLOAT: inclusive range */
  bool zero_off;            /* CFG_INT, CFG_FLOAT: 0 is accepted too, meaning "off" */
  const char *const *names; /* CFG_ENUM: allowed values, NULL-terminated */
  const char *help;
} cfg_field;

/* Handles a key that is not in the table. Returns 0 when it set the key,
 * REC_ENOTFOUND when it does not know the key either (the caller then reports
 * "unknown setting 'KEY'"), or another negative code with 'err' (may be NULL)
 * holding "KEY: what is wrong". */
typedef int (*cfg_fallback)(void *obj, const char *key, const char *value, rec_error *err);

typedef struct cfg_table {
  const cfg_field *fields;
  size_t n;
  cfg_fallback fallback; /* NULL: every key outside 'fields' is unknown */
} cfg_table;

/* Writes every field's default into 'obj'; other bytes are left alone.
 * Returns 0, or REC_EINTERNAL when a default does not parse (a bug in the
 * table; 'err' names the field). */
int cfg_defaults(const cfg_table *t, void *obj, rec_error *err);

/* The field named by the 'len' bytes at 'name' (need not be NUL-terminated),
 * or NULL. */
const cfg_field *cfg_find(const cfg_table *t, const char *name, size_t len);

/* Parses 'value' as field 'f' and stores it in 'obj'. Returns 0, or REC_EINVAL
 * with 'err' holding e.g. "max_k: must be an integer in [1, 10000], got 'x'";
 * on failure 'obj' is untouched. */
int cfg_set_field(const cfg_field *f, void *obj, const char *value, rec_error *err);

/* Writes field 'f''s value in 'obj' into 'buf' (at most 'cap' bytes with
 * the NUL) as a settings file would hold it: "200", "0.4", "true", "rank".
 * Returns 'buf'. */
const char *cfg_format(const cfg_field *f, const void *obj, char *buf, size_t cap);

/* Sets 'key' from the table, else through the fallback. Returns 0, REC_EINVAL
 * with "unknown setting 'KEY'" when neither knows it, or the error of
 * cfg_set_field or the fallback. */
int cfg_set(const cfg_table *t, void *obj, const char *key, const char *value, rec_error *err);

/* Applies the file at 'path' with cfg_set, line by line: blank lines and lines
 * whose first non-blank is '#' are skipped, the others are "key = value"
 * (split at the first '=', both sides trimmed). Stops at the first bad line:
 * returns its code with 'err' prefixed "PATH:LINE: ", so 'obj' may hold the
 * lines before it. REC_EIO when the file cannot be opened or read. */
int cfg_load_file(const cfg_table *t, void *obj, const char *path, rec_error *err);

/* Prepends 'prefix' to err->msg and sets err->code = code (err may be NULL).
 * Returns 'code', like rec_fail. */
int cfg_error_prefix(rec_error *err, int code, const char *prefix);

/* Strips blanks and line ends from both ends of 's' in place; returns the
 * first character kept. */
char *cfg_trim(char *s);

/* One line per field: "  PREFIX NAME  help (default: D; range MIN..MAX)". */
void cfg_usage(const cfg_table *t, FILE *out, const char *prefix);
#endif
