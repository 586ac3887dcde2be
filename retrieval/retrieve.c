/* retrieval/retrieve.c - user tower -> FAISS, or popularity for cold users. */
#include "retrieval/retrieve.h"
#include "common/clock.h"

#include <cblas.h>
#include <omp.h>

/* Asked for more than 1/EXACT_SHARE of the catalog, ANN scans it exactly. */
#define EXACT_SHARE 4

void retrieve_thread_init(void) {
  omp_set_num_threads(1);
  openblas_set_num_threads(1);
}

static int from_popularity(const bundle *b, size_t want, arena *a, retrieve_result *out) {
  const catalog *c = b->catalog;
  rec_candidate *cands = arena_calloc(a, want ? want : 1, sizeof *cands);
  if (!cands) return REC_ENOMEM;
  for (size_t i = 0; i < want; i++) {
    uint32_t item = c->by_popularity[i];
    cands[i].item = item;
    cands[i].sources = 1u << REC_SRC_POPULARITY;
    cands[i].raw[REC_SRC_POPULARITY] = c->popularity[item];
  }
  out->cands = cands;
  out->n = want;
  return 0;
}

/* Every item scored against q. HNSW cannot promise to reach every node of its
 * graph, and searching it for a large share of the catalog costs more than a
 * scan, so such requests get this exact one instead. */
static void exact_scan(const bundle *b, const float *q, rec_candidate *cands, float *scores) {
  size_t n = b->catalog->count;
  cblas_sgemv(CblasRowMajor, CblasNoTrans, (blasint)n, (blasint)b->dim, 1.0f, b->item_emb,
              (blasint)b->dim, q, 1, 0.0f, scores, 1);
  for (size_t i = 0; i < n; i++) {
    cands[i].item = (uint32_t)i;
    cands[i].sources = 1u << REC_SRC_ANN;
    cands[i].raw[REC_SRC_ANN] = scores[i];
  }
}

static int from_ann(const bundle *b, uint32_t user, size_t want, arena *a, retrieve_result *out) {
  float *scratch = arena_alloc(a, 2 * b->tower.max_width * sizeof(float));
  float *q = arena_alloc(a, b->dim * sizeof(float));
  int64_t *items = arena_alloc(a, want * sizeof(int64_t));
  float *scores = arena_alloc(a, want * sizeof(float));
  rec_candidate *cands = arena_calloc(a, want ? want : 1, sizeof *cands);
  if (!scratch || !q || !items || !scores || !cands) return REC_ENOMEM;
  int64_t t0 = rec_mono_ns();
  if (tower_forward(&b->tower, bundle_user_features(b, user), q, scratch) != 0)
    return from_popularity(b, want, a, out); /* a zero vector points nowhere */
  int64_t t1 = rec_mono_ns();
  size_t n = want;
  if (out->exhausted) {
    exact_scan(b, q, cands, scores);
  } else {
    if (ann_search(b->ann, q, want, items, scores, &n) != 0) return REC_EINTERNAL;
    for (size_t i = 0; i < n; i++) {
      cands[i].item = (uint32_t)items[i];
      cands[i].sources = 1u << REC_SRC_ANN;
      cands[i].raw[REC_SRC_ANN] = scores[i];
    }
  }
  out->tower_ns = t1 - t0;
  out->ann_ns = rec_mono_ns() - t1;
  out->cands = cands;
  out->n = n;
  out->known_user = true;
  return 0;
}

int retrieve_candidates(const bundle *b, const retrieve_req *r, arena *a, retrieve_result *out) {
  size_t total = b->catalog->count;
  size_t want = r->want < total ? r->want : total;
  uint32_t user;
  *out = (retrieve_result){0};
  if (bundle_find_user(b, r->user_id, r->user_len, &user)) {
    if (want > total / EXACT_SHARE) want = total;
    out->exhausted = want == total;
    return from_ann(b, user, want, a, out);
  }
  out->exhausted = want == total;
  return from_popularity(b, want, a, out);
}
