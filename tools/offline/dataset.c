/* tools/offline/dataset.c - see dataset.h. The catalog is read first so that every
 * interaction can be checked against it as it is read. */
#include "tools/offline/dataset.h"
#include "common/catalog.h"
#include "tools/offline/csvread.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const ds_schema DS_SCHEMA_DEFAULT = {
    .user = "user_id", .item = "item_id", .time = "timestamp", .quantity = "quantity",
    .price = "price", .event = "event_type", .rating = "rating", .c_item = "item_id",
    .c_category = "category", .c_subcategory = "subcategory", .c_brand = "brand",
    .c_price = "price", .c_margin = "margin", .c_in_stock = "in_stock", .c_name = "name"};

static const struct {
  const char *name;
  size_t offset;
} FIELDS[] = {
#define F(x) {#x, offsetof(ds_schema, x)}
    F(user), F(item), F(time), F(quantity), F(price), F(event), F(rating), F(c_item),
    F(c_category), F(c_subcategory), F(c_brand), F(c_price), F(c_margin), F(c_in_stock), F(c_name),
#undef F
};

int ds_schema_set(ds_schema *s, const char *field, const char *column) {
  for (size_t i = 0; i < sizeof FIELDS / sizeof *FIELDS; i++)
    if (strcmp(FIELDS[i].name, field) == 0) {
      *(const char **)((char *)s + FIELDS[i].offset) = column;
      return 0;
    }
  return REC_EINVAL;
}

static char *trim(char *s) {
  while (*s == ' ' || *s == '\t') s++;
  char *e = s + strlen(s);
  while (e > s && strchr(" \t\r\n", e[-1])) *--e = '\0';
  return s;
}

int ds_schema_load(const char *path, ds_schema *s, char **storage, rec_error *err) {
  FILE *fp = fopen(path, "r");
  if (!fp) return rec_fail(err, REC_EINVAL, "%s: %s", path, strerror(errno));
  fseek(fp, 0, SEEK_END);
  long n = ftell(fp);
  rewind(fp);
  char *buf = *storage = malloc((size_t)(n > 0 ? n : 0) + 1);
  if (!buf) {
    fclose(fp);
    return rec_fail(err, REC_ENOMEM, "out of memory");
  }
  size_t got = fread(buf, 1, (size_t)(n > 0 ? n : 0), fp);
  buf[got] = '\0';
  fclose(fp);
  int lineno = 0;
  for (char *line = buf, *nl; line; line = nl ? nl + 1 : NULL) { /* every physical line counts */
    nl = strchr(line, '\n');
    if (nl) *nl = '\0';
    lineno++;
    char *t = trim(line), *eq = strchr(t, '=');
    if (!*t || *t == '#') continue;
    if (!eq) return rec_fail(err, REC_EINVAL, "%s:%d: want 'field = column name'", path, lineno);
    *eq = '\0';
    if (ds_schema_set(s, trim(t), trim(eq + 1)) != 0)
      return rec_fail(err, REC_EINVAL, "%s:%d: unknown field '%s' (user, item, time, quantity, "
                      "price, event, rating, c_item, c_category, ...)", path, lineno, trim(t));
  }
  return 0;
}

bool ds_parse_time(const char *s, int64_t *out) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (end != s && !*end && !errno) {
    *out = v;
    return true;
  }
  int y, mo, d, h = 0, mi = 0, se = 0, n = 0;
  if (sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &n) != 3) return false;
  const char *rest = s + n;
  if (*rest == 'T' || *rest == ' ') {
    if (sscanf(rest + 1, "%2d:%2d:%2d%n", &h, &mi, &se, &n) != 3) return false;
    rest += 1 + n;
  }
  if (*rest == 'Z') rest++;
  if (*rest || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60) return false;
  struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h,
                  .tm_min = mi, .tm_sec = se};
  time_t t = timegm(&tm);
  struct tm back;
  /* timegm rolls 2016-02-30 over into March: refuse dates that do not exist. */
  if (!gmtime_r(&t, &back) || back.tm_year != y - 1900 || back.tm_mon != mo - 1 || back.tm_mday != d)
    return false;
  *out = (int64_t)t;
  return true;
}

static float clip(float v, float lo, float hi) { return v < lo ? lo : v > hi ? hi : v; }

float ds_strength_purchase(float price, float user_mean_price, float quantity, float item_mean_qty) {
  float spend = user_mean_price > 0 ? price / user_mean_price : 1.0f;
  float qty = item_mean_qty > 0 ? quantity / item_mean_qty : 1.0f;
  return clip(log2f(1.0f + 0.5f * spend + 0.5f * qty), 0.1f, 5.0f);
}

float ds_strength_rating(float rating) { return clip(rating / 2.5f, 0.1f, 5.0f); }

/* ---- reading ---- */

typedef struct load_ctx {
  dataset *d;
  const ds_schema *s;
  const char *catalog_path;
  int col[16];            /* column positions, by FIELDS order */
  size_t ncols;
  size_t cap_events, cap_users;
} load_ctx;

enum { C_USER, C_ITEM, C_TIME, C_QTY, C_PRICE, C_EVENT, C_RATING, C_CITEM, C_CCAT, C_CSUB,
       C_CBRAND, C_CPRICE, C_CMARGIN, C_CSTOCK, C_CNAME };

static const char *column_name(const ds_schema *s, int field) {
  return *(const char *const *)((const char *)s + FIELDS[field].offset);
}

/* Maps header names for fields [from, to); the first 'required' must exist. */
static int map_header(load_ctx *c, const csv_row *h, int from, int to, int required,
                      rec_error *err) {
  for (int f = from; f < to; f++) {
    const char *name = column_name(c->s, f);
    c->col[f] = csv_column(h, name);
    if (c->col[f] < 0 && f < from + required)
      return rec_fail(err, REC_ECORRUPT, "%s:1: missing required column '%s' (schema field '%s')",
                      h->path, name ? name : "", FIELDS[f].name);
  }
  c->ncols = h->n;
  return 0;
}

static const char *field(const load_ctx *c, const csv_row *r, int f) {
  return c->col[f] >= 0 ? r->f[c->col[f]] : "";
}

static bool parse_num(const char *s, float *out) {
  char *end;
  errno = 0;
  float v = strtof(s, &end);
  if (end == s || *end || errno || !isfinite(v)) return false;
  *out = v;
  return true;
}

static char *keep(dataset *d, const char *s) { return arena_strndup(&d->strings, s, strlen(s)); }

static int intern_category(dataset *d, const char *name, uint32_t *idx) {
  if (strmap_get(d->category_map, name, strlen(name), idx)) return 0;
  char *k = keep(d, name);
  if (!k) return REC_ENOMEM;
  *idx = (uint32_t)d->n_categories;
  d->categories[d->n_categories++] = k;
  return strmap_put(d->category_map, k, strlen(k), *idx);
}

static int bad(const csv_row *r, rec_error *err, const char *what, const char *value) {
  return rec_fail(err, REC_ECORRUPT, "%s:%zu: %s '%.100s'", r->path, r->line, what, value);
}

static bool valid_id(const char *s) {
  size_t n = strlen(s);
  return n > 0 && n <= REC_ID_MAX && !strpbrk(s, "\t\r\n");
}

static int parse_stock(const char *s, bool *out) {
  if (!*s || !strcmp(s, "1") || !strcasecmp(s, "true") || !strcasecmp(s, "yes")) *out = true;
  else if (!strcmp(s, "0") || !strcasecmp(s, "false") || !strcasecmp(s, "no")) *out = false;
  else return -1;
  return 0;
}

static int catalog_row(void *ctx, const csv_row *r, int is_header, rec_error *err) {
  load_ctx *c = ctx;
  dataset *d = c->d;
  if (is_header) return map_header(c, r, C_CITEM, C_CNAME + 1, 2, err);
  if (r->n != c->ncols)
    return rec_fail(err, REC_ECORRUPT, "%s:%zu: %zu fields, the header has %zu", r->path, r->line,
                    r->n, c->ncols);
  ds_item it = {0};
  const char *id = field(c, r, C_CITEM), *cat = field(c, r, C_CCAT);
  if (!valid_id(id)) return bad(r, err, "item id must be 1 to 128 bytes without tabs, got", id);
  if (!valid_id(cat)) return bad(r, err, "category must be 1 to 128 bytes without tabs, got", cat);
  const char *price = field(c, r, C_CPRICE), *margin = field(c, r, C_CMARGIN);
  if (*price && (!parse_num(price, &it.price) || it.price < 0))
    return bad(r, err, "price is not a number >= 0:", price);
  if (*margin && !parse_num(margin, &it.margin)) return bad(r, err, "margin is not a number:", margin);
  if (parse_stock(field(c, r, C_CSTOCK), &it.in_stock) != 0)
    return bad(r, err, "in_stock must be 1/0/true/false/yes/no, got", field(c, r, C_CSTOCK));
  if (!(it.id = keep(d, id)) || !(it.subcategory = keep(d, field(c, r, C_CSUB))) ||
      !(it.brand = keep(d, field(c, r, C_CBRAND))) || !(it.name = keep(d, field(c, r, C_CNAME))) ||
      intern_category(d, cat, &it.category_idx) != 0)
    return rec_fail(err, REC_ENOMEM, "out of memory");
  it.category = d->categories[it.category_idx];
  if (strmap_put(d->item_map, it.id, strlen(it.id), (uint32_t)d->n_items) != 0)
    return bad(r, err, "duplicate item id", id);
  d->items[d->n_items++] = it;
  return 0;
}

static int intern_user(dataset *d, const char *id, uint32_t *u) {
  if (strmap_get(d->user_map, id, strlen(id), u)) return 0;
  char *k = keep(d, id);
  if (!k) return REC_ENOMEM;
  *u = (uint32_t)d->n_users;
  d->user_ids[d->n_users++] = k;
  return strmap_put(d->user_map, k, strlen(k), *u);
}

/* Optional numeric column: empty gives 'def'. */
static int opt_num(const load_ctx *c, const csv_row *r, int f, float def, float *out,
                   rec_error *err) {
  const char *s = field(c, r, f);
  *out = def;
  if (!*s) return 0;
  if (!parse_num(s, out)) return bad(r, err, "not a number:", s);
  return 0;
}

static int event_row(void *ctx, const csv_row *r, int is_header, rec_error *err) {
  load_ctx *c = ctx;
  dataset *d = c->d;
  if (is_header) {
    int rc = map_header(c, r, C_USER, C_RATING + 1, 2, err); /* user and item; time is optional */
    d->has_price = c->col[C_PRICE] >= 0;
    d->has_time = c->col[C_TIME] >= 0;
    if (!rc && !d->has_time && c->s->time && strcmp(c->s->time, DS_SCHEMA_DEFAULT.time) != 0)
      rc = rec_fail(err, REC_ECORRUPT, "%s:1: missing column '%s' (schema field 'time'); drop the mapping for "
                    "data without times", r->path, c->s->time);
    return rc;
  }
  if (r->n != c->ncols)
    return rec_fail(err, REC_ECORRUPT, "%s:%zu: %zu fields, the header has %zu", r->path, r->line,
                    r->n, c->ncols);
  d->report.rows++;
  ds_event e = {0};
  const char *user = field(c, r, C_USER), *item = field(c, r, C_ITEM), *t = field(c, r, C_TIME);
  if (!valid_id(user)) return bad(r, err, "user id must be 1 to 128 bytes without tabs, got", user);
  if (!strmap_get(d->item_map, item, strlen(item), &e.item))
    return rec_fail(err, REC_ECORRUPT, "%s:%zu: item '%.100s' is not in the catalog %s", r->path,
                    r->line, item, c->catalog_path);
  if (d->has_time && !ds_parse_time(t, &e.time))
    return bad(r, err, "time is not Unix seconds or YYYY-MM-DD:", t);
  int rc;
  if ((rc = opt_num(c, r, C_QTY, 1, &e.quantity, err)) || (rc = opt_num(c, r, C_PRICE, 0, &e.price, err)))
    return rc;
  e.priced = *field(c, r, C_PRICE) != '\0';
  const char *rt = field(c, r, C_RATING);
  e.rating = NAN; /* no rating: a purchase-like event */
  if (*rt && (!parse_num(rt, &e.rating) || e.rating < 0))
    return bad(r, err, "rating is not a number >= 0:", rt);
  if (e.quantity < 0 || e.price < 0) {
    d->report.returns++; /* a return, not a preference */
    return 0;
  }
  if (intern_user(d, user, &e.user) != 0) return rec_fail(err, REC_ENOMEM, "out of memory");
  d->has_rating |= !isnan(e.rating);
  d->events[d->n_events++] = e;
  return 0;
}

/* ---- cleaning and strength ---- */

static int by_user_time(const void *a, const void *b) {
  const ds_event *x = a, *y = b;
  if (x->user != y->user) return x->user < y->user ? -1 : 1;
  if (x->time != y->time) return x->time < y->time ? -1 : 1;
  if (x->item != y->item) return x->item < y->item ? -1 : 1;
  if (x->quantity != y->quantity) return x->quantity < y->quantity ? -1 : 1;
  if (x->price != y->price) return x->price < y->price ? -1 : 1;
  if (isnan(x->rating) || isnan(y->rating)) return isnan(y->rating) - isnan(x->rating);
  return x->rating < y->rating ? -1 : x->rating > y->rating;
}

static void drop_duplicates(dataset *d) {
  size_t w = 0;
  for (size_t i = 0; i < d->n_events; i++) {
    if (w > 0 && by_user_time(&d->events[w - 1], &d->events[i]) == 0) {
      d->report.duplicates++;
      continue;
    }
    d->events[w++] = d->events[i];
  }
  d->n_events = w;
}

static int compute_strength(dataset *d) {
  double *user_price = calloc(d->n_users, sizeof *user_price);
  double *item_qty = calloc(d->n_items, sizeof *item_qty);
  size_t *item_n = calloc(d->n_items, sizeof *item_n);
  if (!user_price || !item_qty || !item_n) {
    free(user_price);
    free(item_qty);
    free(item_n);
    return REC_ENOMEM;
  }
  for (size_t i = 0; i < d->n_events; i++) {
    const ds_event *e = &d->events[i];
    user_price[e->user] += e->price;
    item_qty[e->item] += e->quantity;
    item_n[e->item]++;
  }
  for (size_t u = 0; u < d->n_users; u++) {
    size_t n = d->user_start[u + 1] - d->user_start[u];
    user_price[u] = n ? user_price[u] / (double)n : 0;
  }
  for (size_t i = 0; i < d->n_events; i++) {
    ds_event *e = &d->events[i];
    e->strength = !isnan(e->rating)
        ? ds_strength_rating(e->rating)
        : ds_strength_purchase(e->price, (float)user_price[e->user], e->quantity,
                               (float)(item_qty[e->item] / (double)item_n[e->item]));
    d->report.zero_price += e->priced && e->price == 0;
  }
  free(user_price);
  free(item_qty);
  free(item_n);
  return 0;
}

static int index_users(dataset *d) {
  d->user_start = calloc(d->n_users + 1, sizeof *d->user_start);
  if (!d->user_start) return REC_ENOMEM;
  for (size_t i = 0; i < d->n_events; i++) d->user_start[d->events[i].user + 1]++;
  for (size_t u = 0; u < d->n_users; u++) d->user_start[u + 1] += d->user_start[u];
  return 0;
}

/* An upper bound on a file's rows: its line ends (\n or a lone \r, which
 * libcsv also accepts) plus one. */
static size_t count_lines(const char *path) {
  FILE *fp = fopen(path, "rb");
  if (!fp) return 0;
  size_t n = 1;
  int ch;
  while ((ch = getc(fp)) != EOF) n += ch == '\n' || ch == '\r';
  fclose(fp);
  return n;
}

static int alloc_tables(dataset *d, size_t items, size_t events) {
  d->items = calloc(items, sizeof *d->items);
  d->categories = calloc(items, sizeof *d->categories);
  d->events = calloc(events, sizeof *d->events);
  d->user_ids = calloc(events, sizeof *d->user_ids);
  if (!d->items || !d->categories || !d->events || !d->user_ids) return REC_ENOMEM;
  if (strmap_new(items, &d->item_map) || strmap_new(items, &d->category_map) ||
      strmap_new(events, &d->user_map))
    return REC_ENOMEM;
  return 0;
}

int dataset_load(const char *interactions, const char *catalog_csv, const ds_schema *s,
                 dataset **out, rec_error *err) {
  dataset *d = calloc(1, sizeof *d);
  if (!d) return rec_fail(err, REC_ENOMEM, "out of memory");
  arena_init(&d->strings, 1 << 16);
  load_ctx c = {.d = d, .s = s, .catalog_path = catalog_csv};
  int rc = alloc_tables(d, count_lines(catalog_csv), interactions ? count_lines(interactions) : 1);
  if (rc) {
    rec_fail(err, rc, "out of memory");
    goto fail;
  }
  if ((rc = csv_read(catalog_csv, catalog_row, &c, err)) ||
      (interactions && (rc = csv_read(interactions, event_row, &c, err))))
    goto fail;
  if (interactions && d->n_events == 0) {
    rc = rec_fail(err, REC_ECORRUPT, "%s: no usable interactions (%zu returns dropped)",
                  interactions, d->report.returns);
    goto fail;
  }
  qsort(d->events, d->n_events, sizeof *d->events, by_user_time);
  drop_duplicates(d);
  if ((rc = index_users(d)) || (rc = compute_strength(d))) {
    rec_fail(err, rc, "out of memory");
    goto fail;
  }
  d->report.kept = d->n_events;
  *out = d;
  return 0;
fail:
  dataset_free(d);
  return rc;
}

void dataset_free(dataset *d) {
  if (!d) return;
  free(d->user_ids);
  free(d->items);
  free(d->categories);
  free(d->events);
  free(d->user_start);
  strmap_free(d->user_map);
  strmap_free(d->item_map);
  strmap_free(d->category_map);
  arena_destroy(&d->strings);
  free(d);
}

bool dataset_find_item(const dataset *d, const char *id, uint32_t *item) {
  return strmap_get(d->item_map, id, strlen(id), item);
}

bool dataset_find_user(const dataset *d, const char *id, uint32_t *user) {
  return strmap_get(d->user_map, id, strlen(id), user);
}
