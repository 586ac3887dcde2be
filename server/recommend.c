/* server/recommend.c - see recommend.h. The first round asks each source for
 * its configured count (ANN for at least four times the page); a short page
 * multiplies every request by four, until ANN scans the whole catalog or the
 * popularity order runs through it. */
#include "server/recommend.h"
#include "common/clock.h"

#include <string.h>

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
                    const rank_result *rk, size_t need, uint32_t item, arena *a, rec_verdict *v) {
  rank_items it = {.catalog = b->catalog, .cycle_days = b->sig.cycle_days};
  size_t at;
  if ((v->reason = rank_ineligible_reason(&it, rules, item)) != NULL) {
    v->stage = "rule";
  } else if (!in_candidates(rr, item)) {
    v->stage = "retrieval";
    v->reason = arena_printf(a, "not among the %zu candidates retrieved", rr->n);
  } else if (in_slate(rk->items, rk->n, item, &at)) {
    v->stage = "cut";
    v->reason = arena_printf(a, "at position %zu, on another page", at + 1);
  } else if (in_slate(rk->ranked, rk->n_ranked, item, &at) && at < need) {
    v->stage = "diversity";
    v->reason = arena_printf(a, "ranked %zu by score, displaced by MMR or the category cap", at + 1);
  } else {
    v->stage = "cut";
    v->reason = arena_printf(a, "scored below the top %zu", need);
  }
}

static int explain_missing(const bundle *b, const rec_request *r, const rank_req *rules,
                           const retrieve_result *rr, const rank_result *rk, size_t need, arena *a,
                           rec_result *res) {
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
      verdict(b, rules, rr, rk, need, item, a, v);
    }
    res->n_verdicts++;
  }
  return 0;
}

int recommend_run(const bundle *b, const rec_request *r, arena *a, rec_result *out) {
  const rank_config *cfg = r->rules.cfg;
  size_t total = b->catalog->count, need = r->offset + r->k;
  memset(out, 0, sizeof *out);
  rank_req rules = r->rules;
  rules.k = need + 1; /* one more than the pages so far tells whether another exists */
  rules.page = r->k;
  rules.similar = r->similar;
  retrieve_req rq = {.user_id = r->user_id, .user_len = r->user_len, .seeds = r->seeds,
                     .n_seeds = r->n_seeds, .similar = r->similar,
                     .categories = rules.include_cats, .n_categories = rules.n_include_cats,
                     .want_ann = at_least(cfg->cand_ann, 4 * need), .want_cf = cfg->cand_itemcf,
                     .want_pop = at_least(cfg->cand_popularity, 2 * need), .ef = r->ann_ef};
  if (profile(b, r, &rules, &rq, a, out)) return REC_ENOMEM;
  if (r->popularity_only) {
    rq.user_id = NULL;
    rq.want_ann = rq.want_cf = 0;
  }
  rank_items it = {.catalog = b->catalog, .emb = b->item_emb, .dim = b->dim,
                   .cycle_days = b->sig.cycle_days};
  retrieve_result rr;
  rank_result rk;
  size_t before = 0;
  for (int round = 0;; round++) {
    int rc = r->retrieve ? r->retrieve(r->retrieve_arg, b, &rq, a, &rr)
                         : retrieve_candidates(b, &rq, a, &rr);
    if (rc) return rc;
    int64_t t0 = rec_mono_ns();
    if ((rc = rank_slate(&it, rr.cands, rr.n, &rules, a, &rk))) return rc;
    out->rank_ns += rec_mono_ns() - t0;
    out->tower_ns += rr.tower_ns;
    out->ann_ns += rr.ann_ns;
    out->sources_ns += rr.sources_ns;
    /* Stop when the page is full, every item was considered, or widening
     * found nothing new (SimilarItems has no popularity to fall back on). */
    if (rk.n > need || rr.exhausted || (round > 0 && rr.n == before)) break;
    before = rr.n;
    rq.want_ann = rq.want_ann > total / 4 ? total : rq.want_ann * 4;
    rq.want_cf *= 4;
    rq.want_pop = rq.want_pop > total / 4 ? total : rq.want_pop * 4;
  }
  out->personalized = rr.known_user;
  out->candidates = rr.n;
  for (size_t i = 0; i < rr.n; i++)
    for (int s = 0; s < REC_SRC_COUNT; s++) out->per_source[s] += (rr.cands[i].sources >> s) & 1;
  out->missing = rk.missing;
  out->short_catalog = rk.n < need;
  out->more = rk.n > need;
  size_t end = rk.n < need ? rk.n : need;
  out->items = rk.items + (r->offset < end ? r->offset : end);
  out->n = r->offset < end ? end - r->offset : 0;
  return explain_missing(b, r, &rules, &rr, &rk, need, a, out);
}
