/* retrieval/bundle_shard.h - a shard's partition of a bundle (`recctl
 * shard`, docs/bundle.md): a bundle directory holding only the items whose
 * id hashes (XXH3-64) to the shard, so that N retrieval shards use about
 * 1/N of the memory of one. It keeps:
 *   items.tsv, item_embeddings.npy   the shard's rows, in the whole's order;
 *   index.faiss                      a grouped inverted file keeps the
 *                                    whole's centroids and nprobe, its lists
 *                                    holding only the shard's rows (merged,
 *                                    the shards find what the whole finds);
 *                                    any other index is built again;
 *   item_cf.tsv, ease.tsv            rows whose neighbour is the shard's
 *                                    (the seed may be any item);
 *   popularity.tsv                   rows of the shard's items;
 *   users, user features, towers     copied (the user tower runs on every
 *                                    shard);
 * and leaves out profiles, purchases and repurchase cycles, which only the
 * ranking tier reads (it loads the whole bundle). The manifest's
 * "partition" names the shard, the count and every category of the whole. */
#ifndef REC_BUNDLE_SHARD_H
#define REC_BUNDLE_SHARD_H
#include <stddef.h>
#include <stdint.h>
#include "common/err.h"
#include "retrieval/bundle.h"

/* Writes shard 'shard' of 'shards' of the loaded whole bundle 'b' (read
 * again from b->path for its tables) to directory 'dir', which must not
 * exist; like bundle_write, it appears complete or not at all. *items (may
 * be NULL) gets the rows kept. Returns 0 or a negative code with 'err'. */
int bundle_write_partition(const bundle *b, uint32_t shard, uint32_t shards, const char *dir, size_t *items,
                           rec_error *err);
#endif
