/* server/svc_ranking.c - Ranking.Recommend and Ranking.SimilarItems. In
 * role=all the pipeline runs in process and answers at once; in
 * role=ranking each round's candidates come from the retrieval shards,
 * asked in parallel without waiting: the handler returns RPC_PENDING and the
 * fan-out's callback, on the same worker, ranks and completes the call. */
#include "server/handlers.h"
#include "common/clock.h"
#include "server/app.h"
#include "server/attribution.h"
#include "server/convert.h"
#include "server/declog.h"
#include "server/metrics.h"
#include "server/rpc_client.h"
#include "server/rpc_fanout.h"
#include "rec/v1/decision.pb-c.h"

#include <stdlib.h>
#include <string.h>

#define MAX_ANCHORS 100
#define MAX_EXPLAIN 100
#define MAX_CONTEXT_TEXT 64  /* context.surface and context.device */
#define MAX_PAGES 50 /* offset + k is at most max_k * MAX_PAGES */

/* One Recommend in flight, in its arena. */
typedef struct rec_call {
  rpc_ctx *ctx;
  const Rec__V1__RecommendRequest *q;
  const bundle *b;
  const app_ranking *snap;   /* settings and experiments, held for the call */
  exp_assignment assign;     /* valid when snap->plan */
  call_note *note;
  char *request_id;
  rec_request rq;
  rec_notes notes;
  rec_run *run;
  int64_t start_ns;
  int64_t shards_until;      /* role=ranking: the shards' budget for the whole call */
  int *shard_failed;         /* per shard: its first failing gRPC status, 0 while it answers */
  unsigned char *skip;       /* per shard: not asked again this call */
  int64_t now_ms;            /* the time the rules hold at (Unix ms) */
  unsigned steps;            /* the deadline policy's REC_DEGRADE_* steps */
  online_item *online;       /* the user's online state as read */
  size_t n_online;
} rec_call;

static int check(rpc_ctx *ctx, const recd_config *cfg, const Rec__V1__RecommendRequest *q) {
  conv_shape s = {.user_id = q->user_id, .k_field = "k", .k = q->k, .max_k = cfg->max_k,
                  .request_id = q->request_id,
                  .lists = {{"exclude_item_ids", q->exclude_item_ids, q->n_exclude_item_ids, (size_t)cfg->max_exclude},
                            {"anchor_item_ids", q->anchor_item_ids, q->n_anchor_item_ids, MAX_ANCHORS},
                            {"explain_item_ids", q->explain_item_ids, q->n_explain_item_ids, MAX_EXPLAIN}}};
  int rc = conv_check(ctx, &s);
  if (rc || !q->context) return rc;
  if ((rc = conv_check_text(ctx, "context.surface", q->context->surface, MAX_CONTEXT_TEXT)) ||
      (rc = conv_check_text(ctx, "context.device", q->context->device, MAX_CONTEXT_TEXT)) ||
      (rc = conv_check_text(ctx, "context.session_id", q->context->session_id, REC_ID_MAX)))
    return rc;
  return q->context->time_unix_ms < 0
           ? rpc_fail(ctx, REC_EINVAL, "context.time_unix_ms must be >= 0 (0: now)") : 0;
}

static int by_purchase_item(const void *a, const void *b) {
  uint32_t x = ((const rec_purchase *)a)->item, y = ((const rec_purchase *)b)->item;
  return x < y ? -1 : x > y;
}

/* The request's anchors, then the items the user's recorded events touched
 * (most recent first), seed item-CF: a visitor the bundle has never seen
 * still gets its session's neighbours. Recorded purchases join the bundle's
 * for the repurchase rules. */
static int session(rec_call *c, const bundle *b, const Rec__V1__RecommendRequest *q, rec_request *rq) {
  rpc_ctx *ctx = c->ctx;
  app *ap = ctx->app;
  online_item *on = NULL;
  size_t n_on = ap->online ? online_get(ap->online, q->user_id, strlen(q->user_id), ctx->arena, &on) : 0;
  c->online = on;
  c->n_online = n_on;
  size_t n_anchor;
  uint32_t *anchors = conv_rows(ctx->arena, b->catalog, q->anchor_item_ids, q->n_anchor_item_ids, false, &n_anchor);
  if (!anchors) return REC_ENOMEM; /* n_anchor is set only on success */
  uint32_t *seeds = arena_calloc(ctx->arena, n_anchor + n_on + 1, sizeof *seeds);
  rec_purchase *bought = arena_calloc(ctx->arena, n_on + 1, sizeof *bought);
  if (!seeds || !bought) return REC_ENOMEM;
  memcpy(seeds, anchors, n_anchor * sizeof *seeds);
  rq->n_seeds = n_anchor;
  for (size_t i = 0; i < n_on; i++) {
    uint32_t item;
    if (!catalog_find(b->catalog, on[i].item, strlen(on[i].item), &item)) continue;
    seeds[rq->n_seeds++] = item;
    if (on[i].purchased) bought[rq->n_recorded++] = (rec_purchase){item, on[i].count, on[i].last_time};
  }
  qsort(bought, rq->n_recorded, sizeof *bought, by_purchase_item);
  rq->seeds = seeds;
  rq->recorded = bought;
  return 0;
}

/* The request in plain C: page, rules, session, and the deadline policy. */
static int prepare(rec_call *c, const rank_config *cfg) {
  rpc_ctx *ctx = c->ctx;
  app *ap = ctx->app;
  const Rec__V1__RecommendRequest *q = c->q;
  c->rq = (rec_request){.user_id = q->user_id, .user_len = strlen(q->user_id), .k = (size_t)q->k,
                        .explain_ids = (const char *const *)q->explain_item_ids,
                        .n_explain = q->n_explain_item_ids, .notes = &c->notes};
  rec_deadline_policy p = {ap->cfg->degrade_ef_below_ms, ap->cfg->degrade_mmr_below_ms,
                           ap->cfg->degrade_popularity_below_ms};
  int rc;
  /* One time for the whole call, kept for the decision log: a replay pins
   * it, and the deadline's steps, instead of reading the clock. */
  c->now_ms = q->context && q->context->time_unix_ms > 0 ? q->context->time_unix_ms : rec_wall_ms();
  c->steps = ap->pinned ? ap->pinned->degrade : recommend_deadline_steps(&p, ctx->deadline_ns);
  if ((rc = conv_cursor(ctx, q->page_cursor, c->b, c->rq.k, (size_t)ap->cfg->max_k * MAX_PAGES, &c->rq.offset)) ||
      (rc = conv_rules(ctx, c->b, cfg, q->filters, q->exclude_item_ids, q->n_exclude_item_ids, c->now_ms,
                       &c->rq.rules)) ||
      (rc = session(c, c->b, q, &c->rq)) || (rc = recommend_degrade(&c->rq, c->steps, ctx->arena)))
    return rc;
  if (c->snap->plan && c->assign.holdout) c->rq.popularity_only = true; /* a holdout arm: popularity only */
  return recommend_begin(c->b, &c->rq, ctx->arena, &c->run);
}

/* The request's experiment arms: its settings, maybe another resident
 * bundle, and the note for the call's log line and per-arm metrics. */
static int assign_arms(rec_call *c, const rank_config **cfg) {
  rpc_ctx *ctx = c->ctx;
  const Rec__V1__RecommendRequest *q = c->q;
  call_note *n = c->note;
  const exp_plan *plan = c->snap->plan;
  if (!plan) return 0;
  const char *sess = q->context ? q->context->session_id : NULL;
  exp_assign(plan, q->user_id, strlen(q->user_id), sess, sess ? strlen(sess) : 0, &c->assign);
  *cfg = c->assign.cfg;
  if (c->assign.bundle) {
    const bundle *rb = app_resident_bundle(c->snap, c->assign.bundle);
    if (rb) c->b = rb; /* held by the snapshot, which the call holds */
  }
  const experiments *e = exp_plan_experiments(plan);
  size_t len = 1;
  for (size_t l = 0; l < c->assign.n_layers; l++)
    if (c->assign.arm[l] >= 0) len += 2 * EXP_NAME_MAX + 2;
  char *text = arena_alloc(ctx->arena, len), *w = text;
  if (!text) return REC_ENOMEM;
  *w = '\0';
  for (size_t l = 0; l < c->assign.n_layers; l++) {
    int k = c->assign.arm[l];
    if (k < 0) continue;
    int slot = c->snap->slot[l][k];
    if (slot >= 0) n->slot[n->n_slots++] = slot;
    w += sprintf(w, "%s%s/%s", w == text ? "" : ",", e->layers[l].name, e->layers[l].arms[k].name);
  }
  n->arms = text[0] ? text : NULL;
  return 0;
}

/* The response's arms, and the slate remembered for attribution. */
static int report_arms(rec_call *c, Rec__V1__RecommendResponse *r) {
  rpc_ctx *ctx = c->ctx;
  app *ap = ctx->app;
  if (!c->snap->plan) return 0;
  const experiments *e = exp_plan_experiments(c->snap->plan);
  size_t n = 0;
  for (size_t l = 0; l < c->assign.n_layers; l++) n += c->assign.arm[l] >= 0;
  if (!n) return 0;
  Rec__V1__ExperimentArm **arms = arena_calloc(ctx->arena, n, sizeof *arms);
  Rec__V1__ExperimentArm *one = arena_calloc(ctx->arena, n, sizeof *one);
  uint64_t *items = arena_calloc(ctx->arena, r->n_items + 1, sizeof *items);
  if (!arms || !one || !items) return REC_ENOMEM;
  size_t i = 0;
  for (size_t l = 0; l < c->assign.n_layers; l++) {
    int k = c->assign.arm[l];
    if (k < 0) continue;
    rec__v1__experiment_arm__init(&one[i]);
    one[i].experiment = (char *)e->layers[l].name;
    one[i].arm = (char *)e->layers[l].arms[k].name;
    arms[i] = &one[i];
    i++;
  }
  r->arms = arms;
  r->n_arms = n;
  if (c->ctx->quiet) return 0; /* a look-up, not a slate anybody was shown */
  for (size_t j = 0; j < r->n_items; j++) items[j] = attribution_hash(r->items[j]->item_id, strlen(r->items[j]->item_id));
  attribution_served(ap->attr, r->request_id, c->q->user_id, strlen(c->q->user_id), c->note->slot, c->note->n_slots,
                     items, r->n_items, rec_wall_ms());
  return 0;
}

static void record_metrics(const rec_call *c, const rec_result *res) {
  call_note *n = c->note; /* the stages, for the call's log line */
  n->timed = true;
  n->tower_ns = res->tower_ns, n->ann_ns = res->ann_ns, n->itemcf_ns = res->itemcf_ns, n->pop_ns = res->pop_ns;
  n->sources_ns = res->sources_ns, n->rank_ns = res->rank_ns, n->mmr_ns = res->mmr_ns;
  metrics_observe_stage(STAGE_USER_TOWER, res->tower_ns);
  metrics_observe_stage(STAGE_ANN, res->ann_ns);
  metrics_observe_stage(STAGE_SOURCES, res->sources_ns);
  metrics_observe_stage(STAGE_RANKING, res->rank_ns);
  metrics_observe_stage(STAGE_ITEMCF, res->itemcf_ns);
  metrics_observe_stage(STAGE_POPULARITY, res->pop_ns);
  metrics_observe_stage(STAGE_MMR, res->mmr_ns);
  metrics_observe_stage(STAGE_TOTAL, rec_mono_ns() - c->start_ns);
  metrics_candidates(res->per_source);
  metrics_strategy(res->strategy);
  for (size_t i = 0; i < c->notes.n; i++) {
    metrics_degraded(c->notes.at[i].reason);
    for (size_t k = 0; c->note && k < c->note->n_slots; k++) metrics_arm_degraded(c->note->slot[k], c->notes.at[i].reason);
  }
}

/* ---- the decision log ---- */

/* Packs 'm' into the arena; NULL when memory runs out. */
static uint8_t *pack(arena *a, const ProtobufCMessage *m, size_t *n) {
  *n = protobuf_c_message_get_packed_size(m);
  uint8_t *p = arena_alloc(a, *n + 1);
  if (p) protobuf_c_message_pack(m, p);
  return p;
}

/* The online state and the live counters the call ranked with. */
static int decision_state(rec_call *c, const rec_result *res, Rec__V1__DecisionRecord *d) {
  arena *a = c->ctx->arena;
  Rec__V1__DecisionOnlineItem **on = arena_calloc(a, c->n_online + 1, sizeof *on);
  Rec__V1__DecisionOnlineItem *one = arena_calloc(a, c->n_online + 1, sizeof *one);
  if (!on || !one) return REC_ENOMEM;
  for (size_t i = 0; i < c->n_online; i++) {
    rec__v1__decision_online_item__init(&one[i]);
    one[i].item_id = (char *)c->online[i].item;
    one[i].last_time = c->online[i].last_time;
    one[i].count = c->online[i].count;
    one[i].purchased = c->online[i].purchased;
    on[i] = &one[i];
  }
  d->online = on;
  d->n_online = c->n_online;
  d->added_events = (uint32_t *)res->added_events;
  d->n_added_events = res->n_added;
  return 0;
}

/* What the call saw and served, for `recctl replay`: queued for the
 * decision log's writer when the call is in the sample. The log is best
 * effort: a record that cannot be made or queued is counted, never an
 * error for the caller. */
static void log_decision(rec_call *c, const Rec__V1__RecommendResponse *r, const rec_result *res) {
  app *ap = c->ctx->app;
  arena *a = c->ctx->arena;
  /* A traced call (sampled by its caller) is always logged: whoever traces
   * it will want to see what it decided. A console look-up (quiet) decided
   * nothing anybody was shown. */
  if (!ap->decisions || c->ctx->quiet ||
      (!c->ctx->trace.sampled && !declog_sampled(ap->cfg->decision_log_rate, c->request_id, strlen(c->request_id))))
    return;
  Rec__V1__DecisionRecord d = REC__V1__DECISION_RECORD__INIT;
  char **arms = arena_calloc(a, r->n_arms + 1, sizeof *arms);
  if (!arms || decision_state(c, res, &d)) goto dropped;
  for (size_t i = 0; i < r->n_arms; i++)
    if (!(arms[i] = arena_printf(a, "%s/%s", r->arms[i]->experiment, r->arms[i]->arm))) goto dropped;
  d.request_id = c->request_id;
  d.time_unix_ms = c->now_ms;
  d.served_unix_ms = rec_wall_ms();
  if (!(d.request.data = pack(a, &c->q->base, &d.request.len)) ||
      !(d.response.data = pack(a, &r->base, &d.response.len)))
    goto dropped;
  d.bundle_version = (char *)c->b->version;
  d.catalog_generation = c->b->catalog->generation;
  d.settings_path = (char *)ap->cfg->ranking_config;
  d.settings_hash = c->snap->settings_hash;
  d.experiments_path = (char *)ap->cfg->experiments;
  d.experiments_hash = c->snap->experiments_hash;
  d.arms = arms;
  d.n_arms = r->n_arms;
  d.deadline_ef = c->steps & REC_DEGRADE_EF;
  d.deadline_mmr = c->steps & REC_DEGRADE_MMR;
  d.deadline_popularity = c->steps & REC_DEGRADE_POPULARITY;
  d.role = (char *)rec_role_name(ap->cfg->role);
  d.trace_id = c->ctx->trace.trace_id;
  d.span_id = c->ctx->trace.span_id;
  size_t n = protobuf_c_message_get_packed_size(&d.base);
  uint8_t *p = malloc(n + 1); /* the writer frees it, on its own thread */
  if (!p) goto dropped;
  protobuf_c_message_pack(&d.base, p);
  metrics_decision(declog_submit(ap->decisions, p, n) != 0);
  return;
dropped:
  metrics_decision(true);
}

/* After the last round: the response. */
static int respond(rec_call *c, ProtobufCMessage **out) {
  rpc_ctx *ctx = c->ctx;
  rec_result res;
  int rc = recommend_finish(c->run, &res);
  if (rc) return rpc_fail(ctx, rc, "recommend failed: %s", rec_strerror(rc));
  if (!ctx->quiet) record_metrics(c, &res);
  if (rpc_deadline_passed(ctx)) return rpc_fail(ctx, REC_EDEADLINE, "deadline passed while ranking");
  int64_t t0 = rec_mono_ns();
  Rec__V1__RecommendResponse *r = arena_alloc(ctx->arena, sizeof *r);
  if (!r) return REC_ENOMEM;
  rec__v1__recommend_response__init(r);
  if ((rc = conv_recommend_response(ctx->arena, c->b, &c->rq, &res, c->q->explain, c->start_ns, r)))
    return rc;
  r->request_id = c->request_id;
  r->catalog_generation = c->b->catalog->generation;
  if ((rc = report_arms(c, r))) return rc;
  metrics_observe_stage(STAGE_RESPONSE, rec_mono_ns() - t0);
  log_decision(c, r, &res);
  *out = &r->base;
  return 0;
}

static int run_local(rec_call *c) {
  int rc = recommend_rounds_local(c->run);
  return rc ? rpc_fail(c->ctx, rc, "recommend failed: %s", rec_strerror(rc)) : 0;
}

/* ---- role=ranking: the candidate tier's shards ----
 *
 * The shards get one budget per call: at most retrieval_timeout_ms and four
 * fifths of the caller's time left (a fifth is kept to rank), shared by
 * every widening round. A shard that failed once is not asked again in the
 * same call; a round with no budget left, or no shard to ask, takes
 * popularity and co-purchases from this process, flagged. */

/* What the shards said (rs NULL: none was asked), as one round's candidates. */
static int gather(rec_call *c, Rec__V1__RetrieveResponse **rs, const int *status, retrieve_result *out) {
  app *ap = c->ctx->app;
  arena *a = c->ctx->arena;
  size_t n = fanout_count(ap->shards), answered = 0;
  *out = (retrieve_result){.exhausted = true};
  for (size_t i = 0; i < n; i++) {
    if (rs && rs[i]) {
      answered++;
      out->known_user |= rs[i]->known_user;
      out->exhausted &= rs[i]->exhausted;
      continue;
    }
    if (!c->shard_failed[i])
      c->shard_failed[i] = rs && status[i] != FANOUT_SKIPPED ? status[i] : FANOUT_OUT_OF_TIME;
    c->skip[i] = 1;
    const char *d = arena_printf(a, "%s:%s", fanout_target(ap->shards, i), rpc_status_name(c->shard_failed[i]));
    rec_notes_add(&c->notes, REC_DEG_SHARD_UNAVAILABLE, d ? d : "?");
    out->exhausted = false;
  }
  if (answered && answered < n)
    rec_notes_add(&c->notes, REC_DEG_SHARDS_ANSWERED, arena_printf(a, "%zu/%zu", answered, n));
  if (answered) return conv_merge_candidates(a, c->b, rs, n, out);
  rec_notes_add(&c->notes, REC_DEG_RETRIEVAL_UNAVAILABLE, NULL);
  retrieve_req local = *recommend_want(c->run);
  local.user_id = NULL;
  local.want_ann = 0;
  return retrieve_candidates(c->b, &local, a, out);
}

static void on_shards(void *arg, ProtobufCMessage **resps, const int *status);

/* Starts one round on the shards still worth asking, within what is left of
 * the budget. *asked false: nobody to ask, on_shards will not run. */
static int ask_shards(rec_call *c, bool *asked) {
  rpc_ctx *ctx = c->ctx;
  app *ap = ctx->app;
  size_t n = fanout_count(ap->shards), live = 0;
  int64_t now = rec_mono_ns();
  *asked = false;
  if (!c->skip) {
    int64_t left = ctx->deadline_ns - now, budget = (int64_t)ap->cfg->retrieval_timeout_ms * 1000000;
    if (ctx->deadline_ns != INT64_MAX && left * 4 / 5 < budget) budget = left * 4 / 5;
    c->shards_until = now + budget;
    c->skip = arena_calloc(ctx->arena, n, 1);
    c->shard_failed = arena_calloc(ctx->arena, n, sizeof *c->shard_failed);
    if (!c->skip || !c->shard_failed) return REC_ENOMEM;
  }
  for (size_t i = 0; i < n; i++) live += !c->skip[i];
  if (!live || now >= c->shards_until) return 0;
  Rec__V1__RetrieveRequest *q = conv_retrieve_request(ctx->arena, c->b, recommend_want(c->run));
  if (!q) return REC_ENOMEM;
  int rc = fanout_start(ap->shards, ctx, "/rec.v1.Retrieval/Retrieve", &q->base, &rec__v1__retrieve_response__descriptor,
                        c->shards_until, c->skip, on_shards, c);
  if (rc) return rpc_fail(ctx, rc, "cannot ask the retrieval shards: %s", rec_strerror(rc));
  *asked = true;
  return 0;
}

/* Rounds from what the shards said (rs NULL: nobody was asked) until one
 * goes to the shards again or the page is settled; then the answer. */
static void advance(rec_call *c, Rec__V1__RetrieveResponse **rs, const int *status) {
  rpc_ctx *ctx = c->ctx;
  ProtobufCMessage *out = NULL;
  int rc;
  for (;;) {
    int64_t t0 = rec_mono_ns();
    retrieve_result rr;
    bool again = false, asked = false;
    rc = gather(c, rs, status, &rr);
    rr.sources_ns = rec_mono_ns() - t0;
    if (rc || (rc = recommend_step(c->run, &rr, &again)) || !again) break;
    if ((rc = ask_shards(c, &asked))) break;
    if (asked) return; /* on_shards goes on with the next round */
    rs = NULL;
  }
  if (!rc) rc = respond(c, &out);
  rpc_complete(ctx, rc, rc ? NULL : out);
}

static void on_shards(void *arg, ProtobufCMessage **resps, const int *status) {
  advance(arg, (Rec__V1__RetrieveResponse **)resps, status);
}

static int recommend(rpc_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **out) {
  app *ap = ctx->app;
  rec_call *c = arena_calloc(ctx->arena, 1, sizeof *c);
  if (!c) return REC_ENOMEM;
  c->ctx = ctx;
  c->q = (const Rec__V1__RecommendRequest *)in;
  c->start_ns = rec_mono_ns();
  const rank_config *cfg;
  int rc;
  /* The call's log line names the request from the start, refused or not. */
  if (!(c->note = arena_calloc(ctx->arena, 1, sizeof *c->note))) return REC_ENOMEM;
  c->note->request_id = c->q->request_id;
  ctx->note = c->note;
  if ((rc = check(ctx, ap->cfg, c->q)) || (rc = svc_acquire_snapshot(ctx, &c->b, &c->snap))) return rc;
  cfg = c->snap->cfg;
  if (!(c->request_id = svc_request_id(ctx, c->q->request_id))) return REC_ENOMEM;
  c->note->request_id = c->request_id;
  if ((rc = assign_arms(c, &cfg)) || (rc = prepare(c, cfg))) return rc;
  /* Popularity alone needs no shard: this process holds the lists. */
  if (!ap->shards || c->rq.popularity_only) return (rc = run_local(c)) ? rc : respond(c, out);
  /* From here the rounds own the call; ctx may be gone once one started. */
  bool asked;
  if ((rc = ask_shards(c, &asked))) return rc;
  if (!asked) advance(c, NULL, NULL); /* no budget at all: answered from here */
  return RPC_PENDING;
}

const rpc_method h_recommend = {"/rec.v1.Ranking/Recommend",
                                &rec__v1__recommend_request__descriptor,
                                &rec__v1__recommend_response__descriptor, recommend};

/* ---- SimilarItems ---- */

static int check_similar(rpc_ctx *ctx, const recd_config *cfg, const Rec__V1__SimilarItemsRequest *q) {
  if (q->n_item_ids == 0) return rpc_fail(ctx, REC_EINVAL, "item_ids is required (1 to %d ids)", MAX_ANCHORS);
  conv_shape s = {.k_field = "k", .k = q->k, .max_k = cfg->max_k, .request_id = q->request_id,
                  .lists = {{"item_ids", q->item_ids, q->n_item_ids, MAX_ANCHORS},
                            {"exclude_item_ids", q->exclude_item_ids, q->n_exclude_item_ids, (size_t)cfg->max_exclude}}};
  return conv_check(ctx, &s);
}

static int similar_items(rpc_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **out) {
  const Rec__V1__SimilarItemsRequest *q = (const Rec__V1__SimilarItemsRequest *)in;
  app *ap = ctx->app;
  const bundle *b;
  const rank_config *cfg;
  int rc;
  if ((rc = check_similar(ctx, ap->cfg, q)) || (rc = svc_acquire(ctx, &b, &cfg))) return rc;
  rec_request rq = {.k = (size_t)q->k, .similar = true};
  uint32_t *seeds = arena_calloc(ctx->arena, q->n_item_ids + 1, sizeof *seeds);
  char **excl = arena_calloc(ctx->arena, q->n_exclude_item_ids + q->n_item_ids + 1, sizeof *excl);
  if (!seeds || !excl) return REC_ENOMEM;
  for (size_t i = 0; i < q->n_item_ids; i++)
    if (!catalog_find(b->catalog, q->item_ids[i], strlen(q->item_ids[i]), &seeds[i]))
      return rpc_fail(ctx, REC_EINVAL, "item_ids[%zu]: unknown item '%.128s' in bundle %s", i,
                      q->item_ids[i], b->version);
  /* The items asked about are never their own complements. */
  for (size_t i = 0; i < q->n_exclude_item_ids; i++) excl[i] = q->exclude_item_ids[i];
  for (size_t i = 0; i < q->n_item_ids; i++) excl[q->n_exclude_item_ids + i] = q->item_ids[i];
  rq.seeds = seeds;
  rq.n_seeds = q->n_item_ids;
  if ((rc = conv_rules(ctx, b, cfg, q->filters, excl, q->n_exclude_item_ids + q->n_item_ids, 0, &rq.rules)))
    return rc;
  rec_result res;
  if ((rc = recommend_run(b, &rq, ctx->arena, &res)))
    return rpc_fail(ctx, rc, "similar items failed: %s", rec_strerror(rc));
  Rec__V1__SimilarItemsResponse *r = arena_alloc(ctx->arena, sizeof *r);
  if (!r) return REC_ENOMEM;
  rec__v1__similar_items_response__init(r);
  r->items = conv_items(ctx->arena, b, &res, false, &r->n_items);
  r->bundle_version = b->version;
  r->catalog_generation = b->catalog->generation;
  r->request_id = svc_request_id(ctx, q->request_id);
  if (!r->items || !r->request_id) return REC_ENOMEM;
  *out = &r->base;
  return 0;
}

const rpc_method h_similar_items = {"/rec.v1.Ranking/SimilarItems",
                                    &rec__v1__similar_items_request__descriptor,
                                    &rec__v1__similar_items_response__descriptor, similar_items};
