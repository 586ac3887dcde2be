/* tests/server/test_recommend.c - the Recommend pipeline without gRPC: the
 * page is full whenever enough eligible items exist (checked against an
 * independent oracle on random catalogs and random rules), pages continue
 * each other, cold users get popularity, absent items are explained; walks
 * of every page on random worlds and a synthetic shop, each page a slice of
 * one ordering, with the category cap and the scores as the API states them. */
#include "retrieval/bundle_write.h"
#include "server/recommend.h"
#include "tests/test.h"
#include "tools/offline/synth.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static rank_config *cfg_default(void) {
  rank_config *c = NULL;
  CU_ASSERT_EQUAL(rank_config_load(NULL, &c, NULL), 0);
  return c;
}

static bundle *load(void) {
  bundle *b = NULL;
  CU_ASSERT_EQUAL(bundle_load(test_synth_bundle("p_hnsw", 1000, "HNSW32"), &b, NULL), 0);
  return b;
}

static rec_request req(const rank_config *cfg, const char *user, size_t k) {
  rec_request r = {.user_id = user, .user_len = strlen(user), .k = k};
  r.rules.cfg = cfg;
  r.rules.now = 1700000000;
  return r;
}

/* A category the user is not drawn to holds few of its nearest items, so
 * filling the page needs the candidate set widened. */
static void full_page_under_a_selective_filter(void) {
  bundle *b = load();
  rank_config *cfg = cfg_default();
  CU_ASSERT_PTR_NOT_NULL_FATAL(b);
  synth_opts o = {.categories = 4};
  char name[64];
  synth_category_name((synth_user_category(&o, 0) + 1) % 4, name, sizeof name);
  uint32_t other;
  CU_ASSERT_TRUE_FATAL(catalog_find_category(b->catalog, name, strlen(name), &other));
  arena a;
  arena_init(&a, 0);
  rec_request r = req(cfg, "U00000", 60);
  r.rules.include_cats = &other;
  r.rules.n_include_cats = 1;
  rec_result res;
  CU_ASSERT_EQUAL_FATAL(recommend_run(b, &r, &a, &res), 0);
  CU_ASSERT_TRUE((res.strategy == REC_STRATEGY_PERSONALIZED));
  CU_ASSERT_EQUAL(res.n, 60);
  CU_ASSERT_FALSE(res.short_catalog);
  for (size_t i = 0; i < res.n; i++) {
    CU_ASSERT_EQUAL(b->catalog->category[res.items[i].item], other);
    CU_ASSERT_TRUE(b->catalog->in_stock[res.items[i].item]);
  }
  arena_destroy(&a);
  rank_config_free(cfg);
  bundle_unref(b);
}

static void pages_continue_each_other(void) {
  bundle *b = load();
  rank_config *cfg = cfg_default();
  CU_ASSERT_PTR_NOT_NULL_FATAL(b);
  arena a;
  arena_init(&a, 0);
  rec_request p1 = req(cfg, "U00002", 10), p2 = req(cfg, "U00002", 10), p3 = req(cfg, "U00002", 10);
  p2.offset = 10;
  p3.offset = 20;
  rec_result r1, r2, r3;
  CU_ASSERT_EQUAL_FATAL(recommend_run(b, &p1, &a, &r1), 0);
  CU_ASSERT_EQUAL_FATAL(recommend_run(b, &p2, &a, &r2), 0);
  CU_ASSERT_EQUAL_FATAL(recommend_run(b, &p3, &a, &r3), 0);
  CU_ASSERT_EQUAL_FATAL(r1.n + r2.n + r3.n, 30);
  CU_ASSERT_TRUE(r1.more);
  /* Page two repeats nothing of page one, page three nothing of either. */
  for (size_t i = 0; i < 10; i++)
    for (size_t j = 0; j < 10; j++) {
      CU_ASSERT_NOT_EQUAL(r1.items[i].item, r2.items[j].item);
      CU_ASSERT_NOT_EQUAL(r1.items[i].item, r3.items[j].item);
      CU_ASSERT_NOT_EQUAL(r2.items[i].item, r3.items[j].item);
    }
  arena_destroy(&a);
  rank_config_free(cfg);
  bundle_unref(b);
}

static void cold_user_gets_popular_items_and_missing_sources(void) {
  bundle *b = load();
  rank_config *cfg = cfg_default();
  CU_ASSERT_PTR_NOT_NULL_FATAL(b);
  arena a;
  arena_init(&a, 0);
  rec_request r = req(cfg, "never-seen", 5);
  rec_result res;
  CU_ASSERT_EQUAL_FATAL(recommend_run(b, &r, &a, &res), 0);
  CU_ASSERT_FALSE((res.strategy == REC_STRATEGY_PERSONALIZED));
  CU_ASSERT_EQUAL(res.missing, (1u << REC_SRC_ANN) | (1u << REC_SRC_ITEM_CF) | (1u << REC_SRC_EASE));
  CU_ASSERT_EQUAL(res.n, 5);
  for (size_t i = 0; i < res.n; i++) CU_ASSERT_EQUAL(res.items[i].sources, 1u << REC_SRC_POPULARITY);
  arena_destroy(&a);
  rank_config_free(cfg);
  bundle_unref(b);
}

static void absent_items_are_explained(void) {
  bundle *b = load();
  rank_config *cfg = cfg_default();
  CU_ASSERT_PTR_NOT_NULL_FATAL(b);
  uint32_t out_of_stock = 0;
  while (b->catalog->in_stock[out_of_stock]) out_of_stock++;
  arena a;
  arena_init(&a, 0);
  rec_request r = req(cfg, "U00003", 5);
  rec_result first;
  CU_ASSERT_EQUAL_FATAL(recommend_run(b, &r, &a, &first), 0);
  const char *shown = b->catalog->ids[first.items[0].item];
  uint32_t excluded = first.items[1].item;
  r.rules.exclude = &excluded;
  r.rules.n_exclude = 1;
  const char *ids[] = {"no-such-item", b->catalog->ids[out_of_stock], shown, b->catalog->ids[excluded]};
  r.explain_ids = ids;
  r.n_explain = 4;
  rec_result res;
  CU_ASSERT_EQUAL_FATAL(recommend_run(b, &r, &a, &res), 0);
  CU_ASSERT_EQUAL_FATAL(res.n_verdicts, 3); /* the shown item needs no verdict */
  CU_ASSERT_STRING_EQUAL(res.verdicts[0].stage, "unknown_item");
  CU_ASSERT_STRING_EQUAL(res.verdicts[1].stage, "rule");
  CU_ASSERT_STRING_EQUAL(res.verdicts[1].reason, "out of stock");
  CU_ASSERT_STRING_EQUAL(res.verdicts[2].reason, "excluded by request");
  arena_destroy(&a);
  rank_config_free(cfg);
  bundle_unref(b);
}

/* ---- the k guarantee against an oracle ---- */

typedef struct world {
  size_t n, dim, cats, users;
  float price[400], cycle[400], mean[30];
  bool stock[400];
  int segment[30];
  int64_t bought[30][400];   /* last purchase time, 0 = never */
} world;

static uint64_t rng_state;
static uint32_t rnd(uint32_t n) {
  rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
  return (uint32_t)((rng_state >> 33) % n);
}

static int write_tsv(const char *path, void *arg, rec_error *err) {
  (void)err;
  test_write_file(path, arg);
  return 0;
}

/* Appends printf output to a growing string. */
static void cat(char **s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void cat(char **s, const char *fmt, ...) {
  char line[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  size_t old = *s ? strlen(*s) : 0;
  *s = realloc(*s, old + strlen(line) + 1);
  strcpy(*s + old, line);
}

static const char *const SEG[4] = {"small", "low", "average", "high"};

/* A random catalog with profiles, purchases, repurchase cycles, item-CF
 * neighbours and segment popularity, written as a real bundle. */
static void make_world(world *w, const char *dir, int64_t now) {
  w->n = 20 + rnd(200), w->dim = 4, w->cats = 1 + rnd(5), w->users = 1 + rnd(20);
  char **ids = calloc(w->n, sizeof *ids), **catn = calloc(w->n, sizeof *catn), *uids[30];
  float *emb = calloc(w->n * w->dim, sizeof *emb), pop[400];
  char *profiles = NULL, *purchases = NULL, *repurchase = NULL, *itemcf = NULL, *popl = NULL;
  cat(&profiles, "user_id\tmean_price\tsegment\trecent_items\n");
  cat(&purchases, "user_id\titem_id\tlast_time\tcount\n");
  cat(&repurchase, "item_id\tcycle_days\tsamples\n");
  cat(&itemcf, "item_id\tneighbour_id\tscore\n");
  cat(&popl, "list\titem_id\tscore\n");
  for (size_t i = 0; i < w->n; i++) {
    ids[i] = calloc(32, 1), catn[i] = calloc(32, 1);
    snprintf(ids[i], 32, "i%zu", i);
    snprintf(catn[i], 32, "c%u", rnd((uint32_t)w->cats));
    w->price[i] = 1 + (float)rnd(100);
    w->stock[i] = rnd(10) < 7;
    w->cycle[i] = rnd(3) ? 0 : 5 + (float)rnd(60);
    pop[i] = (float)rnd(1000);
    double s = 0;
    for (size_t d = 0; d < w->dim; d++) s += pow(emb[i * w->dim + d] = (float)rnd(1000) - 500.0f, 2);
    for (size_t d = 0; d < w->dim; d++) emb[i * w->dim + d] /= (float)sqrt(s);
    if (w->cycle[i] > 0) cat(&repurchase, "%s\t%.1f\t3\n", ids[i], (double)w->cycle[i]);
    for (int k = 0; k < 3; k++) cat(&itemcf, "%s\ti%u\t0.%u\n", ids[i], rnd((uint32_t)w->n), 1 + rnd(9));
  }
  for (int s = 0; s < 4; s++)
    for (int k = 0; k < 5; k++) cat(&popl, "segment:%s\ti%u\t%d\n", SEG[s], rnd((uint32_t)w->n), 100 - k);
  float feat[30 * 4];
  for (size_t u = 0; u < w->users; u++) {
    uids[u] = calloc(32, 1);
    snprintf(uids[u], 32, "u%zu", u);
    w->mean[u] = rnd(4) ? 5 + (float)rnd(60) : 0;
    w->segment[u] = (int)rnd(4);
    for (size_t d = 0; d < 4; d++) feat[u * 4 + d] = (float)rnd(100) - 50.0f;
    cat(&profiles, "%s\t%.1f\t%s\ti%u i%u\n", uids[u], (double)w->mean[u], SEG[w->segment[u]],
        rnd((uint32_t)w->n), rnd((uint32_t)w->n));
    for (size_t i = 0; i < w->n; i++) {
      w->bought[u][i] = rnd(8) ? 0 : now - (int64_t)rnd(90) * 86400 - 1;
      if (w->bought[u][i]) cat(&purchases, "%s\t%s\t%lld\t1\n", uids[u], ids[i], (long long)w->bought[u][i]);
    }
  }
  float wt[16] = {1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1}, bias[4] = {0};
  tower_layer layer = {4, 4, wt, bias, TOWER_LINEAR};
  bundle_extra extras[] = {{"profiles.tsv", "profiles", write_tsv, profiles},
                           {"purchases.tsv", "purchases", write_tsv, purchases},
                           {"repurchase.tsv", "repurchase", write_tsv, repurchase},
                           {"item_cf.tsv", "item_cf", write_tsv, itemcf},
                           {"popularity.tsv", "popularity", write_tsv, popl}};
  bundle_spec s = {.version = "world", .dim = w->dim, .item_count = w->n,
                   .item_ids = (const char *const *)ids, .item_categories = (const char *const *)catn,
                   .item_price = w->price, .item_in_stock = w->stock, .item_popularity = pop,
                   .item_emb = emb, .user_count = w->users, .feature_dim = 4,
                   .user_ids = (const char *const *)uids, .user_features = feat, .n_layers = 1,
                   .layers = &layer, .index_type = rnd(2) ? "Flat" : "HNSW16", .ef_search = 16,
                   .extras = extras, .n_extras = 5};
  rec_error e = {0};
  CU_ASSERT_EQUAL(bundle_write(dir, &s, &e), 0);
  for (size_t i = 0; i < w->n; i++) free(ids[i]), free(catn[i]);
  for (size_t u = 0; u < w->users; u++) free(uids[u]);
  free(ids), free(catn), free(emb), free(profiles), free(purchases), free(repurchase), free(itemcf),
      free(popl);
}

/* The rules written out again, independently of ranking/rank.c. */
static bool oracle_eligible(const world *w, const rank_config *cfg, const rec_request *r, int user,
                            uint32_t i, const bundle *b) {
  if (!w->stock[i]) return false;
  for (size_t k = 0; k < r->rules.n_exclude; k++)
    if (r->rules.exclude[k] == i) return false;
  for (size_t k = 0; k < r->rules.n_blocked; k++)
    if (r->rules.blocked[k] == i) return false;
  uint32_t c = b->catalog->category[i];
  bool inc = r->rules.n_include_cats == 0;
  for (size_t k = 0; k < r->rules.n_include_cats; k++) inc |= r->rules.include_cats[k] == c;
  for (size_t k = 0; k < r->rules.n_exclude_cats; k++) inc &= r->rules.exclude_cats[k] != c;
  if (!inc) return false;
  float p = w->price[i];
  if (r->rules.has_price && (p < r->rules.min_price || (r->rules.max_price > 0 && p > r->rules.max_price)))
    return false;
  if (user < 0) return true;
  const rank_soft *soft = &cfg->segment[w->segment[user]];
  if (w->mean[user] > 0 && soft->price_cap_ratio > 0 && p > soft->price_cap_ratio * w->mean[user])
    return false;
  int64_t t = w->bought[user][i];
  if (t && w->cycle[i] == 0 && cfg->exclude_purchased) return false;
  return !(t && w->cycle[i] > 0 && (double)(r->rules.now - t) < cfg->repurchase_block * w->cycle[i] * 86400.0);
}

static int by_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

typedef struct rules_store {
  uint32_t excl[8], blocked[4], inc, exc;
} rules_store;

/* Random excludes, blocked items, category and price filters for 'r', kept in 'st'. */
static void random_rules(const world *w, rec_request *r, rules_store *st) {
  st->inc = rnd((uint32_t)w->cats), st->exc = rnd((uint32_t)w->cats);
  for (int k = 0; k < 8; k++) st->excl[k] = rnd((uint32_t)w->n);
  for (int k = 0; k < 4; k++) st->blocked[k] = (uint32_t)k * 3;
  qsort(st->excl, 8, sizeof *st->excl, by_u32); /* the rules look excludes up by bisection */
  r->rules.exclude = st->excl, r->rules.n_exclude = rnd(2) ? 8 : 0;
  r->rules.blocked = st->blocked, r->rules.n_blocked = rnd(2) ? 4 : 0;
  if (rnd(3) == 0) r->rules.include_cats = &st->inc, r->rules.n_include_cats = 1;
  if (rnd(3) == 0) r->rules.exclude_cats = &st->exc, r->rules.n_exclude_cats = 1;
  if (rnd(3) == 0)
    r->rules.has_price = true, r->rules.min_price = (float)rnd(50), r->rules.max_price = (float)rnd(3) * 40;
}

static void one_trial(int trial, const rank_config *cfg) {
  world *w = calloc(1, sizeof *w);
  char dir[64];
  snprintf(dir, sizeof dir, "world%d", trial);
  int64_t now = 1700000000;
  make_world(w, test_path(dir), now);
  bundle *b = NULL;
  rec_error e = {0};
  CU_ASSERT_EQUAL_FATAL(bundle_load(test_path(dir), &b, &e), 0);
  int user = rnd(3) ? (int)rnd((uint32_t)w->users) : -1;
  char uid[16];
  snprintf(uid, sizeof uid, user >= 0 ? "u%d" : "nobody", user);
  rec_request r = req(cfg, uid, 1 + rnd((uint32_t)w->n));
  r.rules.now = now;
  rules_store st;
  random_rules(w, &r, &st);
  arena a;
  arena_init(&a, 0);
  rec_result res;
  CU_ASSERT_EQUAL_FATAL(recommend_run(b, &r, &a, &res), 0);
  size_t eligible = 0;
  for (uint32_t i = 0; i < w->n; i++) eligible += oracle_eligible(w, cfg, &r, user, i, b);
  size_t want = eligible < r.k ? eligible : r.k;
  if (res.n != want) fprintf(stderr, "\n  trial %d: %zu items, want %zu (k %zu, eligible %zu)\n", trial, res.n, want, r.k, eligible);
  CU_ASSERT_EQUAL(res.n, want);
  for (size_t i = 0; i < res.n; i++) {
    CU_ASSERT(oracle_eligible(w, cfg, &r, user, res.items[i].item, b));
    for (size_t j = 0; j < i; j++) CU_ASSERT_NOT_EQUAL(res.items[i].item, res.items[j].item);
  }
  arena_destroy(&a);
  bundle_unref(b);
  free(w);
}

/* Random settings of the rules the oracle rewrites, and of diversity. */
static rank_config *random_config(void) {
  rank_config *cfg = cfg_default();
  char v[32];
  snprintf(v, sizeof v, "%u", 1 + rnd(4));
  rank_config_set(cfg, "price.cap_ratio", rnd(3) ? v : "0", NULL);
  snprintf(v, sizeof v, "0.%u", rnd(10));
  rank_config_set(cfg, "repurchase.block_fraction", v, NULL);
  rank_config_set(cfg, "rules.exclude_purchased", rnd(2) ? "true" : "false", NULL);
  rank_config_set(cfg, "diversity.mmr", rnd(2) ? "true" : "false", NULL);
  snprintf(v, sizeof v, "0.%u", rnd(10));
  rank_config_set(cfg, "diversity.category_share", v, NULL);
  rank_config_set(cfg, "blend.normalization", rnd(2) ? "rank" : "minmax", NULL);
  return cfg;
}

static void k_guarantee_against_an_oracle(void) {
  rng_state = 20261122;
  for (int trial = 0; trial < 60; trial++) {
    rank_config *cfg = random_config();
    one_trial(trial, cfg);
    rank_config_free(cfg);
  }
}

/* ---- pages: one ordering, cut into pages ---- */

typedef bool (*eligible_fn)(const void *ctx, uint32_t item);

typedef struct walk_stats {
  int pages, gave_way;       /* pages walked; pages the catalog could not fill under the cap */
} walk_stats;

/* The category cap as the API states it: at most ceil(share k) of a category
 * on a page, unless the eligible items not on earlier pages cannot fill the
 * page otherwise, and then only by as many as that forces. */
static void check_cap(const bundle *b, const rec_request *r, const rec_result *res, const size_t *left,
                      walk_stats *st, const char *what, size_t page) {
  const catalog *c = b->catalog;
  double share = r->rules.cfg->category_share;
  if (share <= 0 || r->rules.n_pins || r->similar) return; /* SimilarItems: likeness first (rank.c) */
  size_t cap = (size_t)ceil(share * (double)r->k - 1e-6), on[64] = {0}, room = 0, over = 0;
  for (size_t i = 0; i < res->n; i++) on[c->category[res->items[i].item]]++;
  for (size_t x = 0; x < c->category_count; x++) {
    room += left[x] < cap ? left[x] : cap;
    over += on[x] > cap ? on[x] - cap : 0;
  }
  size_t forced = res->n > room ? res->n - room : 0;
  st->gave_way += forced > 0;
  if (over > forced)
    fprintf(stderr, "\n  %s: page %zu has %zu items over the cap of %zu, the catalog forces %zu", what,
            page + 1, over, cap, forced);
  CU_ASSERT(over <= forced);
}

/* The documented score: the blend times every adjustment, whatever the order. */
static void check_scores(const rec_result *res) {
  for (size_t i = 0; i < res->n; i++) {
    const rank_item *x = &res->items[i];
    double s = x->blended;
    for (size_t j = 0; j < x->n_adj; j++) s *= x->adj[j].factor;
    CU_ASSERT_DOUBLE_EQUAL(x->score, s, 1e-5 * (1 + fabs(s)));
  }
}

/* Walks pages 0..n_pages-1 of 'base' (page size base->k, offsets p k, as the
 * cursors give them) and checks that page p is exactly positions
 * [p k, p k + k) of the ordering a single request for the last page cuts its
 * page from; that no item comes twice; that a page is full while eligible
 * items are left; the cap; the scores. */
static void walk_pages(const bundle *b, const rec_request *base, size_t n_pages, eligible_fn eligible,
                       const void *ctx, walk_stats *st, const char *what) {
  const catalog *c = b->catalog;
  size_t k = base->k, left[64] = {0}, n_left = 0;
  CU_ASSERT_FATAL(c->category_count <= 64);
  for (uint32_t i = 0; i < c->count; i++)
    if (eligible(ctx, i)) left[c->category[i]]++, n_left++;
  arena a;
  arena_init(&a, 0);
  rec_request deep_rq = *base;
  deep_rq.offset = (n_pages - 1) * k;
  rec_result deep;
  CU_ASSERT_EQUAL_FATAL(recommend_run(b, &deep_rq, &a, &deep), 0);
  bool *seen = calloc(c->count, sizeof *seen);
  for (size_t p = 0; p < n_pages; p++) {
    rec_request rq = *base;
    rq.offset = p * k;
    rec_result res;
    CU_ASSERT_EQUAL_FATAL(recommend_run(b, &rq, &a, &res), 0);
    st->pages++;
    CU_ASSERT_EQUAL(res.n, n_left < k ? n_left : k);
    bool same = p * k + res.n <= deep.n_slate;
    for (size_t i = 0; same && i < res.n; i++) same = res.items[i].item == deep.slate[p * k + i].item;
    if (!same)
      fprintf(stderr, "\n  %s: page %zu (k %zu) is not positions %zu.. of one ordering", what, p + 1, k, p * k);
    CU_ASSERT(same);
    for (size_t i = 0; i < res.n; i++) {
      uint32_t item = res.items[i].item;
      if (seen[item]) fprintf(stderr, "\n  %s: page %zu repeats item %u", what, p + 1, item);
      CU_ASSERT(!seen[item]);
      CU_ASSERT(eligible(ctx, item));
      seen[item] = true;
    }
    check_cap(b, &rq, &res, left, st, what, p);
    check_scores(&res);
    for (size_t i = 0; i < res.n; i++) left[c->category[res.items[i].item]]--, n_left--;
    CU_ASSERT_EQUAL(res.more, n_left > 0);
    if (!res.more) break;
  }
  free(seen);
  arena_destroy(&a);
}

typedef struct world_ctx {
  const world *w;
  const rank_config *cfg;
  const rec_request *r;
  int user;
  const bundle *b;
} world_ctx;

static bool world_eligible(const void *ctx, uint32_t item) {
  const world_ctx *x = ctx;
  return oracle_eligible(x->w, x->cfg, x->r, x->user, item, x->b);
}

/* Random catalogs, rules, settings and pins: every page of a walk is a
 * slice of one ordering. Asks for every page until the catalog runs out. */
static void pages_are_one_ordering_on_random_worlds(void) {
  retrieve_thread_init();
  rng_state = 4242;
  walk_stats st = {0};
  for (int trial = 0; trial < 40; trial++) {
    rank_config *cfg = random_config();
    world *w = calloc(1, sizeof *w);
    char dir[64], what[64];
    snprintf(dir, sizeof dir, "pworld%d", trial);
    make_world(w, test_path(dir), 1700000000);
    bundle *b = NULL;
    CU_ASSERT_EQUAL_FATAL(bundle_load(test_path(dir), &b, NULL), 0);
    int user = rnd(4) ? (int)rnd((uint32_t)w->users) : -1;
    char uid[16];
    snprintf(uid, sizeof uid, user >= 0 ? "u%d" : "nobody", user);
    rec_request r = req(cfg, uid, 1 + rnd(12));
    r.rules.now = 1700000000;
    rules_store rs;
    random_rules(w, &r, &rs);
    rank_pin_row pins[2] = {{rnd((uint32_t)w->n), 1 + rnd(30), NULL}, {rnd((uint32_t)w->n), 31 + rnd(30), NULL}};
    if (rnd(3) == 0 && pins[0].item != pins[1].item) r.rules.pins = pins, r.rules.n_pins = 2;
    world_ctx ctx = {w, cfg, &r, user, b};
    snprintf(what, sizeof what, "world %d", trial);
    size_t pages = w->n / r.k + 1;
    walk_pages(b, &r, pages < 30 ? pages : 30, world_eligible, &ctx, &st, what);
    bundle_unref(b);
    free(w);
    rank_config_free(cfg);
  }
  CU_ASSERT(st.gave_way > 0); /* some small worlds cannot keep the cap: it gave way only as forced */
}

typedef struct shop_ctx {
  rank_items it;
  rank_req rules;
} shop_ctx;

static bool shop_eligible(const void *ctx, uint32_t item) {
  const shop_ctx *x = ctx;
  return rank_eligible(&x->it, &x->rules, item);
}

/* The rules as the pipeline applies them to 'uid' (its profile included). */
static shop_ctx shop_rules(const bundle *b, const rec_request *r) {
  shop_ctx x = {.it = {.catalog = b->catalog, .cycle_days = b->sig.cycle_days}, .rules = r->rules};
  uint32_t p;
  x.rules.segment = -1;
  if (r->user_id && signals_profile(&b->sig, r->user_id, r->user_len, &p)) {
    x.rules.mean_price = b->sig.mean_price[p];
    x.rules.segment = b->sig.segment[p];
    x.rules.purchases = b->sig.purch ? b->sig.purch + b->sig.purch_off[p] : NULL;
    x.rules.n_purchases = b->sig.purch ? b->sig.purch_off[p + 1] - b->sig.purch_off[p] : 0;
  }
  return x;
}

/* A 1,000-item shop, k = 10 over 15 pages and k = 100 over 5, random
 * settings, candidate counts small enough that later pages need wider rounds. */
static void pages_are_one_ordering_on_a_synthetic_shop(void) {
  retrieve_thread_init();
  bundle *b = load();
  CU_ASSERT_PTR_NOT_NULL_FATAL(b);
  rng_state = 777;
  walk_stats st = {0};
  for (int trial = 0; trial < 30; trial++) {
    rank_config *cfg = random_config();
    char v[32], uid[16], what[64];
    snprintf(v, sizeof v, "%u", 10 + rnd(300));
    rank_config_set(cfg, "candidates.ann", v, NULL);
    snprintf(v, sizeof v, "%u", 10 + rnd(200));
    rank_config_set(cfg, "candidates.popularity", v, NULL);
    snprintf(v, sizeof v, "%u", 20 + rnd(300));
    rank_config_set(cfg, "diversity.mmr_pool", v, NULL);
    snprintf(uid, sizeof uid, "U%05u", rnd(200));
    size_t k = rnd(3) == 0 ? 100 : 10;
    rec_request r = req(cfg, uid, k);
    uint32_t cat = rnd(4);
    if (rnd(3) == 0) r.rules.include_cats = &cat, r.rules.n_include_cats = 1;
    shop_ctx ctx = shop_rules(b, &r);
    snprintf(what, sizeof what, "shop trial %d", trial);
    walk_pages(b, &r, k == 100 ? 5 : 15, shop_eligible, &ctx, &st, what);
    rank_config_free(cfg);
  }
  bundle_unref(b);
}

/* synth draws each user to one category, whose items fill the MMR pool; the
 * other categories hold hundreds of eligible items each, so at k = 100 no
 * page may hold more than 50 of one category. */
static void category_cap_holds_at_k100(void) {
  retrieve_thread_init();
  bundle *b = load();
  rank_config *cfg = cfg_default();
  CU_ASSERT_PTR_NOT_NULL_FATAL(b);
  walk_stats st = {0};
  for (int u = 0; u < 200; u += 4) {
    char uid[16];
    snprintf(uid, sizeof uid, "U%05d", u);
    rec_request r = req(cfg, uid, 100);
    shop_ctx ctx = shop_rules(b, &r);
    walk_pages(b, &r, 2, shop_eligible, &ctx, &st, uid);
  }
  CU_ASSERT_EQUAL(st.gave_way, 0);
  rank_config_free(cfg);
  bundle_unref(b);
}

/* SimilarItems has no popularity to bring other categories: the nearest
 * items to a synthetic item share its category, so keeping the cap (5 of
 * 10) takes wider rounds, which must come before the cap gives way. */
static void category_cap_widens_the_candidates(void) {
  retrieve_thread_init();
  bundle *b = load();
  rank_config *cfg = cfg_default();
  CU_ASSERT_PTR_NOT_NULL_FATAL(b);
  rank_config_set(cfg, "candidates.ann", "10", NULL);
  rank_config_set(cfg, "candidates.itemcf", "10", NULL);
  rank_config_set(cfg, "candidates.popularity", "10", NULL);
  walk_stats st = {0};
  for (int u = 0; u < 20; u++) {
    char user[16], what[32];
    snprintf(user, sizeof user, "U%05d", u);
    rec_request r = {.user_id = user, .user_len = strlen(user), .k = 10};
    r.rules.cfg = cfg;
    shop_ctx ctx = shop_rules(b, &r);
    snprintf(what, sizeof what, "user %s", user);
    walk_pages(b, &r, 3, shop_eligible, &ctx, &st, what);
  }
  CU_ASSERT_EQUAL(st.gave_way, 0);
  /* SimilarItems keeps to likeness: its pages are one ordering without
   * repeats, but the cap may give way rather than scan the catalog. */
  walk_stats sim = {0};
  for (uint32_t seed = 0; seed < 1000; seed += 100) {
    rec_request r = {.k = 10, .similar = true, .seeds = &seed, .n_seeds = 1};
    r.rules.cfg = cfg;
    r.rules.exclude = &seed, r.rules.n_exclude = 1;
    shop_ctx ctx = shop_rules(b, &r);
    char what[32];
    snprintf(what, sizeof what, "similar to %u", seed);
    walk_pages(b, &r, 3, shop_eligible, &ctx, &sim, what);
  }
  rank_config_free(cfg);
  bundle_unref(b);
}

void suite_recommend(void) {
  static const test_case cases[] = {
      {"full_page_under_a_selective_filter", full_page_under_a_selective_filter},
      {"pages_continue_each_other", pages_continue_each_other},
      {"cold_user_gets_popular_items_and_missing_sources", cold_user_gets_popular_items_and_missing_sources},
      {"absent_items_are_explained", absent_items_are_explained},
      {"k_guarantee_against_an_oracle", k_guarantee_against_an_oracle},
      {"pages_are_one_ordering_on_random_worlds", pages_are_one_ordering_on_random_worlds},
      {"pages_are_one_ordering_on_a_synthetic_shop", pages_are_one_ordering_on_a_synthetic_shop},
      {"category_cap_holds_at_k100", category_cap_holds_at_k100},
      {"category_cap_widens_the_candidates", category_cap_widens_the_candidates},
      {NULL, NULL}};
  test_add_suite("recommend", cases);
}
