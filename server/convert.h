/* server/convert.h - the rec.v1 protobuf messages to and from the plain C
 * the pipeline speaks, and the request checks every service shares. Checks
 * fail through rpc_fail with a message that names the field and the allowed
 * range, so a caller can fix the request without reading our code. All
 * memory comes from the call's arena; protobuf types stop at the services
 * and this file. */
#ifndef REC_CONVERT_H
#define REC_CONVERT_H
#include "rec/v1/common.pb-c.h"
#include "rec/v1/ranking.pb-c.h"
#include "rec/v1/retrieval.pb-c.h"
#include "server/recommend.h"
#include "server/rpc.h"

/* The shape every request shares: an id list, a page size, a request id. */
typedef struct conv_ids {
  const char *field;                /* "exclude_item_ids" */
  char *const *ids;
  size_t n, max;
} conv_ids;
typedef struct conv_shape {
  const char *user_id;              /* checked when not NULL: 1..REC_ID_MAX bytes */
  const char *k_field;              /* "k" */
  int64_t k, max_k;
  const char *request_id;           /* checked when not NULL: at most REC_ID_MAX bytes */
  conv_ids lists[4];                /* unused entries have field NULL */
} conv_shape;
/* The one request validator: what can be checked without a bundle. */
int conv_check(rpc_ctx *ctx, const conv_shape *s);
/* An id a bundle could hold: 1..REC_ID_MAX bytes and no tab, CR or LF
 * (bundle files are TSV; such an id can never match). 'field' names it in
 * the error: "user_id", "events[3].item_id". */
int conv_check_id(rpc_ctx *ctx, const char *field, const char *id);
/* A free-text field (context.surface): at most 'max' bytes. */
int conv_check_text(rpc_ctx *ctx, const char *field, const char *s, size_t max);

/* Item rows of the ids the catalog knows (unknown ids are skipped: they
 * cannot be returned anyway), sorted when asked. NULL when out of memory. */
uint32_t *conv_rows(arena *a, const catalog *c, char *const *ids, size_t n, bool sort, size_t *out_n);
/* The filters into r (categories by row, price range). */
int conv_filters(rpc_ctx *ctx, const catalog *c, const Rec__V1__Filters *f, rank_req *r);
/* The rules Recommend and SimilarItems share: settings, excludes, the
 * settings' blocked items and promotions as rows, filters, the time the
 * rules hold at (now_ms, Unix milliseconds: the request's
 * Context.time_unix_ms; 0 for the server's clock). */
int conv_rules(rpc_ctx *ctx, const bundle *b, const rank_config *cfg, const Rec__V1__Filters *f,
               char *const *excl, size_t n_excl, int64_t now_ms, rank_req *r);
/* A page cursor "<offset>@<bundle version>" into *offset (0 for none). */
int conv_cursor(rpc_ctx *ctx, const char *cur, const bundle *b, size_t k, size_t deepest,
                size_t *offset);

Rec__V1__Source conv_source(rec_source s);
Rec__V1__Strategy conv_strategy(rec_strategy s);
/* The page as ScoredItems (explanations when asked). NULL when out of memory. */
Rec__V1__ScoredItem **conv_items(arena *a, const bundle *b, const rec_result *res, bool explain,
                                 size_t *n);
/* The Recommend response's items, verdicts, degraded reasons (from 'notes'),
 * strategy, cursor and, when explain is set, timings since start_ns. */
int conv_recommend_response(arena *a, const bundle *b, const rec_request *rq, const rec_result *res,
                            bool explain, int64_t start_ns, Rec__V1__RecommendResponse *r);

/* The candidate tier's wire format, both ways (Retrieval.Retrieve). */
Rec__V1__RetrieveRequest *conv_retrieve_request(arena *a, const bundle *b, const retrieve_req *rq);
Rec__V1__Candidate *conv_candidate(arena *a, const bundle *b, const rec_candidate *c);
/* Merges the shards' answers (disjoint item sets; NULL for a shard that did
 * not answer) into one list of this process's catalog rows; ids this
 * catalog lacks are skipped. */
int conv_merge_candidates(arena *a, const bundle *b, Rec__V1__RetrieveResponse *const *rs, size_t n,
                          retrieve_result *out);
#endif
