/* ranking/rank.c - see rank.h. Four passes over the candidates: hard rules,
 * per-source normalisation and the blend, soft rules, then the slate. */
#include "ranking/rank.h"
#include "common/clock.h"
#include "common/err.h"
#include "common/search.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- hard rules ---- */

static bool contains(const uint32_t *v, size_t n, uint32_t x) {
  for (size_t i = 0; i < n; i++)
    if (v[i] == x) return true;
  return false;
}

static bool sorted_contains(const uint32_t *v, size_t n, uint32_t x) {
  return rec_search_u32(v, n, sizeof *v, 0, x) < n;
}

static const rec_purchase *purchase_of(const rank_req *r, uint32_t item) {
  size_t i = rec_search_u32(r->purchases, r->n_purchases, sizeof *r->purchases,
                            offsetof(rec_purchase, item), item);
  return i < r->n_purchases ? &r->purchases[i] : NULL;
}

static const rank_soft *soft_of(const rank_req *r) {
  return r->segment >= 0 && r->segment < RANK_SEGMENTS ? &r->cfg->segment[r->segment] : &r->cfg->soft;
}

static float cycle_of(const rank_items *it, uint32_t item) {
  return it->cycle_days ? it->cycle_days[item] : 0;
}

/* Days since the user last bought 'item', or -1 if never. */
static double days_since(const rank_req *r, uint32_t item) {
  const rec_purchase *p = purchase_of(r, item);
  return p ? (double)(r->now - p->last_time) / 86400.0 : -1;
}

static const char *filter_reason(const catalog *c, const rank_req *r, uint32_t item) {
  uint32_t cat = c->category[item];
  if (r->n_include_cats && !contains(r->include_cats, r->n_include_cats, cat))
    return "category not in filters.include_categories";
  if (contains(r->exclude_cats, r->n_exclude_cats, cat)) return "category in filters.exclude_categories";
  float p = c->price[item];
  if (r->has_price && (p < r->min_price || (r->max_price > 0 && p > r->max_price)))
    return "price outside filters.price";
  return NULL;
}

const char *rank_ineligible_reason(const rank_items *it, const rank_req *r, uint32_t item) {
  const catalog *c = it->catalog;
  if (c->deleted && c->deleted[item]) return "deleted from the catalog";
  if (!c->in_stock[item]) return "out of stock";
  if (sorted_contains(r->blocked, r->n_blocked, item)) return "blocked (rules.blocked_items)";
  if (sorted_contains(r->exclude, r->n_exclude, item)) return "excluded by request";
  const char *why = filter_reason(c, r, item);
  if (why) return why;
  const rank_soft *soft = soft_of(r);
  if (r->mean_price > 0 && soft->price_cap_ratio > 0 && c->price[item] > soft->price_cap_ratio * r->mean_price)
    return "price above the user's cap (price.cap_ratio x mean price)";
  double since = days_since(r, item), cycle = cycle_of(it, item);
  if (since >= 0 && cycle > 0 && since < r->cfg->repurchase_block * cycle)
    return "bought within the repurchase window (repurchase.block_fraction x cycle)";
  if (since >= 0 && cycle == 0 && r->cfg->exclude_purchased)
    return "already bought, and nobody buys it twice (rules.exclude_purchased)";
  return NULL;
}

/* ---- normalisation and blend ---- */

typedef struct keyed {
  float key;
  uint32_t at;
} keyed;

/* An unsigned key that orders floats from largest to smallest. */
static uint32_t desc_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  u = u & 0x80000000u ? ~u : u | 0x80000000u; /* ascending as unsigned */
  return ~u;
}

/* Sorts k[0..n) by key, largest first, ties in input order: an LSD radix
 * sort, stable and linear, since this runs per source on every request. */
static void sort_desc(keyed *k, keyed *tmp, size_t n) {
  for (int shift = 0; shift < 32; shift += 8) {
    size_t count[257] = {0};
    for (size_t i = 0; i < n; i++) count[((desc_bits(k[i].key) >> shift) & 0xff) + 1]++;
    for (int b = 0; b < 256; b++) count[b + 1] += count[b];
    for (size_t i = 0; i < n; i++) tmp[count[(desc_bits(k[i].key) >> shift) & 0xff]++] = k[i];
    memcpy(k, tmp, n * sizeof *k);
  }
}

/* norm[s] for every eligible item that has source s. */
static int normalise(rank_item *items, size_t n, rank_norm how, arena *a) {
  keyed *k = arena_alloc(a, (n ? n : 1) * sizeof *k), *tmp = arena_alloc(a, (n ? n : 1) * sizeof *tmp);
  if (!k || !tmp) return REC_ENOMEM;
  for (int s = 0; s < REC_SRC_COUNT; s++) {
    size_t m = 0;
    float lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < n; i++) {
      if (!(items[i].sources & (1u << s))) continue;
      k[m++] = (keyed){items[i].raw[s], (uint32_t)i};
      lo = fminf(lo, items[i].raw[s]);
      hi = fmaxf(hi, items[i].raw[s]);
    }
    if (how == NORM_RANK) {
      sort_desc(k, tmp, m);
      for (size_t j = 0; j < m; j++) /* ties share the better rank */
        items[k[j].at].norm[s] = j > 0 && k[j].key == k[j - 1].key ? items[k[j - 1].at].norm[s]
                                                                  : (float)(m - j) / (float)m;
    } else {
      /* max: min-max from 0 when every score is above it (x / hi), so the
       * weakest candidate a source proposed is not scored as if it had not. */
      if (how == NORM_MAX) lo = fminf(lo, 0.0f);
      for (size_t j = 0; j < m; j++)
        items[k[j].at].norm[s] = hi > lo ? (k[j].key - lo) / (hi - lo) : 1.0f;
    }
  }
  return 0;
}

/* Weights over the sources present, summing to 1 (equal if all are 0). */
static void weights(const rank_config *cfg, uint32_t present, float w[REC_SRC_COUNT]) {
  float sum = 0;
  int n = 0;
  for (int s = 0; s < REC_SRC_COUNT; s++) {
    w[s] = present & (1u << s) ? cfg->weight[s] : 0;
    sum += w[s];
    n += (present >> s) & 1;
  }
  for (int s = 0; s < REC_SRC_COUNT; s++)
    w[s] = sum > 0 ? w[s] / sum : (present & (1u << s) ? 1.0f / (float)n : 0);
}

/* ---- soft rules ---- */

static void adjust_note(rank_item *it, const char *rule, float factor, const char *note) {
  if (factor == 1.0f) return;
  it->score *= factor;
  if (it->n_adj < RANK_MAX_ADJ) it->adj[it->n_adj++] = (rank_adjust){rule, factor, note};
}

static void adjust(rank_item *it, const char *rule, float factor) { adjust_note(it, rule, factor, NULL); }

static const rank_boost_row *boost_of(const rank_req *r, uint32_t item) {
  size_t i = rec_search_u32(r->boosts, r->n_boosts, sizeof *r->boosts, offsetof(rank_boost_row, item), item);
  return i < r->n_boosts ? &r->boosts[i] : NULL;
}

static void soft_rules(const rank_items *itv, const rank_req *r, rank_item *it) {
  const catalog *c = itv->catalog;
  const rank_soft *soft = soft_of(r);
  const rank_config *cfg = r->cfg;
  double since = days_since(r, it->item), cycle = cycle_of(itv, it->item);
  if (since >= 0 && cycle > 0 && since >= cfg->repurchase_due * cycle)
    adjust(it, "repurchase_due", 1.0f + cfg->repurchase_boost);
  if (r->mean_price > 0) {
    float ratio = c->price[it->item] / r->mean_price;
    if (ratio > soft->price_soft_ratio) adjust(it, "price_penalty", soft->price_penalty);
    if (ratio > 1 && soft->upsell_factor > 0)
      adjust(it, "upsell", 1.0f + soft->upsell_factor * (1.0f + soft->upsell_price_weight * (ratio - 1)));
  }
  if (soft->margin_weight > 0)
    adjust(it, "margin", 1.0f + soft->margin_weight * fmaxf(-1.0f, fminf(1.0f, c->margin[it->item])));
  const rank_boost_row *boost = boost_of(r, it->item);
  if (boost) adjust_note(it, "promotion", boost->factor, boost->note);
  if (it->item >= c->base_count && c->base_count && cfg->explore_boost > 0) {
    uint32_t events = itv->added_events ? itv->added_events[it->item - c->base_count] : 0;
    adjust_note(it, "new_item", 1.0f + cfg->explore_boost / (1.0f + (float)events / cfg->explore_fade_events),
                "added to the catalog live: an exploration boost that fades as it gathers events");
  }
}

/* ---- the slate ---- */

typedef struct keyed64 {
  uint64_t key;
  uint32_t at;
} keyed64;

/* Sorts k[0..n) by key, smallest first: an LSD radix sort, a byte a pass,
 * skipping the bytes every key shares. */
static void sort_asc64(keyed64 *k, keyed64 *tmp, size_t n) {
  for (int shift = 0; n > 1 && shift < 64; shift += 8) {
    size_t count[257] = {0};
    for (size_t i = 0; i < n; i++) count[((k[i].key >> shift) & 0xff) + 1]++;
    if (count[((k[0].key >> shift) & 0xff) + 1] == n) continue;
    for (int b = 0; b < 256; b++) count[b + 1] += count[b];
    for (size_t i = 0; i < n; i++) tmp[count[(k[i].key >> shift) & 0xff]++] = k[i];
    memcpy(k, tmp, n * sizeof *k);
  }
}

/* The entry of sorted k[0..n) with 'key', or n. */
static size_t find_key(const keyed64 *k, size_t n, uint64_t key) {
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (k[mid].key < key) lo = mid + 1;
    else hi = mid;
  }
  return lo < n && k[lo].key == key ? lo : n;
}

/* A key that sorts ascending in the slate's order of merit: score down, then
 * item up, so ties do not depend on the order candidates arrived in. */
static uint64_t rank_key(const rank_item *x) {
  return (uint64_t)desc_bits(x->score == 0 ? 0.0f : x->score) << 32 | x->item;
}

/* Eight partial sums: without -ffast-math the compiler keeps one sum's
 * order, and eight independent ones let the multiplies overlap. */
static inline float dot(const float *x, const float *y, size_t n) {
  float s[8] = {0};
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; j++) s[j] += x[i + j] * y[i + j];
  for (; i < n; i++) s[0] += x[i] * y[i];
  return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

/* A pool entry: what MMR reads on every pick, kept together. */
typedef struct entry {
  float score, max_sim;      /* max_sim: likeness to the most similar item on this page */
  uint32_t item, cat;        /* catalog row, its category */
  uint32_t at, rank;         /* index into items; position in the order (ties: the lower wins) */
} entry;

typedef struct picker {
  const rank_items *it;
  const rank_item *items;    /* what this call may pick */
  size_t n;
  keyed64 *order;            /* items by score, best first (.at indexes items) */
  size_t next;               /* order[next..] lies beyond the pool */
  entry *pool;               /* the best pool_cap items not taken when it was last filled, less
                              * those taken since */
  size_t n_pool, pool_cap;
  size_t rest_allowed;       /* >= next: beyond the pool, all before it is taken or, this page, capped */
  bool *taken;               /* per item */
  uint32_t *per_cat;         /* items per category on this page */
  uint32_t *page;            /* the items on this page so far */
  size_t on_page, cap;
  size_t base_rows;          /* rows from here on were added live */
  size_t explore_cap, explore_on_page; /* of them, at most explore_cap per page */
  float lambda, top;
  bool mmr;
  bool give_way;             /* when nothing the cap allows is left, the cap may give way */
} picker;

static const float *emb_of(const picker *p, uint32_t item) {
  return p->it->emb + (size_t)item * p->it->dim;
}

static bool allowed(const picker *p, uint32_t item) {
  return p->per_cat[p->it->catalog->category[item]] < p->cap &&
         (item < p->base_rows || p->explore_on_page < p->explore_cap);
}

static void new_page(picker *p) {
  memset(p->per_cat, 0, p->it->catalog->category_count * sizeof *p->per_cat);
  p->on_page = 0;
  p->explore_on_page = 0;
  p->rest_allowed = p->next;
}

/* Fills an empty pool with the next best items not taken; those joining
 * mid-page learn their likeness to what the page already shows. */
static void refill(picker *p) {
  while (p->n_pool < p->pool_cap && p->next < p->n) {
    size_t j = p->next++, i = p->order[j].at;
    if (p->taken[i]) continue;
    uint32_t item = p->items[i].item;
    entry *e = &p->pool[p->n_pool++];
    *e = (entry){.score = p->items[i].score, .max_sim = -INFINITY, .item = item,
                .cat = p->it->catalog->category[item], .at = (uint32_t)i, .rank = (uint32_t)j};
    for (size_t s = 0; p->mmr && s < p->on_page; s++) {
      float sim = dot(emb_of(p, p->page[s]), emb_of(p, item), p->it->dim);
      e->max_sim = sim > e->max_sim ? sim : e->max_sim;
    }
  }
}

/* 'x' is on the page: it counts for the cap, and MMR now weighs every pool
 * item's likeness to it. */
static void shown(picker *p, const rank_item *x) {
  p->per_cat[p->it->catalog->category[x->item]]++;
  p->explore_on_page += x->item >= p->base_rows;
  p->page[p->on_page++] = x->item;
  if (!p->mmr) return;
  const float *e = emb_of(p, x->item);
  bool first = p->on_page == 1;
  for (size_t j = 0; j < p->n_pool; j++) {
    float s = dot(e, emb_of(p, p->pool[j].item), p->it->dim);
    p->pool[j].max_sim = first || s > p->pool[j].max_sim ? s : p->pool[j].max_sim;
  }
}

/* The pool's best MMR value among what the cap allows (everything if 'any'),
 * as an index into the pool, or p->n_pool. Ties go to the better score. */
static size_t from_pool(const picker *p, bool any) {
  size_t best = p->n_pool;
  float best_v = -INFINITY;
  bool mmr = p->mmr && p->on_page;
  for (size_t j = 0; j < p->n_pool; j++) {
    const entry *e = &p->pool[j];
    if (!any && !allowed(p, e->item)) continue;
    float rel = p->top > 0 ? e->score / p->top : 0;
    float v = mmr ? p->lambda * rel - (1 - p->lambda) * e->max_sim : rel;
    if (v > best_v || (v == best_v && best < p->n_pool && e->rank < p->pool[best].rank)) {
      best_v = v;
      best = j;
    }
  }
  return best;
}

/* The best item beyond the pool by score that the cap allows (anything if
 * 'any'), as an index into items, or p->n. Taken stays taken, and a category
 * at its cap stays there until the page ends (new_page rewinds), so the
 * cursor never needs to look back. */
static size_t from_rest(picker *p, bool any) {
  size_t j = any ? p->next : (p->rest_allowed > p->next ? p->rest_allowed : p->next);
  while (j < p->n && (p->taken[p->order[j].at] || (!any && !allowed(p, p->items[p->order[j].at].item)))) j++;
  if (!any) p->rest_allowed = j;
  return j < p->n ? p->order[j].at : p->n;
}

static size_t take_from_pool(picker *p, size_t j) {
  size_t i = p->pool[j].at;
  p->pool[j] = p->pool[--p->n_pool];
  p->taken[i] = true;
  if (p->n_pool == 0) refill(p);
  return i;
}

/* The next pick, or p->n: the pool's best MMR value that the cap allows,
 * else the best allowed item beyond the pool. Only when no candidate is
 * allowed does the cap give way, and only if it may: otherwise the slate
 * stops short, and the caller brings more candidates. */
static size_t next_pick(picker *p) {
  size_t j = from_pool(p, false);
  if (j < p->n_pool) return take_from_pool(p, j);
  size_t i = from_rest(p, false);
  if (i == p->n && p->give_way) {
    if ((j = from_pool(p, true)) < p->n_pool) return take_from_pool(p, j);
    i = from_rest(p, true);
  }
  if (i < p->n) p->taken[i] = true;
  return i;
}

/* Whether the request's categories are enough for pages of 'page' items with
 * at most 'cap' of each. When they are not (a filter on one category), no
 * wider candidate set would help, so the cap gives way at once. */
static bool cap_can_hold(const catalog *c, const rank_req *r, size_t cap, size_t page) {
  if (cap >= page) return true;
  size_t cats = 0;
  if (r->n_include_cats) {
    for (size_t i = 0; i < r->n_include_cats; i++) {
      uint32_t x = r->include_cats[i];
      cats += !contains(r->include_cats, i, x) && !contains(r->exclude_cats, r->n_exclude_cats, x);
    }
  } else {
    cats = c->category_count;
    for (size_t i = 0; i < r->n_exclude_cats; i++) {
      uint32_t x = r->exclude_cats[i];
      cats -= x < c->category_count && !contains(r->exclude_cats, i, x);
    }
  }
  return cats * cap >= page;
}

typedef struct pinned {
  rank_item item;
  uint32_t slot;             /* 1-based */
} pinned;

static int by_slot(const void *a, const void *b) {
  const pinned *x = a, *y = b;
  return x->slot < y->slot ? -1 : x->slot > y->slot;
}

/* The first position of the page that 'pos' is on. */
static size_t page_start(size_t pos, size_t page, size_t phase) {
  return pos < phase ? 0 : pos - (pos - phase) % page;
}

static int picker_init(picker *p, const rank_items *it, const rank_req *r, const rank_item *items,
                       size_t n, size_t page, float top, arena *a) {
  const rank_config *cfg = r->cfg;
  *p = (picker){.it = it, .items = items, .n = n, .pool_cap = cfg->mmr_pool ? cfg->mmr_pool : 1,
                .lambda = cfg->mmr_lambda, .top = top, .mmr = cfg->mmr && it->emb};
  keyed64 *tmp = arena_alloc(a, (n + 1) * sizeof *tmp);
  p->order = arena_alloc(a, (n + 1) * sizeof *p->order);
  p->pool = arena_alloc(a, ((p->pool_cap < n ? p->pool_cap : n) + 1) * sizeof *p->pool);
  p->taken = arena_calloc(a, n + 1, sizeof *p->taken);
  p->per_cat = arena_calloc(a, it->catalog->category_count + 1, sizeof *p->per_cat);
  p->page = arena_alloc(a, (page + 1) * sizeof *p->page);
  if (!tmp || !p->order || !p->pool || !p->taken || !p->per_cat || !p->page) return REC_ENOMEM;
  for (size_t i = 0; i < n; i++) p->order[i] = (keyed64){rank_key(&items[i]), (uint32_t)i};
  sort_asc64(p->order, tmp, n);
  /* The shares are floats: 0.2f is a hair above 0.2, so ceil(0.2f x 10) would be 3. */
  p->cap = cfg->category_share > 0 ? (size_t)ceil(cfg->category_share * (double)page - 1e-6) : SIZE_MAX;
  const catalog *c = it->catalog;
  p->base_rows = c->base_count && c->base_count < c->count ? c->base_count : SIZE_MAX;
  p->explore_cap = (size_t)ceil(cfg->explore_max_share * (double)page - 1e-6);
  /* SimilarItems picks for likeness to the seeds: widening to the whole
   * catalog to find unlike items of other categories would cost a full scan
   * and serve worse complements, so there the cap gives way. */
  p->give_way = r->similar || !r->can_widen || !cap_can_hold(it->catalog, r, p->cap, page);
  refill(p);
  return 0;
}

/* Positions [n_prefix, k) of 'slate', each a pin at its slot or the next
 * pick; pins whose slot lies past a slate that runs out follow it, in slot
 * order, once no wider candidate set can come. MMR measures relevance
 * against 'top', the best score among all the eligible candidates, the
 * prefix included. */
static int pick_slate(const rank_items *it, const rank_req *r, const rank_item *items, size_t n,
                      pinned *pins, size_t n_pins, rank_item *slate, size_t k, float top, arena *a,
                      rank_result *out) {
  size_t page = r->page ? r->page : (k ? k : 1), phase = r->page_phase % page;
  picker p;
  int rc = picker_init(&p, it, r, items, n, page, top, a);
  if (rc) return rc;
  qsort(pins, n_pins, sizeof *pins, by_slot);
  size_t pos = r->n_prefix, next_pin = 0;
  for (size_t j = page_start(pos, page, phase); j < pos; j++) shown(&p, &slate[j]);
  while (pos < k) {
    if (pos % page == phase) new_page(&p);
    const rank_item *x;
    size_t i;
    if (next_pin < n_pins && pins[next_pin].slot - 1 == pos) x = &pins[next_pin++].item;
    else if ((i = next_pick(&p)) < n) x = &items[i];
    else if (!r->can_widen && next_pin < n_pins) x = &pins[next_pin++].item;
    else break;
    slate[pos++] = *x;
    shown(&p, x);
  }
  out->items = slate;
  out->n = pos;
  out->n_ranked = k - r->n_prefix < n ? k - r->n_prefix : n;
  out->ranked = arena_alloc(a, (out->n_ranked + 1) * sizeof *out->ranked);
  if (!out->ranked) return REC_ENOMEM;
  for (size_t j = 0; j < out->n_ranked; j++) out->ranked[j] = items[p.order[j].at];
  return 0;
}

static const rank_pin_row *pin_of(const rank_req *r, uint32_t item) {
  for (size_t j = 0; j < r->n_pins; j++)
    if (r->pins[j].item == item) return &r->pins[j];
  return NULL;
}

/* Hard rules, then every eligible candidate's normalised sources and blend. */
static size_t eligible_items(const rank_items *it, const rec_candidate *cands, size_t n_cands,
                             const rank_req *r, rank_item *items, uint32_t *present) {
  size_t n = 0;
  *present = 0;
  for (size_t i = 0; i < n_cands; i++) {
    const rec_candidate *c = &cands[i];
    *present |= c->sources;
    if (!rank_eligible(it, r, c->item)) continue;
    rank_item *x = &items[n++];
    memset(x, 0, sizeof *x);
    x->item = c->item;
    x->sources = c->sources;
    memcpy(x->raw, c->raw, sizeof x->raw);
  }
  return n;
}

/* The blend of 'x''s normalised sources, then the soft rules. */
static void score(const rank_items *it, const rank_req *r, const float w[REC_SRC_COUNT], rank_item *x) {
  for (int s = 0; s < REC_SRC_COUNT; s++) x->blended += w[s] * x->norm[s];
  x->score = x->blended;
  soft_rules(it, r, x);
  /* SimilarItems: co-purchase evidence first, embedding similarity after. */
  if (r->similar && (x->sources & (1u << REC_SRC_ITEM_CF))) x->score += 1.0f;
}

/* The prefix by item, to find its entries among the candidates. */
static keyed64 *prefix_index(const rank_req *r, arena *a) {
  keyed64 *ix = arena_alloc(a, (r->n_prefix + 1) * sizeof *ix);
  keyed64 *tmp = arena_alloc(a, (r->n_prefix + 1) * sizeof *tmp);
  if (!ix || !tmp) return NULL;
  for (size_t j = 0; j < r->n_prefix; j++) ix[j] = (keyed64){r->prefix[j].item, (uint32_t)j};
  sort_asc64(ix, tmp, r->n_prefix);
  return ix;
}

int rank_slate(const rank_items *it, const rec_candidate *cands, size_t n_cands, const rank_req *r,
               arena *a, rank_result *out) {
  memset(out, 0, sizeof *out);
  size_t start = r->n_prefix, k = r->k > start ? r->k : start;
  rank_item *items = arena_alloc(a, (n_cands ? n_cands : 1) * sizeof *items);
  pinned *pins = arena_alloc(a, (r->n_pins ? r->n_pins : 1) * sizeof *pins);
  rank_item *slate = arena_alloc(a, (k ? k : 1) * sizeof *slate);
  keyed64 *prefix = prefix_index(r, a);
  if (!items || !pins || !slate || !prefix) return REC_ENOMEM;
  if (start) memcpy(slate, r->prefix, start * sizeof *slate);
  uint32_t present;
  size_t n = eligible_items(it, cands, n_cands, r, items, &present);
  out->missing = ~present & ((1u << REC_SRC_COUNT) - 1);
  if (normalise(items, n, r->cfg->norm, a)) return REC_ENOMEM;
  float w[REC_SRC_COUNT];
  weights(r->cfg, present, w);
  size_t n_pins = 0, m = 0;
  float top = 0;
  for (size_t i = 0; i < n; i++) {
    rank_item *x = &items[i];
    score(it, r, w, x);
    top = x->score > top ? x->score : top;
    size_t at = find_key(prefix, start, x->item);
    const rank_pin_row *pin = pin_of(r, x->item);
    int slot = pin ? (int)pin->slot : 0;
    if (at < start) { /* placed by an earlier round: its score from these candidates */
      rank_item *y = &slate[prefix[at].at];
      bool was_pinned = y->pinned;
      const char *note = y->pin_note;
      *y = *x;
      y->pinned = was_pinned;
      y->pin_note = note;
    } else if (slot > 0 && (size_t)slot > start) {
      /* One pin per item, however often the candidates list it: the array
       * holds r->n_pins entries, no more. */
      bool seen = false;
      for (size_t j = 0; j < n_pins; j++) seen |= pins[j].item.item == x->item;
      if (seen || n_pins == r->n_pins) continue;
      x->pinned = true;
      x->pin_note = pin->note;
      pins[n_pins++] = (pinned){*x, (uint32_t)slot};
    } else { /* a pin whose slot an earlier round filled competes like any item */
      items[m++] = *x;
    }
  }
  int64_t t0 = rec_mono_ns();
  int rc = pick_slate(it, r, items, m, pins, n_pins, slate, k, top, a, out);
  out->diversity_ns = rec_mono_ns() - t0;
  return rc;
}
