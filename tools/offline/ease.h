/* tools/offline/ease.h - EASE (Steck, "Embarrassingly Shallow Autoencoders
 * for Sparse Data", WWW 2019): the item-item weight matrix
 *
 *   B = argmin ||X - X B||^2 + lambda ||B||^2  subject to diag(B) = 0,
 *   B = I - P diag(1 / diag(P)),  P = (X^T X + lambda I)^-1,
 *
 * with X the binary user x item matrix (1 where the user met the item). A
 * user's score for item j is sum over the items i it met of B[i][j].
 *
 * Solved in closed form with OpenBLAS's LAPACK (Cholesky factorisation and
 * inverse, double precision) over the items of the training data, the most
 * frequent first, as many as fit 'max_items' (a dense n x n solve: 8 n^2
 * bytes; beyond it the rarest items get no row and no column, and the build
 * says so). What a bundle serves is, per item, its 'per_item' weights
 * largest in magnitude, negative ones included: on MovieLens 500 of them
 * score within 1% of the whole matrix, the 500 largest positive ones 7%
 * lower. */
#ifndef REC_EASE_H
#define REC_EASE_H
#include <stddef.h>
#include <stdint.h>
#include "common/err.h"
#include "tools/offline/features.h"

#define EASE_MAX_ITEMS 16000   /* a 2 GB solve */
#define EASE_PER_ITEM 500

typedef struct ease_opts {
  double lambda;           /* > 0 */
  size_t max_items;        /* most items solved over; 0: EASE_MAX_ITEMS */
  size_t per_item;         /* weights kept per item; 0: EASE_PER_ITEM */
} ease_opts;

typedef struct ease_report {
  size_t items_seen;       /* items with a training interaction */
  size_t items_solved;     /* of them, the ones the solve covered */
  double seconds;
} ease_report;

/* Per item i (of R->cols), its kept weights B[i][j]: nbr/w[off[i]..off[i+1]),
 * largest |weight| first (ties: lower j first). */
typedef struct ease_table {
  size_t n_items;
  size_t *off;             /* [n_items + 1] */
  uint32_t *nbr;
  float *w;
} ease_table;

/* Fits EASE on R's non-zero pattern into *out (the caller's, freed with
 * ease_table_destroy). Deterministic whatever the thread count. Returns 0,
 * REC_ENOMEM, or REC_EINVAL with 'err' (LAPACK refused the matrix). */
int  ease_build(const ui_matrix *R, const ease_opts *o, ease_table *out, ease_report *rep, rec_error *err);
void ease_table_destroy(ease_table *t);
/* A user's scores: scores[j] = sum over R's row u of B[i][j] (binary: each
 * item the user met counts once), over every item j; 'scores' has R->cols
 * entries and is overwritten. */
void ease_scores(const ease_table *t, const ui_matrix *R, uint32_t u, float *scores);
/* scores[j] = sum over k of w[k] * B[items[k]][j], summed in k order as
 * recd's EASE source sums (retrieval/retrieve.c); 'scores' has n_cols
 * entries and is overwritten. */
void ease_scores_weighted(const ease_table *t, const uint32_t *items, const float *w, size_t n, size_t n_cols,
                          float *scores);

/* A rank-'rank' factorisation of the table's weights, B ~ L R^T, by a
 * randomised SVD (Halko, Martinsson and Tropp 2011: a Gaussian sketch of
 * rank + 10 columns, two power iterations, LAPACK's LQ and symmetric
 * eigensolver in double precision), split evenly: L = U S^1/2, R = V S^1/2.
 * A user's EASE score for item j is then about (sum over its items i of
 * L[i]) . R[j], an inner product an ANN index can search (`recctl build
 * --model ease`). L and R are [n_items x rank], row-major, overwritten;
 * 'sigma' (rank entries, may be NULL) gets the singular values, largest
 * first. Deterministic for a seed, whatever the thread count. Returns 0,
 * REC_ENOMEM, or REC_EINVAL (rank 0 or above n_items, or LAPACK failed). */
int ease_factorise(const ease_table *t, size_t rank, uint64_t seed, float *L, float *R, double *sigma,
                   rec_error *err);
#endif
