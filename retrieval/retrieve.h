/* retrieval/retrieve.h - the candidate tier: for one request, the items most
 * worth ranking from every source, deduplicated, each with its per-source raw
 * scores:
 *   ANN        nearest items to the user-tower vector (or, for SimilarItems,
 *              to the mean embedding of the seed items) among those the
 *              include filter allows: a filter that allows few items has
 *              them scored exactly, else the index is asked for more in
 *              proportion;
 *   item-CF    co-purchase neighbours of the request's anchor (cart,
 *              session) items, then of the user's recent items, summed;
 *   popularity the category lists of the request's include filter (from the
 *              bundle's popularity.tsv, else the catalog's popularity), else
 *              the user's spending-segment list, continued by the global order;
 *   EASE       the items with the largest sums of EASE weights over the
 *              user's history (the bundle's ease.tsv), its own items left out.
 * Asking ANN for more than a quarter of the catalog is an exact scan, and the
 * popularity source continues through the whole catalog, so widening the
 * request always ends with every item a candidate. Thread-safe; memory from
 * the caller's arena. */
#ifndef REC_RETRIEVE_H
#define REC_RETRIEVE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "common/arena.h"
#include "common/candidate.h"
#include "retrieval/bundle.h"

/* Most items of a request's EASE history (and of RetrieveRequest.history_item_ids). */
#define RETRIEVE_MAX_HISTORY 1000

typedef struct retrieve_req {
  const char *user_id;          /* may be NULL (SimilarItems) */
  size_t user_len;
  size_t want_ann, want_cf, want_pop, want_ease;
  const uint32_t *seeds;        /* anchor items (Recommend) or the items to match (SimilarItems) */
  size_t n_seeds;
  bool similar;                 /* SimilarItems: ANN queries the seeds' mean embedding */
  const uint32_t *categories;   /* the include filter: ANN proposes only its items; per-category popularity */
  size_t n_categories;
  int segment;                  /* the user's spending segment, -1 unknown */
  int ef;                       /* HNSW breadth for this request; 0: the bundle's */
  const uint32_t *recent;       /* the user's recent items, most recent first */
  size_t n_recent;
  const uint32_t *history;      /* EASE's seeds: every item the user met (catalog rows, or seeds of the
                                 * EASE table in a shard's partition), each once, most recent first */
  const uint32_t *history_pos;  /* each seed's place in the history as the ranking tier listed it, which
                                 * weighs it (sig_ease_weight); NULL: its index here */
  size_t n_history;
} retrieve_req;

typedef struct retrieve_result {
  rec_candidate *cands;         /* arena memory, in no particular order */
  size_t n;
  bool known_user;              /* the user has a user-tower vector */
  bool exhausted;               /* every catalog item the include filter allows is a candidate */
  int64_t tower_ns, ann_ns, sources_ns; /* sources: item-CF and popularity, */
  int64_t itemcf_ns, pop_ns;             /* which are these two */
} retrieve_result;

/* Fills *out. Returns 0, REC_ENOMEM, or REC_EINTERNAL when FAISS fails. */
int retrieve_candidates(const bundle *b, const retrieve_req *r, arena *a, retrieve_result *out);

/* Per-thread set-up for a thread that will call retrieve_candidates: OpenMP
 * and OpenBLAS run single-threaded, so the server's concurrency comes from its
 * own worker threads instead of oversubscribed cores. */
void retrieve_thread_init(void);
#endif
