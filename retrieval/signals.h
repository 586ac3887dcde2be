/* retrieval/signals.h - a bundle's behavioural data beside the embeddings:
 * item-CF neighbours, popularity lists per spending segment and category,
 * user profiles with purchase history, and repurchase cycles (the files
 * docs/bundle.md lists after index.faiss). Optional: a bundle without them
 * (recctl synth) has empty signals. Immutable after load; thread-safe reads. */
#ifndef REC_SIGNALS_H
#define REC_SIGNALS_H
#include <cjson/cJSON.h>
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

/* An item-CF seed another shard holds (signals_cf_seed): the flag, with its
 * index among the foreign seeds. Catalog rows stay below it (the merge
 * table's slots are int32). */
#define SIG_FOREIGN_SEED 0x80000000u

typedef struct signals {
  size_t n_items, n_categories, n_profiles;
  size_t n_foreign;          /* a shard's partition: seeds of item-CF rows that another shard holds */
  uint32_t *cf_off;          /* [n_items + n_foreign + 1]: item i's neighbours are cf_nbr/cf_sim[cf_off[i]..
                              * cf_off[i+1]); foreign seed j's at row n_items + j */
  uint32_t *cf_nbr;
  float *cf_sim;
  uint32_t cf_max;           /* most neighbours of any item */
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
  bool partition;            /* item_cf.tsv may name seeds the catalog lacks */
  strmap *profile_map, *seed_map;
  char *text[5];
} signals;

/* Loads the files the manifest 'm' names under item_cf, popularity,
 * profiles, purchases and repurchase (each optional) from 'dir', resolving
 * item ids against 'c'. Returns 0, or REC_ECORRUPT naming file:line. */
int  signals_load(const char *dir, const cJSON *m, const catalog *c, signals *out, rec_error *err);
void signals_destroy(signals *s);

/* The item-CF seed for an item id: its catalog row, or in a shard's
 * partition a seed another shard holds (SIG_FOREIGN_SEED | j) when
 * item_cf.tsv lists neighbours of it here. False: no neighbours here. */
bool signals_cf_seed(const signals *s, const catalog *c, const char *id, size_t len, uint32_t *seed);
/* The neighbours' range of a seed (catalog row or SIG_FOREIGN_SEED | j):
 * false when it has none (an item added live, an unknown seed). */
static inline bool signals_cf_range(const signals *s, uint32_t seed, uint32_t *from, uint32_t *to) {
  size_t row = seed & SIG_FOREIGN_SEED ? s->n_items + (seed & ~SIG_FOREIGN_SEED) : seed;
  if (!s->cf_off || (seed & SIG_FOREIGN_SEED ? (seed & ~SIG_FOREIGN_SEED) >= s->n_foreign : seed >= s->n_items))
    return false;
  *from = s->cf_off[row];
  *to = s->cf_off[row + 1];
  return true;
}

/* The profile row of a user id, if the bundle has one. */
bool signals_profile(const signals *s, const char *user, size_t len, uint32_t *row);
/* The user's purchase record of 'item', or NULL. */
const sig_purchase *signals_purchase(const signals *s, uint32_t profile, uint32_t item);
/* Segment index of a name ("small".."high"), or -1. */
int  signals_segment(const char *name);
#endif
