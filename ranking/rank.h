/* ranking/rank.h - the ranking tier: candidates in, slate out.
 *
 * 1. Hard rules drop what may never be shown (rank_ineligible_reason).
 * 2. Each source's raw scores are normalised over the eligible candidates
 *    (rank-based or min-max) and blended with the configured weights,
 *    renormalised over the sources that produced candidates.
 * 3. Soft rules multiply the blend: repurchase due, price penalty, upsell,
 *    margin, promotion boosts; each is recorded for explain.
 * 4. The slate, position by position: a pinned promotion at its slot (when
 *    it is an eligible candidate), else
 *    the best MMR value that the category cap allows among the pool: the
 *    diversity.mmr_pool best candidates, then, once all are placed, the
 *    next as many. MMR and the cap count per page. When the pool holds
 *    nothing the cap allows, the best allowed candidate beyond it comes
 *    next; only when no candidate at all is allowed does the cap give way,
 *    and only if the caller cannot bring more candidates (can_widen) or the
 *    request's categories could never keep it.
 *
 * The slate is served in this order: a score is the item's relevance after
 * the soft rules, and MMR, the cap and pins may put a lower one first.
 *
 * Each position is picked greedily from what the earlier ones left, so the
 * first k positions are the same whatever k. A caller that widens its
 * candidates passes the slate so far as the next call's prefix, so a
 * position, once decided, stays whatever the depth.
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
  /* Rows from catalog->base_count on were added live (rec.v1.Catalog): the
   * exploration boost and cap (explore.*) apply to them. Their event
   * counts so far, [count - base_count]; NULL: none counted. */
  const uint32_t *added_events;
} rank_items;

typedef struct rank_pin_row {
  uint32_t item, slot;            /* slot is 1-based */
  const char *note;               /* the pin's time window, or NULL; for explain */
} rank_pin_row;

typedef struct rank_boost_row {
  uint32_t item;
  float factor;
  const char *note;               /* the boost's time window, or NULL; for explain */
} rank_boost_row;

enum { RANK_MAX_ADJ = 6 };

typedef struct rank_adjust {
  const char *rule;               /* "repurchase_due", "price_penalty", "upsell", "margin", "promotion" */
  float factor;
  const char *note;               /* e.g. a promotion's time window; may be NULL */
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
  const char *pin_note;           /* the pin's rank_pin_row.note when pinned */
  rank_adjust adj[RANK_MAX_ADJ];
} rank_item;

typedef struct rank_req {
  size_t k;                       /* slate length wanted, the prefix included */
  size_t page;                    /* page size: MMR and the category cap count per page; 0 = k */
  size_t page_phase;              /* pages start at the positions p with p % page == page_phase */
  const rank_item *prefix;        /* positions [0, n_prefix) decided by an earlier round: kept as
                                   * they are (their scores redone from these candidates) */
  size_t n_prefix;
  bool can_widen;                 /* the caller can bring more candidates: stop short rather than let
                                   * the cap give way or put pins past the end */
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

typedef struct rank_result {
  rank_item *items;               /* the slate in served order: the prefix, then this call's picks */
  size_t n;                       /* < k: the candidates (or, with can_widen, the cap) ran out */
  rank_item *ranked;              /* this call's first k - n_prefix candidates by score, best
                                   * first, before diversity (no prefix, no pins held for a slot) */
  size_t n_ranked;
  uint32_t missing;               /* sources with no candidates (bit per rec_source) */
  int64_t diversity_ns;           /* of this call, the time spent ordering the slate: MMR,
                                   * the category cap and pins (the rest is rules and blend) */
} rank_result;

/* NULL when the hard rules allow 'item' for this request; otherwise the first
 * rule that forbids it ("out of stock", "excluded by request", ...). */
const char *rank_ineligible_reason(const rank_items *it, const rank_req *r, uint32_t item);
static inline bool rank_eligible(const rank_items *it, const rank_req *r, uint32_t item) {
  return rank_ineligible_reason(it, r, item) == NULL;
}

/* Ranks 'cands' into a slate of at most r->k items that starts with the
 * prefix. Returns 0 or REC_ENOMEM. */
int rank_slate(const rank_items *it, const rec_candidate *cands, size_t n_cands, const rank_req *r,
               arena *a, rank_result *out);
#endif
