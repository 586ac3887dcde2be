/* ranking/rank.c - see rank.h. Four passes over the candidates: hard rules,
 * per-source normalisation and the blend, soft rules, then the slate. */
#include "ranking/rank.h"
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

static void adjust(rank_item *it, const char *rule, float factor) {
  if (factor == 1.0f) return;
  it->score *= factor;
  if (it->n_adj < RANK_MAX_ADJ) it->adj[it->n_adj++] = (rank_adjust){rule, factor};
}

static float boost_of(const rank_req *r, uint32_t item) {
  size_t i = rec_search_u32(r->boosts, r->n_boosts, sizeof *r->boosts, offsetof(rank_boost_row, item), item);
  return i < r->n_boosts ? r->boosts[i].factor : 1.0f;
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
  adjust(it, "promotion", boost_of(r, it->item));
}

/* ---- the slate ---- */

static bool before(const rank_item *x, const rank_item *y) {
  return x->score != y->score ? x->score > y->score : x->item < y->item;
}

static int by_rank(const void *a, const void *b) {
  return before(a, b) ? -1 : before(b, a) ? 1 : 0;
}

/* The best 'k' of items[0..n) into 'pool' (best first): a bounded heap whose
 * root is the worst kept, then a sort. */
static size_t best_of(const rank_item *items, size_t n, size_t k, rank_item *pool) {
  size_t m = 0;
  for (size_t i = 0; i < n && k > 0; i++) {
    size_t at;
    if (m < k) {
      pool[at = m++] = items[i];
      while (at > 0 && before(&pool[(at - 1) / 2], &pool[at])) {
        rank_item t = pool[at];
        pool[at] = pool[(at - 1) / 2];
        pool[(at - 1) / 2] = t;
        at = (at - 1) / 2;
      }
    } else if (before(&items[i], &pool[0])) {
      pool[at = 0] = items[i];
      for (;;) {
        size_t l = 2 * at + 1, r = l + 1, worst = at;
        if (l < m && before(&pool[worst], &pool[l])) worst = l;
        if (r < m && before(&pool[worst], &pool[r])) worst = r;
        if (worst == at) break;
        rank_item t = pool[at];
        pool[at] = pool[worst];
        pool[worst] = t;
        at = worst;
      }
    }
  }
  qsort(pool, m, sizeof *pool, by_rank);
  return m;
}

typedef struct picker {
  const rank_items *it;
  const rank_item *pool;
  size_t n, page;
  bool *taken;
  float *max_sim;            /* most similar already-picked item, per pool entry */
  uint32_t *per_cat;         /* picks per category */
  size_t cap, picked;
  float lambda, top;
  bool mmr;
} picker;

/* Eight partial sums: without -ffast-math the compiler keeps one sum's
 * order, and eight independent ones let the multiplies overlap. */
static float dot(const float *x, const float *y, size_t n) {
  float s[8] = {0};
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; j++) s[j] += x[i + j] * y[i + j];
  for (; i < n; i++) s[0] += x[i] * y[i];
  return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

/* The next pick: best MMR value among items the category cap allows, or
 * among all when the cap allows none (the slate must not come out short). */
static size_t next_pick(const picker *p) {
  size_t best = p->n;
  float best_v = -INFINITY;
  for (int pass = 0; pass < 2 && best == p->n; pass++)
    for (size_t i = 0; i < p->n; i++) {
      if (p->taken[i]) continue;
      if (pass == 0 && p->per_cat[p->it->catalog->category[p->pool[i].item]] >= p->cap) continue;
      float rel = p->top > 0 ? p->pool[i].score / p->top : 0;
      float v = p->mmr ? p->lambda * rel - (1 - p->lambda) * (p->picked ? p->max_sim[i] : 0) : rel;
      if (v > best_v) {
        best_v = v;
        best = i;
      }
    }
  return best;
}

static void take(picker *p, size_t i) {
  p->taken[i] = true;
  p->per_cat[p->it->catalog->category[p->pool[i].item]]++;
  p->picked++;
  /* The cap counts per page, so page one is the same however many pages
   * were asked for. */
  if (p->picked % p->page == 0)
    memset(p->per_cat, 0, p->it->catalog->category_count * sizeof *p->per_cat);
  if (!p->mmr) return;
  const float *e = p->it->emb + (size_t)p->pool[i].item * p->it->dim;
  for (size_t j = 0; j < p->n; j++) {
    if (p->taken[j]) continue;
    float s = dot(e, p->it->emb + (size_t)p->pool[j].item * p->it->dim, p->it->dim);
    p->max_sim[j] = p->picked == 1 || s > p->max_sim[j] ? s : p->max_sim[j];
  }
}

typedef struct pinned {
  rank_item item;
  uint32_t slot;             /* 1-based */
} pinned;

static int by_slot(const void *a, const void *b) {
  const pinned *x = a, *y = b;
  return x->slot < y->slot ? -1 : x->slot > y->slot;
}

/* Each pin (sorted by slot) at its slot; pins past the end follow the picks
 * in slot order; the picks fill the other positions in order. */
static void merge_pins(rank_item *slate, const rank_item *picks, size_t n, pinned *pins, size_t n_pins,
                       bool *filled) {
  size_t total = n + n_pins, late = 0;
  for (size_t j = 0; j < n_pins; j++) {
    size_t at = pins[j].slot - 1;
    if (at < total && !filled[at]) {
      slate[at] = pins[j].item;
      filled[at] = true;
    } else {
      pins[late++] = pins[j];
    }
  }
  size_t next = 0, next_late = 0;
  for (size_t s = 0; s < total; s++) {
    if (filled[s]) continue;
    slate[s] = next < n ? picks[next++] : pins[next_late++].item;
  }
}

/* The slate: pins at their slots, the rest picked by MMR under the category
 * cap from the pool. */
static int pick_slate(const rank_items *it, const rank_req *r, const rank_item *pool, size_t n_pool,
                      pinned *pins, size_t n_pins, arena *a, rank_result *out) {
  const rank_config *cfg = r->cfg;
  qsort(pins, n_pins, sizeof *pins, by_slot); /* more pins than slots: the first slots win */
  size_t k = r->k, n_pin = n_pins < k ? n_pins : k;
  size_t want = n_pool < k - n_pin ? n_pool : k - n_pin;
  size_t page = r->page ? r->page : k;
  picker p = {.it = it, .pool = pool, .n = n_pool, .page = page, .lambda = cfg->mmr_lambda,
              .mmr = cfg->mmr && it->emb, .top = n_pool ? pool[0].score : 0};
  p.taken = arena_calloc(a, n_pool + 1, sizeof *p.taken);
  p.max_sim = arena_calloc(a, n_pool + 1, sizeof *p.max_sim);
  p.per_cat = arena_calloc(a, it->catalog->category_count + 1, sizeof *p.per_cat);
  rank_item *picks = arena_calloc(a, want + 1, sizeof *picks);
  rank_item *slate = arena_calloc(a, want + n_pin + 1, sizeof *slate);
  bool *filled = arena_calloc(a, want + n_pin + 1, sizeof *filled);
  if (!p.taken || !p.max_sim || !p.per_cat || !picks || !slate || !filled) return REC_ENOMEM;
  p.cap = cfg->category_share > 0 ? (size_t)ceil(cfg->category_share * (double)page) : SIZE_MAX;
  for (size_t j = 0; j < n_pin; j++) p.per_cat[it->catalog->category[pins[j].item.item]]++;
  size_t n = 0;
  for (size_t i; n < want && (i = next_pick(&p)) < n_pool; take(&p, i)) picks[n++] = pool[i];
  merge_pins(slate, picks, n, pins, n_pin, filled);
  out->items = slate;
  out->n = n + n_pin;
  return 0;
}

static int pin_slot(const rank_req *r, uint32_t item) {
  for (size_t j = 0; j < r->n_pins; j++)
    if (r->pins[j].item == item) return (int)r->pins[j].slot;
  return 0;
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

int rank_slate(const rank_items *it, const rec_candidate *cands, size_t n_cands, const rank_req *r,
               arena *a, rank_result *out) {
  memset(out, 0, sizeof *out);
  rank_item *items = arena_alloc(a, (n_cands ? n_cands : 1) * sizeof *items);
  pinned *pins = arena_alloc(a, (r->n_pins ? r->n_pins : 1) * sizeof *pins);
  if (!items || !pins) return REC_ENOMEM;
  uint32_t present;
  size_t n = eligible_items(it, cands, n_cands, r, items, &present);
  out->missing = ~present & ((1u << REC_SRC_COUNT) - 1);
  if (normalise(items, n, r->cfg->norm, a)) return REC_ENOMEM;
  float w[REC_SRC_COUNT];
  weights(r->cfg, present, w);
  size_t n_pins = 0, m = 0;
  for (size_t i = 0; i < n; i++) {
    rank_item *x = &items[i];
    for (int s = 0; s < REC_SRC_COUNT; s++) x->blended += w[s] * x->norm[s];
    x->score = x->blended;
    soft_rules(it, r, x);
    /* SimilarItems: co-purchase evidence first, embedding similarity after. */
    if (r->similar && (x->sources & (1u << REC_SRC_ITEM_CF))) x->score += 1.0f;
    int slot = pin_slot(r, x->item);
    if (slot > 0) {
      x->pinned = true;
      pins[n_pins++] = (pinned){*x, (uint32_t)slot};
    } else {
      items[m++] = *x;
    }
  }
  size_t pool_n = r->k > r->cfg->mmr_pool ? r->k : r->cfg->mmr_pool;
  rank_item *pool = arena_alloc(a, (pool_n ? pool_n : 1) * sizeof *pool);
  if (!pool) return REC_ENOMEM;
  out->n_ranked = best_of(items, m, pool_n, pool);
  out->ranked = pool;
  return pick_slate(it, r, pool, out->n_ranked, pins, n_pins, a, out);
}
