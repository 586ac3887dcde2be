// retrieval/ann_ef.cpp - the one thing FAISS 1.7.3's C API lacks that recd
// needs: an HNSW search with its own efSearch for a single call (the C API
// only sets it on the shared index). A FaissIndex* is a faiss::Index*.
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
