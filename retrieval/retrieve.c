/* retrieval/retrieve.c - see retrieve.h. Candidates are merged through a
 * dense item -> slot table, so each source adds its score to one entry. The
 * table is the thread's own, kept between calls and put back to "empty" only
 * where the call touched it: clearing all of it on every call cost a
 * quarter of the CPU at a million items. */
#include "retrieval/retrieve.h"
#include "common/clock.h"
#include "retrieval/ann.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Asked for more than 1/EXACT_SHARE of the catalog, ANN scans it exactly. */
#define EXACT_SHARE 4

void retrieve_thread_init(void) {
  omp_set_num_threads(1);
  openblas_set_num_threads(1);
}

/* A table the thread keeps between calls, one entry per item (and room for
 * items added live), every entry 'empty' between calls: the caller puts
 * back what it touched. Freed when the thread ends (the key's destructor). */
typedef struct thread_table {
  void *at;
  size_t cap;
} thread_table;

static pthread_key_t slot_key, acc_key;
static pthread_once_t keys_once = PTHREAD_ONCE_INIT;

static void make_keys(void) {
  pthread_key_create(&slot_key, free);
  pthread_key_create(&acc_key, free);
}

static void *grow(thread_table *t, pthread_key_t *key, size_t items, size_t size, const void *empty) {
  if (t->cap < items) {
    size_t cap = items + items / 4 + 1024;
    char *p = malloc(cap * size);
    if (!p) return NULL;
    for (size_t i = 0; i < cap; i++) memcpy(p + i * size, empty, size);
    pthread_once(&keys_once, make_keys);
    free(t->at);
    t->at = p;
    t->cap = cap;
    pthread_setspecific(*key, p);
  }
  return t->at;
}

/* The item -> slot table of the merge: -1 = not a candidate. */
static _Thread_local thread_table tl_slot;
static int32_t *slot_table(size_t items) { return grow(&tl_slot, &slot_key, items, sizeof(int32_t), &(int32_t){-1}); }

/* EASE's sums: NAN = untouched. */
static _Thread_local thread_table tl_acc;
static float *acc_table(size_t items) { return grow(&tl_acc, &acc_key, items, sizeof(float), &(float){NAN}); }

typedef struct merge {
  rec_candidate *cands;
  size_t n;
  int32_t *slot;             /* [n_items]: index into cands, -1 = not yet */
  const uint8_t *keep;       /* a shard's items, NULL: all */
  const uint8_t *deleted;    /* items the live catalog removed, NULL: none */
} merge;

static void add(merge *m, uint32_t item, rec_source s, float raw) {
  if (m->keep && !m->keep[item]) return; /* another shard's item */
  if (m->deleted && m->deleted[item]) return;
  int32_t at = m->slot[item];
  if (at < 0) {
    at = m->slot[item] = (int32_t)m->n++;
    memset(&m->cands[at], 0, sizeof m->cands[at]);
    m->cands[at].item = item;
  }
  rec_candidate *c = &m->cands[at];
  c->raw[s] = c->sources & (1u << s) ? c->raw[s] + raw : raw;
  c->sources |= 1u << s;
}

/* ---- the include filter ---- */

/* A request's include filter: its categories once each, a mask over the
 * catalog's categories, and how many rows they hold (deleted rows counted).
 * No filter: cat NULL, rows the whole catalog. */
typedef struct filter {
  const uint8_t *cat;
  const uint32_t *cats;
  size_t n_cats, rows;
} filter;

static int make_filter(const bundle *b, const retrieve_req *r, arena *a, filter *f) {
  const catalog *c = b->catalog;
  *f = (filter){.rows = c->count};
  if (!r->n_categories) return 0;
  uint8_t *mask = arena_calloc(a, c->category_count + 1, 1);
  uint32_t *cats = arena_alloc(a, r->n_categories * sizeof *cats);
  if (!mask || !cats) return REC_ENOMEM;
  f->rows = 0;
  for (size_t i = 0; i < r->n_categories; i++) {
    uint32_t k = r->categories[i];
    if (k >= c->category_count || mask[k]) continue;
    mask[k] = 1;
    cats[f->n_cats++] = k;
    f->rows += c->category_start[k + 1] - c->category_start[k];
  }
  f->cat = mask;
  f->cats = cats;
  return 0;
}

static bool allows(const filter *f, const catalog *c, uint32_t item) { return !f->cat || f->cat[c->category[item]]; }

/* Whether ANN scores the filter's rows one by one instead of searching the
 * index: they are no more than asked for, or fewer than a search would
 * have to look at to find as many of them (about want x total / rows, when
 * the filter's items are spread through the index): rows^2 <= want x total.
 * A filter on one category of a thousand, say, costs one pass over that
 * category, where the index would be searched ever wider in rounds that
 * found a few of its items each. */
static bool scans_filter(const filter *f, size_t want, size_t total) {
  return f->cat && (f->rows <= want || (uint64_t)f->rows * f->rows <= (uint64_t)want * total);
}

/* What an index search asks for so that about 'want' of its hits pass the
 * filter: want x total / rows, at most the catalog. */
static size_t filtered_want(const filter *f, size_t want, size_t total) {
  if (!f->cat || f->rows >= total) return want;
  size_t w = (want * total + f->rows - 1) / f->rows;
  return w < total ? w : total;
}

/* ---- ANN ---- */

/* q = normalised mean of the seeds' embeddings; false if it has no direction. */
static bool seed_query(const bundle *b, const retrieve_req *r, float *q) {
  memset(q, 0, b->dim * sizeof *q);
  for (size_t i = 0; i < r->n_seeds; i++)
    cblas_saxpy((blasint)b->dim, 1.0f, bundle_item_embedding(b, r->seeds[i]), 1, q, 1);
  return r->n_seeds > 0 && tower_l2_normalize(q, b->dim);
}

static int user_query(const bundle *b, const retrieve_req *r, arena *a, float *q, bool *ok) {
  uint32_t user;
  *ok = false;
  if (!r->user_id || !bundle_find_user(b, r->user_id, r->user_len, &user)) return 0;
  float *scratch = arena_alloc(a, 2 * b->tower.max_width * sizeof(float));
  if (!scratch) return REC_ENOMEM;
  *ok = tower_forward(&b->tower, bundle_user_features(b, user), q, scratch) == 0;
  return 0;
}

typedef struct scored {
  float score;
  uint32_t item;
} scored;

static int by_score_desc(const void *x, const void *y) {
  const scored *a = x, *b = y;
  return a->score != b->score ? (a->score < b->score ? 1 : -1) : (a->item > b->item) - (a->item < b->item);
}

/* The rows added live are not in the HNSW index: a small exact side
 * segment, merged with what the index found as if one search had seen both
 * (the best 'want' of the union: a side item must beat the index's worst
 * hit when the index filled 'want'). */
static int from_added(const bundle *b, const float *q, size_t want, float floor, const filter *f, arena *a,
                      merge *m) {
  size_t n0 = bundle_base(b)->catalog->count, added = bundle_added(b), n = 0;
  if (!added || !want) return 0;
  scored *s = arena_alloc(a, added * sizeof *s);
  if (!s) return REC_ENOMEM;
  for (size_t i = 0; i < added; i++)
    if (allows(f, b->catalog, (uint32_t)(n0 + i)))
      s[n++] = (scored){cblas_sdot((blasint)b->dim, q, 1, bundle_item_embedding(b, (uint32_t)(n0 + i)), 1),
                        (uint32_t)(n0 + i)};
  if (n > want) qsort(s, n, sizeof *s, by_score_desc);
  for (size_t i = 0; i < n && i < want && s[i].score > floor; i++) add(m, s[i].item, REC_SRC_ANN, s[i].score);
  return 0;
}

static void select_best(scored *s, size_t n, size_t k);

/* ANN under an include filter that scans_filter: each row the filter
 * allows scored exactly, the 'want' best kept (ties: the lower row), and
 * *all when that was every one of them. Rows added live are in the
 * catalog's category index, so they need no side segment here. */
static int from_filter_scan(const bundle *b, const float *q, size_t want, const filter *f, arena *a, merge *m,
                            bool *all) {
  const catalog *c = b->catalog;
  scored *s = arena_alloc(a, (f->rows + 1) * sizeof *s);
  if (!s) return REC_ENOMEM;
  size_t n = 0;
  for (size_t i = 0; i < f->n_cats; i++)
    for (size_t j = c->category_start[f->cats[i]]; j < c->category_start[f->cats[i] + 1]; j++) {
      uint32_t item = c->by_category[j];
      if (!(m->keep && !m->keep[item]) && !(m->deleted && m->deleted[item])) s[n++].item = item;
    }
  /* The rows are scattered through the matrix: in row order and asked for
   * ahead, 2,000 rows of 64 took 69 us, against 110 in popularity order
   * without (100k items, 51 categories). */
  enum { AHEAD = 8 };
  for (size_t i = 0; i < n; i++) {
    if (i + AHEAD < n) {
      const char *row = (const char *)bundle_item_embedding(b, s[i + AHEAD].item);
      for (size_t o = 0; o < b->dim * sizeof(float); o += 64) __builtin_prefetch(row + o);
    }
    s[i].score = ann_dot(q, bundle_item_embedding(b, s[i].item), b->dim);
  }
  if (n > want) select_best(s, n, want);
  for (size_t i = 0; i < n && i < want; i++) add(m, s[i].item, REC_SRC_ANN, s[i].score);
  *all = n <= want;
  return 0;
}

/* Hits outside the include filter are left out: the rules would drop them. */
static int from_ann(const bundle *b, const float *q, size_t want, int ef, const filter *f, arena *a, merge *m,
                    bool *all) {
  const catalog *c = b->catalog;
  size_t total = c->count;
  if (scans_filter(f, want, total)) return from_filter_scan(b, q, want, f, a, m, all);
  want = filtered_want(f, want, total);
  if (want > total / EXACT_SHARE) {
    /* HNSW cannot promise to reach every node, and a large share of the
     * catalog costs more through it than a scan: score every item exactly. */
    float *scores = arena_alloc(a, total * sizeof *scores);
    if (!scores) return REC_ENOMEM;
    cblas_sgemv(CblasRowMajor, CblasNoTrans, (blasint)total, (blasint)b->dim, 1.0f, b->item_emb,
                (blasint)b->dim, q, 1, 0.0f, scores, 1);
    for (size_t i = 0; i < total; i++)
      if (allows(f, c, (uint32_t)i)) add(m, (uint32_t)i, REC_SRC_ANN, scores[i]);
    *all = true;
    return 0;
  }
  int64_t *items = arena_alloc(a, (want ? want : 1) * sizeof *items);
  float *scores = arena_alloc(a, (want ? want : 1) * sizeof *scores);
  size_t n;
  if (!items || !scores) return REC_ENOMEM;
  if ((ef > 0 ? ann_search_ef(b->ann, q, want, ef, items, scores, &n)
              : ann_search(b->ann, q, want, items, scores, &n)) != 0)
    return REC_EINTERNAL;
  float floor = n && n >= want ? scores[0] : -INFINITY; /* the index's worst hit, when it found all asked for */
  for (size_t i = 0; i < n; i++) {
    if (allows(f, c, (uint32_t)items[i])) add(m, (uint32_t)items[i], REC_SRC_ANN, scores[i]);
    if (n >= want) floor = fminf(floor, scores[i]);
  }
  return from_added(b, q, want, floor, f, a, m);
}

/* ---- item-CF ---- */

/* Neighbours of the seeds (anchors first, then the most recent items), with
 * similarities summed per item, until 'want' items have item-CF evidence:
 * the seeds that say most about this moment come first. */
static void from_itemcf(const bundle *b, const uint32_t *const seeds[2], const size_t n_seeds[2],
                        size_t want, merge *m) {
  const sig_pairs *p = &b->sig.cf;
  size_t have = 0;
  if (!p->off) return;
  for (int g = 0; g < 2; g++)
    for (size_t i = 0; i < n_seeds[g] && have < want; i++) {
      uint32_t from, to; /* none for an item added live: no co-purchase history */
      if (!sig_range(p, seeds[g][i], &from, &to)) continue;
      for (uint32_t k = from; k < to; k++) {
        int32_t at = m->slot[p->nbr[k]];
        have += at < 0 || !(m->cands[at].sources & (1u << REC_SRC_ITEM_CF));
        add(m, p->nbr[k], REC_SRC_ITEM_CF, p->w[k]);
      }
    }
}

/* ---- EASE ---- */

/* The k best of s[0..n) (by_score_desc; no two compare equal) into
 * s[0..k), in no particular order: Hoare selection. */
static void select_best(scored *s, size_t n, size_t k) {
  size_t lo = 0, hi = n; /* the boundary k lies in [lo, hi] */
  while (hi - lo > 1 && k > lo && k < hi) {
    scored pivot = s[lo + (hi - lo - 1) / 2]; /* never the last: each pass shrinks [lo, hi) */
    size_t i = lo, j = hi - 1;
    for (;;) {
      while (by_score_desc(&s[i], &pivot) < 0) i++;
      while (by_score_desc(&pivot, &s[j]) < 0) j--;
      if (i >= j) break;
      scored x = s[i];
      s[i++] = s[j];
      s[j--] = x;
    }
    /* [lo, j] are all better than [j + 1, hi) */
    if (k <= j) hi = j + 1;
    else lo = j + 1;
  }
}

/* Sums of the EASE weights of the user's history items, each seed's
 * scaled by its recency weight, over every item they reach; the 'want'
 * items with the largest positive sums, the history's own items left out
 * (EASE would give them back first). */
static int from_ease(const bundle *b, const retrieve_req *r, size_t want, arena *a, merge *m) {
  const sig_pairs *p = &b->sig.ease;
  size_t items = b->catalog->count, cap = r->n_history;
  if (!p->off || !r->n_history || !want) return 0;
  uint32_t from, to;
  for (size_t i = 0; i < r->n_history; i++)
    if (sig_range(p, r->history[i], &from, &to)) cap += to - from;
  if (cap > r->n_history + items) cap = r->n_history + items; /* each item is touched once */
  float *acc = acc_table(items);
  uint32_t *touched = arena_alloc(a, (cap + 1) * sizeof *touched);
  if (!acc || !touched) return REC_ENOMEM;
  size_t nt = 0;
  for (size_t i = 0; i < r->n_history; i++) {
    uint32_t h = r->history[i];
    if (h & SIG_FOREIGN_SEED || h >= items) continue;
    if (isnan(acc[h])) touched[nt++] = h;
    acc[h] = -INFINITY;
  }
  for (size_t i = 0; i < r->n_history; i++) {
    if (!sig_range(p, r->history[i], &from, &to)) continue;
    float wi = sig_ease_weight(&b->sig, r->history_pos ? r->history_pos[i] : i);
    for (uint32_t k = from; k < to; k++) {
      uint32_t j = p->nbr[k];
      if (isnan(acc[j])) {
        touched[nt++] = j;
        acc[j] = 0;
      }
      acc[j] += wi * p->w[k];
    }
  }
  scored *best = arena_alloc(a, (nt + 1) * sizeof *best);
  size_t n = 0;
  for (size_t t = 0; t < nt; t++) {
    uint32_t j = touched[t];
    if (best && acc[j] > 0 && acc[j] < INFINITY) best[n++] = (scored){acc[j], j}; /* a sum beyond float: none */
    acc[j] = NAN; /* untouched again for the next call */
  }
  if (!best) return REC_ENOMEM;
  if (n > want) {
    select_best(best, n, want);
    n = want;
  }
  for (size_t i = 0; i < n; i++) add(m, best[i].item, REC_SRC_EASE, best[i].score);
  return 0;
}

/* ---- popularity ---- */

static void from_list(const sig_list *l, size_t want, merge *m, size_t *taken) {
  for (size_t i = 0; i < l->n && *taken < want; i++)
    if (m->slot[l->items[i]] < 0 || !(m->cands[m->slot[l->items[i]]].sources & (1u << REC_SRC_POPULARITY))) {
      add(m, l->items[i], REC_SRC_POPULARITY, l->scores[i]);
      (*taken)++;
    }
}

static bool wanted_category(const retrieve_req *r, uint32_t cat) {
  if (!r->n_categories) return true;
  for (size_t i = 0; i < r->n_categories; i++)
    if (r->categories[i] == cat) return true;
  return false;
}

/* Items added live have no popularity yet: they join the lists (of their
 * category, and the global one) at the median popularity of the base's
 * items, so that they can be seen and gather the events that will rank
 * them; the ranking tier's exploration boost and cap decide how much. At
 * most a quarter of the list's length, newest first: a thousand new items
 * must not make every request rank a thousand more candidates. */
static void from_added_popularity(const bundle *b, const retrieve_req *r, size_t want, merge *m, size_t *taken) {
  const catalog *c = b->catalog, *c0 = bundle_base(b)->catalog;
  float median = c0->count ? c0->popularity[c0->by_popularity[c0->count / 2]] : 0;
  size_t budget = want / 4 > 8 ? want / 4 : 8, used = 0;
  for (size_t i = c->count; i-- > c0->count && used < budget;)
    if (wanted_category(r, c->category[i]) && m->slot[i] < 0) {
      add(m, (uint32_t)i, REC_SRC_POPULARITY, median);
      used += m->slot[i] >= 0; /* not another shard's, not deleted */
    }
  *taken += used;
}

/* from_list over category k's rows in the catalog's own popularity order. */
static void from_category(const catalog *c, uint32_t k, size_t want, merge *m, size_t *taken) {
  for (size_t j = c->category_start[k]; j < c->category_start[k + 1] && *taken < want; j++) {
    uint32_t item = c->by_category_popularity[j];
    if (m->slot[item] < 0 || !(m->cands[m->slot[item]].sources & (1u << REC_SRC_POPULARITY))) {
      add(m, item, REC_SRC_POPULARITY, c->popularity[item]);
      (*taken)++;
    }
  }
}

static void from_popularity(const bundle *b, const retrieve_req *r, size_t want, merge *m, bool *all) {
  const catalog *c = b->catalog;
  const signals *s = &b->sig;
  size_t taken = 0;
  from_added_popularity(b, r, want, m, &taken);
  for (size_t i = 0; i < r->n_categories && s->category_pop; i++)
    from_list(&s->category_pop[r->categories[i]], want, m, &taken);
  /* A bundle without popularity lists (popularity.tsv): the filter's
   * categories in the catalog's order, not the global order's few of them. */
  for (size_t i = 0; i < r->n_categories && !s->category_pop; i++)
    if (r->categories[i] < c->category_count) from_category(c, r->categories[i], want, m, &taken);
  if (!r->n_categories && r->segment >= 0 && r->segment < SIG_SEGMENTS)
    from_list(&s->segment_pop[r->segment], want, m, &taken);
  for (size_t i = 0; i < c->count && taken < want; i++) {
    uint32_t item = c->by_popularity[i];
    if (m->slot[item] >= 0 && (m->cands[m->slot[item]].sources & (1u << REC_SRC_POPULARITY))) continue;
    add(m, item, REC_SRC_POPULARITY, c->popularity[item]);
    taken++;
  }
  *all = want >= c->count;
}

/* How many times more than asked ANN and popularity look at: a shard
 * that masks the whole bundle keeps about 1/shards of what they find; a
 * shard holding only its partition keeps all of it. */
static size_t fan(const bundle *b) { return b->shards > 1 && !b->partition ? b->shards : 1; }

/* The most candidates the sources can produce for this request. */
static size_t capacity(const bundle *b, const retrieve_req *r, const filter *f) {
  size_t total = b->catalog->count;
  size_t want = filtered_want(f, r->want_ann * fan(b), total);
  size_t ann = want > total / EXACT_SHARE ? total : want;
  if (ann > f->rows) ann = f->rows; /* only what the filter allows */
  size_t pop = r->want_pop * fan(b);
  size_t cap = ann + bundle_added(b) + r->want_cf + b->sig.cf.max + r->want_ease * fan(b) +
               (r->similar ? 0 : pop + pop / 4 + 8);
  return cap < total ? cap : total;
}

/* Every source, merged through 'm' (whose slot table the caller clears). */
static int gather(const bundle *b, const retrieve_req *r, const filter *f, arena *a, merge *m, float *q,
                  retrieve_result *out) {
  size_t total = b->catalog->count;
  int64_t t0 = rec_mono_ns();
  bool have_q = false, ann_all = false, pop_all = false;
  int rc = 0;
  if (r->similar) have_q = seed_query(b, r, q);
  else rc = user_query(b, r, a, q, &have_q);
  out->known_user = !r->similar && have_q;
  int64_t t1 = rec_mono_ns();
  size_t want_ann = r->want_ann * fan(b);
  if (!rc && have_q) rc = from_ann(b, q, want_ann, r->ef, f, a, m, &ann_all);
  int64_t t2 = rec_mono_ns();
  const uint32_t *seeds[2] = {r->seeds, r->recent};
  const size_t n_seeds[2] = {r->n_seeds, r->n_recent};
  if (rc) return rc;
  from_itemcf(b, seeds, n_seeds, r->want_cf, m);
  if (!r->similar && (rc = from_ease(b, r, r->want_ease * fan(b), a, m))) return rc;
  int64_t t3 = rec_mono_ns();
  if (!r->similar) from_popularity(b, r, r->want_pop * fan(b), m, &pop_all);
  int64_t t4 = rec_mono_ns();
  out->tower_ns = t1 - t0;
  out->ann_ns = t2 - t1;
  out->itemcf_ns = t3 - t2;
  out->pop_ns = t4 - t3;
  out->sources_ns = t4 - t2;
  out->cands = m->cands;
  out->n = m->n;
  out->exhausted = ann_all || pop_all || m->n == total;
  return 0;
}

int retrieve_candidates(const bundle *b, const retrieve_req *r, arena *a, retrieve_result *out) {
  filter f;
  if (make_filter(b, r, a, &f)) return REC_ENOMEM;
  merge m = {.cands = arena_alloc(a, (capacity(b, r, &f) + 1) * sizeof *m.cands),
             .slot = slot_table(b->catalog->count), .keep = b->shard_keep, .deleted = b->catalog->deleted};
  float *q = arena_alloc(a, b->dim * sizeof *q);
  if (!m.cands || !m.slot || !q) return REC_ENOMEM;
  *out = (retrieve_result){0};
  int rc = gather(b, r, &f, a, &m, q, out);
  for (size_t i = 0; i < m.n; i++) m.slot[m.cands[i].item] = -1; /* empty again for the next call */
  return rc;
}
