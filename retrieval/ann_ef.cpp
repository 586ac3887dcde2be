// retrieval/ann_ef.cpp - what FAISS 1.7.3's C API lacks that recd needs: an
// HNSW search with its own efSearch for a single call (the C API only sets
// it on the shared index) that reuses its visited table and scores with a
// vectorised inner product, and efConstruction for a build (the C API
// cannot set it at all). A FaissIndex* is a faiss::Index*.
#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/impl/AuxIndexStructures.h>
#include <faiss/impl/HNSW.h>
#include <faiss/impl/NSG.h>
#include <faiss/utils/Heap.h>

#include <cstdint>
#include <cstring>
#include <memory>

namespace {

// The inner product HNSW's walk spends most of its time in. Debian's
// libfaiss.a is a generic build whose kernel is a scalar loop; this one
// keeps eight partial sums in a vector and is compiled twice, for AVX2 and
// for the baseline, picked once by what the CPU has. Both add in the same
// order without fused multiply-adds, so every machine gets the same bits.
typedef float v8 __attribute__((vector_size(32)));

#define REC_DOT_BODY                                                                                      \
  v8 acc = {0, 0, 0, 0, 0, 0, 0, 0};                                                                    \
  size_t i = 0;                                                                                         \
  for (; i + 8 <= d; i += 8) {                                                                          \
    v8 x, y;                                                                                            \
    std::memcpy(&x, a + i, sizeof x);                                                                   \
    std::memcpy(&y, b + i, sizeof y);                                                                   \
    acc += x * y;                                                                                       \
  }                                                                                                     \
  float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));         \
  for (; i < d; i++) s += a[i] * b[i];                                                                  \
  return s;

__attribute__((target("avx2"))) float dot_avx2(const float *a, const float *b, size_t d) { REC_DOT_BODY }
float dot_base(const float *a, const float *b, size_t d) { REC_DOT_BODY }

float dot(const float *a, const float *b, size_t d) {
  static float (*const best)(const float *, const float *, size_t) =
      __builtin_cpu_supports("avx2") ? dot_avx2 : dot_base;
  return best(a, b, d);
}

// HNSW ranks by "distance", smaller first: the negated inner product with
// each stored vector, as FAISS's own computer for an inner-product index.
struct NegativeInnerProduct : faiss::DistanceComputer {
  const float *xb;
  size_t d;
  const float *q = nullptr;
  NegativeInnerProduct(const float *vectors, size_t dim) : xb(vectors), d(dim) {}
  void set_query(const float *x) override { q = x; }
  float operator()(idx_t i) override { return -dot(q, xb + i * d, d); }
  float symmetric_dis(idx_t i, idx_t j) override { return -dot(xb + i * d, xb + j * d, d); }
};

// The distance computer for 'h''s storage: ours for a flat inner-product
// store, FAISS's for anything else.
faiss::DistanceComputer *distances(const faiss::IndexHNSW *h) {
  const auto *flat = dynamic_cast<const faiss::IndexFlat *>(h->storage);
  if (flat != nullptr && flat->metric_type == faiss::METRIC_INNER_PRODUCT)
    return new NegativeInnerProduct(flat->get_xb(), static_cast<size_t>(flat->d));
  return faiss::nsg::storage_distance_computer(h->storage);
}

// One visited table per thread, reused by every search on that thread.
// FAISS's own IndexHNSW::search allocates and zeroes one byte per indexed
// item on every call, a cost that grows with the catalog (a quarter of the
// CPU at a million items). HNSW::search ends with VisitedTable::advance(),
// which makes the marks of the search before stale without touching the
// bytes (it clears them once every 249 searches), so reuse is exact.
thread_local std::unique_ptr<faiss::VisitedTable> tl_visited;

faiss::VisitedTable &visited(faiss::Index::idx_t n) {
  if (!tl_visited || tl_visited->visited.size() < static_cast<size_t>(n))
    tl_visited.reset(new faiss::VisitedTable(static_cast<int>(n)));
  return *tl_visited;
}

}  // namespace

// ef <= 0: the index's own efSearch. faiss_own: FAISS's stock
// IndexHNSW::search instead (for comparison). Returns 0, or -1 when FAISS threw.
extern "C" int ann__search_ef(const void *index, const float *q, int64_t k, int ef, int faiss_own, float *dist,
                              int64_t *labels) {
  try {
    const auto *idx = static_cast<const faiss::Index *>(index);
    const auto *h = dynamic_cast<const faiss::IndexHNSW *>(idx);
    faiss::SearchParametersHNSW p;
    p.efSearch = ef;
    const faiss::SearchParametersHNSW *params = ef > 0 ? &p : nullptr;
    if (faiss_own || h == nullptr || h->storage == nullptr ||
        (h->reconstruct_from_neighbors != nullptr && h->reconstruct_from_neighbors->k_reorder != 0)) {
      if (h == nullptr || params == nullptr) idx->search(1, q, k, dist, labels);  // no breadth to trade
      else idx->search(1, q, k, dist, labels, params);
      return 0;
    }
    // IndexHNSW::search for one query, on one thread, with the table above
    // and our inner product.
    std::unique_ptr<faiss::DistanceComputer> dis(distances(h));
    dis->set_query(q);
    faiss::maxheap_heapify(k, dist, labels);
    h->hnsw.search(*dis, static_cast<int>(k), labels, dist, visited(h->ntotal), params);
    faiss::maxheap_reorder(k, dist, labels);
    if (h->metric_type == faiss::METRIC_INNER_PRODUCT)  // HNSW ranks negated inner products
      for (int64_t i = 0; i < k; i++) dist[i] = -dist[i];
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
