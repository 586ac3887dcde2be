/* retrieval/ann_tune.h - picks an inverted file's nprobe when a bundle is
 * written: the fewest lists whose search finds the exact top k of sample
 * queries at a target recall. Exact answers come from OpenBLAS (queries x
 * items in blocks), so tuning a 10M-item index takes seconds. */
#ifndef REC_ANN_TUNE_H
#define REC_ANN_TUNE_H
#include <stddef.h>
#include "common/err.h"
#include "retrieval/ann.h"

/* The exact top k (inner product) of each of nq queries over n items:
 * ids[nq x k], best first, ties by lower id. Returns 0 or REC_ENOMEM. */
int ann_exact_topk(const float *items, size_t n, size_t dim, const float *queries, size_t nq, size_t k,
                   int64_t *ids, rec_error *err);

/* Recall@k of idx's answers (at its current nprobe/efSearch) against
 * 'exact' (from ann_exact_topk). */
double ann_recall(const ann_index *idx, const float *queries, size_t nq, size_t dim, size_t k,
                  const int64_t *exact);

/* Sets idx's nprobe to the smallest value in 1, 2, 3, 4, 6, 8, 12, ... (up to
 * the number of lists) whose recall@k on the queries reaches 'target', or to
 * every list when none does; writes the value and its recall. */
int ann_tune_nprobe(ann_index *idx, const float *items, size_t n, size_t dim, const float *queries, size_t nq,
                    size_t k, double target, size_t *nprobe, double *recall, rec_error *err);
#endif
