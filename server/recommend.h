/* server/recommend.h - the Recommend pipeline in plain C: candidates from the
 * candidate tier, then the ranking tier's rules and cut, widening the
 * candidate set until the page is full or the catalog is exhausted. No
 * protobuf here: handlers.c converts. Thread-safe; memory from the arena. */
#ifndef REC_RECOMMEND_H
#define REC_RECOMMEND_H
#include <stdbool.h>
#include <stddef.h>
#include "common/arena.h"
#include "ranking/rank.h"
#include "retrieval/bundle.h"

typedef struct rec_request {
  const char *user_id;
  size_t user_len;
  size_t offset;                 /* items to skip (paging) */
  rank_req rules;                /* k and hard rules; item rows already resolved */
  const char *const *explain_ids;
  size_t n_explain;
} rec_request;

typedef struct rec_verdict {
  const char *item_id;
  const char *stage;             /* unknown_item, rule, retrieval, cut */
  const char *reason;
} rec_verdict;

typedef struct rec_result {
  rank_item *items;              /* the page, best first */
  size_t n;
  bool personalized;             /* false: the user is unknown, popularity served */
  bool short_catalog;            /* fewer eligible items than offset + k */
  bool more;                     /* another page exists */
  size_t candidates;             /* candidates considered in the last round */
  int64_t tower_ns, ann_ns, rank_ns;
  rec_verdict *verdicts;
  size_t n_verdicts;
} rec_result;

/* Returns 0, REC_ENOMEM or REC_EINTERNAL. */
int recommend_run(const bundle *b, const rec_request *r, arena *a, rec_result *out);
#endif
