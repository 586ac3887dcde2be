/* server/handlers.c - Recommend and Status. Validation errors name the field
 * and the allowed range, so a caller can fix the request without reading our
 * code; protobuf types never travel past this file. */
#include "server/handlers.h"
#include "common/clock.h"
#include "rec/v1/admin.pb-c.h"
#include "rec/v1/events.pb-c.h"
#include "rec/v1/ranking.pb-c.h"
#include "rec/v1/retrieval.pb-c.h"
#include "retrieval/retrieve.h"
#include "server/app.h"
#include "server/metrics.h"
#include "server/recommend.h"
#include "server/rpc_client.h"
#include "server/rpc_fanout.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CATEGORIES 64
#define MAX_ANCHORS 100
#define MAX_EXPLAIN 100
#define MAX_PAGES 50 /* offset + k is at most max_k * MAX_PAGES */

static int by_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

/* Item rows of the ids the catalog knows, sorted if asked; unknown ids
 * cannot be returned anyway and are skipped. */
static uint32_t *resolve_ids(arena *a, const catalog *c, char *const *ids, size_t n, bool sort,
                             size_t *out_n) {
  uint32_t *rows = arena_calloc(a, n + 1, sizeof *rows);
  if (!rows) return NULL;
  size_t m = 0;
  for (size_t i = 0; i < n; i++)
    if (catalog_find(c, ids[i], strlen(ids[i]), &rows[m])) m++;
  if (sort) qsort(rows, m, sizeof *rows, by_u32);
  *out_n = m;
  return rows;
}

static int resolve_categories(rpc_ctx *ctx, const catalog *c, char **names, size_t n,
                              const char *field, const uint32_t **out, size_t *n_out) {
  if (n > MAX_CATEGORIES)
    return rpc_fail(ctx, REC_EINVAL, "filters.%s has %zu entries; at most %d allowed", field, n,
                    MAX_CATEGORIES);
  uint32_t *rows = arena_calloc(ctx->arena, n + 1, sizeof *rows);
  if (!rows) return REC_ENOMEM;
  for (size_t i = 0; i < n; i++)
    if (!catalog_find_category(c, names[i], strlen(names[i]), &rows[i]))
      return rpc_fail(ctx, REC_EINVAL, "filters.%s[%zu]: unknown category '%.128s'", field, i,
                      names[i]);
  *out = rows;
  *n_out = n;
  return 0;
}

static int resolve_filters(rpc_ctx *ctx, const catalog *c, const Rec__V1__Filters *f,
                           rank_req *r) {
  if (!f) return 0;
  int rc;
  if ((rc = resolve_categories(ctx, c, f->include_categories, f->n_include_categories,
                               "include_categories", &r->include_cats, &r->n_include_cats)) ||
      (rc = resolve_categories(ctx, c, f->exclude_categories, f->n_exclude_categories,
                               "exclude_categories", &r->exclude_cats, &r->n_exclude_cats)))
    return rc;
  if (f->price) {
    double lo = f->price->min_price, hi = f->price->max_price;
    if (!(lo >= 0) || !(hi >= 0) || (hi > 0 && hi < lo))
      return rpc_fail(ctx, REC_EINVAL, "filters.price: want 0 <= min_price <= max_price (max_price "
                      "0 = no upper bound), got [%g, %g]", lo, hi);
    r->has_price = true;
    r->min_price = (float)lo;
    r->max_price = (float)hi;
  }
  return 0;
}

static int by_boost_item(const void *a, const void *b) {
  return by_u32(&((const rank_boost_row *)a)->item, &((const rank_boost_row *)b)->item);
}

/* The configuration's blocked items and promotions, as rows of this bundle. */
static int resolve_config(arena *a, const catalog *c, const rank_config *cfg, rank_req *r) {
  uint32_t *blocked = resolve_ids(a, c, cfg->blocked, cfg->n_blocked, true, &r->n_blocked);
  rank_pin_row *pins = arena_calloc(a, cfg->n_pins + 1, sizeof *pins);
  rank_boost_row *boosts = arena_calloc(a, cfg->n_boosts + 1, sizeof *boosts);
  if (!blocked || !pins || !boosts) return REC_ENOMEM;
  for (size_t i = 0; i < cfg->n_pins; i++)
    if (catalog_find(c, cfg->pins[i].item, strlen(cfg->pins[i].item), &pins[r->n_pins].item))
      pins[r->n_pins++].slot = cfg->pins[i].slot;
  for (size_t i = 0; i < cfg->n_boosts; i++)
    if (catalog_find(c, cfg->boosts[i].item, strlen(cfg->boosts[i].item), &boosts[r->n_boosts].item))
      boosts[r->n_boosts++].factor = cfg->boosts[i].factor;
  qsort(boosts, r->n_boosts, sizeof *boosts, by_boost_item);
  r->blocked = blocked;
  r->pins = pins;
  r->boosts = boosts;
  return 0;
}

/* Rules shared by Recommend and SimilarItems. */
static int resolve_rules(rpc_ctx *ctx, const bundle *b, const rank_config *cfg,
                         const Rec__V1__Filters *f, char **excl, size_t n_excl, rank_req *r) {
  r->cfg = cfg;
  r->now = rec_wall_ms() / 1000;
  r->exclude = resolve_ids(ctx->arena, b->catalog, excl, n_excl, true, &r->n_exclude);
  if (!r->exclude || resolve_config(ctx->arena, b->catalog, r->cfg, r)) return REC_ENOMEM;
  return resolve_filters(ctx, b->catalog, f, r);
}

static int check_ids(rpc_ctx *ctx, const char *field, char **ids, size_t n, size_t max) {
  if (n > max)
    return rpc_fail(ctx, REC_EINVAL, "%s has %zu ids; at most %zu allowed", field, n, max);
  for (size_t i = 0; i < n; i++)
    if (strlen(ids[i]) > REC_ID_MAX)
      return rpc_fail(ctx, REC_EINVAL, "%s[%zu] is longer than %d bytes", field, i, REC_ID_MAX);
  return 0;
}

/* Checks what can be checked without a bundle. */
static int validate(rpc_ctx *ctx, const recd_config *cfg, const Rec__V1__RecommendRequest *q) {
  size_t ulen = strlen(q->user_id);
  int rc;
  if (ulen == 0) return rpc_fail(ctx, REC_EINVAL, "user_id is required");
  if (ulen > REC_ID_MAX)
    return rpc_fail(ctx, REC_EINVAL, "user_id is %zu bytes; at most %d allowed", ulen, REC_ID_MAX);
  if (q->k < 1 || q->k > cfg->max_k)
    return rpc_fail(ctx, REC_EINVAL, "k must be between 1 and %d, got %d", cfg->max_k, q->k);
  if ((rc = check_ids(ctx, "exclude_item_ids", q->exclude_item_ids, q->n_exclude_item_ids,
                      (size_t)cfg->max_exclude)) ||
      (rc = check_ids(ctx, "anchor_item_ids", q->anchor_item_ids, q->n_anchor_item_ids, MAX_ANCHORS)) ||
      (rc = check_ids(ctx, "explain_item_ids", q->explain_item_ids, q->n_explain_item_ids, MAX_EXPLAIN)))
    return rc;
  if (strlen(q->request_id) > REC_ID_MAX)
    return rpc_fail(ctx, REC_EINVAL, "request_id is longer than %d bytes", REC_ID_MAX);
  return 0;
}

/* A cursor is "<offset>@<bundle version>": a page is only meaningful against
 * the ranking it continues. */
static int parse_cursor(rpc_ctx *ctx, const recd_config *cfg, const char *cur, const bundle *b,
                        size_t k, size_t *offset) {
  *offset = 0;
  if (!*cur) return 0;
  char *end;
  unsigned long long off = strtoull(cur, &end, 10);
  if (end == cur || *end != '@')
    return rpc_fail(ctx, REC_EINVAL, "page_cursor is malformed; pass back next_cursor unchanged");
  if (strcmp(end + 1, b->version) != 0)
    return rpc_fail(ctx, REC_EINVAL, "page_cursor belongs to bundle %.128s, now serving %s; "
                    "request the first page again", end + 1, b->version);
  if (off + k > (unsigned long long)cfg->max_k * MAX_PAGES)
    return rpc_fail(ctx, REC_EINVAL, "page_cursor goes past the deepest page (%d items)",
                    cfg->max_k * MAX_PAGES);
  *offset = (size_t)off;
  return 0;
}

/* ---- building replies ---- */

static const Rec__V1__Source SOURCE_PROTO[REC_SRC_COUNT] = {
    REC__V1__SOURCE__SOURCE_ANN, REC__V1__SOURCE__SOURCE_ITEM_CF, REC__V1__SOURCE__SOURCE_POPULARITY};
static const char *const SOURCE_NAMES[REC_SRC_COUNT] = {"ann", "item_cf", "popularity"};

static Rec__V1__Explanation *explanation(arena *a, const rank_item *it) {
  Rec__V1__Explanation *e = arena_alloc(a, sizeof *e);
  Rec__V1__Adjustment **adj = arena_calloc(a, it->n_adj + 1, sizeof *adj);
  if (!e || !adj) return NULL;
  rec__v1__explanation__init(e);
  e->blended = it->blended;
  e->final_score = it->score;
  e->adjustments = adj;
  for (size_t i = 0; i < it->n_adj; i++) {
    Rec__V1__Adjustment *x = arena_alloc(a, sizeof *x);
    if (!x) return NULL;
    rec__v1__adjustment__init(x);
    x->rule = (char *)it->adj[i].rule;
    x->factor = it->adj[i].factor;
    adj[e->n_adjustments++] = x;
  }
  if (it->pinned) {
    Rec__V1__Adjustment *x = arena_alloc(a, sizeof *x);
    if (!x) return NULL;
    rec__v1__adjustment__init(x);
    x->rule = "promotion_pin";
    x->factor = 1;
    adj[e->n_adjustments++] = x;
  }
  return e;
}

static Rec__V1__ScoredItem *scored_item(arena *a, const bundle *b, const rank_item *it,
                                        bool explain) {
  Rec__V1__ScoredItem *s = arena_alloc(a, sizeof *s);
  Rec__V1__SourceScore **src = arena_calloc(a, REC_SRC_COUNT, sizeof *src);
  if (!s || !src) return NULL;
  rec__v1__scored_item__init(s);
  s->item_id = (char *)b->catalog->ids[it->item];
  s->score = it->score;
  s->category = (char *)b->catalog->categories[b->catalog->category[it->item]];
  s->price = b->catalog->price[it->item];
  s->sources = src;
  for (int k = 0; k < REC_SRC_COUNT; k++) {
    if (!(it->sources & (1u << k))) continue;
    Rec__V1__SourceScore *ss = arena_alloc(a, sizeof *ss);
    if (!ss) return NULL;
    rec__v1__source_score__init(ss);
    ss->source = SOURCE_PROTO[k];
    ss->raw = it->raw[k];
    ss->normalized = it->norm[k];
    src[s->n_sources++] = ss;
  }
  if (explain && !(s->explanation = explanation(a, it))) return NULL;
  return s;
}

static Rec__V1__ScoredItem **scored_items(arena *a, const bundle *b, const rec_result *res,
                                          bool explain, size_t *n) {
  Rec__V1__ScoredItem **items = arena_calloc(a, res->n + 1, sizeof *items);
  if (!items) return NULL;
  for (*n = 0; *n < res->n; (*n)++)
    if (!(items[*n] = scored_item(a, b, &res->items[*n], explain))) return NULL;
  return items;
}

static int fill_verdicts(arena *a, const rec_result *res, Rec__V1__RecommendResponse *r) {
  r->verdicts = arena_calloc(a, res->n_verdicts + 1, sizeof *r->verdicts);
  if (!r->verdicts) return REC_ENOMEM;
  for (size_t i = 0; i < res->n_verdicts; i++) {
    Rec__V1__ItemVerdict *v = arena_alloc(a, sizeof *v);
    if (!v) return REC_ENOMEM;
    rec__v1__item_verdict__init(v);
    v->item_id = (char *)res->verdicts[i].item_id;
    v->stage = (char *)res->verdicts[i].stage;
    v->reason = (char *)res->verdicts[i].reason;
    r->verdicts[r->n_verdicts++] = v;
  }
  return 0;
}

static int fill_timings(arena *a, const rec_result *res, int64_t start_ns,
                        Rec__V1__RecommendResponse *r) {
  r->timings = arena_alloc(a, sizeof *r->timings);
  if (!r->timings) return REC_ENOMEM;
  rec__v1__stage_timings__init(r->timings);
  r->timings->user_tower_us = (uint32_t)(res->tower_ns / 1000);
  r->timings->ann_us = (uint32_t)(res->ann_ns / 1000);
  r->timings->ranking_us = (uint32_t)((res->rank_ns + res->sources_ns) / 1000);
  r->timings->total_us = (uint32_t)((rec_mono_ns() - start_ns) / 1000);
  return 0;
}

/* unknown_user, source_missing:<source> (for weighted sources), short_catalog,
 * then what the remote candidate tier reported. */
static char **degraded(arena *a, const rank_config *cfg, const rec_result *res,
                       const char *const *notes, size_t n_notes, size_t *n) {
  char **d = arena_calloc(a, REC_SRC_COUNT + 3 + n_notes, sizeof *d);
  if (!d) return NULL;
  *n = 0;
  if (!res->personalized) d[(*n)++] = "unknown_user";
  for (int s = 0; s < REC_SRC_COUNT; s++)
    if ((res->missing & (1u << s)) && cfg->weight[s] > 0)
      if (!(d[(*n)++] = arena_printf(a, "source_missing:%s", SOURCE_NAMES[s]))) return NULL;
  if (res->short_catalog) d[(*n)++] = "short_catalog";
  for (size_t i = 0; i < n_notes; i++) d[(*n)++] = (char *)notes[i];
  return d;
}

static const char *request_id(rpc_ctx *ctx, const char *given) {
  app *ap = ctx->app;
  return given[0] ? given : arena_printf(ctx->arena, "recd-%" PRIuFAST64, atomic_fetch_add(&ap->seq, 1) + 1);
}

/* Role=ranking: the candidate tier's shards, asked in parallel. */
typedef struct remote {
  rpc_ctx *ctx;
  const char *notes[8];      /* degraded reasons, each once */
  size_t n_notes;
} remote;

static void note(remote *rm, const char *s) {
  for (size_t i = 0; i < rm->n_notes; i++)
    if (strcmp(rm->notes[i], s) == 0) return;
  if (s && rm->n_notes < sizeof rm->notes / sizeof *rm->notes) rm->notes[rm->n_notes++] = s;
}

static Rec__V1__RetrieveRequest *remote_request(arena *a, const bundle *b, const retrieve_req *rq) {
  Rec__V1__RetrieveRequest *q = arena_alloc(a, sizeof *q);
  Rec__V1__Filters *f = arena_alloc(a, sizeof *f);
  char **recent = arena_calloc(a, rq->n_seeds + rq->n_recent + 1, sizeof *recent);
  char **cats = arena_calloc(a, rq->n_categories + 1, sizeof *cats);
  if (!q || !f || !recent || !cats) return NULL;
  rec__v1__retrieve_request__init(q);
  rec__v1__filters__init(f);
  q->user_id = arena_strndup(a, rq->user_id, rq->user_len);
  size_t want = rq->want_ann > rq->want_pop ? rq->want_ann : rq->want_pop;
  q->num_candidates = (int32_t)(want < 10000 ? want : 10000);
  for (size_t i = 0; i < rq->n_seeds; i++) recent[q->n_recent_item_ids++] = (char *)b->catalog->ids[rq->seeds[i]];
  for (size_t i = 0; i < rq->n_recent; i++) recent[q->n_recent_item_ids++] = (char *)b->catalog->ids[rq->recent[i]];
  q->recent_item_ids = recent;
  for (size_t i = 0; i < rq->n_categories; i++) cats[i] = (char *)b->catalog->categories[rq->categories[i]];
  f->include_categories = cats;
  f->n_include_categories = rq->n_categories;
  q->filters = f;
  q->segment = rq->segment;
  return q->user_id ? q : NULL;
}

/* Merges the shards' candidates (disjoint item sets) into one list of this
 * process's catalog rows; ids the catalog lacks are skipped. */
static int merge_remote(arena *a, const bundle *b, Rec__V1__RetrieveResponse **rs, size_t n,
                        retrieve_result *out) {
  size_t total = 0;
  for (size_t i = 0; i < n; i++) total += rs[i] ? rs[i]->n_candidates : 0;
  rec_candidate *c = arena_calloc(a, total + 1, sizeof *c);
  if (!c) return REC_ENOMEM;
  for (size_t i = 0; i < n; i++)
    for (size_t j = 0; rs[i] && j < rs[i]->n_candidates; j++) {
      const Rec__V1__Candidate *x = rs[i]->candidates[j];
      if (!catalog_find(b->catalog, x->item_id, strlen(x->item_id), &c[out->n].item)) continue;
      for (size_t k = 0; k < x->n_scores; k++)
        for (int s = 0; s < REC_SRC_COUNT; s++)
          if (x->scores[k]->source == SOURCE_PROTO[s]) {
            c[out->n].sources |= 1u << s;
            c[out->n].raw[s] = x->scores[k]->raw;
          }
      out->n++;
    }
  out->cands = c;
  return 0;
}

static int remote_retrieve(void *arg, const bundle *b, const retrieve_req *rq, arena *a, retrieve_result *out) {
  remote *rm = arg;
  app *ap = rm->ctx->app;
  size_t n = fanout_count(ap->shards);
  int64_t now = rec_mono_ns(), left = rm->ctx->deadline_ns - now;
  int64_t budget = (int64_t)ap->cfg->retrieval_timeout_ms * 1000000;
  if (left < INT64_MAX / 2 && left * 4 / 5 < budget) budget = left * 4 / 5; /* keep a fifth to rank */
  Rec__V1__RetrieveRequest *q = remote_request(a, b, rq);
  ProtobufCMessage **rs = arena_calloc(a, n, sizeof *rs);
  int *st = arena_calloc(a, n, sizeof *st);
  if (!q || !rs || !st) return REC_ENOMEM;
  fanout_call(ap->shards, "/rec.v1.Retrieval/Retrieve", &q->base, &rec__v1__retrieve_response__descriptor,
              now + budget, a, rs, st);
  *out = (retrieve_result){.exhausted = true};
  size_t answered = 0, missing = 0;
  for (size_t i = 0; i < n; i++) {
    Rec__V1__RetrieveResponse *r = (Rec__V1__RetrieveResponse *)rs[i];
    if (!r) {
      note(rm, arena_printf(a, "shard_unavailable:%s:%s", fanout_target(ap->shards, i), rpc_status_name(st[i])));
      missing++;
      out->exhausted = false;
      continue;
    }
    answered++;
    out->known_user |= r->known_user;
    out->exhausted &= r->exhausted;
  }
  out->sources_ns = rec_mono_ns() - now;
  if (missing && answered) note(rm, arena_printf(a, "shards_answered:%zu/%zu", answered, n));
  if (answered) return merge_remote(a, b, (Rec__V1__RetrieveResponse **)rs, n, out);
  /* No shard answered: popularity and co-purchases from this process, flagged. */
  note(rm, "retrieval_unavailable");
  retrieve_req local = *rq;
  local.user_id = NULL;
  local.want_ann = 0;
  return retrieve_candidates(b, &local, a, out);
}

static int fill_response(rpc_ctx *ctx, const Rec__V1__RecommendRequest *q, const bundle *b,
                         const rec_request *rq, const rec_result *res, int64_t start_ns,
                         Rec__V1__RecommendResponse *r) {
  arena *a = ctx->arena;
  const remote *rm = rq->retrieve_arg;
  r->items = scored_items(a, b, res, q->explain, &r->n_items);
  r->degraded_reasons = degraded(a, rq->rules.cfg, res, rm ? rm->notes : NULL, rm ? rm->n_notes : 0,
                                 &r->n_degraded_reasons);
  for (size_t i = 0; r->degraded_reasons && i < r->n_degraded_reasons; i++)
    metrics_degraded(r->degraded_reasons[i]);
  r->bundle_version = b->version;
  r->strategy = res->personalized ? REC__V1__STRATEGY__STRATEGY_PERSONALIZED
                                  : REC__V1__STRATEGY__STRATEGY_POPULARITY_FALLBACK;
  r->request_id = (char *)request_id(ctx, q->request_id);
  r->next_cursor = res->more ? arena_printf(a, "%zu@%s", rq->offset + rq->k, b->version) : "";
  if (!r->items || !r->degraded_reasons || !r->request_id || !r->next_cursor) return REC_ENOMEM;
  if (fill_verdicts(a, res, r)) return REC_ENOMEM;
  return q->explain ? fill_timings(a, res, start_ns, r) : 0;
}

static int by_purchase_item(const void *a, const void *b) {
  return by_u32(&((const rec_purchase *)a)->item, &((const rec_purchase *)b)->item);
}

/* The request's anchors, then the items the user's recorded events touched
 * (most recent first), seed item-CF: a visitor the bundle has never seen
 * still gets its session's neighbours. Recorded purchases join the bundle's
 * for the repurchase rules. */
static int session(rpc_ctx *ctx, const bundle *b, const Rec__V1__RecommendRequest *q, rec_request *rq) {
  app *ap = ctx->app;
  online_item *on = NULL;
  size_t n_on = ap->online ? online_get(ap->online, q->user_id, strlen(q->user_id), ctx->arena, &on) : 0;
  size_t n_anchor;
  uint32_t *anchors = resolve_ids(ctx->arena, b->catalog, q->anchor_item_ids, q->n_anchor_item_ids, false, &n_anchor);
  uint32_t *seeds = arena_calloc(ctx->arena, n_anchor + n_on + 1, sizeof *seeds);
  rec_purchase *bought = arena_calloc(ctx->arena, n_on + 1, sizeof *bought);
  if (!anchors || !seeds || !bought) return REC_ENOMEM;
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

static void record_stages(const rec_result *res, int64_t start_ns) {
  metrics_observe_stage(STAGE_USER_TOWER, res->tower_ns);
  metrics_observe_stage(STAGE_ANN, res->ann_ns);
  metrics_observe_stage(STAGE_SOURCES, res->sources_ns);
  metrics_observe_stage(STAGE_RANKING, res->rank_ns);
  metrics_observe_stage(STAGE_TOTAL, rec_mono_ns() - start_ns);
  metrics_candidates(res->per_source);
}

/* When the caller's deadline is near, cheaper first: a narrower HNSW
 * search, then no MMR, then popularity alone; each step is named in
 * degraded_reasons. */
static int degrade_for_deadline(rpc_ctx *ctx, rec_request *rq, remote *rm) {
  app *ap = ctx->app;
  int64_t left_ms = (ctx->deadline_ns - rec_mono_ns()) / 1000000;
  if (ctx->deadline_ns == INT64_MAX) return 0;
  if (left_ms < ap->cfg->degrade_ef_below_ms) {
    rq->ann_ef = 16;
    note(rm, "deadline:ef_reduced");
  }
  if (left_ms < ap->cfg->degrade_popularity_below_ms) {
    rq->popularity_only = true;
    note(rm, "deadline:popularity_only");
  }
  if (left_ms < ap->cfg->degrade_mmr_below_ms && rq->rules.cfg->mmr) {
    rank_config *c = arena_alloc(ctx->arena, sizeof *c);
    if (!c) return REC_ENOMEM;
    *c = *rq->rules.cfg; /* a shallow copy: the lists stay shared and read-only */
    c->mmr = false;
    rq->rules.cfg = c;
    note(rm, "deadline:mmr_skipped");
  }
  return 0;
}

static int run(rpc_ctx *ctx, const Rec__V1__RecommendRequest *q, const bundle *b, const rank_config *cfg,
               Rec__V1__RecommendResponse *r) {
  app *ap = ctx->app;
  int64_t start = rec_mono_ns();
  rec_request rq = {.user_id = q->user_id, .user_len = strlen(q->user_id), .k = (size_t)q->k,
                    .explain_ids = (const char *const *)q->explain_item_ids,
                    .n_explain = q->n_explain_item_ids};
  int rc;
  if ((rc = parse_cursor(ctx, ap->cfg, q->page_cursor, b, rq.k, &rq.offset)) ||
      (rc = resolve_rules(ctx, b, cfg, q->filters, q->exclude_item_ids, q->n_exclude_item_ids, &rq.rules)))
    return rc;
  if ((rc = session(ctx, b, q, &rq))) return rc;
  remote *rm = arena_calloc(ctx->arena, 1, sizeof *rm);
  if (!rm) return REC_ENOMEM;
  rm->ctx = ctx;
  rq.retrieve_arg = rm; /* holds the notes for degraded_reasons */
  if (ap->shards) rq.retrieve = remote_retrieve;
  if ((rc = degrade_for_deadline(ctx, &rq, rm))) return rc;
  rec_result res;
  if ((rc = recommend_run(b, &rq, ctx->arena, &res)))
    return rpc_fail(ctx, rc, "recommend failed: %s", rec_strerror(rc));
  record_stages(&res, start);
  if (rpc_deadline_passed(ctx))
    return rpc_fail(ctx, REC_EDEADLINE, "deadline passed while ranking");
  return fill_response(ctx, q, b, &rq, &res, start, r);
}

static void release_bundle(void *b) { bundle_unref(b); }
static void release_ranking(void *r) { app_ranking_unref(r); }

/* The bundle and the ranking settings a call uses, held until the RPC layer
 * has packed the reply (whose ids point into the bundle): a reload swaps
 * both for later calls only. */
static int acquire(rpc_ctx *ctx, bundle **b, const rank_config **cfg) {
  app_ranking *r = app_acquire_ranking(ctx->app);
  if (!r || !(*b = app_acquire(ctx->app))) {
    app_ranking_unref(r);
    return rpc_fail(ctx, REC_EUNAVAIL, "no bundle loaded yet; retry shortly");
  }
  rpc_on_done(ctx, release_bundle, *b);
  rpc_on_done(ctx, release_ranking, r);
  if (cfg) *cfg = r->cfg;
  return 0;
}

static int recommend(rpc_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **out) {
  const Rec__V1__RecommendRequest *q = (const Rec__V1__RecommendRequest *)in;
  app *ap = ctx->app;
  bundle *b;
  int rc = validate(ctx, ap->cfg, q);
  const rank_config *cfg;
  if (rc || (rc = acquire(ctx, &b, &cfg))) return rc;
  Rec__V1__RecommendResponse *r = arena_alloc(ctx->arena, sizeof *r);
  if (!r) return REC_ENOMEM;
  rec__v1__recommend_response__init(r);
  if ((rc = run(ctx, q, b, cfg, r))) return rc;
  *out = &r->base;
  return 0;
}

const rpc_method h_recommend = {"/rec.v1.Ranking/Recommend",
                                &rec__v1__recommend_request__descriptor,
                                &rec__v1__recommend_response__descriptor, recommend};

/* ---- SimilarItems ---- */

static int validate_similar(rpc_ctx *ctx, const recd_config *cfg, const Rec__V1__SimilarItemsRequest *q) {
  int rc;
  if (q->n_item_ids == 0) return rpc_fail(ctx, REC_EINVAL, "item_ids is required (1 to %d ids)", MAX_ANCHORS);
  if (q->k < 1 || q->k > cfg->max_k)
    return rpc_fail(ctx, REC_EINVAL, "k must be between 1 and %d, got %d", cfg->max_k, q->k);
  if ((rc = check_ids(ctx, "item_ids", q->item_ids, q->n_item_ids, MAX_ANCHORS)) ||
      (rc = check_ids(ctx, "exclude_item_ids", q->exclude_item_ids, q->n_exclude_item_ids,
                      (size_t)cfg->max_exclude)))
    return rc;
  if (strlen(q->request_id) > REC_ID_MAX)
    return rpc_fail(ctx, REC_EINVAL, "request_id is longer than %d bytes", REC_ID_MAX);
  return 0;
}

static int similar_items(rpc_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **out) {
  const Rec__V1__SimilarItemsRequest *q = (const Rec__V1__SimilarItemsRequest *)in;
  app *ap = ctx->app;
  bundle *b;
  int rc = validate_similar(ctx, ap->cfg, q);
  const rank_config *cfg;
  if (rc || (rc = acquire(ctx, &b, &cfg))) return rc;
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
  if ((rc = resolve_rules(ctx, b, cfg, q->filters, excl, q->n_exclude_item_ids + q->n_item_ids, &rq.rules)))
    return rc;
  rec_result res;
  if ((rc = recommend_run(b, &rq, ctx->arena, &res)))
    return rpc_fail(ctx, rc, "similar items failed: %s", rec_strerror(rc));
  Rec__V1__SimilarItemsResponse *r = arena_alloc(ctx->arena, sizeof *r);
  if (!r) return REC_ENOMEM;
  rec__v1__similar_items_response__init(r);
  r->items = scored_items(ctx->arena, b, &res, false, &r->n_items);
  r->bundle_version = b->version;
  r->request_id = (char *)request_id(ctx, q->request_id);
  if (!r->items || !r->request_id) return REC_ENOMEM;
  *out = &r->base;
  return 0;
}

const rpc_method h_similar_items = {"/rec.v1.Ranking/SimilarItems",
                                    &rec__v1__similar_items_request__descriptor,
                                    &rec__v1__similar_items_response__descriptor, similar_items};

static int status(rpc_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **out) {
  (void)in;
  app *ap = ctx->app;
  Rec__V1__StatusResponse *r = arena_alloc(ctx->arena, sizeof *r);
  if (!r) return REC_ENOMEM;
  rec__v1__status_response__init(r);
  bundle *b = app_acquire(ap);
  if (b) {
    r->bundle_version = arena_strndup(ctx->arena, b->version, strlen(b->version));
    r->bundle_path = arena_strndup(ctx->arena, b->path, strlen(b->path));
    r->item_count = b->catalog->count;
    r->user_count = b->user_count;
    r->dim = (uint32_t)b->dim;
    bundle_unref(b);
    if (!r->bundle_version || !r->bundle_path) return REC_ENOMEM;
  }
  r->role = (char *)ap->cfg->role;
  r->serving = rpc_server_serving(ctx->server);
  r->uptime_seconds = (uint64_t)((rec_mono_ns() - ap->started_ns) / 1000000000);
  r->threads = (uint32_t)ap->cfg->threads;
  r->recd_version = RECD_VERSION;
  *out = &r->base;
  return 0;
}

const rpc_method h_status = {"/rec.v1.Admin/Status", &rec__v1__status_request__descriptor,
                             &rec__v1__status_response__descriptor, status};

/* ---- Admin.Reload ---- */

/* Loads on this worker thread (the other workers go on serving the current
 * bundle); a refused bundle leaves the current one serving. */
static int reload(rpc_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **out) {
  const Rec__V1__ReloadRequest *q = (const Rec__V1__ReloadRequest *)in;
  app *ap = ctx->app;
  const char *path = q->bundle_path[0] ? q->bundle_path : ap->cfg->bundle;
  if (strlen(path) >= 4000) return rpc_fail(ctx, REC_EINVAL, "bundle_path is too long");
  Rec__V1__ReloadResponse *r = arena_alloc(ctx->arena, sizeof *r);
  char *old_v = arena_alloc(ctx->arena, REC_ID_MAX + 1), *new_v = arena_alloc(ctx->arena, REC_ID_MAX + 1);
  if (!r || !old_v || !new_v) return REC_ENOMEM;
  int rc = app_reload(ap, path, old_v, new_v, &ctx->err);
  if (rc == REC_EIO) rc = REC_EINVAL; /* an unreadable path is the caller's to fix */
  if (rc) return rc;
  rec__v1__reload_response__init(r);
  r->previous_version = old_v;
  r->version = new_v;
  *out = &r->base;
  return 0;
}

const rpc_method h_reload = {"/rec.v1.Admin/Reload", &rec__v1__reload_request__descriptor,
                             &rec__v1__reload_response__descriptor, reload};

/* ---- Events.Record ---- */

static int check_event(rpc_ctx *ctx, size_t i, const Rec__V1__Event *e, int64_t now_ms, ev_record *r) {
  size_t ul = strlen(e->user_id), il = strlen(e->item_id);
  if (!ul || ul > REC_ID_MAX || !il || il > REC_ID_MAX)
    return rpc_fail(ctx, REC_EINVAL, "events[%zu]: user_id and item_id must be 1 to %d bytes", i, REC_ID_MAX);
  if (e->type < REC__V1__EVENT_TYPE__EVENT_TYPE_VIEW || e->type > REC__V1__EVENT_TYPE__EVENT_TYPE_PURCHASE)
    return rpc_fail(ctx, REC_EINVAL, "events[%zu].type must be VIEW, ADD_TO_CART or PURCHASE", i);
  if (e->quantity < 0 || !(e->price >= 0) || e->price > 1e12 || e->time_unix_ms < 0)
    return rpc_fail(ctx, REC_EINVAL, "events[%zu]: quantity, price and time_unix_ms must be >= 0 "
                    "(returns are not events)", i);
  *r = (ev_record){.time_ms = e->time_unix_ms ? e->time_unix_ms : now_ms, .type = (int32_t)e->type,
                   .quantity = e->quantity ? e->quantity : 1, .price = e->price,
                   .user = e->user_id, .item = e->item_id, .user_len = (uint16_t)ul,
                   .item_len = (uint16_t)il};
  return 0;
}

/* OK only once every event is on disk; then they count for the user at once. */
static int record(rpc_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **out) {
  const Rec__V1__RecordRequest *q = (const Rec__V1__RecordRequest *)in;
  app *ap = ctx->app;
  if (!ap->log)
    return rpc_fail(ctx, REC_EPRECOND, "this recd runs without --event_log; events are not recorded");
  if (q->n_events < 1 || q->n_events > 1000)
    return rpc_fail(ctx, REC_EINVAL, "events must hold 1 to 1000 events, got %zu", q->n_events);
  ev_record *recs = arena_calloc(ctx->arena, q->n_events, sizeof *recs);
  Rec__V1__RecordResponse *r = arena_alloc(ctx->arena, sizeof *r);
  if (!recs || !r) return REC_ENOMEM;
  int64_t now = rec_wall_ms();
  int rc;
  for (size_t i = 0; i < q->n_events; i++)
    if ((rc = check_event(ctx, i, q->events[i], now, &recs[i]))) return rc;
  uint64_t last;
  if ((rc = eventlog_append(ap->log, recs, q->n_events, &last, &ctx->err)))
    return rpc_fail(ctx, REC_EUNAVAIL, "%s", ctx->err.msg);
  for (size_t i = 0; i < q->n_events; i++) online_apply(ap->online, &recs[i]);
  /* Appends finish in any order; the applied mark only moves forward. */
  uint_fast64_t seen = atomic_load(&ap->events_applied);
  while (seen < last && !atomic_compare_exchange_weak(&ap->events_applied, &seen, last)) {
  }
  metrics_events(q->n_events);
  rec__v1__record_response__init(r);
  r->accepted = (uint32_t)q->n_events;
  r->last_sequence = last;
  *out = &r->base;
  return 0;
}

const rpc_method h_record = {"/rec.v1.Events/Record", &rec__v1__record_request__descriptor,
                             &rec__v1__record_response__descriptor, record};

/* ---- Retrieval.Retrieve (the candidate tier on its own) ---- */

static Rec__V1__Candidate *candidate(arena *a, const bundle *b, const rec_candidate *c) {
  Rec__V1__Candidate *x = arena_alloc(a, sizeof *x);
  Rec__V1__SourceScore **sc = arena_calloc(a, REC_SRC_COUNT, sizeof *sc);
  if (!x || !sc) return NULL;
  rec__v1__candidate__init(x);
  x->item_id = (char *)b->catalog->ids[c->item];
  x->scores = sc;
  for (int s = 0; s < REC_SRC_COUNT; s++) {
    if (!(c->sources & (1u << s))) continue;
    Rec__V1__SourceScore *ss = arena_alloc(a, sizeof *ss);
    if (!ss) return NULL;
    rec__v1__source_score__init(ss);
    ss->source = SOURCE_PROTO[s];
    ss->raw = c->raw[s];
    sc[x->n_scores++] = ss;
  }
  return x;
}

static int retrieve(rpc_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **out) {
  const Rec__V1__RetrieveRequest *q = (const Rec__V1__RetrieveRequest *)in;
  size_t ulen = strlen(q->user_id);
  int rc;
  bundle *b;
  if (ulen == 0 || ulen > REC_ID_MAX) return rpc_fail(ctx, REC_EINVAL, "user_id must be 1 to %d bytes", REC_ID_MAX);
  if (q->num_candidates < 1 || q->num_candidates > 10000)
    return rpc_fail(ctx, REC_EINVAL, "num_candidates must be between 1 and 10000, got %d", q->num_candidates);
  if ((rc = check_ids(ctx, "recent_item_ids", q->recent_item_ids, q->n_recent_item_ids, 1000)) ||
      (rc = acquire(ctx, &b, NULL)))
    return rc;
  rank_req cats = {0};
  if ((rc = resolve_filters(ctx, b->catalog, q->filters, &cats))) return rc;
  size_t n_seeds;
  uint32_t *seeds = resolve_ids(ctx->arena, b->catalog, q->recent_item_ids, q->n_recent_item_ids, false, &n_seeds);
  if (!seeds) return REC_ENOMEM;
  size_t want = (size_t)q->num_candidates;
  retrieve_req rq = {.user_id = q->user_id, .user_len = ulen, .want_ann = want, .want_cf = want,
                     .want_pop = want, .seeds = seeds, .n_seeds = n_seeds, .categories = cats.include_cats,
                     .n_categories = cats.n_include_cats, .segment = q->segment >= 0 && q->segment < 4 ? q->segment : -1};
  retrieve_result rr;
  if ((rc = retrieve_candidates(b, &rq, ctx->arena, &rr))) return rpc_fail(ctx, rc, "retrieve failed: %s", rec_strerror(rc));
  Rec__V1__RetrieveResponse *r = arena_alloc(ctx->arena, sizeof *r);
  if (!r) return REC_ENOMEM;
  rec__v1__retrieve_response__init(r);
  if (!(r->candidates = arena_calloc(ctx->arena, rr.n + 1, sizeof *r->candidates))) return REC_ENOMEM;
  for (size_t i = 0; i < rr.n; i++)
    if (!(r->candidates[r->n_candidates++] = candidate(ctx->arena, b, &rr.cands[i]))) return REC_ENOMEM;
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
