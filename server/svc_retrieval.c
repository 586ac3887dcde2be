/* server/svc_retrieval.c - Retrieval.Retrieve: the candidate tier on its
 * own (role=retrieval, one shard of the catalog), answering the ranking
 * tier's fan-out with candidates and their per-source raw scores. */
#include "server/handlers.h"
#include "server/convert.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CANDIDATES 10000
#define MAX_RECENT 1000

typedef struct at_value {
  uint32_t v, at;
} at_value;

static int by_value_at(const void *a, const void *b) {
  const at_value *x = a, *y = b;
  if (x->v != y->v) return x->v < y->v ? -1 : 1;
  return x->at < y->at ? -1 : x->at > y->at;
}

/* v[0..n) with each value's first occurrence only, in order, and pos[]
 * (when not NULL) along with it: a seed named twice must not count twice.
 * Returns the new count, or n when out of memory (then nothing changes,
 * and *ok is false). */
static size_t first_each(uint32_t *v, uint32_t *pos, size_t n, arena *a, bool *ok) {
  at_value *s = arena_alloc(a, (n + 1) * sizeof *s);
  bool *keep = arena_calloc(a, n + 1, sizeof *keep);
  *ok = s && keep;
  if (!*ok) return n;
  for (size_t i = 0; i < n; i++) s[i] = (at_value){v[i], (uint32_t)i};
  qsort(s, n, sizeof *s, by_value_at);
  for (size_t i = 0; i < n; i++) keep[s[i].at] = i == 0 || s[i].v != s[i - 1].v;
  size_t m = 0;
  for (size_t i = 0; i < n; i++)
    if (keep[i]) {
      if (pos) pos[m] = pos[i];
      v[m++] = v[i];
    }
  return m;
}

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
  /* EASE's seeds keep their place in the list as sent, which weighs them
   * (most recent first), whether or not this shard knows the ones before. */
  size_t n_history = 0;
  uint32_t *history = arena_calloc(ctx->arena, q->n_history_item_ids + 1, sizeof *history);
  uint32_t *history_pos = arena_calloc(ctx->arena, q->n_history_item_ids + 1, sizeof *history_pos);
  if (!history || !history_pos) return REC_ENOMEM;
  for (size_t i = 0; i < q->n_history_item_ids; i++) {
    history_pos[n_history] = (uint32_t)i;
    n_history += sig_seed(&b->sig.ease, b->catalog, q->history_item_ids[i], strlen(q->history_item_ids[i]),
                          &history[n_history]);
  }
  /* EASE's seeds count once each, as recd's own history() makes them
   * (item-CF's seeds stay as sent: the whole bundle's item-CF also walks the
   * anchors, then the recent items, an item in both twice). */
  bool ok;
  n_history = first_each(history, history_pos, n_history, ctx->arena, &ok);
  if (!ok) return REC_ENOMEM;
  size_t want = (size_t)q->num_candidates;
  retrieve_req rq = {.user_id = q->user_id, .user_len = strlen(q->user_id), .want_ann = want,
                     .want_cf = want, .want_pop = want, .want_ease = want, .seeds = seeds, .n_seeds = n_seeds,
                     .history = history, .history_pos = history_pos, .n_history = n_history,
                     .categories = cats.include_cats, .n_categories = cats.n_include_cats,
                     .segment = q->segment >= 0 && q->segment < 4 ? q->segment : -1};
  retrieve_result rr;
  if ((rc = retrieve_candidates(b, &rq, ctx->arena, &rr)))
    return rpc_fail(ctx, rc, "retrieve failed: %s", rec_strerror(rc));
  call_note *note = arena_calloc(ctx->arena, 1, sizeof *note); /* the stages for the call's log line */
  if (note) {
    *note = (call_note){.timed = true, .tower_ns = rr.tower_ns, .ann_ns = rr.ann_ns, .itemcf_ns = rr.itemcf_ns,
                        .pop_ns = rr.pop_ns, .sources_ns = rr.itemcf_ns + rr.pop_ns};
    ctx->note = note;
  }
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
