/* retrieval/ann.c - FAISS C API behind an opaque handle. */
#include "retrieval/ann.h"

#include <faiss/c_api/AutoTune_c.h>
#include <faiss/c_api/Index_c.h>
#include <faiss/c_api/error_c.h>
#include <faiss/c_api/index_factory_c.h>
#include <faiss/c_api/index_io_c.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* GROUPED: recd's own view of an inverted file whose lists are contiguous
 * row ranges of an embedding matrix it does not own (index is NULL). */
enum { GROUPED = 3 };

struct ann_index {
  FaissIndex *index;
  int kind; /* ann__kind: 0 flat or other, 1 HNSW, 2 IVF; or GROUPED */
  size_t n, dim, nlist, nprobe;
  float *centroids;     /* GROUPED: [nlist x dim], owned */
  size_t *offsets;      /* GROUPED: [nlist + 1], owned */
  const float *vecs;    /* GROUPED: [n x dim], borrowed */
};

void ann__grouped_search(const float *centroids, size_t nlist, const size_t *offsets, const float *vecs, size_t d,
                         const float *q, int64_t k, int64_t nprobe, float *dist, int64_t *labels);
int ann__ivf_group(void *index, int64_t *order, size_t *sizes, float *centroids);
void *ann__ivf_from_lists(const float *centroids, size_t nlist, size_t d, const size_t *sizes, const float *vecs,
                          size_t n);
int64_t ann__scaled_nprobe(int64_t nprobe, int ef);

int ann__kind(const void *index);
int ann__nprobe(void *index, int set, int64_t *nprobe, int64_t *nlist);

static int wrap(FaissIndex *fi, ann_index **out, rec_error *err) {
  ann_index *a = calloc(1, sizeof *a);
  if (!a) {
    faiss_Index_free(fi);
    return rec_fail(err, REC_ENOMEM, "out of memory");
  }
  a->index = fi;
  a->kind = ann__kind(fi);
  *out = a;
  return 0;
}

int ann_index_new(size_t dim, const char *spec, ann_index **out, rec_error *err) {
  FaissIndex *fi = NULL;
  if (dim == 0 || dim > 4096) return rec_fail(err, REC_EINVAL, "dimension %zu out of range", dim);
  if (faiss_index_factory(&fi, (int)dim, spec, METRIC_INNER_PRODUCT) != 0)
    return rec_fail(err, REC_EINVAL, "FAISS index '%s': %s", spec, faiss_get_last_error());
  return wrap(fi, out, err);
}

/* One OpenMP thread while FAISS adds: HNSW inserts in parallel under
 * per-node locks, so which neighbour lists a vertex lands in depends on which
 * thread won a lock, and the same vectors give a different graph (another
 * index file, another recall) on every run. Alone, the insertion order and
 * the level draws (FAISS's fixed seeds) decide everything. The setting is
 * the calling thread's own and is restored after. */
int ann_index_add(ann_index *idx, const float *vecs, size_t n, rec_error *err) {
  if (!faiss_Index_is_trained(idx->index))
    return rec_fail(err, REC_EINVAL, "FAISS add: the index needs ann_index_train first");
  /* An inverted file assigns each vector on its own and appends to each
   * list in input order whatever the threads do: all of them may help. */
  int threads = omp_get_max_threads();
  if (idx->kind != 2) omp_set_num_threads(1);
  int rc = faiss_Index_add(idx->index, (idx_t)n, vecs);
  omp_set_num_threads(threads);
  if (rc != 0) return rec_fail(err, REC_EINVAL, "FAISS add: %s", faiss_get_last_error());
  return 0;
}

bool ann_needs_training(const ann_index *idx) { return !faiss_Index_is_trained(idx->index); }

int ann_index_train(ann_index *idx, const float *vecs, size_t n, rec_error *err) {
  if (faiss_Index_train(idx->index, (idx_t)n, vecs) != 0)
    return rec_fail(err, REC_EINVAL, "FAISS train: %s", faiss_get_last_error());
  return 0;
}

size_t ann_nprobe(const ann_index *idx, size_t *nlist) {
  if (idx->kind == GROUPED) {
    if (nlist) *nlist = idx->nlist;
    return idx->nprobe;
  }
  int64_t np = 0, nl = 0;
  if (idx->kind != 2 || ann__nprobe(idx->index, 0, &np, &nl) != 0) np = nl = 0;
  if (nlist) *nlist = (size_t)nl;
  return (size_t)np;
}

int ann_set_nprobe(ann_index *idx, size_t nprobe, rec_error *err) {
  if (idx->kind == GROUPED) {
    if (nprobe < 1 || nprobe > idx->nlist)
      return rec_fail(err, REC_EINVAL, "nprobe=%zu: must be in [1, %zu], the number of lists", nprobe, idx->nlist);
    idx->nprobe = nprobe;
    return 0;
  }
  int64_t np = (int64_t)nprobe, nl = 0;
  if (idx->kind != 2 || ann__nprobe(idx->index, 0, &np, &nl) != 0)
    return rec_fail(err, REC_EINVAL, "nprobe=%zu: needs an IVF index", nprobe);
  if (nprobe < 1 || nprobe > (size_t)nl)
    return rec_fail(err, REC_EINVAL, "nprobe=%zu: must be in [1, %lld], the number of lists", nprobe,
                    (long long)nl);
  np = (int64_t)nprobe;
  ann__nprobe(idx->index, 1, &np, &nl);
  return 0;
}

int ann__hnsw_ef_construction(void *index, int ef);

/* For bundle_write.c: HNSW's efConstruction for the adds that follow; the
 * 1.7.3 C API has no setter, so ann_ef.cpp reaches in. */
int ann__set_ef_construction(ann_index *idx, int ef, rec_error *err) {
  if (ef < 1 || ann__hnsw_ef_construction(idx->index, ef) != 0)
    return rec_fail(err, REC_EINVAL, "efConstruction=%d: needs an HNSW index", ef);
  return 0;
}

int ann_index_build(const float *vecs, size_t n, size_t dim, const char *spec,
                    ann_index **out, rec_error *err) {
  ann_index *idx;
  int rc = ann_index_new(dim, spec, &idx, err);
  if (rc) return rc;
  if ((ann_needs_training(idx) && (rc = ann_index_train(idx, vecs, n, err))) ||
      (rc = ann_index_add(idx, vecs, n, err))) {
    ann_index_free(idx);
    return rc;
  }
  *out = idx;
  return 0;
}

int ann_index_open(const char *path, ann_index **out, rec_error *err) {
  FaissIndex *fi = NULL;
  if (faiss_read_index_fname(path, 0, &fi) != 0)
    return rec_fail(err, REC_ECORRUPT, "%s: not a readable FAISS index: %s", path,
                    faiss_get_last_error());
  if (faiss_Index_metric_type(fi) != METRIC_INNER_PRODUCT) {
    faiss_Index_free(fi);
    return rec_fail(err, REC_EMISMATCH, "%s: index metric must be inner product", path);
  }
  return wrap(fi, out, err);
}

int ann_index_grouped(const float *centroids, size_t nlist, const size_t *sizes, const float *vecs, size_t n,
                      size_t dim, size_t nprobe, ann_index **out, rec_error *err) {
  if (nlist == 0 || dim == 0 || nprobe < 1 || nprobe > nlist)
    return rec_fail(err, REC_EINVAL, "inverted file: want lists >= 1, dim >= 1 and 1 <= nprobe <= lists");
  ann_index *a = calloc(1, sizeof *a);
  float *c = a ? malloc(nlist * dim * sizeof *c) : NULL;
  size_t *off = c ? malloc((nlist + 1) * sizeof *off) : NULL;
  if (!off) {
    free(a), free(c);
    return rec_fail(err, REC_ENOMEM, "out of memory");
  }
  off[0] = 0;
  for (size_t l = 0; l < nlist; l++) {
    if (sizes[l] > n - off[l]) {
      free(a), free(c), free(off);
      return rec_fail(err, REC_EMISMATCH, "inverted file: the lists hold more than the %zu vectors", n);
    }
    off[l + 1] = off[l] + sizes[l];
  }
  if (off[nlist] != n) {
    size_t held = off[nlist];
    free(a), free(c), free(off);
    return rec_fail(err, REC_EMISMATCH, "inverted file: the lists hold %zu vectors, not %zu", held, n);
  }
  memcpy(c, centroids, nlist * dim * sizeof *c);
  *a = (ann_index){.kind = GROUPED, .n = n, .dim = dim, .nlist = nlist, .nprobe = nprobe, .centroids = c,
                   .offsets = off, .vecs = vecs};
  *out = a;
  return 0;
}

int ann_ivf_group(ann_index *idx, int64_t *order, size_t *sizes, float *centroids, rec_error *err) {
  if (idx->kind != 2 || ann__ivf_group(idx->index, order, sizes, centroids) != 0)
    return rec_fail(err, REC_EINVAL, "grouping needs a filled IVF index with flat lists and labels 0..n-1");
  return 0;
}

int ann_ivf_from_lists(const float *centroids, size_t nlist, size_t dim, const size_t *sizes, const float *vecs,
                       size_t n, ann_index **out, rec_error *err) {
  size_t total = 0;
  for (size_t l = 0; l < nlist; l++) total += sizes[l];
  if (!nlist || !dim || total != n)
    return rec_fail(err, REC_EINVAL, "inverted file: %zu rows in %zu lists, but %zu vectors", total, nlist, n);
  void *fi = ann__ivf_from_lists(centroids, nlist, dim, sizes, vecs, n);
  if (!fi) return rec_fail(err, REC_ENOMEM, "inverted file: FAISS failed (out of memory?)");
  return wrap(fi, out, err);
}

int ann_index_write(const ann_index *idx, const char *path, rec_error *err) {
  if (idx->kind == GROUPED) return rec_fail(err, REC_EINVAL, "%s: a grouped view is not a FAISS index", path);
  if (faiss_write_index_fname(idx->index, path) != 0)
    return rec_fail(err, REC_EIO, "%s: %s", path, faiss_get_last_error());
  return 0;
}

void ann_index_free(ann_index *idx) {
  if (!idx) return;
  if (idx->index) faiss_Index_free(idx->index);
  free(idx->centroids);
  free(idx->offsets);
  free(idx);
}

size_t ann_count(const ann_index *idx) {
  return idx->kind == GROUPED ? idx->n : (size_t)faiss_Index_ntotal(idx->index);
}
size_t ann_dim(const ann_index *idx) { return idx->kind == GROUPED ? idx->dim : (size_t)faiss_Index_d(idx->index); }

int ann_set_ef_search(ann_index *idx, int ef, rec_error *err) {
  if (idx->kind == GROUPED) return rec_fail(err, REC_EINVAL, "efSearch=%d: an inverted file has none", ef);
  FaissParameterSpace *ps = NULL;
  if (faiss_ParameterSpace_new(&ps) != 0) return rec_fail(err, REC_ENOMEM, "out of memory");
  if (faiss_ParameterSpace_set_index_parameter(ps, idx->index, "efSearch", ef) != 0) {
    faiss_ParameterSpace_free(ps);
    return rec_fail(err, REC_EINVAL, "efSearch=%d: %s", ef, faiss_get_last_error());
  }
  faiss_ParameterSpace_free(ps);
  return 0;
}

int ann__search_ef(const void *index, const float *q, int64_t k, int ef, int faiss_own, float *dist,
                   int64_t *labels);

static int search(const ann_index *idx, const float *q, size_t k, int ef, int faiss_own, int64_t *items,
                  float *scores, size_t *n) {
  if (idx->kind == GROUPED) {
    ann__grouped_search(idx->centroids, idx->nlist, idx->offsets, idx->vecs, idx->dim, q, (int64_t)k,
                        ann__scaled_nprobe((int64_t)idx->nprobe, ef), scores, items);
  } else if (ann__search_ef(idx->index, q, (int64_t)k, ef, faiss_own, scores, items) != 0) {
    return REC_EINTERNAL;
  }
  size_t m = 0;
  while (m < k && items[m] >= 0) m++; /* FAISS pads short answers with label -1 */
  *n = m;
  return 0;
}

int ann_search_ef(const ann_index *idx, const float *q, size_t k, int ef, int64_t *items,
                  float *scores, size_t *n) {
  return search(idx, q, k, ef, 0, items, scores, n);
}

int ann_search(const ann_index *idx, const float *q, size_t k, int64_t *items, float *scores,
               size_t *n) {
  return search(idx, q, k, 0, 0, items, scores, n); /* 0: the index's own efSearch */
}

int ann_search_faiss(const ann_index *idx, const float *q, size_t k, int ef, int64_t *items, float *scores,
                     size_t *n) {
  return search(idx, q, k, ef, 1, items, scores, n);
}
