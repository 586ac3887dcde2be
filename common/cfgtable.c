/* common/cfgtable.c - parses and stores settings described by a cfg_field
 * table. Every value is validated in full before a byte of the target struct
 * is written, so a refused setting leaves the struct as it was. */
#include "common/cfgtable.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

const cfg_field *cfg_find(const cfg_table *t, const char *name, size_t len) {
  for (size_t i = 0; i < t->n; i++)
    if (strlen(t->fields[i].name) == len && strncmp(t->fields[i].name, name, len) == 0)
      return &t->fields[i];
  return NULL;
}

static bool in_range(const cfg_field *f, double v) {
  return (v >= f->min && v <= f->max) || (f->zero_off && v == 0);
}

static int set_int(const cfg_field *f, char *dst, const char *v, rec_error *err) {
  char *end;
  errno = 0;
  long long n = strtoll(v, &end, 10);
  if (!*v || *end || errno || !in_range(f, (double)n))
    return rec_fail(err, REC_EINVAL, "%s: must be %san integer in [%lld, %lld], got '%s'", f->name,
                    f->zero_off ? "0 or " : "", (long long)f->min, (long long)f->max, v);
  if (f->size == sizeof(int32_t)) {
    int32_t x = (int32_t)n;
    memcpy(dst, &x, sizeof x);
  } else if (f->size == sizeof(int64_t)) {
    int64_t x = n;
    memcpy(dst, &x, sizeof x);
  } else {
    return rec_fail(err, REC_EINTERNAL, "%s: integer field of %zu bytes", f->name, f->size);
  }
  return 0;
}

static int set_float(const cfg_field *f, char *dst, const char *v, rec_error *err) {
  char *end;
  errno = 0;
  double d = strtod(v, &end);
  /* NaN compares false with both bounds, so finiteness is checked by name. */
  if (!*v || *end || errno || !isfinite(d) || !in_range(f, d))
    return rec_fail(err, REC_EINVAL, "%s: must be %sa number in [%g, %g], got '%s'", f->name,
                    f->zero_off ? "0 or " : "", f->min, f->max, v);
  if (f->size == sizeof(float)) {
    float x = (float)d;
    memcpy(dst, &x, sizeof x);
  } else if (f->size == sizeof(double)) {
    memcpy(dst, &d, sizeof d);
  } else {
    return rec_fail(err, REC_EINTERNAL, "%s: number field of %zu bytes", f->name, f->size);
  }
  return 0;
}

static int set_enum(const cfg_field *f, char *dst, const char *v, rec_error *err) {
  for (int i = 0; f->names[i]; i++)
    if (strcmp(f->names[i], v) == 0) {
      memcpy(dst, &i, sizeof i);
      return 0;
    }
  char list[256] = "";
  for (int i = 0; f->names[i]; i++) {
    size_t used = strlen(list);
    snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "", f->names[i]);
  }
  return rec_fail(err, REC_EINVAL, "%s: must be one of %s, got '%s'", f->name, list, v);
}

int cfg_set_field(const cfg_field *f, void *obj, const char *value, rec_error *err) {
  char *dst = (char *)obj + f->offset;
  switch (f->type) {
  case CFG_INT: return set_int(f, dst, value, err);
  case CFG_FLOAT: return set_float(f, dst, value, err);
  case CFG_ENUM: return set_enum(f, dst, value, err);
  case CFG_BOOL:
    if (strcmp(value, "true") && strcmp(value, "false"))
      return rec_fail(err, REC_EINVAL, "%s: must be true or false, got '%s'", f->name, value);
    *(bool *)dst = value[0] == 't';
    return 0;
  case CFG_STR:
    if (strlen(value) >= f->size)
      return rec_fail(err, REC_EINVAL, "%s: value longer than %zu bytes", f->name, f->size - 1);
    memcpy(dst, value, strlen(value) + 1);
    return 0;
  }
  return rec_fail(err, REC_EINTERNAL, "%s: unknown field type %d", f->name, (int)f->type);
}

const char *cfg_format(const cfg_field *f, const void *obj, char *buf, size_t cap) {
  const char *src = (const char *)obj + f->offset;
  int32_t i32;
  int64_t i64;
  float f32;
  double f64;
  int idx;
  switch (f->type) {
  case CFG_INT:
    if (f->size == sizeof i32) memcpy(&i32, src, sizeof i32), i64 = i32;
    else memcpy(&i64, src, sizeof i64);
    snprintf(buf, cap, "%lld", (long long)i64);
    break;
  case CFG_FLOAT:
    if (f->size == sizeof f32) memcpy(&f32, src, sizeof f32), f64 = f32;
    else memcpy(&f64, src, sizeof f64);
    snprintf(buf, cap, "%g", f64);
    break;
  case CFG_BOOL: snprintf(buf, cap, "%s", *(const bool *)src ? "true" : "false"); break;
  case CFG_ENUM:
    memcpy(&idx, src, sizeof idx);
    snprintf(buf, cap, "%s", f->names[idx]);
    break;
  case CFG_STR: snprintf(buf, cap, "%s", src); break;
  }
  return buf;
}

int cfg_defaults(const cfg_table *t, void *obj, rec_error *err) {
  for (size_t i = 0; i < t->n; i++) {
    int rc = cfg_set_field(&t->fields[i], obj, t->fields[i].def, err);
    if (rc) return cfg_error_prefix(err, REC_EINTERNAL, "bad default: ");
  }
  return 0;
}

int cfg_set(const cfg_table *t, void *obj, const char *key, const char *value, rec_error *err) {
  const cfg_field *f = cfg_find(t, key, strlen(key));
  if (f) return cfg_set_field(f, obj, value, err);
  int rc = t->fallback ? t->fallback(obj, key, value, err) : REC_ENOTFOUND;
  if (rc == REC_ENOTFOUND) return rec_fail(err, REC_EINVAL, "unknown setting '%s'", key);
  return rc;
}

char *cfg_trim(char *s) {
  while (*s == ' ' || *s == '\t') s++;
  char *e = s + strlen(s);
  while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r')) *--e = '\0';
  return s;
}

static int load_line(const cfg_table *t, void *obj, char *line, rec_error *err) {
  char *s = cfg_trim(line);
  if (!*s || *s == '#') return 0;
  char *eq = strchr(s, '=');
  if (!eq) return rec_fail(err, REC_EINVAL, "want 'key = value'");
  *eq = '\0';
  return cfg_set(t, obj, cfg_trim(s), cfg_trim(eq + 1), err);
}

int cfg_load_file(const cfg_table *t, void *obj, const char *path, rec_error *err) {
  FILE *fp = fopen(path, "r");
  if (!fp) return rec_fail(err, REC_EIO, "%s: %s", path, strerror(errno));
  char *line = NULL; /* getline: list settings can be longer than any fixed buffer */
  size_t cap = 0;
  int rc = 0;
  for (long lineno = 1; rc == 0 && getline(&line, &cap, fp) >= 0; lineno++) {
    if ((rc = load_line(t, obj, line, err)) != 0) {
      char where[600];
      snprintf(where, sizeof where, "%s:%ld: ", path, lineno);
      cfg_error_prefix(err, rc, where);
    }
  }
  if (rc == 0 && ferror(fp)) rc = rec_fail(err, REC_EIO, "%s: read failed", path);
  free(line);
  fclose(fp);
  return rc;
}

int cfg_error_prefix(rec_error *err, int code, const char *prefix) {
  if (!err) return code;
  char msg[sizeof err->msg];
  memcpy(msg, err->msg, sizeof msg);
  msg[sizeof msg - 1] = '\0';
  return rec_fail(err, code, "%s%s", prefix, msg);
}

static void print_range(const cfg_field *f, FILE *out) {
  const char *zero = f->zero_off ? "0 or " : "";
  switch (f->type) {
  case CFG_INT:
    fprintf(out, "; range %s%lld..%lld", zero, (long long)f->min, (long long)f->max);
    break;
  case CFG_FLOAT: fprintf(out, "; range %s%g..%g", zero, f->min, f->max); break;
  case CFG_BOOL: fprintf(out, "; true or false"); break;
  case CFG_ENUM:
    fprintf(out, "; one of");
    for (int i = 0; f->names[i]; i++) fprintf(out, "%s %s", i ? "," : "", f->names[i]);
    break;
  case CFG_STR: break;
  }
}

void cfg_usage(const cfg_table *t, FILE *out, const char *prefix) {
  int width = 24; /* names longer than the column widen it for every line */
  for (size_t i = 0; i < t->n; i++)
    if ((int)strlen(t->fields[i].name) > width) width = (int)strlen(t->fields[i].name);
  for (size_t i = 0; i < t->n; i++) {
    const cfg_field *f = &t->fields[i];
    fprintf(out, "  %s%-*s %s (default: %s", prefix, width, f->name, f->help,
            f->def[0] ? f->def : "none");
    print_range(f, out);
    fprintf(out, ")\n");
  }
}
