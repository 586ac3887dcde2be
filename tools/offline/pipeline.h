/* tools/offline/pipeline.h - `recctl build` and `recctl import`: from CSVs to
 * a served bundle. Loads and cleans the data, derives item-CF, popularity,
 * profiles and repurchase cycles, records a holdout measurement (eval.h),
 * trains the model (train.h) and writes the bundle atomically (a temporary
 * directory renamed when complete). The top of the trainer's one-way order
 * train -> eval -> pipeline. Single-threaded callers; see train_threads. */
#ifndef REC_PIPELINE_H
#define REC_PIPELINE_H
#include <stddef.h>
#include "common/err.h"
#include "tools/offline/train.h"

/* Builds the bundle at o->out, which must not exist yet (REC_EINVAL if it
 * does). Returns 0, or a negative code with 'err' filled; a failed build
 * leaves nothing at o->out. */
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
