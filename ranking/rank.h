/* ranking/rank.h - turns candidates into the slate: drops what may never be
 * shown (out of stock, excluded by the request, outside the category and price
 * filters), scores the rest and keeps the best k. Pure function of its inputs;
 * thread-safe; writes only to caller-owned memory. */
#ifndef REC_RANK_H
#define REC_RANK_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "common/candidate.h"
#include "common/catalog.h"

typedef struct rank_req {
  size_t k;
  const uint32_t *exclude;       /* item rows never to return, sorted ascending */
  size_t n_exclude;
  const uint32_t *include_cats;  /* if n_include_cats > 0, only these categories */
  size_t n_include_cats;
  const uint32_t *exclude_cats;  /* never these categories */
  size_t n_exclude_cats;
  bool has_price;                /* price filter in effect */
  float min_price, max_price;    /* inclusive; max_price <= 0 means no upper bound */
} rank_req;

typedef struct rank_item {
  uint32_t item;
  uint32_t sources;              /* rec_candidate.sources */
  float score;
  float raw[REC_SRC_COUNT];
} rank_item;

/* NULL when the request's hard rules allow 'item'; otherwise the first rule
 * that forbids it, as a short phrase ("out of stock", "excluded by request"). */
const char *rank_ineligible_reason(const catalog *c, const rank_req *r, uint32_t item);
static inline bool rank_eligible(const catalog *c, const rank_req *r, uint32_t item) {
  return rank_ineligible_reason(c, r, item) == NULL;
}

/* Writes up to r->k items, best score first (ties by catalog row), into
 * caller-owned 'out' (r->k entries) and their count into *n. Candidate score:
 * the ANN inner product for personalised candidates, popularity scaled to
 * [0, 1] by the catalog's top popularity otherwise. Returns 0. */
int rank_slate(const catalog *c, const rec_candidate *cands, size_t n_cands, const rank_req *r,
               rank_item *out, size_t *n);
#endif
