/* tools/offline/train.h - the training step `recctl build` and `recctl eval`
 * share: the options of an offline run and a model (two-tower or ALS) trained
 * into serving form. Order: twotower, als -> train -> eval -> pipeline; train
 * calls neither of the two above it. Training uses OpenMP threads (a process
 * setting, train_threads); a trained model is read-only, safe to score from
 * any thread. */
#ifndef REC_TRAIN_H
#define REC_TRAIN_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "common/err.h"
#include "retrieval/tower.h"
#include "tools/offline/als.h"
#include "tools/offline/dataset.h"
#include "tools/offline/ease.h"
#include "tools/offline/features.h"
#include "tools/offline/twotower.h"

/* Every option of an offline run. `recctl eval` reads the data, model and
 * feature fields; out, index_type, the ef_*, version and evaluate are the
 * bundle's, read by pipeline.h only. */
typedef struct build_opts {
  const char *interactions, *catalog, *out;
  ds_schema schema;
  const char *model;         /* the ANN's embeddings: "twotower" (default), "als" or "ease" (train.h) */
  tt_opts tt;
  als_opts als;
  float als_popularity;      /* ALS's popularity prior: score u . v + c log(1 + users of the item), c this
                              * times the model's own score scale (train.c); 0: none */
  size_t itemcf_neighbours;  /* per item, default 50 */
  double ease_lambda;        /* EASE's L2 weight (ease.h); 0: no EASE */
  size_t ease_max_items;     /* items its dense solve covers, the most frequent; 0: EASE_MAX_ITEMS */
  size_t ease_per_item;      /* weights kept per item; 0: EASE_PER_ITEM */
  float ease_recency_boost;  /* the most recent history item weighs 1 + boost, the one n places */
  float ease_recency_scale;  /* back 1 + boost * exp(-n / scale) (sig_ease_weight); 0: all weigh 1 */
  double half_life_days;     /* popularity decay; 0: none */
  size_t recent_max;         /* recent items kept per user, default 50 */
  const char *index_type;    /* NULL: bundle_default_index (Flat, or an inverted file above 20000 items) */
  int ef_search;             /* HNSW breadths; 0: from the catalog size */
  int ef_construction;       /* (bundle_write.h) */
  const char *version;       /* NULL: "<model>-<content hash>" */
  int threads;               /* OpenMP/OpenBLAS threads; 0: all cores */
  bool evaluate;             /* measure on a per-user holdout first (manifest "metrics") */
  bool tune;                 /* pick the hyper-parameters on a validation split first (eval.h) */
  double tune_seconds;       /* no trial starts after this long; 0: no limit */
  unsigned fixed;            /* TUNE_* bits: hyper-parameters the user set, which tuning keeps */
  bool quiet;
} build_opts;

#define ALS_PRIOR_MAX 1000.0f /* --als-popularity's largest: the factors dropped, popularity's order */

enum { TUNE_EASE_LAMBDA = 1, TUNE_TEMPERATURE = 2, TUNE_EPOCHS = 4, TUNE_REGULARIZATION = 8, TUNE_ALPHA = 16,
       TUNE_EASE_RECENCY = 32, TUNE_ALS_POPULARITY = 64 };

void build_opts_default(build_opts *o);

/* A trained model in serving form: unit item embeddings, the user tower's
 * input per user and its layers. ALS factors are mapped so that cosine
 * search returns exactly their inner-product order (one extra dimension). */
typedef struct trained {
  size_t n_items, n_users, dim, feature_dim, n_layers;
  float *item_emb;           /* [n_items x dim] */
  float *user_feat;          /* [n_users x feature_dim] */
  tower_layer layers[2];
  double loss;
  bool has_item_tower;       /* two-tower: the item tower, for items added live */
  tt_item_tower item_tower;
} trained;

/* Trains model o->model on R (users x items of d) with profiles p, showing
 * progress on stderr unless o->quiet:
 *  - "twotower": the two-tower network (twotower.h);
 *  - "als": implicit ALS (als.h), factors mapped to the serving form;
 *  - "ease": a rank-dim factorisation of EASE's weights 'ease' (fitted on R
 *    by the caller; ease_factorise): item j's vector is R[j], a user's the
 *    sum of L[i] over its items, so the ANN searches EASE's own scores
 *    approximately. Needs 'ease' with n_items == R->cols; the others ignore it.
 * On success fills *out (the caller frees it with trained_destroy) and
 * returns 0; else a negative code with 'err' filled and *out untouched. */
int  train_model(const dataset *d, const ui_matrix *R, const profiles *p, const build_opts *o,
                 const ease_table *ease, trained *out, rec_error *err);
void trained_destroy(trained *t);
/* Scores every item for user u into scores[n_items]: tower(u) . item.
 * Returns 0, or REC_EINVAL for a model wider than its stack buffers. */
int  trained_scores(const trained *t, uint32_t u, float *scores);

/* Sets the OpenMP thread count (0: all cores); OpenBLAS runs single-threaded. */
void train_threads(int n);
#endif
