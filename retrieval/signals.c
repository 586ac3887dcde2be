/* retrieval/signals.c - see signals.h. Each file is a tab-separated table
 * with a header; each is read whole and parsed in two passes (count, then
 * fill) so every array is allocated once. */
#include "retrieval/signals.h"
#include "common/fileio.h"
#include "common/search.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const SEGMENTS[SIG_SEGMENTS] = {"small", "low", "average", "high"};

int signals_segment(const char *name) {
  for (int i = 0; i < SIG_SEGMENTS; i++)
    if (strcmp(name, SEGMENTS[i]) == 0) return i;
  return -1;
}

typedef struct table {
  const char *path;
  char *text;           /* owned until handed to signals.text */
  int lineno;
  char *next;
} table;

/* Splits the next data line into exactly n fields (with 'rest', at least n,
 * the last keeping the rest of the line, tabs included); false at the end. */
static bool row_split(table *t, char **f, int n, bool rest, int *bad) {
  *bad = 0;
  while (t->next && *t->next) {
    char *line = t->next, *nl = strchr(line, '\n');
    t->next = nl ? nl + 1 : NULL;
    if (nl) *nl = '\0';
    t->lineno++;
    if (!*line) continue;
    int k = 0;
    f[k++] = line;
    for (char *p = line; *p && !(rest && k == n); p++)
      if (*p == '\t') {
        *p = '\0';
        if (k == n) {
          *bad = 1;
          return true;
        }
        f[k++] = p + 1;
      }
    *bad = k != n;
    return true;
  }
  return false;
}

static bool row(table *t, char **f, int n, int *bad) { return row_split(t, f, n, false, bad); }

/* Opens the file the manifest names under 'key'; *present false if none.
 * The name must be a plain one that "files" lists: bundle_load has checked
 * the size and checksum of every file there, so no table is read
 * unverified, nor from outside the bundle. */
static int open_table(const char *dir, const cJSON *m, const char *key, const char *header,
                      table *t, bool *present, rec_error *err) {
  const cJSON *name = cJSON_GetObjectItemCaseSensitive(m, key);
  *present = cJSON_IsString(name);
  if (!*present) return 0;
  const char *file = name->valuestring;
  if (!*file || strchr(file, '/') || strcmp(file, "..") == 0)
    return rec_fail(err, REC_ECORRUPT,
                    "%s/manifest.json: %s: file names must be plain names inside the bundle", dir, key);
  if (!cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(m, "files"), file))
    return rec_fail(err, REC_ECORRUPT, "%s/manifest.json: %s is not listed in \"files\"", dir, file);
  static _Thread_local char path[4200];
  snprintf(path, sizeof path, "%s/%s", dir, name->valuestring);
  size_t len;
  *t = (table){.path = path};
  if (!(t->text = rec_read_file(path, &len, err))) return err ? err->code : REC_EIO;
  if (memchr(t->text, '\0', len)) { /* rows are C strings: the table would end there, silently */
    free(t->text);
    return rec_fail(err, REC_ECORRUPT, "%s: contains a NUL byte", path);
  }
  char *nl = strchr(t->text, '\n');
  if (!nl || (size_t)(nl - t->text) != strlen(header) || strncmp(t->text, header, strlen(header)) != 0) {
    free(t->text);
    return rec_fail(err, REC_ECORRUPT, "%s:1: header must be '%s'", path, header);
  }
  t->lineno = 1;
  t->next = nl + 1;
  return 0;
}

static int bad_row(const table *t, rec_error *err, const char *what, const char *v) {
  return rec_fail(err, REC_ECORRUPT, "%s:%d: %s '%.100s'", t->path, t->lineno, what, v);
}

static bool num(const char *s, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (end == s || *end || errno || !isfinite(v)) return false;
  *out = v;
  return true;
}

static int item_of(const table *t, const catalog *c, const char *id, uint32_t *item, rec_error *err) {
  if (!catalog_find(c, id, strlen(id), item)) return bad_row(t, err, "unknown item", id);
  return 0;
}

/* A growable array of fixed-size records. */
typedef struct vec {
  void *data;
  size_t n, cap, size;
} vec;

static void *vec_push(vec *v) {
  if (v->n == v->cap) {
    size_t cap = v->cap ? v->cap * 2 : 1024;
    void *d = realloc(v->data, cap * v->size);
    if (!d) return NULL;
    v->data = d;
    v->cap = cap;
  }
  return (char *)v->data + v->n++ * v->size;
}

/* Counting sort of (key, record) pairs into CSR offsets over 'nkeys' keys. */
static uint32_t *csr_offsets(const uint32_t *keys, size_t n, size_t nkeys, uint32_t *order) {
  uint32_t *off = calloc(nkeys + 1, sizeof *off);
  if (!off) return NULL;
  for (size_t k = 0; k < n; k++) off[keys[k] + 1]++;
  for (size_t i = 0; i < nkeys; i++) off[i + 1] += off[i];
  uint32_t *fill = malloc((nkeys + 1) * sizeof *fill);
  if (!fill) {
    free(off);
    return NULL;
  }
  memcpy(fill, off, (nkeys + 1) * sizeof *fill);
  for (size_t k = 0; k < n; k++) order[fill[keys[k]]++] = (uint32_t)k;
  free(fill);
  return off;
}

/* ---- item_cf.tsv, ease.tsv: item_id neighbour_id score|weight ---- */

typedef struct cf_rec {
  uint32_t item, nbr;
  float sim;
} cf_rec;

static int count_lines(const char *s) {
  int n = 0;
  for (; *s; s++) n += *s == '\n';
  return n + 1;
}

/* A seed row's item: a catalog row, or in a shard's partition an item
 * another shard holds (neighbours of it that live here). */
static int seed_of(const table *t, const catalog *c, bool partition, sig_pairs *p, const char *id, uint32_t *seed,
                   rec_error *err) {
  size_t len = strlen(id);
  if (catalog_find(c, id, len, seed)) return 0;
  if (!partition) return bad_row(t, err, "unknown item", id);
  /* Room for every row still to read: the rows read so far are split in place. */
  if (!p->seed_map && strmap_new((t->next ? (size_t)count_lines(t->next) : 0) + 2, &p->seed_map) != 0) return REC_ENOMEM;
  uint32_t j;
  if (strmap_get(p->seed_map, id, len, &j)) {
    *seed = SIG_FOREIGN_SEED | j;
    return 0;
  }
  if (p->n_foreign >= SIG_FOREIGN_SEED - 1 - c->count) return bad_row(t, err, "too many seeds at", id);
  int rc = strmap_put(p->seed_map, id, len, (uint32_t)p->n_foreign);
  if (rc) return rc == REC_EINVAL ? bad_row(t, err, "duplicate seed", id) : rc;
  *seed = SIG_FOREIGN_SEED | (uint32_t)p->n_foreign++;
  return 0;
}

static int load_pairs(table *t, const catalog *c, bool partition, sig_pairs *p, rec_error *err) {
  vec v = {.size = sizeof(cf_rec)};
  char *f[3];
  int bad, rc = 0;
  while (!rc && row(t, f, 3, &bad)) {
    cf_rec r;
    double sim = 0;
    if (bad) rc = bad_row(t, err, "want 3 tab-separated fields, got", f[0]);
    else if (!(rc = seed_of(t, c, partition, p, f[0], &r.item, err)) && !(rc = item_of(t, c, f[1], &r.nbr, err))) {
      if (!num(f[2], &sim) || !isfinite((float)sim)) rc = bad_row(t, err, "score is not a float32 number:", f[2]);
      r.sim = (float)sim;
      cf_rec *slot = rc ? NULL : vec_push(&v);
      if (!rc && !slot) rc = REC_ENOMEM;
      if (slot) *slot = r;
    }
  }
  const cf_rec *recs = v.data;
  uint32_t *keys = malloc((v.n + 1) * sizeof *keys), *order = malloc((v.n + 1) * sizeof *order);
  p->n_items = c->count;
  p->nbr = malloc((v.n + 1) * sizeof *p->nbr);
  p->w = malloc((v.n + 1) * sizeof *p->w);
  if (!rc && (!keys || !order || !p->nbr || !p->w)) rc = REC_ENOMEM;
  for (size_t k = 0; !rc && k < v.n; k++)
    keys[k] = recs[k].item & SIG_FOREIGN_SEED ? (uint32_t)c->count + (recs[k].item & ~SIG_FOREIGN_SEED) : recs[k].item;
  size_t nkeys = c->count + p->n_foreign;
  if (!rc && !(p->off = csr_offsets(keys, v.n, nkeys, order))) rc = REC_ENOMEM;
  for (size_t k = 0; !rc && k < v.n; k++) { /* stable: file order kept within an item */
    p->nbr[k] = recs[order[k]].nbr;
    p->w[k] = recs[order[k]].sim;
  }
  for (size_t i = 0; !rc && i < nkeys; i++)
    if (p->off[i + 1] - p->off[i] > p->max) p->max = p->off[i + 1] - p->off[i];
  free(keys);
  free(order);
  free(v.data);
  return rc;
}

static int load_itemcf(table *t, const catalog *c, signals *s, rec_error *err) {
  return load_pairs(t, c, s->partition, &s->cf, err);
}

static int load_ease(table *t, const catalog *c, signals *s, rec_error *err) {
  return load_pairs(t, c, s->partition, &s->ease, err);
}

static void pairs_destroy(sig_pairs *p) {
  free(p->off);
  free(p->nbr);
  free(p->w);
  strmap_free(p->seed_map);
}

/* ---- popularity.tsv: list item_id score ---- */

typedef struct pop_rec {
  uint32_t list, item;
  float score;
} pop_rec;

/* List index: 0..3 segments, 4 + category index; -1 for "global" (the
 * catalog's own popularity order serves it); -2 unknown. */
static int list_of(const catalog *c, const char *name) {
  uint32_t cat;
  if (strcmp(name, "global") == 0) return -1;
  if (strncmp(name, "segment:", 8) == 0) return signals_segment(name + 8) >= 0 ? signals_segment(name + 8) : -2;
  if (strncmp(name, "category:", 9) == 0 && catalog_find_category(c, name + 9, strlen(name + 9), &cat))
    return SIG_SEGMENTS + (int)cat;
  return -2;
}

static int load_popularity(table *t, const catalog *c, signals *s, rec_error *err) {
  vec v = {.size = sizeof(pop_rec)};
  char *f[3];
  int bad, rc = 0;
  while (!rc && row(t, f, 3, &bad)) {
    pop_rec r;
    double score = 0;
    int list = bad ? -2 : list_of(c, f[0]);
    if (bad) rc = bad_row(t, err, "want 3 tab-separated fields, got", f[0]);
    else if (list == -2) rc = bad_row(t, err, "unknown list (global, segment:NAME, category:NAME)", f[0]);
    else if (list == -1) continue;
    else if (!(rc = item_of(t, c, f[1], &r.item, err)) && !num(f[2], &score))
      rc = bad_row(t, err, "score is not a number:", f[2]);
    if (rc) break;
    r.list = (uint32_t)list;
    r.score = (float)score;
    pop_rec *slot = vec_push(&v);
    if (!slot) rc = REC_ENOMEM;
    else *slot = r;
  }
  size_t nl = SIG_SEGMENTS + c->category_count;
  s->n_categories = c->category_count;
  s->category_pop = calloc(c->category_count + 1, sizeof *s->category_pop);
  size_t *counts = calloc(nl, sizeof *counts);
  if (!rc && (!s->category_pop || !counts)) rc = REC_ENOMEM;
  const pop_rec *recs = v.data;
  for (size_t k = 0; !rc && k < v.n; k++) counts[recs[k].list]++;
  for (size_t l = 0; !rc && l < nl; l++) {
    sig_list *L = l < SIG_SEGMENTS ? &s->segment_pop[l] : &s->category_pop[l - SIG_SEGMENTS];
    L->items = malloc((counts[l] + 1) * sizeof *L->items);
    L->scores = malloc((counts[l] + 1) * sizeof *L->scores);
    if (!L->items || !L->scores) rc = REC_ENOMEM;
  }
  for (size_t k = 0; !rc && k < v.n; k++) { /* the file lists each list best first */
    size_t l = recs[k].list;
    sig_list *L = l < SIG_SEGMENTS ? &s->segment_pop[l] : &s->category_pop[l - SIG_SEGMENTS];
    L->items[L->n] = recs[k].item;
    L->scores[L->n++] = recs[k].score;
  }
  free(counts);
  free(v.data);
  return rc;
}

/* ---- profiles.tsv: user_id mean_price segment recent_items ---- */


static int profile_row(table *t, const catalog *c, signals *s, char **f, vec *recent, rec_error *err) {
  size_t p = s->n_profiles;
  double mean;
  int seg = signals_segment(f[2]);
  if (!*f[0] || strlen(f[0]) > REC_ID_MAX) return bad_row(t, err, "user_id must be 1 to 128 bytes:", f[0]);
  if (!num(f[1], &mean) || mean < 0) return bad_row(t, err, "mean_price is not a number >= 0:", f[1]);
  if (seg < 0) return bad_row(t, err, "segment must be small, low, average or high, got", f[2]);
  if (strmap_put(s->profile_map, f[0], strlen(f[0]), (uint32_t)p) != 0)
    return bad_row(t, err, "duplicate user_id", f[0]);
  s->profile_ids[p] = f[0];
  s->mean_price[p] = (float)mean;
  s->segment[p] = (uint8_t)seg;
  s->recent_off[p] = (uint32_t)recent->n;
  /* One item per column (ids may hold spaces). Bundles written before that
   * put the list in one column, space-separated: a column that is no item
   * but holds spaces is read that way. */
  char *save = NULL;
  for (char *col = strtok_r(f[3], "\t", &save); col; col = strtok_r(NULL, "\t", &save)) {
    uint32_t item;
    bool legacy = !catalog_find(c, col, strlen(col), &item) && strchr(col, ' ');
    char *save2 = NULL;
    for (char *id = legacy ? strtok_r(col, " ", &save2) : col; id; id = legacy ? strtok_r(NULL, " ", &save2) : NULL) {
      uint32_t *slot = vec_push(recent);
      int rc = slot ? item_of(t, c, id, slot, err) : REC_ENOMEM;
      if (rc) return rc;
    }
  }
  s->recent_off[p + 1] = (uint32_t)recent->n;
  s->n_profiles++;
  return 0;
}

static int load_profiles(table *t, const catalog *c, signals *s, rec_error *err) {
  size_t cap = (size_t)count_lines(t->next);
  s->profile_ids = calloc(cap, sizeof *s->profile_ids);
  s->mean_price = calloc(cap, sizeof *s->mean_price);
  s->segment = calloc(cap, sizeof *s->segment);
  s->recent_off = calloc(cap + 1, sizeof *s->recent_off);
  if (!s->profile_ids || !s->mean_price || !s->segment || !s->recent_off ||
      strmap_new(cap, &s->profile_map) != 0)
    return REC_ENOMEM;
  vec recent = {.size = sizeof(uint32_t)};
  char *f[4];
  int bad, rc = 0;
  while (!rc && row_split(t, f, 4, true, &bad))
    rc = bad ? bad_row(t, err, "want user_id, mean_price, segment and recent items, tab-separated, got", f[0])
             : profile_row(t, c, s, f, &recent, err);
  s->recent = recent.data;
  return rc;
}

/* ---- purchases.tsv: user_id item_id last_time count ---- */

typedef struct purch_rec {
  uint32_t profile;
  sig_purchase p;
} purch_rec;

static int by_profile_item(const void *a, const void *b) {
  const purch_rec *x = a, *y = b;
  if (x->profile != y->profile) return x->profile < y->profile ? -1 : 1;
  return x->p.item < y->p.item ? -1 : x->p.item > y->p.item;
}

static int load_purchases(table *t, const catalog *c, signals *s, rec_error *err) {
  vec v = {.size = sizeof(purch_rec)};
  char *f[4];
  int bad, rc = 0;
  while (!rc && row(t, f, 4, &bad)) {
    purch_rec r;
    double when = 0, count = 0;
    if (bad) rc = bad_row(t, err, "want 4 tab-separated fields, got", f[0]);
    else if (!s->profile_map || !strmap_get(s->profile_map, f[0], strlen(f[0]), &r.profile))
      rc = bad_row(t, err, "user has no profile in profiles.tsv:", f[0]);
    else if (!(rc = item_of(t, c, f[1], &r.p.item, err)) &&
             (!num(f[2], &when) || !num(f[3], &count) || count < 1))
      rc = bad_row(t, err, "last_time and count must be numbers (count >= 1), got", f[2]);
    if (rc) break;
    r.p.last_time = (int64_t)when;
    r.p.count = (uint32_t)count;
    purch_rec *slot = vec_push(&v);
    if (!slot) rc = REC_ENOMEM;
    else *slot = r;
  }
  purch_rec *recs = v.data; /* NULL for a table with no rows, which qsort may not take */
  if (!rc && v.n) qsort(recs, v.n, sizeof *recs, by_profile_item);
  s->purch = malloc((v.n + 1) * sizeof *s->purch);
  s->purch_off = calloc(s->n_profiles + 1, sizeof *s->purch_off);
  if (!rc && (!s->purch || !s->purch_off)) rc = REC_ENOMEM;
  for (size_t k = 0; !rc && k < v.n; k++) {
    s->purch[k] = recs[k].p;
    s->purch_off[recs[k].profile + 1]++;
  }
  for (size_t p = 0; !rc && p < s->n_profiles; p++) s->purch_off[p + 1] += s->purch_off[p];
  free(v.data);
  return rc;
}

/* ---- repurchase.tsv: item_id cycle_days samples ---- */

static int load_repurchase(table *t, const catalog *c, signals *s, rec_error *err) {
  char *f[3];
  int bad, rc = 0;
  while (!rc && row(t, f, 3, &bad)) {
    uint32_t i;
    double days;
    if (bad) rc = bad_row(t, err, "want 3 tab-separated fields, got", f[0]);
    else if (!(rc = item_of(t, c, f[0], &i, err))) {
      if (!num(f[1], &days) || days < 0) rc = bad_row(t, err, "cycle_days is not a number >= 0:", f[1]);
      else s->cycle_days[i] = (float)days;
    }
  }
  return rc;
}

/* ---- the whole set ---- */

/* "ease_recency": {"boost": B, "scale": S}, optional: B in [0, 1000], S in
 * (0, 1e6] when B > 0. */
static int ease_recency(const char *dir, const cJSON *m, signals *s, rec_error *err) {
  const cJSON *r = cJSON_GetObjectItemCaseSensitive(m, "ease_recency");
  if (!r) return 0;
  const cJSON *b = cJSON_GetObjectItemCaseSensitive(r, "boost"), *k = cJSON_GetObjectItemCaseSensitive(r, "scale");
  if (!cJSON_IsObject(r) || !cJSON_IsNumber(b) || !(b->valuedouble >= 0 && b->valuedouble <= 1000) ||
      (b->valuedouble > 0 && !(cJSON_IsNumber(k) && k->valuedouble > 0 && k->valuedouble <= 1e6)))
    return rec_fail(err, REC_ECORRUPT, "%s/manifest.json: \"ease_recency\" must be {\"boost\": 0..1000, "
                    "\"scale\": > 0 and <= 1e6}", dir);
  s->ease_boost = (float)b->valuedouble;
  s->ease_scale = s->ease_boost > 0 ? (float)k->valuedouble : 1.0f;
  return 0;
}

typedef int (*loader)(table *, const catalog *, signals *, rec_error *);

int signals_load(const char *dir, const cJSON *m, const catalog *c, signals *out, rec_error *err) {
  static const struct {
    const char *key, *header;
    loader load;
  } FILES[] = {
      {"item_cf", "item_id\tneighbour_id\tscore", load_itemcf},
      {"ease", "item_id\tneighbour_id\tweight", load_ease},
      {"popularity", "list\titem_id\tscore", load_popularity},
      {"profiles", "user_id\tmean_price\tsegment\trecent_items", load_profiles},
      {"purchases", "user_id\titem_id\tlast_time\tcount", load_purchases},
      {"repurchase", "item_id\tcycle_days\tsamples", load_repurchase},
  };
  signals s = {.n_items = c->count, .partition = cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(m, "partition"))};
  int rc = ease_recency(dir, m, &s, err);
  s.cycle_days = calloc(c->count + 1, sizeof *s.cycle_days);
  if (!rc && !s.cycle_days) rc = rec_fail(err, REC_ENOMEM, "out of memory");
  for (size_t k = 0; !rc && k < sizeof FILES / sizeof *FILES; k++) {
    table t;
    bool present;
    rc = open_table(dir, m, FILES[k].key, FILES[k].header, &t, &present, err);
    if (rc || !present) continue;
    s.text[k] = t.text; /* ids point into it */
    rc = FILES[k].load(&t, c, &s, err);
    /* An item-item table's ids are needed only by its foreign seeds. */
    sig_pairs *p = FILES[k].load == load_itemcf ? &s.cf : FILES[k].load == load_ease ? &s.ease : NULL;
    if (!rc && p && !p->seed_map) {
      free(t.text);
      s.text[k] = NULL;
    }
    if (rc == REC_ENOMEM) rec_fail(err, rc, "%s: out of memory", t.path);
  }
  if (rc) {
    signals_destroy(&s);
    return rc;
  }
  *out = s;
  return 0;
}

void signals_destroy(signals *s) {
  pairs_destroy(&s->cf);
  pairs_destroy(&s->ease);
  for (int i = 0; i < SIG_SEGMENTS; i++) {
    free(s->segment_pop[i].items);
    free(s->segment_pop[i].scores);
  }
  for (size_t i = 0; s->category_pop && i < s->n_categories; i++) {
    free(s->category_pop[i].items);
    free(s->category_pop[i].scores);
  }
  free(s->category_pop);
  free(s->cycle_days);
  free(s->profile_ids);
  free(s->mean_price);
  free(s->segment);
  free(s->recent_off);
  free(s->recent);
  free(s->purch_off);
  free(s->purch);
  strmap_free(s->profile_map);
  for (int i = 0; i < 6; i++) free(s->text[i]);
  memset(s, 0, sizeof *s);
}

bool sig_seed(const sig_pairs *p, const catalog *c, const char *id, size_t len, uint32_t *seed) {
  uint32_t j;
  if (catalog_find(c, id, len, seed)) return true;
  if (!p->seed_map || !strmap_get(p->seed_map, id, len, &j)) return false;
  *seed = SIG_FOREIGN_SEED | j;
  return true;
}

float sig_ease_weight(const signals *s, size_t pos) { return sig_recency_weight(s->ease_boost, s->ease_scale, pos); }

bool signals_profile(const signals *s, const char *user, size_t len, uint32_t *row) {
  return s->profile_map && strmap_get(s->profile_map, user, len, row);
}

const sig_purchase *signals_purchase(const signals *s, uint32_t profile, uint32_t item) {
  if (!s->purch_off || !s->purch) return NULL;
  const sig_purchase *p = s->purch + s->purch_off[profile];
  size_t n = s->purch_off[profile + 1] - s->purch_off[profile];
  size_t i = rec_search_u32(p, n, sizeof *p, offsetof(sig_purchase, item), item);
  return i < n ? &p[i] : NULL;
}
