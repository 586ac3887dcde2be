/* server/svc_retrieval.c - Retrieval.Retrieve: the candidate tier on its
 * own (role=retrieval, one shard of the catalog), answering the ranking
 * tier's fan-out with candidates and their per-source raw scores. */
#include "server/handlers.h"
#include "server/convert.h"

#include <string.h>

#define MAX_CANDIDATES 10000
#define MAX_RECENT 1000

static int retrieve(rpc_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **out) {
  const Rec__V1__RetrieveRequest *q = (const Rec__V1__RetrieveRequest *)in;
  conv_shape s = {.user_id = q->user_id, .k_field = "num_candidates", .k = q->num_candidates,
                  .max_k = MAX_CANDIDATES,
                  .lists = {{"recent_item_ids", q->recent_item_ids, q->n_recent_item_ids, MAX_RECENT},
                            {"history_item_ids", q->history_item_ids, q->n_history_item_ids, RETRIEVE_MAX_HISTORY}}};
  const bundle *b;
  int rc;
  if ((rc = conv_check(ctx, &s)) || (rc = svc_acquire(ctx, &b, NULL))) return rc;
  rank_req cats = {0};
  if ((rc = conv_filters(ctx, b->catalog, q->filters, &cats))) return rc;
  /* Seeds of item-CF: in a shard's partition also items another shard
   * holds, whose neighbours here item_cf.tsv lists. */
  size_t n_seeds = 0;
  uint32_t *seeds = arena_calloc(ctx->arena, q->n_recent_item_ids + 1, sizeof *seeds);
  if (!seeds) return REC_ENOMEM;
  for (size_t i = 0; i < q->n_recent_item_ids; i++)
    n_seeds += sig_seed(&b->sig.cf, b->catalog, q->recent_item_ids[i], strlen(q->recent_item_ids[i]),
                        &seeds[n_seeds]);
  size_t n_history = 0;
  uint32_t *history = arena_calloc(ctx->arena, q->n_history_item_ids + 1, sizeof *history);
  if (!history) return REC_ENOMEM;
  for (size_t i = 0; i < q->n_history_item_ids; i++)
    n_history += sig_seed(&b->sig.ease, b->catalog, q->history_item_ids[i], strlen(q->history_item_ids[i]),
                          &history[n_history]);
  size_t want = (size_t)q->num_candidates;
  retrieve_req rq = {.user_id = q->user_id, .user_len = strlen(q->user_id), .want_ann = want,
                     .want_cf = want, .want_pop = want, .want_ease = want, .seeds = seeds, .n_seeds = n_seeds,
                     .history = history, .n_history = n_history,
                     .categories = cats.include_cats, .n_categories = cats.n_include_cats,
                     .segment = q->segment >= 0 && q->segment < 4 ? q->segment : -1};
  retrieve_result rr;
  if ((rc = retrieve_candidates(b, &rq, ctx->arena, &rr)))
    return rpc_fail(ctx, rc, "retrieve failed: %s", rec_strerror(rc));
  Rec__V1__RetrieveResponse *r = arena_alloc(ctx->arena, sizeof *r);
  if (!r) return REC_ENOMEM;
  rec__v1__retrieve_response__init(r);
  if (!(r->candidates = arena_calloc(ctx->arena, rr.n + 1, sizeof *r->candidates))) return REC_ENOMEM;
  for (size_t i = 0; i < rr.n; i++)
    if (!(r->candidates[r->n_candidates++] = conv_candidate(ctx->arena, b, &rr.cands[i]))) return REC_ENOMEM;
  r->bundle_version = b->version;
  r->shard = b->shard;
  r->shard_count = b->shards ? b->shards : 1;
  r->exhausted = rr.exhausted;
  r->known_user = rr.known_user;
  *out = &r->base;
  return 0;
}

const rpc_method h_retrieve = {"/rec.v1.Retrieval/Retrieve", &rec__v1__retrieve_request__descriptor,
                               &rec__v1__retrieve_response__descriptor, retrieve};
