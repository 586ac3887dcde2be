/* tools/offline/twotower.h - the two-tower retrieval model and its trainer.
 *
 * Item tower: [item-id embedding; category embedding; price-bucket embedding]
 *   -> dense(relu) -> dense -> L2-normalised d-vector.
 * User tower: [strength-weighted mean of the id embeddings of the user's
 *   recent items; log mean price; spending segment one-hot]
 *   -> dense(relu) -> dense -> L2-normalised d-vector.
 * The id embeddings are shared by both towers. Training: in-batch sampled
 * softmax over cosine / temperature with the log-Q correction (each logit
 * minus the log of its item's sampling probability), positives weighted by
 * strength, same-item in-batch negatives masked, the target item left out of
 * its own user's history pool; Adam on every parameter (lazily on embedding
 * rows); forward and backward passes are OpenBLAS sgemm. Deterministic for a
 * fixed seed and thread count. A trained model is read-only: its const
 * functions may run from several threads at once. */
#ifndef REC_TWOTOWER_H
#define REC_TWOTOWER_H
#include <stddef.h>
#include <stdint.h>
#include "common/err.h"
#include "retrieval/tower.h"
#include "tools/offline/dataset.h"
#include "tools/offline/features.h"

typedef struct tt_opts {
  size_t dim;             /* output dimension, e.g. 64 */
  size_t id_dim;          /* id embedding dimension, e.g. 64 */
  size_t hidden;          /* hidden layer width, e.g. 128 */
  int epochs;             /* e.g. 10 */
  size_t batch;           /* e.g. 512 */
  float lr;               /* Adam learning rate, e.g. 0.003 */
  float temperature;      /* softmax temperature, e.g. 0.07 */
  uint64_t seed;
  void (*progress)(void *arg, int epoch, double loss); /* after each epoch; may be NULL */
  void *progress_arg;
} tt_opts;

typedef struct tt_model tt_model; /* opaque */

/* Trains on the (user, item) pairs of R (the training split's strength
 * matrix); 'p' gives each user's recent items and segment. */
int  tt_train(const dataset *d, const ui_matrix *R, const profiles *p, const tt_opts *o,
              tt_model **out, rec_error *err);
void tt_free(tt_model *m);                                  /* NULL is a no-op */

/* Item-tower outputs for every catalog item: [n_items x dim], unit rows. */
int  tt_item_embeddings(const tt_model *m, float *out);
/* The user tower's input for user u (its pooled recent items and features),
 * [tt_user_feature_dim]. */
size_t tt_user_feature_dim(const tt_model *m);
void tt_user_features(const tt_model *m, const profiles *p, uint32_t u, float *out);
/* Copies of the user tower's layers for a bundle (caller frees w and b). */
int  tt_user_tower(const tt_model *m, tower_layer layers[2]);
/* The item tower in a form recd can run on an item it never saw (a live
 * catalog addition, docs/catalog.md): per category of 'd' (its
 * category_idx order) the mean id embedding of its items and the category
 * embedding, the price-bucket embeddings and their edges (bucket b holds
 * prices above edges[b-1] up to edges[b]), and the two layers. Every array
 * is malloc'd; tt_item_tower_destroy frees them. */
typedef struct tt_item_tower {
  size_t n_categories, id_dim, cat_dim, n_buckets, price_dim;
  float *cat_id;             /* [n_categories x id_dim] */
  float *cat_emb;            /* [n_categories x cat_dim] */
  float *price_emb;          /* [n_buckets x price_dim] */
  float *price_edges;        /* [n_buckets - 1] */
  tower_layer layers[2];     /* id_dim + cat_dim + price_dim -> hidden (relu) -> dim */
} tt_item_tower;
int  tt_item_tower_export(const tt_model *m, const dataset *d, tt_item_tower *out);
void tt_item_tower_destroy(tt_item_tower *t);

/* Mean training loss of the last epoch. */
double tt_last_loss(const tt_model *m);
#endif
