// retrieval/ann_ef.cpp - what FAISS 1.7.3's C API lacks that recd needs: an
// HNSW search with its own efSearch for a single call (the C API only sets
// it on the shared index) that reuses its visited table and scores with a
// vectorised inner product, and efConstruction for a build (the C API
// cannot set it at all). A FaissIndex* is a faiss::Index*.
#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/impl/AuxIndexStructures.h>
#include <faiss/impl/HNSW.h>
#include <faiss/impl/NSG.h>
#include <faiss/utils/Heap.h>

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

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

// A scored vector kept by a search: its score, label and scan position.
struct Hit {
  float s;
  int64_t id;
  size_t at;
};
thread_local std::vector<Hit> tl_hits;
thread_local std::vector<float> tl_scores;

// out[i] = x[i] . q for n row-major vectors: one matrix-vector product,
// OpenBLAS's kernel for the CPU it runs on.
void scores(const float *x, size_t n, const float *q, size_t d, float *out) {
  cblas_sgemv(CblasRowMajor, CblasNoTrans, static_cast<blasint>(n), static_cast<blasint>(d), 1.0f, x,
              static_cast<blasint>(d), q, 1, 0.0f, out, 1);
}
thread_local std::vector<float> tl_coarse_d;
thread_local std::vector<int64_t> tl_coarse_i;

// The nprobe lists whose centroids score best against q, best first.
int64_t coarse(const float *centroids, size_t nlist, const float *q, size_t d, int64_t nprobe) {
  if (nprobe > static_cast<int64_t>(nlist)) nprobe = static_cast<int64_t>(nlist);
  if (nprobe < 1) nprobe = 1;
  tl_coarse_d.resize(static_cast<size_t>(nprobe));
  tl_coarse_i.resize(static_cast<size_t>(nprobe));
  float *cd = tl_coarse_d.data();
  int64_t *ci = tl_coarse_i.data();
  faiss::minheap_heapify(nprobe, cd, ci);
  std::vector<float> &sc = tl_scores;
  sc.resize(nlist);
  scores(centroids, nlist, q, d, sc.data());
  for (size_t l = 0; l < nlist; l++)
    if (sc[l] > cd[0]) faiss::minheap_replace_top(nprobe, cd, ci, sc[l], static_cast<int64_t>(l));
  faiss::minheap_reorder(nprobe, cd, ci);
  return nprobe;
}

// Appends the scores of n vectors with their labels to tl_hits.
void scan(const float *x, size_t n, const int64_t *ids, int64_t first_id, const float *q, size_t d) {
  std::vector<float> &sc = tl_scores;
  sc.resize(n);
  scores(x, n, q, d, sc.data());
  for (size_t j = 0; j < n; j++) tl_hits.push_back(Hit{sc[j], ids ? ids[j] : first_id + static_cast<int64_t>(j), tl_hits.size()});
}

thread_local std::vector<float> tl_select;

// The m-th largest score of tl_hits (0 < m < n hits). A strided sample of
// 1,024 gives a bound a little below it; when at least m scores reach the
// bound, the m-th largest of those few is the m-th largest of all (every
// score above it reached the bound too), else all n are selected from.
float mth_best(size_t m) {
  const std::vector<Hit> &hits = tl_hits;
  const size_t n = hits.size(), ns = 1024;
  std::vector<float> &t = tl_select;
  if (n >= 4 * ns && m * 8 <= n) {
    const size_t step = n / ns;
    const double expect = static_cast<double>(m) * ns / static_cast<double>(n);
    const size_t r = static_cast<size_t>(expect + 4 * std::sqrt(expect) + 8);
    t.resize(ns);
    for (size_t i = 0; i < ns; i++) t[i] = hits[i * step].s;
    if (r < ns) {
      std::nth_element(t.begin(), t.begin() + static_cast<std::ptrdiff_t>(r), t.end(), std::greater<float>());
      const float bound = t[r];
      t.clear();
      for (size_t i = 0; i < n; i++)
        if (hits[i].s >= bound) t.push_back(hits[i].s);
      if (t.size() >= m) {
        std::nth_element(t.begin(), t.begin() + static_cast<std::ptrdiff_t>(m - 1), t.end(), std::greater<float>());
        return t[m - 1];
      }
    }
  }
  t.resize(n);
  for (size_t i = 0; i < n; i++) t[i] = hits[i].s;
  std::nth_element(t.begin(), t.begin() + static_cast<std::ptrdiff_t>(m - 1), t.end(), std::greater<float>());
  return t[m - 1];
}

// The k best of tl_hits into dist/labels, best first, padded with -1.
// Selecting from all scores beats a heap of k = 500 updated for most of a
// few thousand vectors. Ordering by score, then scan position, keeps what
// FAISS's strict heap keeps: on a tie, the first seen. The m-th best score
// is found first (mth_best), then one pass keeps every hit above it and, in
// scan order, as many at it as fit: the same m hits, sorted after.
void select(int64_t k, float *dist, int64_t *labels) {
  std::vector<Hit> &hits = tl_hits;
  const auto better = [](const Hit &a, const Hit &b) { return a.s > b.s || (a.s == b.s && a.at < b.at); };
  const size_t n = hits.size();
  size_t m = n < static_cast<size_t>(k) ? n : static_cast<size_t>(k);
  if (m > 0 && m < n) {
    const float tau = mth_best(m);
    size_t above = 0;
    for (size_t i = 0; i < n; i++) above += hits[i].s > tau;
    size_t ties = m - above, w = 0;
    for (size_t i = 0; i < n; i++)
      if (hits[i].s > tau || (hits[i].s == tau && ties > 0 && ties--)) hits[w++] = hits[i];
  }
  std::sort(hits.begin(), hits.begin() + static_cast<std::ptrdiff_t>(m), better);
  for (size_t i = 0; i < static_cast<size_t>(k); i++) {
    dist[i] = i < m ? hits[i].s : -std::numeric_limits<float>::max();
    labels[i] = i < m ? hits[i].id : -1;
  }
}

// An inverted-file search over flat inner-product lists, as
// IndexIVFFlat::search for one query on one thread: score the coarse
// centroids, keep the nprobe best, scan their lists best first (scan_list(l)
// calls scan() on list l), with OpenBLAS's matrix-vector kernel in place of
// Debian's scalar loop.
template <class ScanList>
void probe(const float *centroids, size_t nlist, const float *q, size_t d, int64_t k, int64_t nprobe, float *dist,
           int64_t *labels, ScanList scan_list) {
  nprobe = coarse(centroids, nlist, q, d, nprobe);
  tl_hits.clear();
  for (int64_t p = 0; p < nprobe; p++) {
    const int64_t l = tl_coarse_i[static_cast<size_t>(p)];
    if (l >= 0) scan_list(static_cast<size_t>(l));
  }
  select(k, dist, labels);
}

bool ivf_search(const faiss::IndexIVFFlat *ivf, const float *q, int64_t k, int64_t nprobe, float *dist,
                int64_t *labels) {
  const auto *cq = dynamic_cast<const faiss::IndexFlat *>(ivf->quantizer);
  if (cq == nullptr || cq->metric_type != faiss::METRIC_INNER_PRODUCT || ivf->invlists == nullptr) return false;
  const size_t d = static_cast<size_t>(ivf->d);
  probe(cq->get_xb(), ivf->nlist, q, d, k, nprobe, dist, labels, [&](size_t list) {
    const size_t n = ivf->invlists->list_size(list);
    if (n == 0) return;
    faiss::InvertedLists::ScopedCodes codes(ivf->invlists, list);
    faiss::InvertedLists::ScopedIds ids(ivf->invlists, list);
    scan(reinterpret_cast<const float *>(codes.get()), n, ids.get(), 0, q, d);
  });
  return true;
}

}  // namespace

extern "C" float ann_dot(const float *a, const float *b, size_t d) { return dot(a, b, d); }

// 0: flat or other, 1: HNSW, 2: IVF.
extern "C" int ann__kind(const void *index) {
  const auto *idx = static_cast<const faiss::Index *>(index);
  if (dynamic_cast<const faiss::IndexHNSW *>(idx) != nullptr) return 1;
  if (dynamic_cast<const faiss::IndexIVF *>(idx) != nullptr) return 2;
  return 0;
}

// IVF: the lists probed per search, the number of lists; -1 otherwise.
extern "C" int ann__nprobe(void *index, int set, int64_t *nprobe, int64_t *nlist) {
  auto *ivf = dynamic_cast<faiss::IndexIVF *>(static_cast<faiss::Index *>(index));
  if (ivf == nullptr) return -1;
  if (set) ivf->nprobe = static_cast<size_t>(*nprobe);
  *nprobe = static_cast<int64_t>(ivf->nprobe);
  *nlist = static_cast<int64_t>(ivf->nlist);
  return 0;
}

// An inverted file whose lists are contiguous ranges of the item rows
// (list l holds rows offsets[l] .. offsets[l + 1] - 1, in order): the same
// search as ivf_search, reading the bundle's own embedding matrix.
extern "C" void ann__grouped_search(const float *centroids, size_t nlist, const size_t *offsets, const float *vecs,
                                    size_t d, const float *q, int64_t k, int64_t nprobe, float *dist, int64_t *labels) {
  probe(centroids, nlist, q, d, k, nprobe, dist, labels, [&](size_t l) {
    if (offsets[l + 1] > offsets[l])
      scan(vecs + offsets[l] * d, offsets[l + 1] - offsets[l], nullptr, static_cast<int64_t>(offsets[l]), q, d);
  });
}

// The lists an inverted file probes for a call with per-call breadth ef: a
// breadth below 128 (most bundles' HNSW efSearch) scales nprobe as it would
// HNSW's candidate list; at least one list.
extern "C" int64_t ann__scaled_nprobe(int64_t nprobe, int ef) {
  if (ef <= 0 || ef >= 128) return nprobe;
  return nprobe * ef / 128 > 0 ? nprobe * ef / 128 : 1;
}

// Renumbers an inverted file's vectors so that list 0's come first, then
// list 1's, each list in its own order: order[new] = old label, and
// sizes[l] = list l's length. Returns 0, or -1 for an index that is not an
// IVF with flat lists or whose labels are not 0..ntotal-1.
extern "C" int ann__ivf_group(void *index, int64_t *order, size_t *sizes, float *centroids) {
  try {
    auto *ivf = dynamic_cast<faiss::IndexIVFFlat *>(static_cast<faiss::Index *>(index));
    if (ivf == nullptr || ivf->invlists == nullptr) return -1;
    const auto *cq = dynamic_cast<const faiss::IndexFlat *>(ivf->quantizer);
    auto *lists = dynamic_cast<faiss::ArrayInvertedLists *>(ivf->invlists);
    if (cq == nullptr || lists == nullptr) return -1;
    const size_t n = static_cast<size_t>(ivf->ntotal);
    std::vector<char> seen(n, 0);
    size_t at = 0;
    for (size_t l = 0; l < ivf->nlist; l++) {
      sizes[l] = lists->ids[l].size();
      for (auto &id : lists->ids[l]) {
        if (id < 0 || static_cast<size_t>(id) >= n || seen[static_cast<size_t>(id)]) return -1;
        seen[static_cast<size_t>(id)] = 1;
        order[at] = id;
        id = static_cast<faiss::Index::idx_t>(at++);
      }
    }
    if (at != n) return -1;
    std::memcpy(centroids, cq->get_xb(), ivf->nlist * static_cast<size_t>(ivf->d) * sizeof(float));
    return 0;
  } catch (...) {
    return -1;
  }
}

// An IVFFlat index over 'vecs' whose lists are given, not learnt: centroids
// [nlist x d], and the rows already grouped by list (sizes[l] rows of list
// l, in order; label = row). What the grouped layout of a shard's partition
// writes as index.faiss: the whole bundle's lists, each holding only the
// shard's rows. Returns the index, or nullptr when FAISS threw.
extern "C" void *ann__ivf_from_lists(const float *centroids, size_t nlist, size_t d, const size_t *sizes,
                                     const float *vecs, size_t n) {
  try {
    auto *quantizer = new faiss::IndexFlatIP(static_cast<faiss::Index::idx_t>(d));
    quantizer->add(static_cast<faiss::Index::idx_t>(nlist), centroids);
    auto ivf = std::make_unique<faiss::IndexIVFFlat>(quantizer, d, nlist, faiss::METRIC_INNER_PRODUCT);
    ivf->own_fields = true;
    ivf->is_trained = true;
    std::vector<faiss::Index::idx_t> lists(n), ids(n);
    size_t at = 0;
    for (size_t l = 0; l < nlist; l++)
      for (size_t j = 0; j < sizes[l] && at < n; j++, at++) lists[at] = static_cast<faiss::Index::idx_t>(l);
    if (at != n) return nullptr;
    for (size_t i = 0; i < n; i++) ids[i] = static_cast<faiss::Index::idx_t>(i);
    ivf->add_core(static_cast<faiss::Index::idx_t>(n), vecs, ids.data(), lists.data());
    return ivf.release();
  } catch (...) {
    return nullptr;
  }
}

// ef <= 0: the index's own efSearch. faiss_own: FAISS's stock
// IndexHNSW::search instead (for comparison). Returns 0, or -1 when FAISS threw.
extern "C" int ann__search_ef(const void *index, const float *q, int64_t k, int ef, int faiss_own, float *dist,
                              int64_t *labels) {
  try {
    const auto *idx = static_cast<const faiss::Index *>(index);
    const auto *ivf = dynamic_cast<const faiss::IndexIVFFlat *>(idx);
    if (ivf != nullptr) {
      const int64_t nprobe = ann__scaled_nprobe(static_cast<int64_t>(ivf->nprobe), ef);
      if (faiss_own) {
        faiss::IVFSearchParameters p;
        p.nprobe = static_cast<size_t>(nprobe);
        idx->search(1, q, k, dist, labels, &p);
        return 0;
      }
      if (ivf_search(ivf, q, k, nprobe, dist, labels)) return 0;
    }
    // Exact search: every stored vector scored with one matrix-vector
    // product and the k best selected, where Debian's IndexFlat::search runs a
    // scalar loop and a heap (7x the CPU on a 9,000-item catalog).
    const auto *flat = dynamic_cast<const faiss::IndexFlat *>(idx);
    if (flat != nullptr && flat->metric_type == faiss::METRIC_INNER_PRODUCT && !faiss_own) {
      tl_hits.clear();
      scan(flat->get_xb(), static_cast<size_t>(flat->ntotal), nullptr, 0, q, static_cast<size_t>(flat->d));
      select(k, dist, labels);
      return 0;
    }
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
