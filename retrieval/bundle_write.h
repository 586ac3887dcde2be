/* retrieval/bundle_write.h - writes a bundle directory (docs/bundle.md) from
 * in-memory arrays: the one way bundles are made, by `recctl synth` today and
 * by the trainer later. The directory appears complete or not at all: files go
 * to a temporary sibling that is renamed into place last. */
#ifndef REC_BUNDLE_WRITE_H
#define REC_BUNDLE_WRITE_H
#include <stdbool.h>
#include <stddef.h>
#include "common/err.h"
#include "retrieval/tower.h"

/* A further file for the bundle: write() creates 'path'; the writer lists
 * it in the manifest with its size and checksum like every other file. */
typedef struct bundle_extra {
  const char *name;                   /* plain file name, e.g. "item_cf.tsv" */
  const char *manifest_key;           /* top-level manifest key naming it, or NULL */
  int (*write)(const char *path, void *arg, rec_error *err);
  void *arg;
} bundle_extra;

/* The item tower, so that recd can embed an item the model never saw (a
 * live catalog addition): per category (by name) the mean id embedding of
 * its items and its category embedding, the price-bucket embeddings with
 * the buckets' upper edges, and the layers (docs/bundle.md). */
typedef struct bundle_item_tower {
  size_t n_categories, id_dim, cat_dim, n_buckets, price_dim;
  const char *const *categories;      /* [n_categories] names, the rows' order */
  const float *cat_id;                /* [n_categories x id_dim] */
  const float *cat_emb;               /* [n_categories x cat_dim] */
  const float *price_emb;             /* [n_buckets x price_dim] */
  const float *price_edges;           /* [n_buckets - 1]: bucket b holds prices up to edges[b] */
  size_t n_layers;
  const tower_layer *layers;          /* id_dim + cat_dim + price_dim -> ... -> dim */
} bundle_item_tower;

typedef struct bundle_spec {
  const char *version;                /* 1..128 bytes; NULL: "<version_prefix>-" + a hash
                                       * of every file's content */
  const char *version_prefix;         /* used when version is NULL; NULL: "bundle" */
  size_t dim;
  size_t item_count;
  const char *const *item_ids;        /* [item_count], unique, no tabs or newlines */
  const char *const *item_categories; /* [item_count] */
  const float *item_price;            /* [item_count] */
  const bool *item_in_stock;          /* [item_count] */
  const float *item_popularity;       /* [item_count] */
  const float *item_margin;           /* [item_count] or NULL: no margin column */
  const float *item_emb;              /* [item_count x dim], L2-normalised rows */
  size_t user_count, feature_dim;
  const char *const *user_ids;        /* [user_count] */
  const float *user_features;         /* [user_count x feature_dim] */
  size_t n_layers;
  const tower_layer *layers;          /* feature_dim -> ... -> dim */
  const char *index_type;             /* FAISS factory string: "Flat", "HNSW32", ... */
  int ef_search;                      /* HNSW search breadth recorded in the manifest;
                                       * 0: from item_count (bundle_hnsw_ef_search) */
  int ef_construction;                /* HNSW build breadth; 0: from item_count
                                       * (bundle_hnsw_ef_construction) */
  const bundle_item_tower *item_tower; /* NULL: none (ALS, imported models) */
  const bundle_extra *extras;         /* more files, may be NULL */
  size_t n_extras;
  const char *manifest_json;          /* a JSON object whose keys are added to the
                                       * manifest ("training", "metrics", ...), or NULL */
  void (*progress)(void *arg, size_t indexed, size_t total); /* index build; may be NULL */
  void *progress_arg;
} bundle_spec;

/* Writes the bundle to directory 'dir', which must not exist yet. Returns 0,
 * or a negative code with 'err' filled and nothing left at 'dir'. The same
 * spec gives the same bytes in every file, whatever the thread count. */
int bundle_write(const char *dir, const bundle_spec *s, rec_error *err);

/* The HNSW breadths a bundle of 'items' items gets when the spec leaves them
 * 0: wide enough that recd's load-time recall check (recall@10 >= 0.9 against
 * exact search) passes with a margin on clustered catalogs (docs/bundle.md). */
int bundle_hnsw_ef_search(size_t items);
int bundle_hnsw_ef_construction(size_t items);

/* The index a catalog of 'items' items gets when nothing is asked for: exact
 * search up to BUNDLE_FLAT_MAX items, above that an inverted file of
 * bundle_ivf_lists(items) lists: k-means, then nprobe tuned when written to
 * find BUNDLE_IVF_RECALL of the exact top 100 of the user tower's queries.
 * It builds in seconds where HNSW takes minutes per million items, and at a
 * candidate depth of 500 costs a third of HNSW32's CPU per search at the
 * same recall@100 (docs/bundle.md). Writes into buf. */
#define BUNDLE_FLAT_MAX 20000
#define BUNDLE_IVF_RECALL 0.95
const char *bundle_default_index(size_t items, char *buf, size_t len);
size_t bundle_ivf_lists(size_t items);

/* For the other bundle writers (bundle_shard.c): records 'name' in the
 * manifest's "files" object with its size and XXH3-64, read from disk;
 * writes dir/manifest.json; removes a directory of plain files. */
struct cJSON;
int  bundle__list_file(struct cJSON *files, const char *dir, const char *name, rec_error *err);
int  bundle__write_manifest(const char *dir, struct cJSON *m, rec_error *err);
void bundle__remove_tree(const char *dir);
#endif
