/* server/recommend.h - the Recommend and SimilarItems pipeline in plain C:
 * the user's profile from the bundle, candidates from the candidate tier,
 * the ranking tier's slate, widening the candidate set until the page is
 * full or every item has been considered, and the deadline policy that
 * makes a call cheaper when its caller's deadline is near. No protobuf
 * here: server/convert.c converts.
 *
 * The pipeline runs in rounds so that the candidate tier can answer later:
 * recommend_begin, then for each round hand recommend_want's request to the
 * candidate tier (in process, or remote shards) and its answer to
 * recommend_step, until it says the page is settled; recommend_run does all
 * of it in process. A round's size depends on k, never on the offset, and
 * each keeps the positions the narrower rounds before it filled, so every
 * page of a walk is a slice of one ordering. Thread-safe; every allocation
 * comes from the arena. */
#ifndef REC_RECOMMEND_H
#define REC_RECOMMEND_H
#include <stdbool.h>
#include <stddef.h>
#include "common/arena.h"
#include "ranking/rank.h"
#include "retrieval/bundle.h"
#include "retrieval/retrieve.h"

/* Why a response is not what a healthy recd would serve: one names table
 * (rec_degraded_name) for the API's degraded_reasons, logs and metrics. */
typedef enum rec_degraded {
  REC_DEG_UNKNOWN_USER,              /* the bundle does not know the user */
  REC_DEG_SOURCE_MISSING,            /* + rec_source: a weighted source proposed nothing */
  REC_DEG_SHORT_CATALOG = REC_DEG_SOURCE_MISSING + REC_SRC_COUNT, /* fewer eligible items than asked */
  REC_DEG_DEADLINE_EF,               /* deadline near: a narrower HNSW search */
  REC_DEG_DEADLINE_MMR,              /* deadline near: no MMR */
  REC_DEG_DEADLINE_POPULARITY,       /* deadline near: popularity alone */
  REC_DEG_SHARD_UNAVAILABLE,         /* a retrieval shard did not answer (detail: target:status) */
  REC_DEG_SHARDS_ANSWERED,           /* some shards answered (detail: a/n) */
  REC_DEG_RETRIEVAL_UNAVAILABLE,     /* no shard answered: popularity and item-CF from here */
  REC_DEG_COUNT
} rec_degraded;
const char *rec_degraded_name(rec_degraded d);   /* "unknown_user", "deadline:mmr_skipped", ... */

typedef struct rec_note {
  rec_degraded reason;
  const char *detail;              /* NULL, or what follows "name:" in the API */
} rec_note;

enum { REC_NOTES_MAX = 16 };
typedef struct rec_notes {
  rec_note at[REC_NOTES_MAX];
  size_t n;
} rec_notes;
/* Adds a note once (the same reason and detail twice is one note); past
 * REC_NOTES_MAX the rest are dropped. 'detail' must outlive the notes. */
void rec_notes_add(rec_notes *ns, rec_degraded reason, const char *detail);

typedef enum rec_strategy {
  REC_STRATEGY_PERSONALIZED,         /* the user's tower vector drove retrieval */
  REC_STRATEGY_POPULARITY_FALLBACK,  /* it did not: unknown user, deadline or no shard */
  REC_STRATEGY_COUNT
} rec_strategy;
const char *rec_strategy_name(rec_strategy s);   /* "personalized", "popularity_fallback" */

typedef struct rec_request {
  const char *user_id;             /* NULL for SimilarItems */
  size_t user_len;
  size_t k, offset;                /* page size and items to skip */
  rank_req rules;                  /* filters, excludes, blocked, promotions, cfg, now */
  const uint32_t *seeds;           /* anchors (Recommend) or the items to match (SimilarItems) */
  size_t n_seeds;
  const rec_purchase *recorded;    /* purchases recorded since the bundle, sorted by item */
  size_t n_recorded;
  bool similar;
  bool popularity_only;            /* deadline near: no ANN, no item-CF */
  int ann_ef;                      /* HNSW breadth for this request; 0: the bundle's */
  const char *const *explain_ids;
  size_t n_explain;
  rec_notes *notes;                /* degraded reasons are added here; may be NULL */
} rec_request;

typedef struct rec_verdict {
  const char *item_id;
  const char *stage;               /* unknown_item, rule, retrieval, cut, diversity */
  const char *reason;
} rec_verdict;

typedef struct rec_result {
  rank_item *items;                /* the page, in the order to show it (not sorted by score) */
  size_t n;
  const rank_item *slate;          /* the ordering the page is cut from, positions 0 .. offset + k
                                    * (and one more when another page exists); items == slate + offset */
  size_t n_slate;
  rec_strategy strategy;
  bool known_user;                 /* the bundle knows the user (has a tower input) */
  bool profiled;                   /* the user had a profile (price, segment, history) */
  bool short_catalog;              /* fewer eligible items than offset + k */
  bool more;                       /* another page exists */
  uint32_t missing;                /* sources that produced no candidates */
  size_t candidates;               /* candidates in the last round */
  size_t per_source[REC_SRC_COUNT]; /* of which each source proposed */
  int64_t tower_ns, ann_ns, sources_ns, rank_ns; /* rank_ns includes mmr_ns */
  int64_t itemcf_ns, pop_ns, mmr_ns;              /* parts of sources_ns and rank_ns */
  rec_verdict *verdicts;
  size_t n_verdicts;
  const uint32_t *added_events;    /* per item added live: the events counted when ranked */
  size_t n_added;
} rec_result;

/* The deadline thresholds (ms left) below which each cheaper step applies. */
typedef struct rec_deadline_policy {
  int ef_below_ms, mmr_below_ms, popularity_below_ms;
} rec_deadline_policy;

/* The cheaper steps, as flags: what the deadline policy chose for a call,
 * kept in the decision log so that a replay takes the same steps. */
enum { REC_DEGRADE_EF = 1, REC_DEGRADE_MMR = 2, REC_DEGRADE_POPULARITY = 4 };

/* The steps the policy takes with 'deadline_ns' (INT64_MAX: none) now. */
unsigned recommend_deadline_steps(const rec_deadline_policy *p, int64_t deadline_ns);
/* Makes 'r' cheaper by the REC_DEGRADE_* 'steps': a narrower HNSW search,
 * no MMR, popularity alone, each noted in r->notes. The settings copy
 * comes from 'a'. Returns 0 or REC_ENOMEM. */
int recommend_degrade(rec_request *r, unsigned steps, arena *a);
/* Both: makes 'r' cheaper when the caller's deadline is near. */
int recommend_apply_deadline(rec_request *r, const rec_deadline_policy *p, int64_t deadline_ns,
                             arena *a);

typedef struct rec_run rec_run;    /* one call's pipeline, in its arena */

/* Starts the pipeline for 'r' (which, like 'b', must outlive the run). */
int recommend_begin(const bundle *b, const rec_request *r, arena *a, rec_run **out);
/* The candidate tier's request for the next round. */
const retrieve_req *recommend_want(const rec_run *run);
/* Ranks one round's candidates. Sets *again when the page is not settled
 * and a wider round should run (recommend_want then has it). */
int recommend_step(rec_run *run, const retrieve_result *rr, bool *again);
/* After the last round: the page, its verdicts, and the degraded notes. */
int recommend_finish(rec_run *run, rec_result *out);

/* Every round, with the candidate tier in this process. */
int recommend_rounds_local(rec_run *run);
/* All of it in this process. Returns 0, REC_ENOMEM or REC_EINTERNAL. */
int recommend_run(const bundle *b, const rec_request *r, arena *a, rec_result *out);
#endif
