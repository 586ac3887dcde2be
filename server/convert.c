/* server/convert.c - see convert.h. */
#include "server/convert.h"
#include "common/clock.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_CATEGORIES 64

static int by_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

/* ---- checks ---- */

int conv_check_id(rpc_ctx *ctx, const char *field, const char *id) {
  size_t n = strlen(id);
  if (n == 0) return rpc_fail(ctx, REC_EINVAL, "%s is required (1 to %d bytes)", field, REC_ID_MAX);
  if (n > REC_ID_MAX) return rpc_fail(ctx, REC_EINVAL, "%s is %zu bytes; at most %d allowed", field, n, REC_ID_MAX);
  if (strpbrk(id, "\t\r\n"))
    return rpc_fail(ctx, REC_EINVAL, "%s contains a tab or line break; ids never do", field);
  return 0;
}

int conv_check_text(rpc_ctx *ctx, const char *field, const char *s, size_t max) {
  size_t n = strlen(s);
  return n > max ? rpc_fail(ctx, REC_EINVAL, "%s is %zu bytes; at most %zu allowed", field, n, max) : 0;
}

static int check_ids(rpc_ctx *ctx, const conv_ids *l) {
  if (l->n > l->max)
    return rpc_fail(ctx, REC_EINVAL, "%s has %zu ids; at most %zu allowed", l->field, l->n, l->max);
  for (size_t i = 0; i < l->n; i++) {
    char field[96];
    snprintf(field, sizeof field, "%s[%zu]", l->field, i);
    int rc = conv_check_id(ctx, field, l->ids[i]);
    if (rc) return rc;
  }
  return 0;
}

int conv_check(rpc_ctx *ctx, const conv_shape *s) {
  int rc;
  if (s->user_id && (rc = conv_check_id(ctx, "user_id", s->user_id))) return rc;
  if (s->k < 1 || s->k > s->max_k)
    return rpc_fail(ctx, REC_EINVAL, "%s must be between 1 and %lld, got %lld", s->k_field,
                    (long long)s->max_k, (long long)s->k);
  for (size_t i = 0; i < sizeof s->lists / sizeof s->lists[0] && s->lists[i].field; i++)
    if ((rc = check_ids(ctx, &s->lists[i]))) return rc;
  return s->request_id ? conv_check_text(ctx, "request_id", s->request_id, REC_ID_MAX) : 0;
}

/* ---- requests into rules ---- */

uint32_t *conv_rows(arena *a, const catalog *c, char *const *ids, size_t n, bool sort, size_t *out_n) {
  uint32_t *rows = arena_calloc(a, n + 1, sizeof *rows);
  if (!rows) return NULL;
  size_t m = 0;
  for (size_t i = 0; i < n; i++)
    if (catalog_find(c, ids[i], strlen(ids[i]), &rows[m])) m++;
  if (sort) qsort(rows, m, sizeof *rows, by_u32);
  *out_n = m;
  return rows;
}

static int categories(rpc_ctx *ctx, const catalog *c, char **names, size_t n, const char *field,
                      const uint32_t **out, size_t *n_out) {
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

int conv_filters(rpc_ctx *ctx, const catalog *c, const Rec__V1__Filters *f, rank_req *r) {
  if (!f) return 0;
  int rc;
  if ((rc = categories(ctx, c, f->include_categories, f->n_include_categories,
                       "include_categories", &r->include_cats, &r->n_include_cats)) ||
      (rc = categories(ctx, c, f->exclude_categories, f->n_exclude_categories,
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

/* "FROM/TO" of a window (a side left open is empty) for explain, or NULL
 * for a promotion without one. */
static const char *window_note(arena *a, rank_window w) {
  if (!w.from_s && !w.to_s) return NULL;
  char from[24] = "", to[24] = "";
  struct tm tm;
  time_t t;
  if (w.from_s && (t = (time_t)w.from_s, gmtime_r(&t, &tm))) strftime(from, sizeof from, "%Y-%m-%dT%H:%M:%SZ", &tm);
  if (w.to_s && (t = (time_t)w.to_s, gmtime_r(&t, &tm))) strftime(to, sizeof to, "%Y-%m-%dT%H:%M:%SZ", &tm);
  char *s = arena_alloc(a, 50);
  if (s) snprintf(s, 50, "%s/%s", from, to);
  return s;
}

/* The configuration's blocked items and promotions active now, as rows of
 * this bundle. */
static int settings_rows(arena *a, const catalog *c, const rank_config *cfg, rank_req *r) {
  uint32_t *blocked = conv_rows(a, c, cfg->blocked, cfg->n_blocked, true, &r->n_blocked);
  rank_pin_row *pins = arena_calloc(a, cfg->n_pins + 1, sizeof *pins);
  rank_boost_row *boosts = arena_calloc(a, cfg->n_boosts + 1, sizeof *boosts);
  if (!blocked || !pins || !boosts) return REC_ENOMEM;
  for (size_t i = 0; i < cfg->n_pins; i++) {
    const rank_pin *p = &cfg->pins[i];
    if (rank_window_holds(p->when, r->now) && catalog_find(c, p->item, strlen(p->item), &pins[r->n_pins].item)) {
      pins[r->n_pins].slot = p->slot;
      pins[r->n_pins++].note = window_note(a, p->when);
    }
  }
  for (size_t i = 0; i < cfg->n_boosts; i++) {
    const rank_boost *b = &cfg->boosts[i];
    if (rank_window_holds(b->when, r->now) && catalog_find(c, b->item, strlen(b->item), &boosts[r->n_boosts].item)) {
      boosts[r->n_boosts].factor = b->factor;
      boosts[r->n_boosts++].note = window_note(a, b->when);
    }
  }
  qsort(boosts, r->n_boosts, sizeof *boosts, by_boost_item);
  r->blocked = blocked;
  r->pins = pins;
  r->boosts = boosts;
  return 0;
}

int conv_rules(rpc_ctx *ctx, const bundle *b, const rank_config *cfg, const Rec__V1__Filters *f,
               char *const *excl, size_t n_excl, int64_t now_ms, rank_req *r) {
  r->cfg = cfg;
  r->now = (now_ms > 0 ? now_ms : rec_wall_ms()) / 1000;
  r->exclude = conv_rows(ctx->arena, b->catalog, excl, n_excl, true, &r->n_exclude);
  if (!r->exclude || settings_rows(ctx->arena, b->catalog, r->cfg, r)) return REC_ENOMEM;
  return conv_filters(ctx, b->catalog, f, r);
}

/* A page is only meaningful against the ranking it continues, hence the
 * bundle version in the cursor. */
int conv_cursor(rpc_ctx *ctx, const char *cur, const bundle *b, size_t k, size_t deepest,
                size_t *offset) {
  *offset = 0;
  if (!*cur) return 0;
  /* Digits only: no sign, no blanks, nothing strtoull would wrap. */
  size_t digits = strspn(cur, "0123456789");
  if (digits == 0 || digits > 9 || cur[digits] != '@')
    return rpc_fail(ctx, REC_EINVAL, "page_cursor is malformed; pass back next_cursor unchanged");
  const char *end = cur + digits;
  unsigned long long off = strtoull(cur, NULL, 10);
  if (strcmp(end + 1, b->version) != 0)
    return rpc_fail(ctx, REC_EINVAL, "page_cursor belongs to bundle %.128s, now serving %s; "
                    "request the first page again", end + 1, b->version);
  if (off > deepest || off + k > deepest)
    return rpc_fail(ctx, REC_EINVAL, "page_cursor goes past the deepest page (%zu items)", deepest);
  *offset = (size_t)off;
  return 0;
}

/* ---- replies ---- */

static const Rec__V1__Source SOURCE_PROTO[REC_SRC_COUNT] = {
    [REC_SRC_ANN] = REC__V1__SOURCE__SOURCE_ANN,
    [REC_SRC_ITEM_CF] = REC__V1__SOURCE__SOURCE_ITEM_CF,
    [REC_SRC_POPULARITY] = REC__V1__SOURCE__SOURCE_POPULARITY,
    [REC_SRC_EASE] = REC__V1__SOURCE__SOURCE_EASE};

Rec__V1__Source conv_source(rec_source s) { return SOURCE_PROTO[s]; }

Rec__V1__Strategy conv_strategy(rec_strategy s) {
  return s == REC_STRATEGY_PERSONALIZED ? REC__V1__STRATEGY__STRATEGY_PERSONALIZED
                                        : REC__V1__STRATEGY__STRATEGY_POPULARITY_FALLBACK;
}

static Rec__V1__Adjustment *adjustment(arena *a, const char *rule, double factor) {
  Rec__V1__Adjustment *x = arena_alloc(a, sizeof *x);
  if (!x) return NULL;
  rec__v1__adjustment__init(x);
  x->rule = (char *)rule;
  x->factor = factor;
  return x;
}

static Rec__V1__Explanation *explanation(arena *a, const rank_item *it) {
  Rec__V1__Explanation *e = arena_alloc(a, sizeof *e);
  Rec__V1__Adjustment **adj = arena_calloc(a, it->n_adj + 2, sizeof *adj);
  if (!e || !adj) return NULL;
  rec__v1__explanation__init(e);
  e->blended = it->blended;
  e->final_score = it->score;
  e->adjustments = adj;
  for (size_t i = 0; i < it->n_adj; i++) {
    if (!(adj[e->n_adjustments] = adjustment(a, it->adj[i].rule, it->adj[i].factor))) return NULL;
    if (it->adj[i].note) adj[e->n_adjustments]->note = (char *)it->adj[i].note;
    e->n_adjustments++;
  }
  if (it->pinned) {
    Rec__V1__Adjustment *x = adjustment(a, "promotion_pin", 1);
    if (!x) return NULL;
    adj[e->n_adjustments++] = x;
    if (!it->sources) { /* no source found it: the pin brought it in */
      size_t n = (it->pin_note ? strlen(it->pin_note) : 0) + 32;
      char *note = arena_alloc(a, n);
      if (!note) return NULL;
      snprintf(note, n, "%s%spinned; not retrieved", it->pin_note ? it->pin_note : "", it->pin_note ? "; " : "");
      x->note = note;
    } else if (it->pin_note) {
      x->note = (char *)it->pin_note;
    }
  }
  return e;
}

static Rec__V1__SourceScore *source_score(arena *a, rec_source s, float raw, float norm) {
  Rec__V1__SourceScore *ss = arena_alloc(a, sizeof *ss);
  if (!ss) return NULL;
  rec__v1__source_score__init(ss);
  ss->source = SOURCE_PROTO[s];
  ss->raw = raw;
  ss->normalized = norm;
  return ss;
}

static Rec__V1__ScoredItem *scored_item(arena *a, const bundle *b, const rank_item *it, bool explain) {
  Rec__V1__ScoredItem *s = arena_alloc(a, sizeof *s);
  Rec__V1__SourceScore **src = arena_calloc(a, REC_SRC_COUNT, sizeof *src);
  if (!s || !src) return NULL;
  rec__v1__scored_item__init(s);
  s->item_id = (char *)b->catalog->ids[it->item];
  s->score = it->score;
  s->category = (char *)b->catalog->categories[b->catalog->category[it->item]];
  s->price = b->catalog->price[it->item];
  s->sources = src;
  for (int k = 0; k < REC_SRC_COUNT; k++)
    if ((it->sources & (1u << k)) && !(src[s->n_sources++] = source_score(a, k, it->raw[k], it->norm[k])))
      return NULL;
  if (explain && !(s->explanation = explanation(a, it))) return NULL;
  return s;
}

Rec__V1__ScoredItem **conv_items(arena *a, const bundle *b, const rec_result *res, bool explain,
                                 size_t *n) {
  Rec__V1__ScoredItem **items = arena_calloc(a, res->n + 1, sizeof *items);
  if (!items) return NULL;
  for (*n = 0; *n < res->n; (*n)++)
    if (!(items[*n] = scored_item(a, b, &res->items[*n], explain))) return NULL;
  return items;
}

static int verdicts(arena *a, const rec_result *res, Rec__V1__RecommendResponse *r) {
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

static int timings(arena *a, const rec_result *res, int64_t start_ns, Rec__V1__RecommendResponse *r) {
  r->timings = arena_alloc(a, sizeof *r->timings);
  if (!r->timings) return REC_ENOMEM;
  rec__v1__stage_timings__init(r->timings);
  r->timings->user_tower_us = (uint32_t)(res->tower_ns / 1000);
  r->timings->ann_us = (uint32_t)(res->ann_ns / 1000);
  r->timings->ranking_us = (uint32_t)((res->rank_ns + res->sources_ns) / 1000);
  r->timings->total_us = (uint32_t)((rec_mono_ns() - start_ns) / 1000);
  return 0;
}

/* "name" or "name:detail" for each note. */
static char **degraded(arena *a, const rec_notes *ns, size_t *n) {
  size_t have = ns ? ns->n : 0;
  char **d = arena_calloc(a, have + 1, sizeof *d);
  if (!d) return NULL;
  for (*n = 0; *n < have; (*n)++) {
    const rec_note *x = &ns->at[*n];
    const char *name = rec_degraded_name(x->reason);
    d[*n] = x->detail ? arena_printf(a, "%s:%s", name, x->detail) : (char *)name;
    if (!d[*n]) return NULL;
  }
  return d;
}

int conv_recommend_response(arena *a, const bundle *b, const rec_request *rq, const rec_result *res,
                            bool explain, int64_t start_ns, Rec__V1__RecommendResponse *r) {
  r->items = conv_items(a, b, res, explain, &r->n_items);
  r->degraded_reasons = degraded(a, rq->notes, &r->n_degraded_reasons);
  r->bundle_version = b->version;
  r->strategy = conv_strategy(res->strategy);
  r->next_cursor = res->more ? arena_printf(a, "%zu@%s", rq->offset + rq->k, b->version) : "";
  if (!r->items || !r->degraded_reasons || !r->next_cursor || verdicts(a, res, r)) return REC_ENOMEM;
  return explain ? timings(a, res, start_ns, r) : 0;
}

/* ---- the candidate tier on the wire ---- */

Rec__V1__RetrieveRequest *conv_retrieve_request(arena *a, const bundle *b, const retrieve_req *rq) {
  Rec__V1__RetrieveRequest *q = arena_alloc(a, sizeof *q);
  Rec__V1__Filters *f = arena_alloc(a, sizeof *f);
  char **recent = arena_calloc(a, rq->n_seeds + rq->n_recent + 1, sizeof *recent);
  char **cats = arena_calloc(a, rq->n_categories + 1, sizeof *cats);
  char **history = arena_calloc(a, rq->n_history + 1, sizeof *history);
  if (!q || !f || !recent || !cats || !history) return NULL;
  rec__v1__retrieve_request__init(q);
  rec__v1__filters__init(f);
  q->user_id = rq->user_id ? arena_strndup(a, rq->user_id, rq->user_len) : "";
  size_t want = rq->want_ann > rq->want_pop ? rq->want_ann : rq->want_pop;
  q->num_candidates = (int32_t)(want < 10000 ? want : 10000);
  for (size_t i = 0; i < rq->n_seeds; i++) recent[q->n_recent_item_ids++] = (char *)b->catalog->ids[rq->seeds[i]];
  for (size_t i = 0; i < rq->n_recent; i++) recent[q->n_recent_item_ids++] = (char *)b->catalog->ids[rq->recent[i]];
  q->recent_item_ids = recent;
  for (size_t i = 0; i < rq->n_history && i < RETRIEVE_MAX_HISTORY; i++) /* history() keeps to it */
    history[q->n_history_item_ids++] = (char *)b->catalog->ids[rq->history[i]];
  q->history_item_ids = history;
  for (size_t i = 0; i < rq->n_categories; i++) cats[i] = (char *)b->catalog->categories[rq->categories[i]];
  f->include_categories = cats;
  f->n_include_categories = rq->n_categories;
  q->filters = f;
  q->segment = rq->segment;
  return q->user_id ? q : NULL;
}

Rec__V1__Candidate *conv_candidate(arena *a, const bundle *b, const rec_candidate *c) {
  Rec__V1__Candidate *x = arena_alloc(a, sizeof *x);
  Rec__V1__SourceScore **sc = arena_calloc(a, REC_SRC_COUNT, sizeof *sc);
  if (!x || !sc) return NULL;
  rec__v1__candidate__init(x);
  x->item_id = (char *)b->catalog->ids[c->item];
  x->scores = sc;
  for (int s = 0; s < REC_SRC_COUNT; s++)
    if ((c->sources & (1u << s)) && !(sc[x->n_scores++] = source_score(a, s, c->raw[s], 0))) return NULL;
  return x;
}

static int by_item(const void *x, const void *y) {
  return by_u32(&((const rec_candidate *)x)->item, &((const rec_candidate *)y)->item);
}

/* One candidate per item, whatever the shards sent (overlapping shards, a
 * shard listing an item twice): sources joined, the best raw score kept per
 * source. The ranking tier counts on it (pins, pages). */
static size_t unique_items(rec_candidate *c, size_t n) {
  if (n == 0) return 0;
  qsort(c, n, sizeof *c, by_item);
  size_t m = 0;
  for (size_t i = 1; i < n; i++) {
    if (c[i].item != c[m].item) {
      c[++m] = c[i];
      continue;
    }
    for (int s = 0; s < REC_SRC_COUNT; s++) {
      if (!(c[i].sources & (1u << s))) continue;
      if (!(c[m].sources & (1u << s)) || c[i].raw[s] > c[m].raw[s]) c[m].raw[s] = c[i].raw[s];
      c[m].sources |= 1u << s;
    }
  }
  return m + 1;
}

int conv_merge_candidates(arena *a, const bundle *b, Rec__V1__RetrieveResponse *const *rs, size_t n,
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
          if (x->scores[k]->source == SOURCE_PROTO[s] && isfinite(x->scores[k]->raw)) {
            c[out->n].sources |= 1u << s;
            c[out->n].raw[s] = x->scores[k]->raw;
          }
      if (c[out->n].sources) out->n++; /* a candidate no source vouches for is not one */
      else c[out->n] = (rec_candidate){0};
    }
  out->n = unique_items(c, out->n);
  out->cands = c;
  return 0;
}
