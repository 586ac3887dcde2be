/* retrieval/signals.h - a bundle's behavioural data beside the embeddings:
 * item-CF neighbours, popularity lists per spending segment and category,
 * user profiles with purchase history, and repurchase cycles (the files
 * docs/bundle.md lists after index.faiss). Optional: a bundle without them
 * (recctl synth) has empty signals. Immutable after load; thread-safe reads. */
#ifndef REC_SIGNALS_H
#define REC_SIGNALS_H
#include <cjson/cJSON.h>
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "common/catalog.h"
#include "common/err.h"
#include "common/purchase.h"
#include "common/strmap.h"

enum { SIG_SEGMENTS = 4 };   /* small, low, average, high */

typedef rec_purchase sig_purchase;

typedef struct sig_list {    /* items best first */
  uint32_t *items;
  float *scores;
  size_t n;
} sig_list;

/* A seed another shard holds (sig_seed): the flag, with its index among
 * the table's foreign seeds. Catalog rows stay below it (the merge table's
 * slots are int32). */
#define SIG_FOREIGN_SEED 0x80000000u

/* Item -> item weights, by seed: item-CF's co-purchase similarities
 * (item_cf.tsv) or EASE's weights (ease.tsv). Empty (off NULL) when the
 * bundle has no such file. */
typedef struct sig_pairs {
  size_t n_items;            /* the catalog rows the seeds index */
  size_t n_foreign;          /* a shard's partition: seeds of rows another shard holds */
  uint32_t *off;             /* [n_items + n_foreign + 1]: seed i's neighbours are nbr/w[off[i]..off[i+1]);
                              * foreign seed j's at row n_items + j */
  uint32_t *nbr;
  float *w;
  uint32_t max;              /* most neighbours of any seed */
  strmap *seed_map;          /* private: foreign seed id -> j */
} sig_pairs;

typedef struct signals {
  size_t n_items, n_categories, n_profiles;
  sig_pairs cf;              /* item-CF */
  sig_pairs ease;            /* EASE */
  float ease_boost, ease_scale; /* EASE's recency weights (sig_ease_weight); boost 0: none */
  sig_list segment_pop[SIG_SEGMENTS];
  sig_list *category_pop;    /* [n_categories], by catalog category index */
  float *cycle_days;         /* [n_items]: median repurchase interval, 0 = none */
  const char **profile_ids;  /* [n_profiles] */
  float *mean_price;         /* [n_profiles] */
  uint8_t *segment;          /* [n_profiles] */
  uint32_t *recent_off, *recent;  /* profile p's recent items, most recent first */
  uint32_t *purch_off;       /* profile p's purchases, sorted by item */
  sig_purchase *purch;
  /* private */
  bool partition;            /* item_cf.tsv and ease.tsv may name seeds the catalog lacks */
  strmap *profile_map;
  char *text[6];
} signals;

/* Loads the files the manifest 'm' names under item_cf, ease, popularity,
 * profiles, purchases and repurchase (each optional) from 'dir', resolving
 * item ids against 'c'. Returns 0, or REC_ECORRUPT naming file:line. */
int  signals_load(const char *dir, const cJSON *m, const catalog *c, signals *out, rec_error *err);
void signals_destroy(signals *s);

/* The seed of table 'p' for an item id: its catalog row, or in a shard's
 * partition a seed another shard holds (SIG_FOREIGN_SEED | j) when the
 * table lists neighbours of it here. False: no neighbours here. */
bool sig_seed(const sig_pairs *p, const catalog *c, const char *id, size_t len, uint32_t *seed);
/* The neighbours' range of a seed (catalog row or SIG_FOREIGN_SEED | j):
 * false when it has none (an item added live, an unknown seed). */
static inline bool sig_range(const sig_pairs *p, uint32_t seed, uint32_t *from, uint32_t *to) {
  size_t row = seed & SIG_FOREIGN_SEED ? p->n_items + (seed & ~SIG_FOREIGN_SEED) : seed;
  if (!p->off || (seed & SIG_FOREIGN_SEED ? (seed & ~SIG_FOREIGN_SEED) >= p->n_foreign : seed >= p->n_items))
    return false;
  *from = p->off[row];
  *to = p->off[row + 1];
  return true;
}

/* The profile row of a user id, if the bundle has one. */
/* The weight of the EASE seed at 'pos' in a history listed most recent
 * first: 1 + boost * exp(-pos / scale), the manifest's "ease_recency"
 * (tuned by recctl build; without it every seed weighs 1). */
float sig_ease_weight(const signals *s, size_t pos);
static inline float sig_recency_weight(float boost, float scale, size_t pos) {
  return boost > 0 ? 1.0f + boost * expf(-(float)pos / scale) : 1.0f;
}

bool signals_profile(const signals *s, const char *user, size_t len, uint32_t *row);
/* The user's purchase record of 'item', or NULL. */
const sig_purchase *signals_purchase(const signals *s, uint32_t profile, uint32_t item);
/* Segment index of a name ("small".."high"), or -1. */
int  signals_segment(const char *name);
#endif
