// retrieval/ann_ef.cpp - the two HNSW knobs FAISS 1.7.3's C API lacks that
// recd needs: a search with its own efSearch for a single call (the C API
// only sets it on the shared index), and efConstruction for a build (the C
// API cannot set it at all). A FaissIndex* is a faiss::Index*.
#include <faiss/IndexHNSW.h>
#include <faiss/impl/HNSW.h>

#include <cstdint>

extern "C" int ann__search_ef(const void *index, const float *q, int64_t k, int ef, float *dist,
                              int64_t *labels) {
  try {
    const auto *idx = static_cast<const faiss::Index *>(index);
    if (dynamic_cast<const faiss::IndexHNSW *>(idx) == nullptr) {
      idx->search(1, q, k, dist, labels);  // no breadth to trade for time
      return 0;
    }
    faiss::SearchParametersHNSW p;
    p.efSearch = ef;
    idx->search(1, q, k, dist, labels, &p);
    return 0;
  } catch (...) {
    return -1;
  }
}

// -1 for an index that is not HNSW.
extern "C" int ann__hnsw_ef_construction(void *index, int ef) {
  auto *idx = dynamic_cast<faiss::IndexHNSW *>(static_cast<faiss::Index *>(index));
  if (idx == nullptr) return -1;
  idx->hnsw.efConstruction = ef;
  return 0;
}
