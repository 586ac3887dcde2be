/* ranking/rank.c - hard filters, then a partial sort for the top k. */
#include "ranking/rank.h"
#include "common/err.h"

#include <stdlib.h>

static bool contains(const uint32_t *v, size_t n, uint32_t x) {
  for (size_t i = 0; i < n; i++)
    if (v[i] == x) return true;
  return false;
}

static bool sorted_contains(const uint32_t *v, size_t n, uint32_t x) {
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (v[mid] == x) return true;
    if (v[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  return false;
}

const char *rank_ineligible_reason(const catalog *c, const rank_req *r, uint32_t item) {
  if (!c->in_stock[item]) return "out of stock";
  if (sorted_contains(r->exclude, r->n_exclude, item)) return "excluded by request";
  uint32_t cat = c->category[item];
  if (r->n_include_cats && !contains(r->include_cats, r->n_include_cats, cat))
    return "category not in filters.include_categories";
  if (contains(r->exclude_cats, r->n_exclude_cats, cat)) return "category in filters.exclude_categories";
  if (r->has_price) {
    float p = c->price[item];
    if (p < r->min_price || (r->max_price > 0 && p > r->max_price)) return "price outside filters.price";
  }
  return NULL;
}

static float score_of(const catalog *c, const rec_candidate *cd) {
  if (cd->sources & (1u << REC_SRC_ANN)) return cd->raw[REC_SRC_ANN];
  float top = c->popularity[c->by_popularity[0]];
  return top > 0 ? cd->raw[REC_SRC_POPULARITY] / top : 0;
}

static int by_score_desc(const void *a, const void *b) {
  const rank_item *x = a, *y = b;
  if (x->score != y->score) return x->score < y->score ? 1 : -1;
  return x->item < y->item ? -1 : x->item > y->item;
}

int rank_slate(const catalog *c, const rec_candidate *cands, size_t n_cands, const rank_req *r,
               arena *a, rank_item *out, size_t *n) {
  rank_item *keep = arena_alloc(a, (n_cands ? n_cands : 1) * sizeof *keep);
  if (!keep) return REC_ENOMEM;
  size_t m = 0;
  for (size_t i = 0; i < n_cands; i++) {
    const rec_candidate *cd = &cands[i];
    if (!rank_eligible(c, r, cd->item)) continue;
    rank_item *it = &keep[m++];
    it->item = cd->item;
    it->sources = cd->sources;
    it->score = score_of(c, cd);
    for (int s = 0; s < REC_SRC_COUNT; s++) it->raw[s] = cd->raw[s];
  }
  qsort(keep, m, sizeof *keep, by_score_desc);
  size_t k = m < r->k ? m : r->k;
  for (size_t i = 0; i < k; i++) out[i] = keep[i];
  *n = k;
  return 0;
}
