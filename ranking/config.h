/* ranking/config.h - the ranking tier's configuration: one key = value file
 * (docs/configuration.md), parsed and validated once into an immutable
 * rank_config, so a reload can build a new one and swap a pointer. Every
 * setting has a default; a bad one is refused with the key and its range. */
#ifndef REC_RANK_CONFIG_H
#define REC_RANK_CONFIG_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "common/candidate.h"
#include "common/err.h"

enum { RANK_SEGMENTS = 4 };                /* small, low, average, high */
extern const char *const RANK_SEGMENT_NAMES[RANK_SEGMENTS];

typedef enum { NORM_RANK, NORM_MINMAX, NORM_MAX } rank_norm;

/* Soft rules a spending segment may override ("segment.<name>.<key>"). */
typedef struct rank_soft {
  float price_soft_ratio;     /* price.soft_ratio: penalise above this x mean price (1.5) */
  float price_penalty;        /* price.penalty: multiplier above the soft ratio (0.8), 0..1 */
  float price_cap_ratio;      /* price.cap_ratio: never above this x mean price (2.0); 0 = off */
  float upsell_factor;        /* upsell.factor (0.1), 0..1 */
  float upsell_price_weight;  /* upsell.price_weight (0.2), 0..10 */
  float margin_weight;        /* margin.weight (0 = off), 0..1 */
} rank_soft;

/* When a pin or boost applies: [from_s, to_s) in Unix seconds; 0 = open. */
typedef struct rank_window {
  int64_t from_s, to_s;
} rank_window;

typedef struct rank_pin {
  char item[129];             /* item id */
  uint32_t slot;              /* 1-based position in the slate */
  rank_window when;
} rank_pin;

typedef struct rank_boost {
  char item[129];
  float factor;               /* multiplier, 0.1..10 */
  rank_window when;
} rank_boost;

/* True when 'w' holds the time 'now_s'. */
static inline bool rank_window_holds(rank_window w, int64_t now_s) {
  return (!w.from_s || now_s >= w.from_s) && (!w.to_s || now_s < w.to_s);
}

typedef struct rank_config {
  /* candidates per source on the first round (server/recommend.c: each wider round x4) */
  uint32_t cand_ann, cand_itemcf, cand_popularity;   /* candidates.ann 200, .itemcf 200, .popularity 100 */
  uint32_t cand_ease;                                 /* candidates.ease 200 */
  /* blending */
  float weight[REC_SRC_COUNT];        /* blend.ann, .itemcf, .popularity, .ease */
  rank_norm norm;                     /* blend.normalization: rank | minmax (rank) */
  /* repurchase */
  bool exclude_purchased;             /* rules.exclude_purchased (true): bought, and the item has no
                                       * repurchase cycle -> never */
  float repurchase_block;             /* repurchase.block_fraction (0.5): bought within this share of the cycle -> never */
  float repurchase_due;               /* repurchase.due_fraction (1.0): at least this share of the cycle -> due */
  float repurchase_boost;             /* repurchase.boost (0.15): due items x (1 + boost) */
  /* soft rules, base and per segment (base with that segment's overrides applied) */
  rank_soft soft;
  rank_soft segment[RANK_SEGMENTS];
  /* diversity */
  bool mmr;                           /* diversity.mmr (true) */
  float mmr_lambda;                   /* diversity.mmr_lambda (0.7), 0..1: 1 = relevance only */
  uint32_t mmr_pool;                  /* diversity.mmr_pool (200): MMR picks among the best N, then the next N */
  /* items added live (rec.v1.Catalog), which no model has seen yet */
  float explore_boost;                /* explore.boost (0.5): score x (1 + boost / (1 + events / fade_events)) */
  float explore_fade_events;          /* explore.fade_events (20): events after which the boost has halved */
  float explore_max_share;            /* explore.max_share (0.2): at most ceil(share*k) of them per page */
  float category_share;               /* diversity.category_share (0.5): at most ceil(share*k) of a category
                                       * per page, unless the catalog cannot fill it otherwise; 0 = off */
  /* hard rules and promotions */
  char **blocked;                     /* rules.blocked_items: comma-separated ids never returned (at most 10000) */
  size_t n_blocked;
  rank_pin *pins;                     /* promotions.pin: "ID@SLOT, ID@SLOT"; sorted by slot, slots and items distinct */
  size_t n_pins;
  rank_boost *boosts;                 /* promotions.boost: "ID:FACTOR, ID:FACTOR"; sorted by item (bsearch), items distinct */
  size_t n_boosts;
} rank_config;

/* Defaults, then 'path' (NULL: defaults only); rules that span keys (blend
 * weights not all 0, due >= block fraction, cap ratio 0 or >= soft ratio) are
 * checked after the whole file, so key order does not matter. Returns 0 with
 * *out owned by the caller (rank_config_free), or REC_EINVAL with 'err' naming
 * file:line, the key and its allowed range ("file: ..." for a cross-key rule),
 * REC_EIO when the file cannot be read, REC_ENOMEM; on failure *out is
 * untouched and nothing is leaked. A loaded config is only read, so any
 * number of threads may share it. */
int  rank_config_load(const char *path, rank_config **out, rec_error *err);
/* Sets one key ("blend.ann", "segment.high.upsell.factor", ...) on a config
 * being built, which must come from rank_config_load (it carries which
 * segment keys were set). Same validation and errors as a file line, without
 * the file:line prefix; the cross-key rules are checked after this one key,
 * so moving two related keys may need a particular order. On failure 'c' is
 * unchanged. Not for a config other threads are reading. */
int  rank_config_set(rank_config *c, const char *key, const char *value, rec_error *err);
/* A deep copy of 'c' (lists included) that rank_config_set may change.
 * Returns 0 or REC_ENOMEM. */
int  rank_config_clone(const rank_config *c, rank_config **out);
/* A copy of 'c' that shares its lists (blocked items, pins, boosts) until
 * rank_config_set replaces one; 'c' must outlive it. Cheap: per-arm
 * settings combinations (ranking/experiments.h) are made this way.
 * Returns 0 or REC_ENOMEM. */
int  rank_config_derive(const rank_config *c, rank_config **out);
/* Calls fn(arg, key, value) for every setting of 'c' as a settings file
 * would write it: each key of the table, then each segment override
 * ("segment.high.upsell.factor"), then the lists (rules.blocked_items,
 * promotions.pin, promotions.boost) as a count, "3 entries". */
typedef void (*rank_config_visit_fn)(void *arg, const char *key, const char *value);
void rank_config_each(const rank_config *c, rank_config_visit_fn fn, void *arg);
void rank_config_free(rank_config *c);               /* NULL is a no-op */
/* Every key with its default, range and meaning, for --help and the docs. */
void rank_config_usage(FILE *out);
#endif
