/* tools/offline/rankmetrics.c - see rankmetrics.h. A user's relevant set is
 * looked up by binary search in a sorted, de-duplicated copy that lives on the
 * stack for the usual few hundred items; a flag per entry stops a ranked list
 * that repeats an item from scoring it twice. */
#include "tools/offline/rankmetrics.h"
#include "common/rng.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { REL_STACK = 512, BOOT_STACK = 2000 };

/* The relevant set as lookups. 'items' is sorted and unique with one 'hit'
 * flag each; if the heap copy for a large set cannot be allocated, 'items' is
 * NULL and the caller's array is searched linearly instead, so a failed malloc
 * costs time but never changes a score. */
typedef struct relset {
  uint32_t *items;
  unsigned char *hit;
  size_t m;                   /* distinct relevant items */
  const uint32_t *raw;
  size_t raw_m;
  void *heap;                 /* what to free, or NULL */
} relset;

static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return (x > y) - (x < y);
}

static bool contains(const uint32_t *a, size_t n, uint32_t x) {
  for (size_t i = 0; i < n; i++)
    if (a[i] == x) return true;
  return false;
}

static void relset_init(relset *s, const uint32_t *relevant, size_t m, uint32_t *stack_items,
                        unsigned char *stack_hit) {
  memset(s, 0, sizeof *s);
  s->raw = relevant;
  s->raw_m = m;
  if (m <= REL_STACK) {
    s->items = stack_items;
    s->hit = stack_hit;
  } else if (m <= SIZE_MAX / (sizeof *s->items + 1) &&
             (s->heap = malloc(m * (sizeof *s->items + 1))) != NULL) {
    s->items = s->heap;
    s->hit = (unsigned char *)(s->items + m);
  } else {
    for (size_t i = 0; i < m; i++) s->m += !contains(relevant, i, relevant[i]);
    return;
  }
  memcpy(s->items, relevant, m * sizeof *relevant);
  qsort(s->items, m, sizeof *s->items, cmp_u32);
  size_t u = 0;
  for (size_t i = 0; i < m; i++)
    if (u == 0 || s->items[u - 1] != s->items[i]) s->items[u++] = s->items[i];
  s->m = u;
  memset(s->hit, 0, u);
}

/* True the first time the list at slot r names a relevant item: a repeat of
 * an item already scored is just a wasted slot. */
static bool relset_take(relset *s, const uint32_t *ranked, size_t r) {
  uint32_t x = ranked[r];
  if (!s->items) return contains(s->raw, s->raw_m, x) && !contains(ranked, r, x);
  const uint32_t *p = bsearch(&x, s->items, s->m, sizeof x, cmp_u32);
  if (!p || s->hit[p - s->items]) return false;
  s->hit[p - s->items] = 1;
  return true;
}

rankmetrics_user rankmetrics_score(const uint32_t *ranked, size_t n, const uint32_t *relevant,
                                   size_t m, size_t k) {
  rankmetrics_user out = {0, 0, 0, 0, 0};
  if (m == 0 || k == 0) return out;
  uint32_t stack_items[REL_STACK];
  unsigned char stack_hit[REL_STACK];
  relset s;
  relset_init(&s, relevant, m, stack_items, stack_hit);
  size_t top = n < k ? n : k, ideal = s.m < k ? s.m : k, hits = 0;
  double dcg = 0, idcg = 0, ap = 0;
  for (size_t r = 0; r < top; r++) {
    if (!relset_take(&s, ranked, r)) continue;
    hits++;
    dcg += 1.0 / log2((double)r + 2);
    ap += (double)hits / (double)(r + 1);
  }
  for (size_t r = 0; r < ideal; r++) idcg += 1.0 / log2((double)r + 2);
  free(s.heap);
  out.recall = (double)hits / (double)s.m;
  out.recall_capped = (double)hits / (double)ideal;
  out.ndcg = dcg / idcg;
  out.map = ap / (double)ideal;
  out.hit = hits > 0;
  return out;
}

double rankmetrics_coverage(const uint32_t *const *lists, const size_t *lens, size_t n_users,
                            size_t k, size_t n_items) {
  if (n_items == 0) return 0;
  unsigned char *seen = calloc(n_items / 8 + 1, 1);
  if (!seen) return NAN;
  size_t distinct = 0;
  for (size_t u = 0; u < n_users; u++) {
    size_t top = lens[u] < k ? lens[u] : k;
    for (size_t r = 0; r < top; r++) {
      uint32_t i = lists[u][r];
      if (i >= n_items || (seen[i / 8] >> (i % 8) & 1)) continue;
      seen[i / 8] |= (unsigned char)(1u << (i % 8));
      distinct++;
    }
  }
  free(seen);
  return (double)distinct / (double)n_items;
}

double rankmetrics_novelty(const uint32_t *const *lists, const size_t *lens, size_t n_users,
                           size_t k, const uint32_t *item_users, size_t n_train_users) {
  if (n_train_users == 0) return 0;
  double bits = 0;
  size_t slots = 0;
  for (size_t u = 0; u < n_users; u++) {
    size_t top = lens[u] < k ? lens[u] : k;
    for (size_t r = 0; r < top; r++) {
      size_t c = item_users[lists[u][r]];
      c = c < 1 ? 1 : c > n_train_users ? n_train_users : c;
      bits -= log2((double)c / (double)n_train_users);
    }
    slots += top;
  }
  return slots ? bits / (double)slots : 0;
}


/* Uniform in [0, n) without modulo bias: draws below 2^64 mod n are redrawn. */
static size_t below(rec_rng *r, size_t n) {
  uint64_t reject = -(uint64_t)n % n, x;
  while ((x = rec_rng_next(r)) < reject) {}
  return (size_t)(x % n);
}

static double mean_of(const double *v, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; i++) s += v[i];
  return s / (double)n;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* The p-quantile of sorted x[0..n) interpolated between order statistics,
 * as numpy.percentile does by default, so the Python side can check us. */
static double quantile(const double *x, size_t n, double p) {
  double h = (double)(n - 1) * p, f = floor(h);
  size_t i = (size_t)f;
  return i + 1 < n ? x[i] + (h - f) * (x[i + 1] - x[i]) : x[n - 1];
}

rankmetrics_ci rankmetrics_bootstrap(const double *values, size_t n, int resamples, uint64_t seed) {
  rankmetrics_ci ci = {0, 0, 0};
  if (n == 0) return ci;
  ci.mean = ci.lo = ci.hi = mean_of(values, n);
  if (resamples <= 0) return ci;
  double stack_means[BOOT_STACK], *means = stack_means, *heap = NULL;
  size_t b = (size_t)resamples;
  if (b > BOOT_STACK) {
    /* Out of memory, fewer resamples still give a valid, if coarser, interval. */
    if (b <= SIZE_MAX / sizeof *heap && (heap = malloc(b * sizeof *heap)) != NULL) means = heap;
    else b = BOOT_STACK;
  }
  rec_rng r = {seed};
  for (size_t j = 0; j < b; j++) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += values[below(&r, n)];
    means[j] = s / (double)n;
  }
  qsort(means, b, sizeof *means, cmp_double);
  ci.lo = quantile(means, b, 0.025);
  ci.hi = quantile(means, b, 0.975);
  free(heap);
  return ci;
}
