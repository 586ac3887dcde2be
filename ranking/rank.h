/* ranking/rank.h - the ranking tier: candidates in, slate out.
 *
 * 1. Hard rules drop what may never be shown (rank_ineligible_reason).
 * 2. Each source's raw scores are normalised over the eligible candidates
 *    (rank-based or min-max) and blended with the configured weights,
 *    renormalised over the sources that produced candidates.
 * 3. Soft rules multiply the blend: repurchase due, price penalty, upsell,
 *    margin, promotion boosts; each is recorded for explain.
 * 4. Diversity: MMR over item embeddings and a per-category cap pick the
 *    slate from the best candidates; the cap gives way before the slate
 *    would come out short. Pinned promotions take their slots last.
 * Pure function of its inputs; thread-safe; memory from the caller's arena. */
#ifndef REC_RANK_H
#define REC_RANK_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "common/arena.h"
#include "common/candidate.h"
#include "common/catalog.h"
#include "common/purchase.h"
#include "ranking/config.h"

/* What the ranking tier knows of the items beyond the catalog. */
typedef struct rank_items {
  const catalog *catalog;
  const float *emb;               /* [count x dim] unit rows, for MMR; NULL: no MMR */
  size_t dim;
  const float *cycle_days;        /* [count] repurchase cycle, 0 = none; may be NULL */
} rank_items;

typedef struct rank_pin_row {
  uint32_t item, slot;            /* slot is 1-based */
} rank_pin_row;

typedef struct rank_boost_row {
  uint32_t item;
  float factor;
} rank_boost_row;

typedef struct rank_req {
  size_t k;                       /* slate length (the pages so far plus one item) */
  size_t page;                    /* page size: the category cap counts per page; 0 = k */
  const rank_config *cfg;
  /* hard rules from the request and the configuration */
  const uint32_t *exclude;        /* the request's excludes, sorted ascending */
  size_t n_exclude;
  const uint32_t *blocked;        /* rules.blocked_items, sorted ascending */
  size_t n_blocked;
  const uint32_t *include_cats;   /* if n_include_cats > 0, only these categories */
  size_t n_include_cats;
  const uint32_t *exclude_cats;
  size_t n_exclude_cats;
  bool has_price;                 /* request price filter */
  float min_price, max_price;     /* inclusive; max_price <= 0: no upper bound */
  /* the user */
  int64_t now;                    /* Unix seconds */
  float mean_price;               /* 0: unknown (no price rules) */
  int segment;                    /* 0..3, -1: unknown (base soft rules) */
  const rec_purchase *purchases;  /* sorted by item */
  size_t n_purchases;
  /* promotions, resolved to rows */
  const rank_pin_row *pins;
  size_t n_pins;
  const rank_boost_row *boosts;   /* sorted by item */
  size_t n_boosts;
  bool similar;                   /* SimilarItems: item-CF evidence ranks first */
} rank_req;

enum { RANK_MAX_ADJ = 6 };

typedef struct rank_adjust {
  const char *rule;               /* "repurchase_due", "price_penalty", "upsell", "margin", "promotion" */
  float factor;
} rank_adjust;

typedef struct rank_item {
  uint32_t item;
  uint32_t sources;
  float raw[REC_SRC_COUNT];
  float norm[REC_SRC_COUNT];      /* normalised per source, 0 where absent */
  float blended;
  float score;                    /* after soft rules */
  uint8_t n_adj;
  bool pinned;
  rank_adjust adj[RANK_MAX_ADJ];
} rank_item;

typedef struct rank_result {
  rank_item *items;               /* the slate, best first */
  size_t n;
  rank_item *ranked;              /* every eligible candidate by score, before diversity */
  size_t n_ranked;
  uint32_t missing;               /* sources with no candidates (bit per rec_source) */
} rank_result;

/* NULL when the hard rules allow 'item' for this request; otherwise the first
 * rule that forbids it ("out of stock", "excluded by request", ...). */
const char *rank_ineligible_reason(const rank_items *it, const rank_req *r, uint32_t item);
static inline bool rank_eligible(const rank_items *it, const rank_req *r, uint32_t item) {
  return rank_ineligible_reason(it, r, item) == NULL;
}

/* Ranks 'cands' into at most r->k items. Returns 0 or REC_ENOMEM. */
int rank_slate(const rank_items *it, const rec_candidate *cands, size_t n_cands, const rank_req *r,
               arena *a, rank_result *out);
#endif
