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

/* The slate order: higher score first, ties by catalog row. */
static bool before(const rank_item *x, const rank_item *y) {
  return x->score != y->score ? x->score > y->score : x->item < y->item;
}

static int by_rank(const void *a, const void *b) {
  return before(a, b) ? -1 : before(b, a) ? 1 : 0;
}

/* heap[0..n) is a heap whose root is the item ranked last; restores it after
 * the root was replaced. */
static void sift_down(rank_item *heap, size_t n, size_t i) {
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, worst = i;
    if (l < n && before(&heap[worst], &heap[l])) worst = l;
    if (r < n && before(&heap[worst], &heap[r])) worst = r;
    if (worst == i) return;
    rank_item t = heap[i];
    heap[i] = heap[worst];
    heap[worst] = t;
    i = worst;
  }
}

static void sift_up(rank_item *heap, size_t i) {
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!before(&heap[parent], &heap[i])) return;
    rank_item t = heap[i];
    heap[i] = heap[parent];
    heap[parent] = t;
    i = parent;
  }
}

/* Keeps the best k eligible candidates in a bounded heap (O(n log k), which
 * matters when an exact scan hands over the whole catalog), then sorts them. */
int rank_slate(const catalog *c, const rec_candidate *cands, size_t n_cands, const rank_req *r,
               rank_item *out, size_t *n) {
  size_t m = 0;
  for (size_t i = 0; i < n_cands && r->k > 0; i++) {
    const rec_candidate *cd = &cands[i];
    if (!rank_eligible(c, r, cd->item)) continue;
    rank_item it = {.item = cd->item, .sources = cd->sources, .score = score_of(c, cd)};
    for (int s = 0; s < REC_SRC_COUNT; s++) it.raw[s] = cd->raw[s];
    if (m < r->k) {
      out[m] = it;
      sift_up(out, m++);
    } else if (before(&it, &out[0])) {
      out[0] = it;
      sift_down(out, m, 0);
    }
  }
  qsort(out, m, sizeof *out, by_rank);
  *n = m;
  return 0;
}
