/* server/handlers.c - Recommend and Status. Validation errors name the field
 * and the allowed range, so a caller can fix the request without reading our
 * code; protobuf types never travel past this file. */
#include "server/handlers.h"
#include "common/clock.h"
#include "rec/v1/admin.pb-c.h"
#include "rec/v1/ranking.pb-c.h"
#include "server/app.h"
#include "server/recommend.h"

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

/* Resolves exclude ids to sorted item rows; ids the catalog lacks cannot be
 * returned anyway and are skipped. */
static int resolve_excludes(rpc_ctx *ctx, const catalog *c, const Rec__V1__RecommendRequest *q,
                            rank_req *r) {
  uint32_t *rows = arena_calloc(ctx->arena, q->n_exclude_item_ids + 1, sizeof *rows);
  if (!rows) return REC_ENOMEM;
  size_t n = 0;
  for (size_t i = 0; i < q->n_exclude_item_ids; i++)
    if (catalog_find(c, q->exclude_item_ids[i], strlen(q->exclude_item_ids[i]), &rows[n])) n++;
  qsort(rows, n, sizeof *rows, by_u32);
  r->exclude = rows;
  r->n_exclude = n;
  return 0;
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

/* Checks what can be checked without a bundle. */
static int validate(rpc_ctx *ctx, const recd_config *cfg, const Rec__V1__RecommendRequest *q) {
  size_t ulen = strlen(q->user_id);
  if (ulen == 0) return rpc_fail(ctx, REC_EINVAL, "user_id is required");
  if (ulen > REC_ID_MAX)
    return rpc_fail(ctx, REC_EINVAL, "user_id is %zu bytes; at most %d allowed", ulen, REC_ID_MAX);
  if (q->k < 1 || q->k > cfg->max_k)
    return rpc_fail(ctx, REC_EINVAL, "k must be between 1 and %d, got %d", cfg->max_k, q->k);
  if (q->n_exclude_item_ids > (size_t)cfg->max_exclude)
    return rpc_fail(ctx, REC_EINVAL, "exclude_item_ids has %zu ids; at most %d allowed",
                    q->n_exclude_item_ids, cfg->max_exclude);
  if (q->n_anchor_item_ids > MAX_ANCHORS)
    return rpc_fail(ctx, REC_EINVAL, "anchor_item_ids has %zu ids; at most %d allowed",
                    q->n_anchor_item_ids, MAX_ANCHORS);
  if (q->n_explain_item_ids > MAX_EXPLAIN)
    return rpc_fail(ctx, REC_EINVAL, "explain_item_ids has %zu ids; at most %d allowed",
                    q->n_explain_item_ids, MAX_EXPLAIN);
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
  static const Rec__V1__Source to_proto[REC_SRC_COUNT] = {
      REC__V1__SOURCE__SOURCE_ANN, REC__V1__SOURCE__SOURCE_ITEM_CF,
      REC__V1__SOURCE__SOURCE_POPULARITY};
  for (int k = 0; k < REC_SRC_COUNT; k++) {
    if (!(it->sources & (1u << k))) continue;
    Rec__V1__SourceScore *ss = arena_alloc(a, sizeof *ss);
    if (!ss) return NULL;
    rec__v1__source_score__init(ss);
    ss->source = to_proto[k];
    ss->raw = it->raw[k];
    ss->normalized = it->score;
    src[s->n_sources++] = ss;
  }
  if (explain) {
    s->explanation = arena_alloc(a, sizeof *s->explanation);
    if (!s->explanation) return NULL;
    rec__v1__explanation__init(s->explanation);
    s->explanation->blended = it->score;
    s->explanation->final_score = it->score;
  }
  return s;
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
  r->timings->ranking_us = (uint32_t)(res->rank_ns / 1000);
  r->timings->total_us = (uint32_t)((rec_mono_ns() - start_ns) / 1000);
  return 0;
}

static int fill_response(rpc_ctx *ctx, const Rec__V1__RecommendRequest *q, const bundle *b,
                         const rec_request *rq, const rec_result *res, int64_t start_ns,
                         Rec__V1__RecommendResponse *r) {
  arena *a = ctx->arena;
  app *ap = ctx->app;
  r->items = arena_calloc(a, res->n + 1, sizeof *r->items);
  r->degraded_reasons = arena_calloc(a, 2, sizeof *r->degraded_reasons);
  r->bundle_version = arena_strndup(a, b->version, strlen(b->version));
  if (!r->items || !r->degraded_reasons || !r->bundle_version) return REC_ENOMEM;
  for (size_t i = 0; i < res->n; i++)
    if (!(r->items[r->n_items++] = scored_item(a, b, &res->items[i], q->explain))) return REC_ENOMEM;
  r->strategy = res->personalized ? REC__V1__STRATEGY__STRATEGY_PERSONALIZED
                                  : REC__V1__STRATEGY__STRATEGY_POPULARITY_FALLBACK;
  if (!res->personalized) r->degraded_reasons[r->n_degraded_reasons++] = "unknown_user";
  if (res->short_catalog) r->degraded_reasons[r->n_degraded_reasons++] = "short_catalog";
  r->request_id = q->request_id[0]
      ? q->request_id
      : arena_printf(a, "recd-%" PRIuFAST64, atomic_fetch_add(&ap->seq, 1) + 1);
  r->next_cursor = res->more ? arena_printf(a, "%zu@%s", rq->offset + rq->rules.k, b->version) : "";
  if (!r->request_id || !r->next_cursor) return REC_ENOMEM;
  if (fill_verdicts(a, res, r)) return REC_ENOMEM;
  return q->explain ? fill_timings(a, res, start_ns, r) : 0;
}

static int run(rpc_ctx *ctx, const Rec__V1__RecommendRequest *q, const bundle *b,
               Rec__V1__RecommendResponse *r) {
  app *ap = ctx->app;
  int64_t start = rec_mono_ns();
  rec_request rq = {.user_id = q->user_id, .user_len = strlen(q->user_id),
                    .explain_ids = (const char *const *)q->explain_item_ids,
                    .n_explain = q->n_explain_item_ids};
  rq.rules.k = (size_t)q->k;
  int rc;
  if ((rc = parse_cursor(ctx, ap->cfg, q->page_cursor, b, rq.rules.k, &rq.offset)) ||
      (rc = resolve_excludes(ctx, b->catalog, q, &rq.rules)) ||
      (rc = resolve_filters(ctx, b->catalog, q->filters, &rq.rules)))
    return rc;
  rec_result res;
  if ((rc = recommend_run(b, &rq, ctx->arena, &res)))
    return rpc_fail(ctx, rc, "recommend failed: %s", rec_strerror(rc));
  if (rpc_deadline_passed(ctx))
    return rpc_fail(ctx, REC_EDEADLINE, "deadline passed while ranking");
  return fill_response(ctx, q, b, &rq, &res, start, r);
}

static void release_bundle(void *b) { bundle_unref(b); }

static int recommend(rpc_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **out) {
  const Rec__V1__RecommendRequest *q = (const Rec__V1__RecommendRequest *)in;
  app *ap = ctx->app;
  int rc = validate(ctx, ap->cfg, q);
  if (rc) return rc;
  bundle *b = app_acquire(ap);
  if (!b) return rpc_fail(ctx, REC_EUNAVAIL, "no bundle loaded yet; retry shortly");
  Rec__V1__RecommendResponse *r = arena_alloc(ctx->arena, sizeof *r);
  if (!r) rc = REC_ENOMEM;
  else {
    rec__v1__recommend_response__init(r);
    rc = run(ctx, q, b, r);
  }
  /* The reply's ids and categories point into the bundle: keep it until the
   * RPC layer has packed the reply. */
  rpc_on_done(ctx, release_bundle, b);
  if (rc) return rc;
  *out = &r->base;
  return 0;
}

const rpc_method h_recommend = {"/rec.v1.Ranking/Recommend",
                                &rec__v1__recommend_request__descriptor,
                                &rec__v1__recommend_response__descriptor, recommend};

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
  r->role = "all";
  r->serving = rpc_server_serving(ctx->server);
  r->uptime_seconds = (uint64_t)((rec_mono_ns() - ap->started_ns) / 1000000000);
  r->threads = (uint32_t)ap->cfg->threads;
  r->recd_version = RECD_VERSION;
  *out = &r->base;
  return 0;
}

const rpc_method h_status = {"/rec.v1.Admin/Status", &rec__v1__status_request__descriptor,
                             &rec__v1__status_response__descriptor, status};
