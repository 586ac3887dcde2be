/* tests/server/test_svc_ranking.c - Ranking.Recommend and SimilarItems
 * called in process with decoded requests: replies, error codes and their
 * messages, degraded reasons and their metrics, and every allocation
 * failure answered cleanly. */
#include "common/clock.h"
#include "rec/v1/ranking.pb-c.h"
#include "server/handlers.h"
#include "server/metrics.h"
#include "tests/server/world.h"
#include "tests/test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static Rec__V1__RecommendRequest req(const char *user, int k) {
  Rec__V1__RecommendRequest q = REC__V1__RECOMMEND_REQUEST__INIT;
  q.user_id = (char *)user;
  q.k = k;
  return q;
}

static const Rec__V1__RecommendResponse *recommend(world *w, Rec__V1__RecommendRequest *q,
                                                   int64_t deadline_ns, int *rc) {
  const ProtobufCMessage *out = NULL;
  *rc = world_call(w, &h_recommend, &q->base, deadline_ns, &out);
  return (const Rec__V1__RecommendResponse *)out;
}

static void known_user_gets_a_personal_page(void) {
  world w;
  world_open(&w, NULL, false);
  Rec__V1__RecommendRequest q = req("U00003", 10);
  int rc;
  const Rec__V1__RecommendResponse *r = recommend(&w, &q, INT64_MAX, &rc);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  CU_ASSERT_EQUAL(r->n_items, 10);
  CU_ASSERT_EQUAL(r->strategy, REC__V1__STRATEGY__STRATEGY_PERSONALIZED);
  CU_ASSERT_FALSE(world_has(r->degraded_reasons, r->n_degraded_reasons, "unknown_user"));
  CU_ASSERT_EQUAL(strncmp(r->request_id, "recd-", 5), 0);
  CU_ASSERT(r->next_cursor[0] != '\0');
  /* The next page continues this one: no item twice. */
  char *first[10];
  for (size_t i = 0; i < 10; i++) first[i] = strdup(r->items[i]->item_id);
  q.page_cursor = strdup(r->next_cursor);
  r = recommend(&w, &q, INT64_MAX, &rc);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  CU_ASSERT_EQUAL(r->n_items, 10);
  for (size_t i = 0; i < r->n_items; i++)
    for (size_t j = 0; j < 10; j++) CU_ASSERT_STRING_NOT_EQUAL(r->items[i]->item_id, first[j]);
  for (size_t i = 0; i < 10; i++) free(first[i]);
  free(q.page_cursor);
  world_close(&w);
}

static void bad_requests_name_the_field(void) {
  world w;
  world_open(&w, NULL, false);
  int rc;
  Rec__V1__RecommendRequest q = req("U00003", 0);
  recommend(&w, &q, INT64_MAX, &rc);
  CU_ASSERT_EQUAL(rc, REC_EINVAL);
  CU_ASSERT_PTR_NOT_NULL(strstr(w.ctx.err.msg, "k must be between 1 and"));
  q = req("", 5);
  recommend(&w, &q, INT64_MAX, &rc);
  CU_ASSERT_EQUAL(rc, REC_EINVAL);
  CU_ASSERT_PTR_NOT_NULL(strstr(w.ctx.err.msg, "user_id"));
  q = req("U00003", 5);
  q.page_cursor = "12@not-this-bundle";
  recommend(&w, &q, INT64_MAX, &rc);
  CU_ASSERT_EQUAL(rc, REC_EINVAL);
  CU_ASSERT_PTR_NOT_NULL(strstr(w.ctx.err.msg, "page_cursor belongs to bundle"));
  Rec__V1__Filters f = REC__V1__FILTERS__INIT;
  char *cats[] = {"no-such-category"};
  f.include_categories = cats;
  f.n_include_categories = 1;
  q = req("U00003", 5);
  q.filters = &f;
  recommend(&w, &q, INT64_MAX, &rc);
  CU_ASSERT_EQUAL(rc, REC_EINVAL);
  CU_ASSERT_PTR_NOT_NULL(strstr(w.ctx.err.msg, "filters.include_categories[0]: unknown category"));
  char *many[1001];
  for (int i = 0; i < 1001; i++) many[i] = "x";
  q = req("U00003", 5);
  q.exclude_item_ids = many;
  q.n_exclude_item_ids = 1001;
  recommend(&w, &q, INT64_MAX, &rc);
  CU_ASSERT_EQUAL(rc, REC_EINVAL);
  CU_ASSERT_PTR_NOT_NULL(strstr(w.ctx.err.msg, "exclude_item_ids has 1001 ids"));
  world_close(&w);
}

static void unknown_user_gets_popularity(void) {
  world w;
  world_open(&w, NULL, false);
  Rec__V1__RecommendRequest q = req("never-seen", 5);
  int rc;
  const Rec__V1__RecommendResponse *r = recommend(&w, &q, INT64_MAX, &rc);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  CU_ASSERT_EQUAL(r->n_items, 5);
  CU_ASSERT_EQUAL(r->strategy, REC__V1__STRATEGY__STRATEGY_POPULARITY_FALLBACK);
  CU_ASSERT_TRUE(world_has(r->degraded_reasons, r->n_degraded_reasons, "unknown_user"));
  world_close(&w);
}

/* The value of one sample line of /metrics, or -1. */
static double metric(const char *line) {
  char *text = metrics_render("", 1, 0, 0, &(metrics_log){0});
  const char *p = text ? strstr(text, line) : NULL;
  double v = p ? strtod(p + strlen(line), NULL) : -1;
  free(text);
  return v;
}

/* A known user pushed to popularity by the deadline is not an unknown user,
 * and every deadline step reaches recd_degraded_total. */
static void deadline_fallback_is_not_unknown_user(void) {
  const char *flags[] = {"--degrade_popularity_below_ms=60000", "--degrade_mmr_below_ms=60000",
                         "--degrade_ef_below_ms=60000", NULL};
  world w;
  world_open(&w, flags, false);
  const char *pop = "recd_degraded_total{reason=\"deadline:popularity_only\"} ";
  const char *mmr = "recd_degraded_total{reason=\"deadline:mmr_skipped\"} ";
  const char *unknown = "recd_degraded_total{reason=\"unknown_user\"} ";
  double pop0 = metric(pop), mmr0 = metric(mmr), unknown0 = metric(unknown);
  CU_ASSERT(pop0 >= 0 && mmr0 >= 0);
  Rec__V1__RecommendRequest q = req("U00003", 5);
  int rc;
  const Rec__V1__RecommendResponse *r = recommend(&w, &q, rec_mono_ns() + 30000000000LL, &rc);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  CU_ASSERT_EQUAL(r->n_items, 5);
  CU_ASSERT_EQUAL(r->strategy, REC__V1__STRATEGY__STRATEGY_POPULARITY_FALLBACK);
  CU_ASSERT_TRUE(world_has(r->degraded_reasons, r->n_degraded_reasons, "deadline:popularity_only"));
  CU_ASSERT_TRUE(world_has(r->degraded_reasons, r->n_degraded_reasons, "deadline:mmr_skipped"));
  CU_ASSERT_FALSE(world_has(r->degraded_reasons, r->n_degraded_reasons, "unknown_user"));
  CU_ASSERT_EQUAL(metric(pop), pop0 + 1);
  CU_ASSERT_EQUAL(metric(mmr), mmr0 + 1);
  CU_ASSERT_EQUAL(metric(unknown), unknown0);
  world_close(&w);
}

static void similar_items_excludes_the_seeds(void) {
  world w;
  world_open(&w, NULL, false);
  Rec__V1__SimilarItemsRequest q = REC__V1__SIMILAR_ITEMS_REQUEST__INIT;
  const bundle *b = app_acquire(&w.ap);
  char *seed = strdup(b->catalog->ids[0]);
  bundle_unref((bundle *)b);
  q.item_ids = &seed;
  q.n_item_ids = 1;
  q.k = 8;
  const ProtobufCMessage *out;
  CU_ASSERT_EQUAL_FATAL(world_call(&w, &h_similar_items, &q.base, INT64_MAX, &out), 0);
  const Rec__V1__SimilarItemsResponse *r = (const Rec__V1__SimilarItemsResponse *)out;
  CU_ASSERT_EQUAL(r->n_items, 8);
  for (size_t i = 0; i < r->n_items; i++) CU_ASSERT_STRING_NOT_EQUAL(r->items[i]->item_id, seed);
  char *unknown = "no-such-item";
  q.item_ids = &unknown;
  CU_ASSERT_EQUAL(world_call(&w, &h_similar_items, &q.base, INT64_MAX, &out), REC_EINVAL);
  CU_ASSERT_PTR_NOT_NULL(strstr(w.ctx.err.msg, "item_ids[0]: unknown item 'no-such-item'"));
  q.n_item_ids = 0;
  CU_ASSERT_EQUAL(world_call(&w, &h_similar_items, &q.base, INT64_MAX, &out), REC_EINVAL);
  CU_ASSERT_PTR_NOT_NULL(strstr(w.ctx.err.msg, "item_ids is required"));
  free(seed);
  world_close(&w);
}

static void no_bundle_is_unavailable(void) {
  world w;
  world_open(&w, NULL, false);
  app_swap(&w.ap, NULL);
  Rec__V1__RecommendRequest q = req("U00003", 5);
  int rc;
  recommend(&w, &q, INT64_MAX, &rc);
  CU_ASSERT_EQUAL(rc, REC_EUNAVAIL);
  world_close(&w);
}

/* Every allocation of a full request (filters, excludes, anchors, explain,
 * a second page) fails in turn: each answer is a clean REC_ENOMEM. */
static void every_allocation_failure_is_clean(void) {
  world w;
  world_open(&w, NULL, false);
  const bundle *b = app_acquire(&w.ap);
  char *ids[3] = {strdup(b->catalog->ids[1]), strdup(b->catalog->ids[2]), strdup(b->catalog->ids[3])};
  char *cat = strdup(b->catalog->categories[0]);
  bundle_unref((bundle *)b);
  Rec__V1__PriceRange price = REC__V1__PRICE_RANGE__INIT;
  price.max_price = 1e6;
  Rec__V1__Filters f = REC__V1__FILTERS__INIT;
  f.exclude_categories = &cat;
  f.n_exclude_categories = 1;
  f.price = &price;
  Rec__V1__RecommendRequest q = req("U00007", 6);
  q.filters = &f;
  q.exclude_item_ids = ids;
  q.n_exclude_item_ids = 1;
  q.anchor_item_ids = ids + 1;
  q.n_anchor_item_ids = 1;
  q.explain = true;
  q.explain_item_ids = ids;
  q.n_explain_item_ids = 3;
  size_t runs = world_fail_each_allocation(&w, &h_recommend, &q.base);
  CU_ASSERT(runs > 10);
  Rec__V1__RecommendRequest cold = req("never-seen", 3);
  CU_ASSERT(world_fail_each_allocation(&w, &h_recommend, &cold.base) > 5);
  Rec__V1__SimilarItemsRequest s = REC__V1__SIMILAR_ITEMS_REQUEST__INIT;
  s.item_ids = ids;
  s.n_item_ids = 2;
  s.k = 4;
  CU_ASSERT(world_fail_each_allocation(&w, &h_similar_items, &s.base) > 5);
  for (int i = 0; i < 3; i++) free(ids[i]);
  free(cat);
  world_close(&w);
}

/* Loads the ranking settings 'text' into the world (a reload of its bundle). */
static void set_ranking(world *w, const char *path, const char *text) {
  test_write_file(path, text);
  char old_v[REC_ID_MAX + 1], new_v[REC_ID_MAX + 1];
  rec_error e = {0};
  CU_ASSERT_EQUAL_FATAL(app_reload(&w->ap, w->cfg.bundle, old_v, new_v, &e), 0);
}

static const Rec__V1__ScoredItem *at_slot(const Rec__V1__RecommendResponse *r, size_t slot) {
  return slot <= r->n_items ? r->items[slot - 1] : NULL;
}

static const Rec__V1__Adjustment *pin_adjustment(const Rec__V1__ScoredItem *it) {
  for (size_t i = 0; it && it->explanation && i < it->explanation->n_adjustments; i++)
    if (strcmp(it->explanation->adjustments[i]->rule, "promotion_pin") == 0) return it->explanation->adjustments[i];
  return NULL;
}

/* A pin takes its slot whenever its item is eligible, retrieved or not, and
 * only inside its time window; explain says which. An ineligible pinned
 * item (out of stock) is never placed. */
static void pins_hold_inside_their_windows(void) {
  char flag[600];
  const char *conf = test_path("pins.conf");
  test_write_file(conf, "");
  snprintf(flag, sizeof flag, "--ranking_config=%s", conf);
  const char *flags[] = {flag, NULL};
  world w;
  world_open(&w, flags, false);
  /* Two in-stock items of the 40 least popular that no source retrieves
   * for this user, and one item out of stock. */
  bundle *b = app_acquire(&w.ap);
  const catalog *c = b->catalog;
  char *tail[40], *out_of_stock = NULL;
  size_t n_tail = 0;
  for (size_t i = c->count; i-- > 0 && n_tail < 40;)
    if (c->in_stock[c->by_popularity[i]]) tail[n_tail++] = strdup(c->ids[c->by_popularity[i]]);
  for (size_t i = 0; i < c->count && !out_of_stock; i++)
    if (!c->in_stock[i]) out_of_stock = strdup(c->ids[i]);
  bundle_unref(b);
  set_ranking(&w, conf, "candidates.ann = 8\ncandidates.itemcf = 8\ncandidates.popularity = 8\n");
  Rec__V1__RecommendRequest q = req("U00003", 6);
  q.explain_item_ids = tail;
  q.n_explain_item_ids = n_tail;
  int rc;
  const Rec__V1__RecommendResponse *r = recommend(&w, &q, INT64_MAX, &rc);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  char *unseen[2];
  size_t n_unseen = 0;
  for (size_t i = 0; i < r->n_verdicts && n_unseen < 2; i++)
    if (strcmp(r->verdicts[i]->stage, "retrieval") == 0) unseen[n_unseen++] = strdup(r->verdicts[i]->item_id);
  CU_ASSERT_EQUAL_FATAL(n_unseen, 2);
  char text[1024];
  snprintf(text, sizeof text,
           "candidates.ann = 8\ncandidates.itemcf = 8\ncandidates.popularity = 8\n"
           "promotions.pin = %s@2, %s@4@2020-01-01T00:00:00Z/2020-02-01T00:00:00Z%s%s%s\n",
           unseen[0], unseen[1], out_of_stock ? ", " : "", out_of_stock ? out_of_stock : "",
           out_of_stock ? "@1" : "");
  set_ranking(&w, conf, text);
  q.explain = true;
  q.n_explain_item_ids = 0;
  r = recommend(&w, &q, INT64_MAX, &rc);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  CU_ASSERT_EQUAL_FATAL(r->n_items, 6);
  CU_ASSERT_STRING_EQUAL(at_slot(r, 2)->item_id, unseen[0]); /* not retrieved, pinned all the same */
  const Rec__V1__Adjustment *pin = pin_adjustment(at_slot(r, 2));
  CU_ASSERT_PTR_NOT_NULL_FATAL(pin);
  CU_ASSERT_STRING_EQUAL(pin->note, "pinned; not retrieved");
  for (size_t i = 0; i < r->n_items; i++) {
    CU_ASSERT_STRING_NOT_EQUAL(r->items[i]->item_id, unseen[1]); /* its window is over */
    if (out_of_stock) CU_ASSERT_STRING_NOT_EQUAL(r->items[i]->item_id, out_of_stock);
  }
  /* The same pin with a window that holds now. */
  snprintf(text, sizeof text,
           "candidates.ann = 8\ncandidates.itemcf = 8\ncandidates.popularity = 8\n"
           "promotions.pin = %s@2, %s@4@2020-01-01T00:00:00Z/\n", unseen[0], unseen[1]);
  set_ranking(&w, conf, text);
  r = recommend(&w, &q, INT64_MAX, &rc);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  CU_ASSERT_STRING_EQUAL(at_slot(r, 4)->item_id, unseen[1]);
  pin = pin_adjustment(at_slot(r, 4));
  CU_ASSERT_PTR_NOT_NULL_FATAL(pin);
  CU_ASSERT_STRING_EQUAL(pin->note, "2020-01-01T00:00:00Z/; pinned; not retrieved");
  for (size_t i = 0; i < n_tail; i++) free(tail[i]);
  for (size_t i = 0; i < n_unseen; i++) free(unseen[i]);
  free(out_of_stock);
  world_close(&w);
}

void suite_svc_ranking(void) {
  static const test_case cases[] = {
      {"known user gets a personal page", known_user_gets_a_personal_page},
      {"bad requests name the field", bad_requests_name_the_field},
      {"unknown user gets popularity", unknown_user_gets_popularity},
      {"deadline fallback is not unknown_user", deadline_fallback_is_not_unknown_user},
      {"similar items excludes the seeds", similar_items_excludes_the_seeds},
      {"no bundle is unavailable", no_bundle_is_unavailable},
      {"every allocation failure is clean", every_allocation_failure_is_clean},
      {"pins hold inside their windows", pins_hold_inside_their_windows},
      {NULL, NULL}};
  test_add_suite("svc_ranking", cases);
}
