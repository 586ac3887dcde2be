/* retrieval/ann.c - FAISS C API behind an opaque handle. */
#include "retrieval/ann.h"

#include <faiss/c_api/AutoTune_c.h>
#include <faiss/c_api/Index_c.h>
#include <faiss/c_api/error_c.h>
#include <faiss/c_api/index_factory_c.h>
#include <faiss/c_api/index_io_c.h>
#include <omp.h>
#include <stdlib.h>

struct ann_index {
  FaissIndex *index;
};

static int wrap(FaissIndex *fi, ann_index **out, rec_error *err) {
  ann_index *a = malloc(sizeof *a);
  if (!a) {
    faiss_Index_free(fi);
    return rec_fail(err, REC_ENOMEM, "out of memory");
  }
  a->index = fi;
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
  int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  int rc = faiss_Index_add(idx->index, (idx_t)n, vecs);
  omp_set_num_threads(threads);
  if (rc != 0) return rec_fail(err, REC_EINVAL, "FAISS add: %s", faiss_get_last_error());
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
  if ((rc = ann_index_add(idx, vecs, n, err))) {
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

int ann_index_write(const ann_index *idx, const char *path, rec_error *err) {
  if (faiss_write_index_fname(idx->index, path) != 0)
    return rec_fail(err, REC_EIO, "%s: %s", path, faiss_get_last_error());
  return 0;
}

void ann_index_free(ann_index *idx) {
  if (!idx) return;
  faiss_Index_free(idx->index);
  free(idx);
}

size_t ann_count(const ann_index *idx) { return (size_t)faiss_Index_ntotal(idx->index); }
size_t ann_dim(const ann_index *idx) { return (size_t)faiss_Index_d(idx->index); }

int ann_set_ef_search(ann_index *idx, int ef, rec_error *err) {
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
  if (ann__search_ef(idx->index, q, (int64_t)k, ef, faiss_own, scores, items) != 0) return REC_EINTERNAL;
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
