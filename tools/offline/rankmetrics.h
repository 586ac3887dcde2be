/* tools/offline/rankmetrics.h - offline ranking metrics for `recctl eval`:
 * per-user Recall@K, NDCG@K, MAP@K and HitRate@K against a held-out set,
 * catalog coverage and novelty across users, and percentile-bootstrap
 * confidence intervals over users. Pure functions; no I/O, thread-safe.
 * (Not server/metrics.h, which counts recd's calls for Prometheus.) */
#ifndef REC_RANKMETRICS_H
#define REC_RANKMETRICS_H
#include <stddef.h>
#include <stdint.h>

typedef struct rankmetrics_user {
  double recall, recall_capped, ndcg, map, hit;  /* each in [0, 1] */
} rankmetrics_user;

/* Scores one user's ranked list 'ranked' (n items, best first; only the
 * first k count) against the set 'relevant' (m distinct items, any order):
 *   recall        = |top-k ∩ relevant| / m   (the literature's Recall@K: a user
 *                   with more relevant items than k cannot reach 1)
 *   recall_capped = |top-k ∩ relevant| / min(m, k)   (a perfect list scores 1)
 *   ndcg   = DCG@k / IDCG@k, binary gains, log2(rank + 1) discount; IDCG is
 *            that of min(m, k) hits at ranks 1.., so a list shorter than k
 *            is not excused
 *   map    = (1 / min(m, k)) * sum over hits at rank r of precision@r
 *   hit    = 1 if any relevant item is in the top k
 * Ranks start at 1. An item repeated in 'ranked' scores only at its first
 * rank; later copies are misses that still take a slot. A duplicate in
 * 'relevant' counts once (m is then the number of distinct items).
 * m == 0 or k == 0 gives all zeros (callers skip such users). Allocates only
 * when m > 512, and gives the same answer, more slowly, if that fails. */
rankmetrics_user rankmetrics_score(const uint32_t *ranked, size_t n, const uint32_t *relevant,
                                   size_t m, size_t k);

/* Share of the catalog's n_items that appear in at least one user's top k:
 * lists[u] holds lens[u] items, best first. Items >= n_items are ignored;
 * n_items == 0 gives 0. Needs n_items / 8 bytes of heap: NaN if that fails. */
double rankmetrics_coverage(const uint32_t *const *lists, const size_t *lens, size_t n_users,
                            size_t k, size_t n_items);

/* Mean self-information -log2(p_i) of recommended items, p_i = the share of
 * training users who interacted with item i ('item_users[i]' of 'n_train_users';
 * items never seen count as 1 user, counts above n_train_users as
 * n_train_users); averaged over all top-k slots, so a repeated item counts at
 * each slot. Every listed item must index 'item_users'. No slots or
 * n_train_users == 0 gives 0. */
double rankmetrics_novelty(const uint32_t *const *lists, const size_t *lens, size_t n_users,
                           size_t k, const uint32_t *item_users, size_t n_train_users);

typedef struct rankmetrics_ci {
  double mean, lo, hi;            /* mean over users and the 95% interval */
} rankmetrics_ci;

/* Mean of values[0..n) with a 95% percentile-bootstrap interval from
 * 'resamples' resamples of the users (with replacement), driven by 'seed'
 * (splitmix64) so the interval is reproducible. lo and hi are the 2.5th and
 * 97.5th percentiles of the resampled means, interpolated between order
 * statistics as numpy.percentile's default does. n == 0 gives all zeros;
 * resamples <= 0 gives lo == hi == mean. More than 2000 resamples need heap;
 * if that fails, 2000 are used. */
rankmetrics_ci rankmetrics_bootstrap(const double *values, size_t n, int resamples, uint64_t seed);
#endif
