/* tools/offline/features.h - what `recctl build` derives from a dataset besides the
 * embeddings: the user x item strength matrix, item-to-item co-purchase
 * neighbours, time-decayed popularity, user profiles and repurchase cycles.
 * Every function takes an optional per-event mask so `recctl eval` can derive
 * the same features from a training split only. Results belong to the caller
 * (each has its _destroy); no shared state. */
#ifndef REC_FEATURES_H
#define REC_FEATURES_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "tools/offline/als.h"
#include "tools/offline/dataset.h"

/* Sum of strengths per (user, item) over the masked events; rows are users,
 * columns items, column indices ascending within a row. */
typedef struct ui_matrix {
  size_t rows, cols, nnz;
  size_t *rowptr;
  uint32_t *colidx;
  float *vals;
} ui_matrix;

int  ui_matrix_build(const dataset *d, const bool *mask, ui_matrix *out);
void ui_matrix_destroy(ui_matrix *m);
static inline csr ui_matrix_csr(const ui_matrix *m) {
  return (csr){m->rows, m->cols, m->nnz, m->rowptr, m->colidx, m->vals};
}
/* The transpose (items x users). */
int  ui_matrix_transpose(const ui_matrix *m, ui_matrix *out);

/* Top 'per_item' neighbours of every item by cosine similarity of their
 * strength-weighted user columns (items bought by the same users, weighted by
 * how strongly). nbr/sim are [n_items x per_item]; count[i] <= per_item. */
typedef struct itemcf {
  size_t n_items, per_item;
  uint32_t *nbr;
  float *sim;
  uint32_t *count;
} itemcf;

int  itemcf_build(const ui_matrix *R, size_t per_item, itemcf *out);
void itemcf_destroy(itemcf *cf);

/* Popularity: sum of strength * 0.5^(age / half_life) with age measured from
 * the newest masked event. Per segment as well (segment s of user u is
 * profiles->segment[u]). */
typedef struct popularity {
  size_t n_items;
  float *global;            /* [n_items] */
  float *by_segment;        /* [4 x n_items] */
  int64_t reference_time;   /* the newest event considered */
} popularity;

enum { SEG_SMALL, SEG_LOW, SEG_AVERAGE, SEG_HIGH, SEG_COUNT };
extern const char *const SEGMENT_NAMES[SEG_COUNT];

/* Per-user profile: mean item price, spending segment (quartile of the mean
 * item price across users: small < 25% <= low < 50% <= average < 75% <= high)
 * and the most recent distinct items. */
typedef struct profiles {
  size_t n_users, recent_max;
  float *mean_price;        /* [n_users] */
  uint8_t *segment;         /* [n_users] */
  uint32_t *recent;         /* [n_users x recent_max], most recent first */
  uint32_t *n_recent;       /* [n_users] */
} profiles;

int  profiles_build(const dataset *d, const bool *mask, size_t recent_max, profiles *out);
void profiles_destroy(profiles *p);

int  popularity_build(const dataset *d, const bool *mask, const profiles *p, double half_life_days,
                      popularity *out);
void popularity_destroy(popularity *p);

/* Median days between a user's consecutive purchases of the same item, over
 * all users; 0 for items nobody bought twice. samples[i] counts the intervals. */
int  repurchase_build(const dataset *d, const bool *mask, float *cycle_days, uint32_t *samples);
#endif
