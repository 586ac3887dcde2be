/* server/recommend.c - see recommend.h. The slate is one ordering per user,
 * request, bundle and settings, made in rounds: round r answers for the
 * positions up to depth(r) = D x 4^r, D = max(k + 1, candidates.ann / 4),
 * from candidates sized for that depth (ANN 4 x and popularity 2 x, each at
 * least its configured count; item-CF its count x 4^r), and hands the
 * positions it filled to the next, wider round, which continues after them.
 * The offset sizes neither, so a page is the same slice of the same
 * ordering whichever page asked; it only decides how many rounds run, until
 * ANN scans the whole catalog or the popularity order runs through it. */
#include "server/recommend.h"
#include "common/clock.h"

#include <stdlib.h>
#include <string.h>

static const char *const DEGRADED_NAMES[REC_DEG_COUNT] = {
    [REC_DEG_UNKNOWN_USER] = "unknown_user",
    [REC_DEG_SOURCE_MISSING + REC_SRC_ANN] = "source_missing:ann",
    [REC_DEG_SOURCE_MISSING + REC_SRC_ITEM_CF] = "source_missing:item_cf",
    [REC_DEG_SOURCE_MISSING + REC_SRC_POPULARITY] = "source_missing:popularity",
    [REC_DEG_SOURCE_MISSING + REC_SRC_EASE] = "source_missing:ease", /* never noted (note_degraded) */
    [REC_DEG_SHORT_CATALOG] = "short_catalog",
    [REC_DEG_DEADLINE_EF] = "deadline:ef_reduced",
    [REC_DEG_DEADLINE_MMR] = "deadline:mmr_skipped",
    [REC_DEG_DEADLINE_POPULARITY] = "deadline:popularity_only",
    [REC_DEG_SHARD_UNAVAILABLE] = "shard_unavailable",
    [REC_DEG_SHARDS_ANSWERED] = "shards_answered",
    [REC_DEG_RETRIEVAL_UNAVAILABLE] = "retrieval_unavailable",
};

const char *rec_degraded_name(rec_degraded d) {
  return d >= 0 && d < REC_DEG_COUNT ? DEGRADED_NAMES[d] : "unknown";
}

const char *rec_strategy_name(rec_strategy s) {
  return s == REC_STRATEGY_PERSONALIZED ? "personalized" : "popularity_fallback";
}

void rec_notes_add(rec_notes *ns, rec_degraded reason, const char *detail) {
  if (!ns) return;
  for (size_t i = 0; i < ns->n; i++) {
    const rec_note *x = &ns->at[i];
    if (x->reason == reason && (x->detail == detail || (x->detail && detail && strcmp(x->detail, detail) == 0)))
      return;
  }
  if (ns->n < REC_NOTES_MAX) ns->at[ns->n++] = (rec_note){reason, detail};
}

unsigned recommend_deadline_steps(const rec_deadline_policy *p, int64_t deadline_ns) {
  if (deadline_ns == INT64_MAX) return 0;
  int64_t left_ms = (deadline_ns - rec_mono_ns()) / 1000000;
  return (left_ms < p->ef_below_ms ? REC_DEGRADE_EF : 0u) | (left_ms < p->mmr_below_ms ? REC_DEGRADE_MMR : 0u) |
         (left_ms < p->popularity_below_ms ? REC_DEGRADE_POPULARITY : 0u);
}

int recommend_degrade(rec_request *r, unsigned steps, arena *a) {
  if (steps & REC_DEGRADE_EF) {
    r->ann_ef = 16;
    rec_notes_add(r->notes, REC_DEG_DEADLINE_EF, NULL);
  }
  if (steps & REC_DEGRADE_POPULARITY) {
    r->popularity_only = true;
    rec_notes_add(r->notes, REC_DEG_DEADLINE_POPULARITY, NULL);
  }
  if ((steps & REC_DEGRADE_MMR) && r->rules.cfg->mmr) {
    rank_config *c = arena_alloc(a, sizeof *c);
    if (!c) return REC_ENOMEM;
    *c = *r->rules.cfg; /* a shallow copy: the lists stay shared and read-only */
    c->mmr = false;
    r->rules.cfg = c;
    rec_notes_add(r->notes, REC_DEG_DEADLINE_MMR, NULL);
  }
  return 0;
}

int recommend_apply_deadline(rec_request *r, const rec_deadline_policy *p, int64_t deadline_ns,
                             arena *a) {
  return recommend_degrade(r, recommend_deadline_steps(p, deadline_ns), a);
}

static size_t at_least(size_t a, size_t b) { return a > b ? a : b; }

/* The bundle's purchases and those recorded since, merged by item (latest
 * time, summed counts), sorted by item. */
static int merge_purchases(const rec_purchase *x, size_t nx, const rec_purchase *y, size_t ny,
                           arena *a, rank_req *rules) {
  rec_purchase *m = arena_alloc(a, (nx + ny + 1) * sizeof *m);
  if (!m) return REC_ENOMEM;
  size_t i = 0, j = 0, n = 0;
  while (i < nx || j < ny) {
    if (j == ny || (i < nx && x[i].item < y[j].item)) m[n++] = x[i++];
    else if (i == nx || y[j].item < x[i].item) m[n++] = y[j++];
    else {
      m[n] = x[i++];
      m[n].count += y[j].count;
      if (y[j].last_time > m[n].last_time) m[n].last_time = y[j].last_time;
      j++, n++;
    }
  }
  rules->purchases = m;
  rules->n_purchases = n;
  return 0;
}

/* The user's profile: price, segment, purchases, recent items. */
static int profile(const bundle *b, const rec_request *r, rank_req *rules, retrieve_req *rq,
                   arena *a, rec_result *out) {
  const signals *s = &b->sig;
  uint32_t p;
  rules->segment = -1;
  rq->segment = -1;
  rules->purchases = r->recorded;
  rules->n_purchases = r->n_recorded;
  if (!r->user_id || !signals_profile(s, r->user_id, r->user_len, &p)) return 0;
  out->profiled = true;
  rules->mean_price = s->mean_price[p];
  rules->segment = rq->segment = s->segment[p];
  rules->purchases = s->purch ? s->purch + s->purch_off[p] : NULL;
  rules->n_purchases = s->purch ? s->purch_off[p + 1] - s->purch_off[p] : 0;
  rq->recent = s->recent + s->recent_off[p];
  rq->n_recent = s->recent_off[p + 1] - s->recent_off[p];
  return r->n_recorded ? merge_purchases(rules->purchases, rules->n_purchases, r->recorded,
                                         r->n_recorded, a, rules) : 0;
}

#define ANN_OWN_MAX 1000

static int by_recency(const void *a, const void *b) {
  const rec_purchase *x = a, *y = b;
  if (x->last_time != y->last_time) return x->last_time > y->last_time ? -1 : 1;
  return x->item < y->item ? -1 : x->item > y->item;
}

/* EASE's seeds, at most RETRIEVE_MAX_HISTORY, each once, most recent first
 * (the place weighs a seed: sig_ease_weight): the request's anchors and
 * session items (they say most about this moment), then the items the user
 * met (the bundle's purchases and those recorded since) by their last time,
 * ties by item. */
static int history(const bundle *b, const rec_request *r, const rank_req *rules, retrieve_req *rq, arena *a) {
  if (!b->sig.ease.off) return 0;
  size_t n = rules->n_purchases, cap = RETRIEVE_MAX_HISTORY;
  const rec_purchase *p = rules->purchases;
  uint32_t *h = arena_alloc(a, (cap + 1) * sizeof *h);
  if (!h) return REC_ENOMEM;
  size_t m = 0;
  for (size_t i = 0; i < r->n_seeds && m < cap; i++) {
    bool seen = false;
    for (size_t j = 0; j < m && !seen; j++) seen = h[j] == r->seeds[i];
    if (!seen) h[m++] = r->seeds[i];
  }
  size_t seeds = m;
  if (n > 1) {
    rec_purchase *recent = arena_alloc(a, n * sizeof *recent);
    if (!recent) return REC_ENOMEM;
    memcpy(recent, p, n * sizeof *recent);
    qsort(recent, n, sizeof *recent, by_recency);
    p = recent;
  }
  for (size_t i = 0; i < n && m < cap; i++) {
    bool seen = false;
    for (size_t j = 0; j < seeds && !seen; j++) seen = h[j] == p[i].item;
    if (!seen) h[m++] = p[i].item;
  }
  rq->history = h;
  rq->n_history = m;
  return 0;
}

static bool in_slate(const rank_item *items, size_t n, uint32_t item, size_t *at) {
  for (size_t i = 0; i < n; i++)
    if (items[i].item == item) {
      *at = i;
      return true;
    }
  return false;
}

static bool in_candidates(const retrieve_result *rr, uint32_t item) {
  for (size_t i = 0; i < rr->n; i++)
    if (rr->cands[i].item == item) return true;
  return false;
}

/* Why an item the caller asked about is not on this page. */
static void verdict(const bundle *b, const rank_req *rules, const retrieve_result *rr,
                    const rank_result *rk, size_t need, size_t start, uint32_t item, arena *a,
                    rec_verdict *v) {
  rank_items it = {.catalog = b->catalog, .cycle_days = b->sig.cycle_days}; /* explain needs no events */
  size_t at;
  if ((v->reason = rank_ineligible_reason(&it, rules, item)) != NULL) {
    v->stage = "rule";
  } else if (!in_candidates(rr, item)) {
    v->stage = "retrieval";
    v->reason = arena_printf(a, "not among the %zu candidates retrieved", rr->n);
  } else if (in_slate(rk->items, rk->n, item, &at)) {
    v->stage = "cut";
    v->reason = arena_printf(a, "at position %zu, on another page", at + 1);
  } else if (in_slate(rk->ranked, rk->n_ranked, item, &at) && start + at < need) {
    v->stage = "diversity";
    v->reason = arena_printf(a, "ranked %zu by score, displaced by MMR or the category cap", start + at + 1);
  } else {
    v->stage = "cut";
    v->reason = arena_printf(a, "scored below the top %zu", need);
  }
}

static int explain_missing(const bundle *b, const rec_request *r, const rank_req *rules,
                           const retrieve_result *rr, const rank_result *rk, size_t need, size_t start,
                           arena *a, rec_result *res) {
  res->verdicts = arena_calloc(a, r->n_explain + 1, sizeof *res->verdicts);
  if (!res->verdicts) return REC_ENOMEM;
  for (size_t i = 0; i < r->n_explain; i++) {
    const char *id = r->explain_ids[i];
    uint32_t item;
    size_t at;
    rec_verdict *v = &res->verdicts[res->n_verdicts];
    v->item_id = id;
    if (!catalog_find(b->catalog, id, strlen(id), &item)) {
      v->stage = "unknown_item";
      v->reason = arena_printf(a, "not in the catalog of bundle %s", b->version);
    } else if (in_slate(res->items, res->n, item, &at)) {
      continue;
    } else {
      verdict(b, rules, rr, rk, need, start, item, a, v);
    }
    res->n_verdicts++;
  }
  return 0;
}

struct rec_run {
  const bundle *b;
  const rec_request *r;
  arena *a;
  rank_req rules;
  retrieve_req rq;
  rank_items it;
  retrieve_result rr;              /* the last round's candidates */
  rank_result rk;                  /* the slate so far, as the last rank_slate call left it */
  size_t start;                    /* where the last call began */
  size_t need, before;
  size_t depth;                    /* positions the current round answers for */
  int round;
  rec_result acc;                  /* timings and profile, gathered across rounds */
};

int recommend_begin(const bundle *b, const rec_request *r, arena *a, rec_run **out) {
  const rank_config *cfg = r->rules.cfg;
  rec_run *run = arena_calloc(a, 1, sizeof *run);
  if (!run) return REC_ENOMEM;
  run->b = b;
  run->r = r;
  run->a = a;
  run->need = r->offset + r->k;
  run->depth = at_least(r->k + 1, cfg->cand_ann / 4);
  run->rules = r->rules;
  /* Pages are cut at offset + j k, so the page served is the one the cap and
   * MMR counted; a walk with one k has offset % k == 0 throughout. */
  run->rules.page = r->k;
  run->rules.page_phase = r->k ? r->offset % r->k : 0;
  run->rules.similar = r->similar;
  run->rq = (retrieve_req){.user_id = r->user_id, .user_len = r->user_len, .seeds = r->seeds,
                           .n_seeds = r->n_seeds, .similar = r->similar,
                           .categories = run->rules.include_cats, .n_categories = run->rules.n_include_cats,
                           .want_ann = at_least(cfg->cand_ann, 4 * run->depth), .want_cf = cfg->cand_itemcf,
                           .want_pop = at_least(cfg->cand_popularity, 2 * run->depth),
                           .want_ease = cfg->cand_ease, .ef = r->ann_ef};
  uint32_t row;
  run->acc.known_user = !r->similar && r->user_id && bundle_find_user(b, r->user_id, r->user_len, &row);
  if (profile(b, r, &run->rules, &run->rq, a, &run->acc) || (!r->similar && history(b, r, &run->rules, &run->rq, a)))
    return REC_ENOMEM;
  /* The user's own items come back from ANN too, and the rules drop them:
   * ask for that many more (up to ANN_OWN_MAX), so that the depth asked for
   * is left. */
  if (!r->similar) run->rq.want_ann += run->rules.n_purchases < ANN_OWN_MAX ? run->rules.n_purchases : ANN_OWN_MAX;
  if (r->popularity_only) {
    run->rq.user_id = NULL;
    run->rq.want_ann = run->rq.want_cf = run->rq.want_ease = 0;
  }
  run->it = (rank_items){.catalog = b->catalog, .emb = b->item_emb, .dim = b->dim,
                         .cycle_days = b->sig.cycle_days};
  size_t added = bundle_added(b);
  if (added && b->added_events) { /* this request's snapshot of the live counters */
    uint32_t *ev = arena_alloc(a, added * sizeof *ev);
    if (!ev) return REC_ENOMEM;
    for (size_t i = 0; i < added; i++) ev[i] = atomic_load(b->added_events[i]);
    run->it.added_events = ev;
  }
  *out = run;
  return 0;
}

const retrieve_req *recommend_want(const rec_run *run) { return &run->rq; }

/* Ranks this round's candidates after the positions earlier rounds filled,
 * up to the round's depth; the final round, after which no wider set can
 * come, goes on to the end of the page and lets the cap give way. */
static int rank_round(rec_run *run, const retrieve_result *rr, bool final) {
  size_t want = run->need + 1; /* one more than the pages so far tells whether another exists */
  run->rules.prefix = run->rk.items;
  run->rules.n_prefix = run->rk.n;
  run->rules.k = final || want < run->depth ? want : run->depth;
  run->rules.can_widen = !final;
  run->start = run->rk.n;
  int64_t t0 = rec_mono_ns();
  int rc = rank_slate(&run->it, rr->cands, rr->n, &run->rules, run->a, &run->rk);
  run->acc.rank_ns += rec_mono_ns() - t0;
  run->acc.mmr_ns += run->rk.diversity_ns;
  return rc;
}

/* A pin takes its slot whenever its item is eligible, whether or not a
 * source found it: a pinned item missing from the candidates joins them
 * with no source score, and the rules judge it like any other. */
static int with_pins(rec_run *run, const retrieve_result *rr, retrieve_result *out) {
  const rank_req *r = &run->rules;
  *out = *rr;
  size_t missing = 0;
  for (size_t i = 0; i < r->n_pins; i++) missing += !in_candidates(rr, r->pins[i].item);
  if (!missing) return 0;
  rec_candidate *c = arena_alloc(run->a, (rr->n + missing) * sizeof *c);
  if (!c) return REC_ENOMEM;
  memcpy(c, rr->cands, rr->n * sizeof *c);
  for (size_t i = 0; i < r->n_pins; i++)
    if (!in_candidates(rr, r->pins[i].item)) {
      memset(&c[out->n], 0, sizeof c[out->n]);
      c[out->n++].item = r->pins[i].item;
    }
  out->cands = c;
  return 0;
}

int recommend_step(rec_run *run, const retrieve_result *found, bool *again) {
  size_t total = run->b->catalog->count;
  retrieve_result pinned;
  int prc = with_pins(run, found, &pinned);
  if (prc) return prc;
  const retrieve_result *rr = &pinned;
  /* Every item was considered, or widening found nothing new (SimilarItems
   * has no popularity to fall back on). */
  bool final = rr->exhausted || (run->round > 0 && rr->n == run->before);
  run->rr = *rr;
  int rc = rank_round(run, rr, final);
  if (rc) return rc;
  run->acc.tower_ns += rr->tower_ns;
  run->acc.ann_ns += rr->ann_ns;
  run->acc.sources_ns += rr->sources_ns;
  run->acc.itemcf_ns += rr->itemcf_ns;
  run->acc.pop_ns += rr->pop_ns;
  *again = !final && run->rk.n <= run->need;
  if (!*again) return 0;
  run->round++;
  run->before = rr->n;
  run->depth *= 4;
  retrieve_req *q = &run->rq;
  q->want_ann = q->want_ann > total / 4 ? total : q->want_ann * 4;
  q->want_cf *= 4;
  q->want_ease *= 4;
  q->want_pop = q->want_pop > total / 4 ? total : q->want_pop * 4;
  return 0;
}

/* The reasons a response is degraded that the pipeline itself sees. */
static void note_degraded(const rec_run *run, const rec_result *out) {
  const rec_request *r = run->r;
  if (r->similar) return;
  if (!out->known_user) rec_notes_add(r->notes, REC_DEG_UNKNOWN_USER, NULL);
  /* A source is missing when it was asked, had something to go on, and
   * proposed nothing: ANN a user the bundle knows (an unknown user has no
   * tower vector, and unknown_user says so; a known user whose tower gives
   * no direction is flagged, as nothing else tells of it), item-CF anchors
   * or recent items. A source the deadline left out is said by its
   * deadline reason. EASE proposing nothing is an answer (no item's sum was
   * positive), not a degradation. Flagging what could not have run made
   * every cold user "source_missing:ann", which drowned the reason's signal
   * (and rolled back canaries on cold traffic: deploy/gateway/rollout.py). */
  const retrieve_req *q = &run->rq;
  const bool had_input[REC_SRC_COUNT] = {
      [REC_SRC_ANN] = out->known_user && q->user_id && q->want_ann > 0,
      [REC_SRC_ITEM_CF] = q->n_seeds + q->n_recent > 0 && q->want_cf > 0,
      [REC_SRC_POPULARITY] = q->want_pop > 0,
  };
  for (int s = 0; s < REC_SRC_COUNT; s++)
    if ((out->missing & (1u << s)) && had_input[s] && run->rules.cfg->weight[s] > 0)
      rec_notes_add(r->notes, (rec_degraded)(REC_DEG_SOURCE_MISSING + s), NULL);
  if (out->short_catalog) rec_notes_add(r->notes, REC_DEG_SHORT_CATALOG, NULL);
}

int recommend_finish(rec_run *run, rec_result *out) {
  const retrieve_result *rr = &run->rr;
  const rank_result *rk = &run->rk;
  size_t need = run->need, offset = run->r->offset;
  *out = run->acc;
  out->strategy = rr->known_user ? REC_STRATEGY_PERSONALIZED : REC_STRATEGY_POPULARITY_FALLBACK;
  out->candidates = rr->n;
  for (size_t i = 0; i < rr->n; i++)
    for (int s = 0; s < REC_SRC_COUNT; s++) out->per_source[s] += (rr->cands[i].sources >> s) & 1;
  out->missing = rk->missing;
  out->short_catalog = rk->n < need;
  out->more = rk->n > need;
  out->added_events = run->it.added_events;
  out->n_added = run->it.added_events ? bundle_added(run->b) : 0;
  size_t end = rk->n < need ? rk->n : need;
  out->slate = rk->items;
  out->n_slate = rk->n;
  out->items = rk->items + (offset < end ? offset : end);
  out->n = offset < end ? end - offset : 0;
  note_degraded(run, out);
  return explain_missing(run->b, run->r, &run->rules, rr, rk, need, run->start, run->a, out);
}

int recommend_rounds_local(rec_run *run) {
  int rc = 0;
  for (bool again = true; again && !rc;) {
    retrieve_result rr;
    rc = retrieve_candidates(run->b, recommend_want(run), run->a, &rr);
    if (!rc) rc = recommend_step(run, &rr, &again);
  }
  return rc;
}

int recommend_run(const bundle *b, const rec_request *r, arena *a, rec_result *out) {
  rec_run *run;
  int rc = recommend_begin(b, r, a, &run);
  if (!rc) rc = recommend_rounds_local(run);
  return rc ? rc : recommend_finish(run, out);
}
