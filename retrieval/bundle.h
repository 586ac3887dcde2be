/* retrieval/bundle.h - a loaded, verified, immutable model bundle (format in
 * docs/bundle.md): catalog, item embeddings, user features, user tower and
 * FAISS index. Reference-counted: a reload loads a new bundle beside the old
 * one, swaps a pointer, and the old one is freed when the last request
 * holding it lets go. All read functions are thread-safe. */
#ifndef REC_BUNDLE_H
#define REC_BUNDLE_H
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "common/catalog.h"
#include "common/err.h"
#include "retrieval/ann.h"
#include "retrieval/signals.h"
#include "retrieval/tower.h"

#define BUNDLE_FORMAT 1
#define BUNDLE_MANIFEST "manifest.json"

/* The item tower of a two-tower bundle (manifest "item_tower"), for items
 * added live: inputs per catalog category and per price bucket. */
typedef struct bundle_item_tower_rt {
  tower t;
  size_t id_dim, cat_dim, price_dim, n_buckets;
  float *cat_inputs;         /* [catalog categories x (id_dim + cat_dim)] */
  uint8_t *has_cat;          /* [catalog categories]: 1 when the tower knows it */
  float *price_emb;          /* [n_buckets x price_dim] */
  float *price_edges;        /* [n_buckets - 1] */
} bundle_item_tower_rt;

typedef struct bundle {
  char *version;             /* manifest "version" */
  char *path;                /* directory it was loaded from */
  size_t dim;                /* embedding dimension */
  catalog *catalog;
  float *item_emb;           /* [catalog->count x dim], rows L2-normalised */
  size_t user_count, feature_dim;
  const char **user_ids;     /* [user_count] */
  float *user_features;      /* [user_count x feature_dim] user-tower inputs */
  tower tower;               /* feature_dim -> dim */
  ann_index *ann;
  char index_type[32];       /* FAISS factory string, e.g. "HNSW32" */
  signals sig;               /* item-CF, popularity lists, profiles, repurchase cycles */
  uint8_t *shard_keep;       /* [count] 1 for the items this shard serves; NULL: all */
  uint32_t shard, shards;    /* this shard's index and the shard count (0 of 1: unsharded) */
  bool partition;            /* the bundle holds only shard 'shard' of 'shards' (manifest "partition",
                              * recctl shard); else the whole catalog, masked by shard_keep */
  int ef_search;
  bundle_item_tower_rt *item_tower; /* NULL: the bundle has none (ALS, imported) */
  struct bundle *parent;     /* bundle_view: the loaded bundle this one shares all but its catalog with */
  _Atomic uint32_t **added_events; /* a view: events so far per added row ([bundle_added]), or NULL; the
                                    * counters belong to whoever made the view, the array to the view */
  /* private */
  bool own_emb, own_cycle, own_keep; /* a view's own copies (rows added live) */
  strmap *user_map;
  char *user_text;
  atomic_int refs;           /* last: bundle_view copies everything before it */
} bundle;

/* Loads the bundle in directory 'dir': checks every file's size and checksum
 * against the manifest, then every shape against every other. Returns 0 with
 * *out holding one reference, or a negative code with 'err' naming the file
 * and what is wrong; nothing is left allocated on failure. */
int  bundle_load(const char *dir, bundle **out, rec_error *err);
/* Smoke test before a bundle may serve: 'queries' item embeddings (spread
 * over the catalog) searched through the index and exactly; fails with
 * REC_ECORRUPT when the mean recall@k of the index is below 'floor'. */
int  bundle_check_recall(const bundle *b, size_t queries, size_t k, double floor, double *recall,
                         rec_error *err);
/* Makes this bundle serve shard 'shard' of 'shards': the items whose id
 * hashes (XXH3-64) to it modulo 'shards' (of a partition, which holds only
 * those, the items added live). Call before sharing the bundle.
 * REC_EMISMATCH: the bundle is another shard's partition. */
int  bundle_set_shard(bundle *b, uint32_t shard, uint32_t shards, rec_error *err);
/* The shard an item id belongs to. */
uint32_t bundle_shard_of(const char *id, uint32_t shards);
/* A bundle serving 'cat' (catalog_derive of base->catalog, taken over)
 * and otherwise sharing 'base' (the loaded bundle, of which it holds a
 * reference). Rows 'cat' added past the base's get embeddings from
 * 'added_emb' ([added x dim], unit rows; copied), repurchase cycle 0, and
 * the shard their id hashes to. The base's HNSW index does not hold them:
 * retrieval searches them exactly (bundle_added). Returns 0 or REC_ENOMEM;
 * on failure 'cat' is freed. */
int  bundle_view(bundle *base, catalog *cat, const float *added_emb, bundle **out, rec_error *err);
/* The loaded bundle behind 'b' (itself unless a view). */
static inline const struct bundle *bundle_base(const struct bundle *b) { return b->parent ? b->parent : b; }
/* Rows added live, past the base's own ([base rows, count)). */
static inline size_t bundle_added(const struct bundle *b) {
  return b->catalog->count - bundle_base(b)->catalog->count;
}
/* The embedding the bundle's item tower gives an item of catalog category
 * 'category' at 'price' that the model never saw (its id embedding is the
 * mean of its category's): out[dim], unit norm. REC_ENOTFOUND when the
 * bundle has no item tower or it does not know the category. Thread-safe. */
int  bundle_embed_item(const bundle *b, uint32_t category, float price, float *out);
bundle *bundle_ref(bundle *b);
void bundle_unref(bundle *b);                          /* NULL is a no-op */

/* True and *row set when the user id is in the bundle. */
bool bundle_find_user(const bundle *b, const char *id, size_t len, uint32_t *row);
static inline const float *bundle_user_features(const bundle *b, uint32_t row) {
  return b->user_features + (size_t)row * b->feature_dim;
}
static inline const float *bundle_item_embedding(const bundle *b, uint32_t item) {
  return b->item_emb + (size_t)item * b->dim;
}
#endif
