/* server/recommend.h - the Recommend and SimilarItems pipeline in plain C:
 * the user's profile from the bundle, candidates from the candidate tier,
 * the ranking tier's slate, widening the candidate set until the page is
 * full or every item has been considered. No protobuf here: handlers.c
 * converts. Thread-safe; memory from the arena. */
#ifndef REC_RECOMMEND_H
#define REC_RECOMMEND_H
#include <stdbool.h>
#include <stddef.h>
#include "common/arena.h"
#include "ranking/rank.h"
#include "retrieval/bundle.h"
#include "retrieval/retrieve.h"

typedef struct rec_request {
  const char *user_id;             /* NULL for SimilarItems */
  size_t user_len;
  size_t k, offset;                /* page size and items to skip */
  rank_req rules;                  /* filters, excludes, blocked, promotions, cfg, now */
  const uint32_t *seeds;           /* anchors (Recommend) or the items to match (SimilarItems) */
  size_t n_seeds;
  const rec_purchase *recorded;    /* purchases recorded since the bundle, sorted by item */
  size_t n_recorded;
  /* The candidate tier: NULL calls retrieve_candidates in this process;
   * role=ranking asks remote shards instead. */
  int (*retrieve)(void *arg, const bundle *b, const retrieve_req *rq, arena *a, retrieve_result *out);
  void *retrieve_arg;
  bool similar;
  bool popularity_only;            /* deadline near: no ANN, no item-CF */
  int ann_ef;                      /* HNSW breadth for this request; 0: the bundle's */
  const char *const *explain_ids;
  size_t n_explain;
} rec_request;

typedef struct rec_verdict {
  const char *item_id;
  const char *stage;               /* unknown_item, rule, retrieval, cut, diversity */
  const char *reason;
} rec_verdict;

typedef struct rec_result {
  rank_item *items;                /* the page, best first */
  size_t n;
  bool personalized;               /* the user had a user-tower vector */
  bool profiled;                   /* the user had a profile (price, segment, history) */
  bool short_catalog;              /* fewer eligible items than offset + k */
  bool more;                       /* another page exists */
  uint32_t missing;                /* sources that produced no candidates */
  size_t candidates;               /* candidates in the last round */
  size_t per_source[REC_SRC_COUNT]; /* of which each source proposed */
  int64_t tower_ns, ann_ns, sources_ns, rank_ns;
  rec_verdict *verdicts;
  size_t n_verdicts;
} rec_result;

/* Returns 0, REC_ENOMEM or REC_EINTERNAL. */
int recommend_run(const bundle *b, const rec_request *r, arena *a, rec_result *out);
#endif
