/* retrieval/retrieve.h - the candidate tier: for one user, the items most
 * worth ranking, each with its per-source raw scores. A known user is embedded
 * by the user tower and searched in the ANN index; a user the bundle does not
 * know gets the catalog's popularity list. Thread-safe; all memory comes from
 * the caller's arena. */
#ifndef REC_RETRIEVE_H
#define REC_RETRIEVE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "common/arena.h"
#include "common/candidate.h"
#include "retrieval/bundle.h"

typedef struct retrieve_req {
  const char *user_id;
  size_t user_len;
  size_t want;          /* candidates wanted (capped at the catalog size) */
} retrieve_req;

typedef struct retrieve_result {
  rec_candidate *cands; /* arena memory; best first, except after an exact scan */
  size_t n;
  bool known_user;      /* false: popularity fallback */
  bool exhausted;       /* every item in the catalog was considered (for a known
                         * user by an exact scan, as HNSW may not reach them all) */
  int64_t tower_ns, ann_ns;
} retrieve_result;

/* Fills *out. Returns 0, REC_ENOMEM, or REC_EINTERNAL when FAISS fails. */
int retrieve_candidates(const bundle *b, const retrieve_req *r, arena *a, retrieve_result *out);

/* Per-thread set-up for a thread that will call retrieve_candidates: OpenMP
 * and OpenBLAS run single-threaded, so the server's concurrency comes from its
 * own worker threads instead of oversubscribed cores. */
void retrieve_thread_init(void);
#endif
