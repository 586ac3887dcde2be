/* server/live_catalog.c - see live_catalog.h.
 *
 * Log payload of one batch (little-endian): u32 item count, then per item
 *   u8 flags (1 deleted, 2 in_stock set, 4 price, 8 margin, 16 category,
 *   32 subcategory, 64 brand, 128 name) | u8 in_stock | u16 id length | id
 *   | [f64 price] | [f64 margin] | [u16 length | bytes] per string set. */
#include "server/live_catalog.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/strmap.h"
#include "retrieval/tower.h"
#include "server/catlog.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

enum { F_DELETED = 1, F_STOCK = 2, F_PRICE = 4, F_MARGIN = 8, F_CATEGORY = 16, F_SUB = 32, F_BRAND = 64,
       F_NAME = 128 };

/* An item's accumulated changes. Allocated one by one: views point at
 * 'events'. */
typedef struct entry {
  char *id;
  size_t id_len;
  bool deleted;
  bool has_stock, has_price, has_margin;
  bool in_stock;
  double price, margin;
  char *category, *subcategory, *brand, *name;
  _Atomic uint32_t events;
} entry;

typedef struct job {
  const lc_item *items;
  size_t n;
  const char *row_name;
  int64_t deadline_ns;
  lc_done_fn done;
  void *arg;
  struct job *next;
} job;

struct live_catalog {
  pthread_mutex_t mu;        /* the overlay, the base and publishing */
  entry **entries;           /* in the order first changed */
  size_t n, cap;
  strmap *index;             /* id -> entries[] index; rebuilt as it grows */
  size_t index_cap;
  pthread_mutex_t index_mu;  /* 'index' and 'n' for note_event, which does not take 'mu' */
  catlog *log;
  bundle *base;              /* the loaded bundle (a reference), NULL before the first */
  float *centroids;          /* [categories x dim] of 'base': an added item's embedding without an item tower */
  size_t by_tower, by_centroid; /* how the last view embedded its added items */
  lc_publish_fn publish;
  void *publish_arg;
  pthread_mutex_t q_mu;
  pthread_cond_t q_cv;
  job *head, *tail;
  bool closing;
  pthread_t writer;
};

/* ---- the overlay ---- */

static void entry_free(entry *e) {
  if (!e) return;
  free(e->id);
  free(e->category);
  free(e->subcategory);
  free(e->brand);
  free(e->name);
  free(e);
}

static bool find(const live_catalog *lc, const char *id, size_t len, size_t *at) {
  uint32_t v;
  if (!lc->index || !strmap_get(lc->index, id, len, &v)) return false;
  *at = v;
  return true;
}

/* A new index with room for twice the entries; 'index_mu' held. */
static int reindex(live_catalog *lc) {
  size_t cap = 4 * lc->n > 64 ? 4 * lc->n : 64;
  strmap *m;
  if (strmap_new(cap, &m) != 0) return REC_ENOMEM;
  for (size_t i = 0; i < lc->n; i++) strmap_put(m, lc->entries[i]->id, lc->entries[i]->id_len, (uint32_t)i);
  strmap *old = lc->index;
  lc->index = m;
  lc->index_cap = cap;
  strmap_free(old);
  return 0;
}

/* The entry for 'id', added when new. NULL: out of memory. */
static entry *entry_for(live_catalog *lc, const char *id, size_t len) {
  size_t at;
  if (find(lc, id, len, &at)) return lc->entries[at];
  if (lc->n == lc->cap) {
    size_t cap = lc->cap ? 2 * lc->cap : 64;
    entry **grown = realloc(lc->entries, cap * sizeof *grown);
    if (!grown) return NULL;
    lc->entries = grown;
    lc->cap = cap;
  }
  entry *e = calloc(1, sizeof *e);
  if (!e || !(e->id = strndup(id, len))) {
    entry_free(e);
    return NULL;
  }
  e->id_len = len;
  atomic_init(&e->events, 0);
  pthread_mutex_lock(&lc->index_mu);
  lc->entries[lc->n++] = e;
  int rc = !lc->index || lc->n > lc->index_cap / 2 ? reindex(lc)
                                                     : strmap_put(lc->index, e->id, len, (uint32_t)(lc->n - 1));
  if (rc) lc->n--;
  pthread_mutex_unlock(&lc->index_mu);
  if (rc) {
    entry_free(e);
    return NULL;
  }
  return e;
}

static bool set_str(char **dst, const char *v) {
  if (!v) return true;
  char *c = strdup(v);
  if (!c) return false;
  free(*dst);
  *dst = c;
  return true;
}

static int apply_item(live_catalog *lc, const lc_item *it) {
  entry *e = entry_for(lc, it->id, strlen(it->id));
  if (!e) return REC_ENOMEM;
  if (it->deleted) {
    e->deleted = true;
    return 0;
  }
  e->deleted = false;
  if (it->has_stock) e->has_stock = true, e->in_stock = it->in_stock;
  if (it->has_price) e->has_price = true, e->price = it->price;
  if (it->has_margin) e->has_margin = true, e->margin = it->margin;
  if (!set_str(&e->category, it->category) || !set_str(&e->subcategory, it->subcategory) ||
      !set_str(&e->brand, it->brand) || !set_str(&e->name, it->name))
    return REC_ENOMEM;
  return 0;
}

/* ---- the log payload ---- */

static size_t encoded_size(const lc_item *items, size_t n) {
  size_t s = 4;
  for (size_t i = 0; i < n; i++) {
    const lc_item *it = &items[i];
    s += 4 + strlen(it->id) + (it->has_price ? 8 : 0) + (it->has_margin ? 8 : 0);
    const char *str[4] = {it->category, it->subcategory, it->brand, it->name};
    for (int k = 0; k < 4; k++) s += str[k] ? 2 + strlen(str[k]) : 0;
  }
  return s;
}

static uint8_t *put_bytes(uint8_t *p, const void *v, size_t n) {
  memcpy(p, v, n);
  return p + n;
}

static uint8_t *put_u16(uint8_t *p, size_t v) {
  p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8);
  return p + 2;
}

static uint8_t *put_f64(uint8_t *p, double d) {
  uint64_t v;
  memcpy(&v, &d, 8);
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
  return p + 8;
}

static uint8_t *encode(const lc_item *items, size_t n, size_t *len) {
  *len = encoded_size(items, n);
  uint8_t *buf = malloc(*len), *p = buf;
  if (!buf) return NULL;
  for (int i = 0; i < 4; i++) *p++ = (uint8_t)(n >> (8 * i));
  for (size_t i = 0; i < n; i++) {
    const lc_item *it = &items[i];
    const char *str[4] = {it->category, it->subcategory, it->brand, it->name};
    *p++ = (uint8_t)((it->deleted ? F_DELETED : 0) | (it->has_stock ? F_STOCK : 0) | (it->has_price ? F_PRICE : 0) |
                     (it->has_margin ? F_MARGIN : 0) | (str[0] ? F_CATEGORY : 0) | (str[1] ? F_SUB : 0) |
                     (str[2] ? F_BRAND : 0) | (str[3] ? F_NAME : 0));
    *p++ = it->in_stock;
    p = put_u16(p, strlen(it->id));
    p = put_bytes(p, it->id, strlen(it->id));
    if (it->has_price) p = put_f64(p, it->price);
    if (it->has_margin) p = put_f64(p, it->margin);
    for (int k = 0; k < 4; k++)
      if (str[k]) p = put_bytes(put_u16(p, strlen(str[k])), str[k], strlen(str[k]));
  }
  return buf;
}

typedef struct reader {
  const uint8_t *p, *end;
  bool bad;
} reader;

static const uint8_t *take(reader *r, size_t n) {
  if (r->bad || (size_t)(r->end - r->p) < n) {
    r->bad = true;
    return NULL;
  }
  const uint8_t *at = r->p;
  r->p += n;
  return at;
}

static double take_f64(reader *r) {
  const uint8_t *b = take(r, 8);
  uint64_t v = 0;
  for (int i = 7; b && i >= 0; i--) v = v << 8 | b[i];
  double d;
  memcpy(&d, &v, 8);
  return d;
}

/* A NUL-terminated copy of a u16-prefixed string, in 'store'. */
static char *take_str(reader *r, char **store) {
  const uint8_t *l = take(r, 2);
  size_t n = l ? (size_t)(l[0] | l[1] << 8) : 0;
  const uint8_t *s = take(r, n);
  if (!s || !(*store = strndup((const char *)s, n))) {
    r->bad = true;
    return NULL;
  }
  return *store;
}

/* Replays one logged batch into the overlay. */
static int replay(void *arg, uint64_t gen, const uint8_t *payload, size_t len, rec_error *err) {
  live_catalog *lc = arg;
  reader r = {payload, payload + len, false};
  const uint8_t *c = take(&r, 4);
  uint32_t n = c ? (uint32_t)c[0] | (uint32_t)c[1] << 8 | (uint32_t)c[2] << 16 | (uint32_t)c[3] << 24 : 0;
  for (uint32_t i = 0; i < n && !r.bad; i++) {
    const uint8_t *h = take(&r, 4);
    if (!h) break;
    size_t id_len = (size_t)(h[2] | h[3] << 8);
    const uint8_t *id = take(&r, id_len);
    char *idc = id ? strndup((const char *)id, id_len) : NULL, *str[4] = {0};
    lc_item it = {.id = idc, .deleted = h[0] & F_DELETED, .has_stock = h[0] & F_STOCK, .in_stock = h[1],
                  .has_price = h[0] & F_PRICE, .has_margin = h[0] & F_MARGIN};
    if (it.has_price) it.price = take_f64(&r);
    if (it.has_margin) it.margin = take_f64(&r);
    static const int flag[4] = {F_CATEGORY, F_SUB, F_BRAND, F_NAME};
    for (int k = 0; k < 4; k++)
      if (h[0] & flag[k]) take_str(&r, &str[k]);
    it.category = str[0], it.subcategory = str[1], it.brand = str[2], it.name = str[3];
    int rc = !r.bad && idc ? apply_item(lc, &it) : 0;
    free(idc);
    for (int k = 0; k < 4; k++) free(str[k]);
    if (rc) return rec_fail(err, rc, "catalog log: out of memory replaying generation %llu", (unsigned long long)gen);
  }
  if (r.bad || r.p != r.end)
    return rec_fail(err, REC_ECORRUPT, "catalog log: generation %llu does not parse (checksum good: "
                    "written by another version?)", (unsigned long long)gen);
  return 0;
}

/* ---- views ---- */

/* Per category of 'b', the unit mean of its items' embeddings. */
static float *category_centroids(const bundle *b) {
  const catalog *c = b->catalog;
  float *cent = calloc(c->category_count * b->dim + 1, sizeof *cent);
  if (!cent) return NULL;
  for (size_t i = 0; i < c->count; i++) {
    float *row = cent + (size_t)c->category[i] * b->dim;
    const float *e = bundle_item_embedding(b, (uint32_t)i);
    for (size_t d = 0; d < b->dim; d++) row[d] += e[d];
  }
  for (size_t k = 0; k < c->category_count; k++) tower_l2_normalize(cent + k * b->dim, b->dim);
  return cent;
}

/* The base with the overlay applied: a view, or the base itself. Called
 * with 'mu' held. */
/* An item a shard's partition leaves to another shard: the same batches go
 * to every process, and each applies its own items (docs/catalog.md). */
static bool foreign(const bundle *b, const char *id) {
  return b->partition && bundle_shard_of(id, b->shards) != b->shard;
}

static int build_view(live_catalog *lc, bundle **out, rec_error *err) {
  bundle *base = lc->base;
  const catalog *c0 = base->catalog;
  if (!lc->n) {
    *out = bundle_ref(base);
    return 0;
  }
  catalog_change *ch = calloc(lc->n, sizeof *ch);
  entry **added = calloc(lc->n, sizeof *added);
  if (!ch || !added) {
    free(ch);
    free(added);
    return rec_fail(err, REC_ENOMEM, "out of memory");
  }
  size_t m = 0, n_added = 0;
  for (size_t i = 0; i < lc->n; i++) {
    const entry *e = lc->entries[i];
    uint32_t row, cat;
    if (foreign(base, e->id)) continue;
    bool known = catalog_find(c0, e->id, e->id_len, &row);
    bool has_cat = e->category && catalog_find_category(c0, e->category, strlen(e->category), &cat);
    if (!known && (e->deleted || !has_cat || !e->has_price)) continue; /* nothing to serve */
    catalog_change *x = &ch[m++];
    *x = (catalog_change){.id = e->id, .id_len = e->id_len, .deleted = e->deleted, .has_category = has_cat,
                          .category = has_cat ? cat : 0, .has_price = e->has_price, .price = (float)e->price,
                          .has_stock = e->has_stock, .in_stock = e->in_stock, .has_margin = e->has_margin,
                          .margin = (float)e->margin};
    if (!known) added[n_added++] = (entry *)e;
  }
  catalog *cat;
  int rc = catalog_derive(c0, ch, m, catlog_generation(lc->log), &cat, err);
  free(ch);
  float *emb = NULL;
  _Atomic uint32_t **events = NULL;
  if (!rc && n_added) {
    emb = malloc(n_added * base->dim * sizeof *emb);
    events = calloc(n_added, sizeof *events);
    if (!emb || !events) rc = rec_fail(err, REC_ENOMEM, "out of memory");
    lc->by_tower = lc->by_centroid = 0;
    for (size_t i = 0; !rc && i < n_added; i++) {
      uint32_t row = (uint32_t)(c0->count + i); /* catalog_derive adds in change order */
      float *e = emb + i * base->dim;
      /* The bundle's item tower, on the item's category and price; a bundle
       * without one (ALS, imported): its category's centroid. */
      if (bundle_embed_item(base, cat->category[row], cat->price[row], e) == 0) {
        lc->by_tower++;
      } else {
        memcpy(e, lc->centroids + (size_t)cat->category[row] * base->dim, base->dim * sizeof *emb);
        lc->by_centroid++;
      }
      events[i] = &added[i]->events;
    }
    if (rc) catalog_free(cat);
  }
  free(added);
  if (!rc && (rc = bundle_view(base, cat, emb, out, err)) == 0) (*out)->added_events = events;
  else free(events);
  free(emb);
  return rc;
}

static void publish(live_catalog *lc) {
  bundle *v;
  rec_error err = {0};
  if (build_view(lc, &v, &err) != 0) {
    char q[600];
    LOG_ERROR("live catalog: cannot build the catalog view; the previous one serves on", "error=\"%s\"",
              rec_log_quote(q, sizeof q, err.msg, strlen(err.msg)));
    return;
  }
  lc->publish(lc->publish_arg, v);
}

int live_catalog_set_base(live_catalog *lc, bundle *base, rec_error *err) {
  float *cent = category_centroids(base);
  if (!cent) return rec_fail(err, REC_ENOMEM, "out of memory");
  pthread_mutex_lock(&lc->mu);
  bundle *old = lc->base;
  float *old_cent = lc->centroids;
  lc->base = bundle_ref(base);
  lc->centroids = cent;
  bundle *v;
  int rc = build_view(lc, &v, err);
  if (rc) { /* keep serving what was */
    bundle_unref(lc->base);
    free(lc->centroids);
    lc->base = old, lc->centroids = old_cent;
  } else {
    lc->publish(lc->publish_arg, v);
    bundle_unref(old);
    free(old_cent);
  }
  pthread_mutex_unlock(&lc->mu);
  return rc;
}

/* ---- batches ---- */

/* What the catalog must already hold for the batch to apply. */
static int check_batch(live_catalog *lc, const job *j, size_t *added, rec_error *err) {
  const catalog *c0 = lc->base->catalog;
  *added = 0;
  for (size_t i = 0; i < j->n; i++) {
    const lc_item *it = &j->items[i];
    uint32_t row, cat;
    size_t at = 0;
    bool in_base = catalog_find(c0, it->id, strlen(it->id), &row);
    bool in_overlay = find(lc, it->id, strlen(it->id), &at);
    bool live = in_base || (in_overlay && lc->entries[at]->has_price && lc->entries[at]->category);
    if (it->category && !catalog_find_category(c0, it->category, strlen(it->category), &cat))
      return rec_fail(err, REC_EINVAL, "%s[%zu].category: unknown category '%.128s' (a new category needs "
                      "a new bundle)", j->row_name, i, it->category);
    if (foreign(lc->base, it->id)) continue;
    if (it->deleted) {
      if (!in_base && !in_overlay)
        return rec_fail(err, REC_EINVAL, "%s[%zu]: unknown item '%.128s'", j->row_name, i, it->id);
      continue;
    }
    if (!live) {
      bool has_cat = it->category || (in_overlay && lc->entries[at]->category);
      bool has_price = it->has_price || (in_overlay && lc->entries[at]->has_price);
      if (!has_cat || !has_price)
        return rec_fail(err, REC_EINVAL, "%s[%zu]: new item '%.128s' needs a category and a price", j->row_name,
                        i, it->id);
      (*added)++;
    }
  }
  return 0;
}

static void run_job(live_catalog *lc, job *j) {
  rec_error err = {0};
  size_t added = 0;
  uint64_t gen = 0;
  int rc = 0;
  pthread_mutex_lock(&lc->mu);
  if (rec_mono_ns() >= j->deadline_ns)
    rc = rec_fail(&err, REC_EDEADLINE, "the deadline passed before the batch was applied; nothing changed");
  else if (!lc->base)
    rc = rec_fail(&err, REC_EUNAVAIL, "no bundle loaded yet; retry");
  else
    rc = check_batch(lc, j, &added, &err);
  if (!rc) {
    size_t len;
    uint8_t *payload = encode(j->items, j->n, &len);
    rc = payload ? catlog_append(lc->log, payload, len, &err) : rec_fail(&err, REC_ENOMEM, "out of memory");
    free(payload);
    if (rc == REC_EIO) rc = err.code = REC_EUNAVAIL; /* the disk, not the caller: retry elsewhere or later */
  }
  if (!rc) {
    /* On disk: from here the batch is applied whatever happens, as a
     * restart would replay it. */
    char qid[300];
    for (size_t i = 0; i < j->n; i++)
      if (apply_item(lc, &j->items[i]) != 0)
        LOG_ERROR("live catalog: out of memory applying a logged batch; a restart replays it", "item=\"%s\"",
                  rec_log_quote(qid, sizeof qid, j->items[i].id, strlen(j->items[i].id)));
    gen = catlog_generation(lc->log);
    publish(lc);
    LOG_INFO("catalog batch applied", "generation=%llu items=%zu added=%zu overlay=%zu embedded_by_item_tower=%zu "
             "embedded_by_centroid=%zu", (unsigned long long)gen, j->n, added, lc->n, lc->by_tower, lc->by_centroid);
  }
  pthread_mutex_unlock(&lc->mu);
  j->done(j->arg, rc, gen, rc ? 0 : j->n, added, &err);
}

static void *writer_main(void *arg) {
  live_catalog *lc = arg;
  pthread_mutex_lock(&lc->q_mu);
  for (;;) {
    while (!lc->head && !lc->closing) pthread_cond_wait(&lc->q_cv, &lc->q_mu);
    job *j = lc->head;
    if (!j) break; /* closing, and nothing left */
    lc->head = j->next;
    if (!lc->head) lc->tail = NULL;
    pthread_mutex_unlock(&lc->q_mu);
    run_job(lc, j);
    free(j);
    pthread_mutex_lock(&lc->q_mu);
  }
  pthread_mutex_unlock(&lc->q_mu);
  return NULL;
}

int live_catalog_submit(live_catalog *lc, const lc_item *items, size_t n, const char *row_name,
                        int64_t deadline_ns, lc_done_fn done, void *arg, rec_error *err) {
  job *j = malloc(sizeof *j);
  if (!j) return rec_fail(err, REC_ENOMEM, "out of memory");
  *j = (job){items, n, row_name, deadline_ns, done, arg, NULL};
  pthread_mutex_lock(&lc->q_mu);
  if (lc->closing) {
    pthread_mutex_unlock(&lc->q_mu);
    free(j);
    return rec_fail(err, REC_EUNAVAIL, "shutting down");
  }
  if (lc->tail) lc->tail->next = j;
  else lc->head = j;
  lc->tail = j;
  pthread_cond_signal(&lc->q_cv);
  pthread_mutex_unlock(&lc->q_mu);
  return 0;
}

void live_catalog_note_event(live_catalog *lc, const char *id, size_t len) {
  if (!lc) return;
  pthread_mutex_lock(&lc->index_mu);
  size_t at = 0;
  if (find(lc, id, len, &at)) {
    uint32_t v = atomic_load(&lc->entries[at]->events);
    if (v < UINT32_MAX) atomic_fetch_add(&lc->entries[at]->events, 1);
  }
  pthread_mutex_unlock(&lc->index_mu);
}

uint64_t live_catalog_generation(live_catalog *lc) {
  pthread_mutex_lock(&lc->mu);
  uint64_t g = catlog_generation(lc->log);
  pthread_mutex_unlock(&lc->mu);
  return g;
}

size_t live_catalog_size(live_catalog *lc) {
  pthread_mutex_lock(&lc->index_mu);
  size_t n = lc->n;
  pthread_mutex_unlock(&lc->index_mu);
  return n;
}

static void free_overlay(live_catalog *lc) {
  for (size_t i = 0; i < lc->n; i++) entry_free(lc->entries[i]);
  free(lc->entries);
  strmap_free(lc->index);
}

int live_catalog_open(const char *dir, lc_publish_fn publish_fn, void *arg, live_catalog **out, rec_error *err) {
  live_catalog *lc = calloc(1, sizeof *lc);
  if (!lc) return rec_fail(err, REC_ENOMEM, "out of memory");
  pthread_mutex_init(&lc->mu, NULL);
  pthread_mutex_init(&lc->index_mu, NULL);
  pthread_mutex_init(&lc->q_mu, NULL);
  pthread_cond_init(&lc->q_cv, NULL);
  lc->publish = publish_fn;
  lc->publish_arg = arg;
  int rc = catlog_open(dir, replay, lc, &lc->log, err);
  if (!rc && pthread_create(&lc->writer, NULL, writer_main, lc) != 0)
    rc = rec_fail(err, REC_ENOMEM, "cannot start the catalog writer thread");
  if (rc) {
    catlog_close(lc->log);
    free_overlay(lc);
    free(lc);
    return rc;
  }
  LOG_INFO("catalog log replayed", "dir=%s generation=%llu items=%zu", dir,
           (unsigned long long)catlog_generation(lc->log), lc->n);
  *out = lc;
  return 0;
}

void live_catalog_close(live_catalog *lc) {
  if (!lc) return;
  pthread_mutex_lock(&lc->q_mu);
  lc->closing = true;
  pthread_cond_signal(&lc->q_cv);
  pthread_mutex_unlock(&lc->q_mu);
  pthread_join(lc->writer, NULL);
  catlog_close(lc->log);
  free_overlay(lc);
  bundle_unref(lc->base);
  free(lc->centroids);
  pthread_mutex_destroy(&lc->mu);
  pthread_mutex_destroy(&lc->index_mu);
  pthread_mutex_destroy(&lc->q_mu);
  pthread_cond_destroy(&lc->q_cv);
  free(lc);
}
