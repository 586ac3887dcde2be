/* common/catalog.c - items.tsv parsing. The file is read whole and split in
 * place, so ids cost no allocation of their own. */
#include "common/catalog.h"
#include "common/fileio.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The margin column is optional: bundles written before it lack it. */
static const char HEADER[] = "item_id\tcategory\tprice\tin_stock\tpopularity";
static const char HEADER_MARGIN[] = "item_id\tcategory\tprice\tin_stock\tpopularity\tmargin";
enum { NCOLS_MAX = 6 };

/* Splits 'line' at tabs into exactly 'want' NUL-terminated fields. */
static bool split(char *line, char *f[NCOLS_MAX], int want) {
  int n = 0;
  f[n++] = line;
  for (char *p = line; *p; p++) {
    if (*p != '\t') continue;
    if (n == want) return false;
    *p = '\0';
    f[n++] = p + 1;
  }
  return n == want;
}

static bool parse_float(const char *s, float *out) {
  char *end;
  errno = 0;
  float v = strtof(s, &end);
  if (end == s || *end || errno || !isfinite(v) || v < 0) return false;
  *out = v;
  return true;
}

static int count_lines(const char *text) {
  int n = 0;
  for (const char *p = text; *p; p++) n += *p == '\n';
  return n + 1;
}

static int add_category(catalog *c, const char *name, uint32_t *idx) {
  size_t len = strlen(name);
  if (strmap_get(c->category_map, name, len, idx)) return 0;
  *idx = (uint32_t)c->category_count;
  c->categories[c->category_count++] = name;
  return strmap_put(c->category_map, name, len, *idx);
}

static int parse_row(catalog *c, const char *path, int lineno, char *line, rec_error *err) {
  char *f[NCOLS_MAX];
  size_t i = c->count;
  int want = c->has_margin ? 6 : 5;
  if (!split(line, f, want))
    return rec_fail(err, REC_ECORRUPT, "%s:%d: want %d tab-separated fields", path, lineno, want);
  size_t idlen = strlen(f[0]);
  if (idlen == 0 || idlen > REC_ID_MAX)
    return rec_fail(err, REC_ECORRUPT, "%s:%d: item_id must be 1 to %d bytes", path, lineno,
                    REC_ID_MAX);
  if (strlen(f[1]) == 0 || strlen(f[1]) > REC_ID_MAX)
    return rec_fail(err, REC_ECORRUPT, "%s:%d: category must be 1 to %d bytes", path, lineno,
                    REC_ID_MAX);
  if (!parse_float(f[2], &c->price[i]))
    return rec_fail(err, REC_ECORRUPT, "%s:%d: price '%s' is not a number >= 0", path, lineno, f[2]);
  if (strcmp(f[3], "0") != 0 && strcmp(f[3], "1") != 0)
    return rec_fail(err, REC_ECORRUPT, "%s:%d: in_stock '%s' must be 0 or 1", path, lineno, f[3]);
  c->in_stock[i] = f[3][0] == '1';
  if (!parse_float(f[4], &c->popularity[i]))
    return rec_fail(err, REC_ECORRUPT, "%s:%d: popularity '%s' is not a number >= 0", path,
                    lineno, f[4]);
  if (c->has_margin) {
    char *end;
    c->margin[i] = strtof(f[5], &end);
    if (end == f[5] || *end || !isfinite(c->margin[i]))
      return rec_fail(err, REC_ECORRUPT, "%s:%d: margin '%s' is not a number", path, lineno, f[5]);
  }
  if (strmap_put(c->id_map, f[0], idlen, (uint32_t)i) != 0)
    return rec_fail(err, REC_ECORRUPT, "%s:%d: duplicate item_id '%s'", path, lineno, f[0]);
  c->ids[i] = f[0];
  if (add_category(c, f[1], &c->category[i]) != 0)
    return rec_fail(err, REC_ENOMEM, "%s:%d: out of memory", path, lineno);
  c->count++;
  return 0;
}

typedef struct pop_row { float pop; uint32_t item; } pop_row;
static int by_pop_desc(const void *a, const void *b) {
  const pop_row *x = a, *y = b;
  if (x->pop != y->pop) return x->pop < y->pop ? 1 : -1;
  return x->item < y->item ? -1 : x->item > y->item; /* ties by row: deterministic */
}

static int sort_by_popularity(catalog *c) {
  pop_row *rows = malloc(c->count * sizeof *rows);
  if (!rows) return REC_ENOMEM;
  for (size_t i = 0; i < c->count; i++) rows[i] = (pop_row){c->popularity[i], (uint32_t)i};
  qsort(rows, c->count, sizeof *rows, by_pop_desc);
  for (size_t i = 0; i < c->count; i++) c->by_popularity[i] = rows[i].item;
  free(rows);
  return 0;
}

/* category_start, by_category and by_category_popularity from the rows'
 * categories and by_popularity, replacing the old ones only when all three
 * could be made. */
static int index_categories(catalog *c) {
  size_t *start = calloc(c->category_count + 2, sizeof *start), *next = NULL;
  uint32_t *rows = malloc((c->count + 1) * sizeof *rows), *popular = malloc((c->count + 1) * sizeof *popular);
  if (start) next = malloc((c->category_count + 1) * sizeof *next);
  if (!start || !next || !rows || !popular) {
    free(start), free(next), free(rows), free(popular);
    return REC_ENOMEM;
  }
  for (size_t i = 0; i < c->count; i++) start[c->category[i] + 1]++;
  for (size_t k = 0; k < c->category_count; k++) start[k + 1] += start[k];
  memcpy(next, start, c->category_count * sizeof *next);
  for (size_t i = 0; i < c->count; i++) rows[next[c->category[i]]++] = (uint32_t)i;
  memcpy(next, start, c->category_count * sizeof *next);
  for (size_t j = 0; j < c->count; j++) popular[next[c->category[c->by_popularity[j]]]++] = c->by_popularity[j];
  free(next);
  free(c->category_start);
  free(c->by_category);
  free(c->by_category_popularity);
  c->category_start = start;
  c->by_category = rows;
  c->by_category_popularity = popular;
  return 0;
}

/* The per-item columns and the id map, for n rows. */
static int alloc_rows(catalog *c, size_t n) {
  c->ids = calloc(n, sizeof *c->ids);
  c->category = calloc(n, sizeof *c->category);
  c->price = calloc(n, sizeof *c->price);
  c->in_stock = calloc(n, sizeof *c->in_stock);
  c->popularity = calloc(n, sizeof *c->popularity);
  c->margin = calloc(n, sizeof *c->margin);
  c->by_popularity = calloc(n, sizeof *c->by_popularity);
  if (!c->ids || !c->category || !c->price || !c->in_stock || !c->popularity || !c->margin ||
      !c->by_popularity || strmap_new(n, &c->id_map) != 0)
    return REC_ENOMEM;
  return 0;
}

static int alloc_columns(catalog *c, size_t n) {
  if (alloc_rows(c, n) != 0 || !(c->categories = calloc(n, sizeof *c->categories)) ||
      strmap_new(n, &c->category_map) != 0)
    return REC_ENOMEM;
  return 0;
}

static int parse_rows(catalog *c, const char *path, rec_error *err) {
  char *line = c->text;
  int lineno = 1;
  char *nl = strchr(line, '\n');
  if (nl) *nl = '\0';
  if (nl && nl > line && nl[-1] == '\r') nl[-1] = '\0';
  c->has_margin = strcmp(line, HEADER_MARGIN) == 0;
  if (!c->has_margin && strcmp(line, HEADER) != 0)
    return rec_fail(err, REC_ECORRUPT, "%s:1: header must be '%s'", path,
                    "item_id<TAB>category<TAB>price<TAB>in_stock<TAB>popularity");
  while (nl) {
    line = nl + 1;
    lineno++;
    nl = strchr(line, '\n');
    if (nl) *nl = '\0';
    if (nl && nl > line && nl[-1] == '\r') nl[-1] = '\0';
    if (!*line && !nl) break; /* final newline */
    int rc = parse_row(c, path, lineno, line, err);
    if (rc) return rc;
  }
  if (c->count == 0) return rec_fail(err, REC_ECORRUPT, "%s: no items", path);
  return 0;
}

int catalog_load(const char *path, catalog **out, rec_error *err) {
  catalog *c = calloc(1, sizeof *c);
  if (!c) return rec_fail(err, REC_ENOMEM, "out of memory");
  size_t len;
  int rc = 0;
  c->text = rec_read_file(path, &len, err);
  if (!c->text) {
    rc = err ? err->code : REC_EIO;
    goto fail;
  }
  if (memchr(c->text, '\0', len)) {
    rc = rec_fail(err, REC_ECORRUPT, "%s: contains NUL bytes", path);
    goto fail;
  }
  size_t n = (size_t)count_lines(c->text);
  if ((rc = alloc_columns(c, n)) != 0) {
    rec_fail(err, rc, "%s: out of memory for %zu rows", path, n);
    goto fail;
  }
  if ((rc = parse_rows(c, path, err)) != 0) goto fail;
  c->base_count = c->count;
  if ((rc = sort_by_popularity(c)) != 0 || (rc = index_categories(c)) != 0) {
    rec_fail(err, rc, "%s: out of memory", path);
    goto fail;
  }
  *out = c;
  return 0;
fail:
  catalog_free(c);
  return rc;
}

void catalog_free(catalog *c) {
  if (!c) return;
  free(c->ids);
  free(c->category);
  free(c->price);
  free(c->in_stock);
  free(c->popularity);
  free(c->margin);
  free(c->by_popularity);
  free(c->category_start);
  free(c->by_category);
  free(c->by_category_popularity);
  free(c->deleted);
  strmap_free(c->id_map);
  if (!c->base) { /* a derived catalog borrows these */
    free(c->categories);
    strmap_free(c->category_map);
    free(c->more_names);
  }
  free(c->text);
  free(c);
}

bool catalog_find(const catalog *c, const char *id, size_t len, uint32_t *item) {
  uint32_t i;
  if (!strmap_get(c->id_map, id, len, &i) || (c->deleted && c->deleted[i])) return false;
  *item = i;
  return true;
}

/* The row of change 'ch' in 'c' (under construction): existing, or added
 * (with its id copied into 'text' at *used). */
static int derive_row(catalog *c, const catalog_change *ch, size_t k, char *text, size_t *used,
                      uint32_t *row, bool *added, rec_error *err) {
  *added = false;
  if (strmap_get(c->id_map, ch->id, ch->id_len, row)) return 0;
  if (ch->deleted) return rec_fail(err, REC_EINVAL, "change %zu: deletes an unknown item", k);
  if (!ch->has_category || !ch->has_price)
    return rec_fail(err, REC_EINVAL, "change %zu: a new item needs a category and a price", k);
  char *id = text + *used;
  memcpy(id, ch->id, ch->id_len);
  id[ch->id_len] = '\0';
  *used += ch->id_len + 1;
  *row = (uint32_t)c->count;
  if (strmap_put(c->id_map, id, ch->id_len, *row) != 0) return rec_fail(err, REC_ENOMEM, "out of memory");
  c->ids[c->count] = id;
  c->in_stock[c->count] = true;
  c->count++;
  *added = true;
  return 0;
}

int catalog_derive(const catalog *base, const catalog_change *changes, size_t n, uint64_t generation,
                   catalog **out, rec_error *err) {
  size_t cap = base->count, text_len = 1;
  for (size_t k = 0; k < n; k++) {
    if (changes[k].has_category && changes[k].category >= base->category_count)
      return rec_fail(err, REC_EINVAL, "change %zu: no such category", k);
    cap++, text_len += changes[k].id_len + 1;
  }
  catalog *c = calloc(1, sizeof *c);
  if (!c) return rec_fail(err, REC_ENOMEM, "out of memory");
  c->base = base;
  c->categories = base->categories;
  c->category_count = base->category_count;
  c->category_map = base->category_map;
  c->has_margin = base->has_margin;
  c->base_count = base->base_count ? base->base_count : base->count;
  c->generation = generation;
  int rc = 0;
  c->deleted = calloc(cap, 1);
  c->text = malloc(text_len);
  if (alloc_rows(c, cap) != 0 || !c->deleted || !c->text) {
    rc = rec_fail(err, REC_ENOMEM, "out of memory");
    goto fail;
  }
  c->count = base->count;
  memcpy(c->ids, base->ids, base->count * sizeof *c->ids);
  memcpy(c->category, base->category, base->count * sizeof *c->category);
  memcpy(c->price, base->price, base->count * sizeof *c->price);
  memcpy(c->in_stock, base->in_stock, base->count * sizeof *c->in_stock);
  memcpy(c->popularity, base->popularity, base->count * sizeof *c->popularity);
  memcpy(c->margin, base->margin, base->count * sizeof *c->margin);
  if (base->deleted) memcpy(c->deleted, base->deleted, base->count);
  for (size_t i = 0; i < base->count; i++)
    if (strmap_put(c->id_map, c->ids[i], strlen(c->ids[i]), (uint32_t)i) != 0) {
      rc = rec_fail(err, REC_ENOMEM, "out of memory");
      goto fail;
    }
  size_t used = 0;
  for (size_t k = 0; k < n; k++) {
    const catalog_change *ch = &changes[k];
    uint32_t row;
    bool is_new;
    if ((rc = derive_row(c, ch, k, c->text, &used, &row, &is_new, err)) != 0) goto fail;
    c->deleted[row] = ch->deleted;
    if (ch->deleted) continue;
    if (ch->has_category) c->category[row] = ch->category;
    if (ch->has_price) c->price[row] = ch->price;
    if (ch->has_stock) c->in_stock[row] = ch->in_stock;
    if (ch->has_margin) c->margin[row] = ch->margin, c->has_margin = true;
  }
  /* The base's order, then the added rows (popularity 0) in the order added. */
  memcpy(c->by_popularity, base->by_popularity, base->count * sizeof *c->by_popularity);
  for (size_t i = base->count; i < c->count; i++) c->by_popularity[i] = (uint32_t)i;
  if (index_categories(c) != 0) {
    rc = rec_fail(err, REC_ENOMEM, "out of memory");
    goto fail;
  }
  *out = c;
  return 0;
fail:
  c->base = base; /* borrowed parts stay with the base */
  catalog_free(c);
  return rc;
}

int catalog_add_categories(catalog *c, const char *const *names, size_t n, rec_error *err) {
  size_t bytes = 0;
  if (c->more_names) return rec_fail(err, REC_EINVAL, "catalog_add_categories: called twice");
  for (size_t i = 0; i < n; i++) {
    size_t len = strlen(names[i]);
    if (!len || len > REC_ID_MAX || strpbrk(names[i], "\t\n\r"))
      return rec_fail(err, REC_EINVAL, "category %zu: must be 1 to %d bytes without tabs or newlines", i,
                      REC_ID_MAX);
    bytes += len + 1;
  }
  /* New arrays first, so that a failure leaves the catalog as it was. */
  size_t cap = c->category_count + n;
  const char **cats = calloc(cap + 1, sizeof *cats);
  char *text = malloc(bytes + 1), *w = text;
  strmap *map = NULL;
  if (!cats || !text || strmap_new(cap + 1, &map) != 0) {
    free(cats), free(text), strmap_free(map);
    return rec_fail(err, REC_ENOMEM, "out of memory");
  }
  size_t count = c->category_count;
  memcpy(cats, c->categories, count * sizeof *cats);
  int rc = 0;
  for (size_t i = 0; i < count && !rc; i++) rc = strmap_put(map, cats[i], strlen(cats[i]), (uint32_t)i);
  for (size_t i = 0; i < n && !rc; i++) {
    size_t len = strlen(names[i]);
    uint32_t at;
    if (strmap_get(map, names[i], len, &at)) continue;
    memcpy(w, names[i], len + 1);
    cats[count] = w;
    rc = strmap_put(map, w, len, (uint32_t)count++);
    w += len + 1;
  }
  /* The category index grows with the categories (the new ones empty). */
  size_t *start = rc ? NULL : calloc(count + 1, sizeof *start);
  if (!rc && !start) rc = REC_ENOMEM;
  if (rc) {
    free(cats), free(text), strmap_free(map);
    return rec_fail(err, rc, "cannot add categories: %s", rec_strerror(rc));
  }
  for (size_t k = 0; k <= count; k++)
    start[k] = c->category_start[k < c->category_count ? k : c->category_count];
  free(c->category_start);
  c->category_start = start;
  free(c->categories);
  strmap_free(c->category_map);
  free(c->more_names);
  c->categories = cats;
  c->category_map = map;
  c->category_count = count;
  c->more_names = text;
  return 0;
}

bool catalog_find_category(const catalog *c, const char *name, size_t len, uint32_t *category) {
  return strmap_get(c->category_map, name, len, category);
}
