/* server/recommend.c - see recommend.h. The candidate count starts at four
 * times what the page needs plus the exclusions (filters usually drop few)
 * and grows fourfold while the page is short, up to the whole catalog. */
#include "server/recommend.h"
#include "common/clock.h"
#include "retrieval/retrieve.h"

#include <string.h>

static size_t first_want(const rec_request *r, size_t need, size_t total) {
  size_t want = need * 4 + r->rules.n_exclude;
  if (want < 100) want = 100;
  return want < total ? want : total;
}

static bool in_candidates(const retrieve_result *rr, uint32_t item) {
  for (size_t i = 0; i < rr->n; i++)
    if (rr->cands[i].item == item) return true;
  return false;
}

static bool in_slate(const rec_result *res, uint32_t item) {
  for (size_t i = 0; i < res->n; i++)
    if (res->items[i].item == item) return true;
  return false;
}

/* Why each item the caller asked about is not on this page. */
static int explain_missing(const bundle *b, const rec_request *r, const retrieve_result *rr,
                           arena *a, rec_result *res) {
  res->verdicts = arena_calloc(a, r->n_explain ? r->n_explain : 1, sizeof *res->verdicts);
  if (!res->verdicts) return REC_ENOMEM;
  for (size_t i = 0; i < r->n_explain; i++) {
    const char *id = r->explain_ids[i];
    uint32_t item;
    rec_verdict *v = &res->verdicts[res->n_verdicts];
    v->item_id = id;
    if (!catalog_find(b->catalog, id, strlen(id), &item)) {
      v->stage = "unknown_item";
      v->reason = arena_printf(a, "not in the catalog of bundle %s", b->version);
    } else if (in_slate(res, item)) {
      continue;
    } else if ((v->reason = rank_ineligible_reason(b->catalog, &r->rules, item)) != NULL) {
      v->stage = "rule";
    } else if (!in_candidates(rr, item)) {
      v->stage = "retrieval";
      v->reason = arena_printf(a, "not among the %zu candidates retrieved", rr->n);
    } else {
      v->stage = "cut";
      v->reason = r->offset ? "ranked on another page" : "ranked below the top k";
    }
    res->n_verdicts++;
  }
  return 0;
}

int recommend_run(const bundle *b, const rec_request *r, arena *a, rec_result *out) {
  size_t total = b->catalog->count;
  size_t need = r->offset + r->rules.k;
  rank_req rules = r->rules;
  rules.k = need + 1; /* one more than the page tells whether a next page exists */
  rank_item *ranked = arena_alloc(a, rules.k * sizeof *ranked);
  if (!ranked) return REC_ENOMEM;
  retrieve_req rq = {r->user_id, r->user_len, first_want(r, need, total)};
  retrieve_result rr;
  size_t n;
  memset(out, 0, sizeof *out);
  for (;;) {
    int rc = retrieve_candidates(b, &rq, a, &rr);
    if (rc) return rc;
    int64_t t0 = rec_mono_ns();
    if ((rc = rank_slate(b->catalog, rr.cands, rr.n, &rules, ranked, &n))) return rc;
    out->rank_ns += rec_mono_ns() - t0;
    out->tower_ns += rr.tower_ns;
    out->ann_ns += rr.ann_ns;
    if (n >= rules.k || rr.exhausted) break;
    rq.want = rq.want > total / 4 ? total : rq.want * 4;
  }
  out->personalized = rr.known_user;
  out->candidates = rr.n;
  out->short_catalog = n < need;
  out->more = n > need;
  size_t end = n < need ? n : need;
  out->items = ranked + (r->offset < end ? r->offset : end);
  out->n = r->offset < end ? end - r->offset : 0;
  return explain_missing(b, r, &rr, a, out);
}
