/* retrieval/ann.h - nearest-item search over a read-only FAISS index of
 * L2-normalised item embeddings (inner product = cosine). The only module that
 * includes FAISS. Searches on one index are thread-safe; a reload opens a new
 * index and swaps the bundle holding it. */
#ifndef REC_ANN_H
#define REC_ANN_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "common/err.h"

typedef struct ann_index ann_index; /* opaque */

/* An empty index for vectors of 'dim' floats. 'spec' is a FAISS
 * index_factory string such as "HNSW32" or "Flat"; the metric is always inner
 * product. Returns 0 or REC_EINVAL/REC_ENOMEM. */
int  ann_index_new(size_t dim, const char *spec, ann_index **out, rec_error *err);
/* Appends 'n' row-major vectors; they get the next labels in order. */
int  ann_index_add(ann_index *idx, const float *vecs, size_t n, rec_error *err);
/* An inverted file ("IVF<lists>,Flat") must learn its lists' centroids
 * (k-means over 'vecs', a sample of what will be added) before the first add;
 * other kinds need nothing. FAISS's fixed seed makes it deterministic. */
bool ann_needs_training(const ann_index *idx);
int  ann_index_train(ann_index *idx, const float *vecs, size_t n, rec_error *err);
/* ann_index_new (+ training on all of 'vecs') + ann_index_add: row i of 'vecs'
 * gets label i. */
int  ann_index_build(const float *vecs, size_t n, size_t dim, const char *spec,
                     ann_index **out, rec_error *err);
/* Opens an index file written by ann_index_write. */
int  ann_index_open(const char *path, ann_index **out, rec_error *err);
int  ann_index_write(const ann_index *idx, const char *path, rec_error *err);
void ann_index_free(ann_index *idx);                   /* NULL is a no-op */

size_t ann_count(const ann_index *idx);
size_t ann_dim(const ann_index *idx);
/* Sets HNSW's efSearch (search breadth); REC_EINVAL for an index without it.
 * Call before sharing the index between threads. */
int  ann_set_ef_search(ann_index *idx, int ef, rec_error *err);

/* An inverted file's lists probed per search (its recall-for-cost knob, as
 * efSearch is HNSW's) and, in *nlist, how many lists it has; 0 for other
 * kinds. ann_set_nprobe: REC_EINVAL outside [1, lists] or for other kinds.
 * Call before sharing the index between threads. */
size_t ann_nprobe(const ann_index *idx, size_t *nlist);
int  ann_set_nprobe(ann_index *idx, size_t nprobe, rec_error *err);

/* An inverted file kept as recd's own view: 'nlist' centroids ([nlist x
 * dim], copied) and 'vecs' ([n x dim], borrowed: it must outlive the index)
 * whose rows are grouped by list, list l holding the next sizes[l] rows.
 * The same answers as the FAISS index it was grouped from (ann_ivf_group),
 * without a second copy of the vectors. It cannot be written. */
int  ann_index_grouped(const float *centroids, size_t nlist, const size_t *sizes, const float *vecs, size_t n,
                       size_t dim, size_t nprobe, ann_index **out, rec_error *err);
/* Renumbers a filled IVF index's vectors list by list (list 0's first, each
 * list in its order): writes order[new label] = old label, sizes[nlist] and
 * the centroids [nlist x dim]. The caller then stores its rows in that
 * order. REC_EINVAL for other indexes. */
int  ann_ivf_group(ann_index *idx, int64_t *order, size_t *sizes, float *centroids, rec_error *err);
/* The inverse: an IVF index ("IVF<nlist>,Flat", FAISS's own, writable)
 * whose lists are given rather than learnt: 'centroids' [nlist x dim] and
 * 'vecs' [n x dim] already grouped by list (sizes[l] rows of list l in
 * turn; label = row). A shard's partition keeps the whole bundle's lists,
 * each with only its own rows. REC_EINVAL when the sizes do not add up to n. */
int  ann_ivf_from_lists(const float *centroids, size_t nlist, size_t dim, const size_t *sizes, const float *vecs,
                        size_t n, ann_index **out, rec_error *err);

/* As ann_search, with HNSW's search breadth 'ef' for this call only (fewer
 * nodes visited: faster, less exact; 0: the index's own). Other index types
 * ignore 'ef', except an inverted file, which probes nprobe * ef / 128 lists
 * (at least one) when 0 < ef < 128. An HNSW search reuses its thread's
 * visited table, so its cost does not grow with the number of items indexed;
 * an inverted file scans nprobe lists with a vectorised inner product. */
int  ann_search_ef(const ann_index *idx, const float *q, size_t k, int ef, int64_t *items,
                   float *scores, size_t *n);

/* As ann_search_ef through FAISS's stock IndexHNSW::search (its scalar
 * inner product, a visited table allocated per search), for comparisons in
 * tests and benchmarks; the answers are the same up to rounding. */
int  ann_search_faiss(const ann_index *idx, const float *q, size_t k, int ef, int64_t *items, float *scores,
                      size_t *n);

/* The inner product the index's own searches rank by (eight partial sums,
 * no fused multiply-adds: the same bits on every machine), for exact scans
 * that must agree with them. */
float ann_dot(const float *a, const float *b, size_t dim);

/* Writes up to k nearest items, best first, into caller-owned 'items' and
 * 'scores' (k entries each) and their count into *n. Returns 0 or REC_EINTERNAL. */
int  ann_search(const ann_index *idx, const float *q, size_t k, int64_t *items, float *scores,
                size_t *n);
#endif
