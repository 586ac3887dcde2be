/* tools/pipeline.h - `recctl build`: from an interactions CSV and a catalog
 * CSV to a served bundle. Loads and cleans the data, trains the chosen model
 * (two-tower or ALS), derives item-CF neighbours, popularity, profiles and
 * repurchase cycles, measures the model on a per-user holdout, and writes the
 * bundle atomically (a temporary directory renamed when complete). Also the
 * model-training step `recctl eval` shares. */
#ifndef REC_PIPELINE_H
#define REC_PIPELINE_H
#include <stdbool.h>
#include <stddef.h>
#include "retrieval/tower.h"
#include "tools/als.h"
#include "tools/dataset.h"
#include "tools/features.h"
#include "tools/twotower.h"

typedef struct build_opts {
  const char *interactions, *catalog, *out;
  ds_schema schema;
  const char *model;         /* "twotower" (default) or "als" */
  tt_opts tt;
  als_opts als;
  size_t itemcf_neighbours;  /* per item, default 50 */
  double half_life_days;     /* popularity decay; 0: none */
  size_t recent_max;         /* recent items kept per user, default 50 */
  const char *index_type;    /* NULL: "Flat" up to 20000 items, else "HNSW32" */
  int ef_search;
  const char *version;       /* NULL: "<model>-<content hash>" */
  int threads;               /* OpenMP/OpenBLAS threads; 0: all cores */
  bool evaluate;             /* measure on a per-user holdout first (manifest "metrics") */
  bool quiet;
} build_opts;

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
} trained;

int  pipeline_train(const dataset *d, const ui_matrix *R, const profiles *p, const build_opts *o,
                    trained *out, rec_error *err);
void trained_destroy(trained *t);
/* Scores every item for user u into scores[n_items]: tower(u) . item. */
int  trained_scores(const trained *t, uint32_t u, float *scores);

/* Sets the OpenMP thread count (0: all cores); OpenBLAS runs single-threaded. */
void pipeline_threads(int n);

int pipeline_build(const build_opts *o, rec_error *err);

/* `recctl import`: a bundle from item embeddings and a user tower trained
 * elsewhere (.npy files) plus the catalog CSV; with b.interactions, also the
 * item-CF, popularity and profile files. b.model is recorded as "import". */
typedef struct import_opts {
  build_opts b;
  const char *item_embeddings;   /* (n_items, dim), rows in catalog order */
  const char *users;             /* one user id per line */
  const char *user_features;     /* (n_users, feature_dim) */
  const char *layers[2];         /* "W.npy:B.npy:activation", W is (in, out) */
  size_t n_layers;
} import_opts;

int pipeline_import(const import_opts *o, rec_error *err);
#endif
