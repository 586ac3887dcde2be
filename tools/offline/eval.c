/* tools/offline/eval.c - see eval.h. One split at a time: masks, features and models
 * from the training side, then every model ranks every test user's unseen
 * items and the rankmetrics module scores the lists. */
#include "tools/offline/eval.h"
#include "common/clock.h"
#include "tools/offline/chart.h"
#include "tools/offline/ease.h"
#include "tools/offline/rankmetrics.h"
#include "tools/offline/served.h"
#include "retrieval/retrieve.h"
#include "retrieval/signals.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { M_POP, M_ITEMCF, M_ALS, M_TT, M_EASE, M_HYBRID, M_SERVED, M_COUNT };
static const char *const MODEL_NAMES[M_COUNT] = {"popularity", "item-cf", "als", "two-tower", "ease", "hybrid",
                                                 "served"};
enum { NK = 3, KMAX = 100 };
static const size_t KS[NK] = {10, 50, 100};
enum { MET_RECALL, MET_NDCG, MET_MAP, MET_HIT, MET_RCAP, MET_COUNT };
static const char *const MET_NAMES[MET_COUNT] = {"recall", "ndcg", "map", "hitrate", "recall_capped"};
/* The user split holds out users with at least this many interactions. */
enum { MIN_TEST_EVENTS = 5 };
enum { G_ALL, G_NEW, G_RETURNING, G_COUNT };
static const char *const GROUP_NAMES[G_COUNT] = {"all", "new", "returning"};

typedef struct split {
  const char *name;
  bool *train;                 /* [n_events] */
  const bool *scope;           /* [n_events]: the events in play (a tuning split's, inside a training side);
                                * NULL: all */
  ui_matrix R;
  profiles prof;
  popularity pop;              /* all-time, for the popularity model */
  itemcf cf;
  trained als, tt;
  ease_table ease;
  float ease_boost, ease_scale;  /* EASE's recency weights (sig_recency_weight); boost 0: none */
  struct seen_item *ease_hist; /* [n_items]: scratch of ease_user_scores */
  uint32_t *ease_items;        /* [RETRIEVE_MAX_HISTORY] */
  float *ease_w;
  const dataset *d;
  size_t n_test;
  uint32_t *users;             /* [n_test] */
  bool *is_new;                /* [n_test] */
  bool *in_train;              /* [n_items]: items with a training interaction, the only candidates */
  size_t n_train_items;
  uint32_t **relevant;         /* [n_test] -> items */
  size_t *n_relevant;
  bool want[M_COUNT];          /* models trained and ranked in this run */
  const build_opts *o;
  build_opts tuned;            /* the options the models of this split train with */
  char *tuning;                /* eval_tune's report (JSON), or NULL */
  const char *ranking_config;  /* the served row's settings, NULL: recd's defaults */
  uint32_t *lists;             /* [M_COUNT x n_test x KMAX] */
  size_t *n_list;              /* [M_COUNT x n_test] */
} split;

/* ---- splits ---- */

static int cmp_time(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

static int mask_global(const dataset *d, bool *train) {
  int64_t *t = malloc((d->n_events + 1) * sizeof *t);
  if (!t) return REC_ENOMEM;
  for (size_t e = 0; e < d->n_events; e++) t[e] = d->events[e].time;
  qsort(t, d->n_events, sizeof *t, cmp_time);
  int64_t cut = t[(size_t)(0.8 * (double)d->n_events)];
  free(t);
  for (size_t e = 0; e < d->n_events; e++) train[e] = d->events[e].time < cut;
  return 0;
}

/* Each user's last 20% by time (rounded up); without times, a random 20%
 * of its interactions (fixed seed). Users with fewer than MIN_TEST_EVENTS
 * interactions stay in training whole. */
static void mask_user(const dataset *d, const bool *scope, bool *train) {
  uint64_t rng = 0x9E3779B97F4A7C15ULL;
  for (size_t u = 0; u < d->n_users; u++) {
    size_t a = d->user_start[u], n = 0;
    for (size_t e = a; e < d->user_start[u + 1]; e++) n += !scope || scope[e];
    size_t test = n < MIN_TEST_EVENTS ? 0 : (size_t)ceil(0.2 * (double)n), k = 0;
    for (size_t e = a; e < d->user_start[u + 1]; e++) {
      train[e] = (!scope || scope[e]) && k < n - test;
      k += !scope || scope[e];
    }
    if (d->has_time || !test) continue;
    size_t len = d->user_start[u + 1] - a;
    for (size_t i = len - 1; i > 0; i--) { /* Fisher-Yates over the user's flags (in scope) */
      rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
      size_t j = (size_t)(rng % (i + 1));
      if (scope && (!scope[a + i] || !scope[a + j])) continue;
      bool x = train[a + i];
      train[a + i] = train[a + j];
      train[a + j] = x;
    }
  }
}

static bool in_row(const ui_matrix *R, uint32_t u, uint32_t item) {
  size_t lo = R->rowptr[u], hi = R->rowptr[u + 1];
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (R->colidx[mid] == item) return true;
    if (R->colidx[mid] < item) lo = mid + 1;
    else hi = mid;
  }
  return false;
}

/* Test users and their relevant (unseen in training) items. */
static int test_sets(const dataset *d, split *s) {
  s->users = malloc((d->n_users + 1) * sizeof *s->users);
  s->is_new = calloc(d->n_users + 1, sizeof *s->is_new);
  s->relevant = calloc(d->n_users + 1, sizeof *s->relevant);
  s->n_relevant = calloc(d->n_users + 1, sizeof *s->n_relevant);
  if (!s->users || !s->is_new || !s->relevant || !s->n_relevant) return REC_ENOMEM;
  for (uint32_t u = 0; u < d->n_users; u++) {
    size_t a = d->user_start[u], b = d->user_start[u + 1], m = 0;
    uint32_t *rel = malloc((b - a + 1) * sizeof *rel);
    if (!rel) return REC_ENOMEM;
    for (size_t e = a; e < b; e++) {
      uint32_t it = d->events[e].item;
      if (s->train[e] || (s->scope && !s->scope[e]) || in_row(&s->R, u, it)) continue;
      bool dup = false;
      for (size_t k = 0; k < m && !dup; k++) dup = rel[k] == it;
      if (!dup) rel[m++] = it;
    }
    if (!m) {
      free(rel);
      continue;
    }
    s->users[s->n_test] = u;
    s->is_new[s->n_test] = s->R.rowptr[u + 1] == s->R.rowptr[u];
    s->relevant[s->n_test] = rel;
    s->n_relevant[s->n_test++] = m;
  }
  return 0;
}

/* ---- scoring ---- */

static void itemcf_scores(const split *s, uint32_t u, float *scores) {
  memset(scores, 0, s->cf.n_items * sizeof *scores);
  for (size_t k = s->R.rowptr[u]; k < s->R.rowptr[u + 1]; k++) {
    uint32_t i = s->R.colidx[k];
    for (uint32_t n = 0; n < s->cf.count[i]; n++)
      scores[s->cf.nbr[(size_t)i * s->cf.per_item + n]] +=
          s->cf.sim[(size_t)i * s->cf.per_item + n] * s->R.vals[k];
  }
}

static void minmax(float *v, size_t n) {
  float lo = INFINITY, hi = -INFINITY;
  for (size_t i = 0; i < n; i++)
    if (isfinite(v[i])) {
      lo = v[i] < lo ? v[i] : lo;
      hi = v[i] > hi ? v[i] : hi;
    }
  float span = hi > lo ? hi - lo : 1;
  for (size_t i = 0; i < n; i++) v[i] = isfinite(v[i]) ? (v[i] - lo) / span : 0;
}

/* Indices of the k best finite scores, best first (ties by index). */
static size_t top_k(const float *scores, size_t n, size_t k, uint32_t *out) {
  size_t m = 0;
  for (size_t i = 0; i < n; i++) {
    if (!isfinite(scores[i])) continue;
    size_t at;
    if (m < k) at = m++;
    else if (scores[i] > scores[out[k - 1]]) at = k - 1;
    else continue;
    while (at > 0 && scores[out[at - 1]] < scores[i]) {
      out[at] = out[at - 1];
      at--;
    }
    out[at] = (uint32_t)i;
  }
  return m;
}

/* Candidates: items seen in training, less the user's own. */
static void exclude_train(const split *s, uint32_t u, float *scores) {
  for (size_t k = s->R.rowptr[u]; k < s->R.rowptr[u + 1]; k++) scores[s->R.colidx[k]] = -INFINITY;
  for (size_t i = 0; i < s->R.cols; i++)
    if (!s->in_train[i]) scores[i] = -INFINITY;
}

typedef struct seen_item {
  int64_t time;
  uint32_t item;
} seen_item;

static int more_recent(const void *a, const void *b) {
  const seen_item *x = a, *y = b;
  if (x->time != y->time) return x->time > y->time ? -1 : 1;
  return x->item < y->item ? -1 : x->item > y->item;
}

/* EASE's scores for user u as recd's EASE source makes them
 * (server/recommend.c history(), retrieval/retrieve.c): the user's training
 * items, most recent first (ties by item), the first RETRIEVE_MAX_HISTORY,
 * each weighted by its place. */
static void ease_user_scores(const split *s, uint32_t u, size_t n, float *out) {
  const dataset *d = s->d;
  seen_item *h = s->ease_hist;
  size_t m = 0, row = s->R.rowptr[u];
  for (size_t k = row; k < s->R.rowptr[u + 1]; k++)
    if (s->R.vals[k] > 0) h[m++] = (seen_item){INT64_MIN, s->R.colidx[k]};
  for (size_t e = d->user_start[u]; e < d->user_start[u + 1]; e++) { /* R's row is sorted by item */
    if (!s->train[e]) continue;
    size_t lo = 0, hi = m;
    while (lo < hi) {
      size_t mid = lo + (hi - lo) / 2;
      if (h[mid].item < d->events[e].item) lo = mid + 1;
      else hi = mid;
    }
    if (lo < m && h[lo].item == d->events[e].item && d->events[e].time > h[lo].time) h[lo].time = d->events[e].time;
  }
  qsort(h, m, sizeof *h, more_recent);
  if (m > RETRIEVE_MAX_HISTORY) m = RETRIEVE_MAX_HISTORY;
  for (size_t k = 0; k < m; k++) {
    s->ease_items[k] = h[k].item;
    s->ease_w[k] = sig_recency_weight(s->ease_boost, s->ease_scale, k);
  }
  ease_scores_weighted(&s->ease, s->ease_items, s->ease_w, m, n, out);
}

/* Scores of model 'm' for test user t into 'out'; 'tmp' has room for 2 more rows. */
static void model_scores(const split *s, size_t t, int m, size_t n, float *out, float *tmp) {
  uint32_t u = s->users[t];
  if (s->is_new[t] || m == M_POP) {
    memcpy(out, s->pop.global, n * sizeof *out);
  } else if (m == M_ITEMCF) {
    itemcf_scores(s, u, out);
  } else if (m == M_ALS || m == M_TT) {
    trained_scores(m == M_ALS ? &s->als : &s->tt, u, out);
  } else if (m == M_EASE) {
    ease_user_scores(s, u, n, out);
  } else {
    float *cf = tmp, *pop = tmp + n;
    trained_scores(&s->tt, u, out);
    itemcf_scores(s, u, cf);
    memcpy(pop, s->pop.global, n * sizeof *pop);
    exclude_train(s, u, out);
    exclude_train(s, u, cf);
    exclude_train(s, u, pop);
    minmax(out, n);
    minmax(cf, n);
    minmax(pop, n);
    for (size_t i = 0; i < n; i++) out[i] = 0.4f * out[i] + 0.4f * cf[i] + 0.2f * pop[i];
  }
  exclude_train(s, u, out);
}

/* The served row: recd's own answers, from a bundle of the training side,
 * at the time of the last training event. */
static int rank_served(const dataset *d, split *s, rec_error *err) {
  int64_t now = 0;
  for (size_t e = 0; e < d->n_events; e++)
    if (s->train[e] && d->events[e].time > now) now = d->events[e].time;
  size_t at = (size_t)M_SERVED * s->n_test;
  int rc = served_lists(d, s->train, now, s->o, s->ranking_config, s->users, s->n_test, KMAX, s->lists + at * KMAX,
                        s->n_list + at, err);
  /* The candidates every row has: items seen in training, less the user's own. */
  for (size_t t = 0; !rc && t < s->n_test; t++) {
    uint32_t *l = s->lists + (at + t) * KMAX;
    size_t m = 0;
    for (size_t i = 0; i < s->n_list[at + t]; i++)
      if (s->in_train[l[i]] && !in_row(&s->R, s->users[t], l[i])) l[m++] = l[i];
    s->n_list[at + t] = m;
  }
  return rc;
}

static int rank_all(const dataset *d, split *s, rec_error *err) {
  size_t n = d->n_items;
  s->lists = malloc((size_t)M_COUNT * s->n_test * KMAX * sizeof *s->lists + 1);
  s->n_list = calloc((size_t)M_COUNT * s->n_test + 1, sizeof *s->n_list);
  float *sc = malloc(3 * n * sizeof *sc);
  if (!s->lists || !s->n_list || !sc) {
    free(sc);
    return REC_ENOMEM;
  }
  for (int m = 0; m < M_COUNT; m++)
    for (size_t t = 0; t < s->n_test && s->want[m] && m != M_SERVED; t++) {
      model_scores(s, t, m, n, sc, sc + n);
      size_t at = (size_t)m * s->n_test + t;
      s->n_list[at] = top_k(sc, n, KMAX, s->lists + at * KMAX);
    }
  free(sc);
  if (s->want[M_SERVED]) {
    if (!s->o->quiet) fprintf(stderr, "served: building a bundle of the %s split's training side, then recd's "
                                      "own Recommend for %zu users\n", s->name, s->n_test);
    return rank_served(d, s, err);
  }
  return 0;
}

/* ---- metrics ---- */

typedef struct summary {
  rankmetrics_ci v[M_COUNT][G_COUNT][NK][MET_COUNT];
  size_t n[G_COUNT];
  double coverage[M_COUNT][NK], novelty[M_COUNT][NK];
} summary;

static bool in_group(const split *s, size_t t, int g) {
  return g == G_ALL || (g == G_NEW) == s->is_new[t];
}

static void score_group(const split *s, int m, int g, int bootstrap, summary *out, double *vals) {
  for (int k = 0; k < NK; k++)
    for (int met = 0; met < MET_COUNT; met++) {
      size_t n = 0;
      for (size_t t = 0; t < s->n_test; t++) {
        if (!in_group(s, t, g)) continue;
        size_t at = (size_t)m * s->n_test + t;
        rankmetrics_user mu = rankmetrics_score(s->lists + at * KMAX, s->n_list[at],
                                                s->relevant[t], s->n_relevant[t], KS[k]);
        vals[n++] = met == MET_RECALL ? mu.recall : met == MET_NDCG ? mu.ndcg
                  : met == MET_MAP ? mu.map : met == MET_HIT ? mu.hit : mu.recall_capped;
      }
      out->v[m][g][k][met] =
          rankmetrics_bootstrap(vals, n, bootstrap, 7 + (uint64_t)(m * 31 + k));
      out->n[g] = n;
    }
}

static int summarise(const dataset *d, const split *s, int bootstrap, summary *out) {
  double *vals = malloc((s->n_test + 1) * sizeof *vals);
  const uint32_t **lists = malloc((s->n_test + 1) * sizeof *lists);
  uint32_t *item_users = calloc(d->n_items + 1, sizeof *item_users);
  if (!vals || !lists || !item_users) {
    free(vals);
    free(lists);
    free(item_users);
    return REC_ENOMEM;
  }
  for (size_t k = 0; k < s->R.nnz; k++) item_users[s->R.colidx[k]]++;
  size_t train_users = 0;
  for (size_t u = 0; u < s->R.rows; u++) train_users += s->R.rowptr[u + 1] > s->R.rowptr[u];
  for (int m = 0; m < M_COUNT; m++) {
    if (!s->want[m]) continue;
    for (int g = 0; g < G_COUNT; g++) score_group(s, m, g, bootstrap, out, vals);
    for (size_t t = 0; t < s->n_test; t++) lists[t] = s->lists + ((size_t)m * s->n_test + t) * KMAX;
    for (int k = 0; k < NK; k++) {
      const size_t *lens = s->n_list + (size_t)m * s->n_test;
      /* Over the items seen in training, the only candidates. */
      out->coverage[m][k] = rankmetrics_coverage(lists, lens, s->n_test, KS[k], d->n_items) *
                            (double)d->n_items / (double)(s->n_train_items ? s->n_train_items : 1);
      out->novelty[m][k] =
          rankmetrics_novelty(lists, lens, s->n_test, KS[k], item_users, train_users);
    }
  }
  free(vals);
  free(lists);
  free(item_users);
  return 0;
}

static void print_table(const split *s, const summary *sm) {
  printf("\nsplit %s: %zu test users (%zu new, %zu returning)\n", s->name, sm->n[G_ALL],
         sm->n[G_NEW], sm->n[G_RETURNING]);
  printf("%-11s %-25s %-25s %8s %8s %8s %8s %8s %8s %7s %6s\n", "model", "Recall@50 [95% CI]",
         "NDCG@50 [95% CI]", "R@10", "R@100", "N@10", "N@100", "MAP@50", "HR@50", "Cov@50", "Nov@50");
  for (int m = 0; m < M_COUNT; m++) {
    if (!s->want[m]) continue; /* not run (--no-served, --ease-lambda 0) */
    const rankmetrics_ci(*v)[MET_COUNT] = sm->v[m][G_ALL];
    printf("%-11s %.4f [%.4f, %.4f]  %.4f [%.4f, %.4f]  %8.4f %8.4f %8.4f %8.4f %8.4f %8.4f %7.3f %6.2f\n",
           MODEL_NAMES[m], v[1][MET_RECALL].mean, v[1][MET_RECALL].lo, v[1][MET_RECALL].hi,
           v[1][MET_NDCG].mean, v[1][MET_NDCG].lo, v[1][MET_NDCG].hi, v[0][MET_RECALL].mean,
           v[2][MET_RECALL].mean, v[0][MET_NDCG].mean, v[2][MET_NDCG].mean, v[1][MET_MAP].mean,
           v[1][MET_HIT].mean, sm->coverage[m][1], sm->novelty[m][1]);
  }
  if (!sm->n[G_NEW] || !sm->n[G_RETURNING]) return;
  printf("%-11s %-25s %-25s\n", "new/return", "Recall@50 new | returning", "NDCG@50 new | returning");
  for (int m = 0; m < M_COUNT; m++)
    if (s->want[m])
      printf("%-11s %.4f | %.4f          %.4f | %.4f\n", MODEL_NAMES[m],
             sm->v[m][G_NEW][1][MET_RECALL].mean, sm->v[m][G_RETURNING][1][MET_RECALL].mean,
             sm->v[m][G_NEW][1][MET_NDCG].mean, sm->v[m][G_RETURNING][1][MET_NDCG].mean);
}

static cJSON *ci_json(rankmetrics_ci c) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddNumberToObject(o, "mean", c.mean);
  cJSON_AddNumberToObject(o, "lo", c.lo);
  cJSON_AddNumberToObject(o, "hi", c.hi);
  return o;
}

static cJSON *split_json(const summary *sm) {
  cJSON *o = cJSON_CreateObject(), *models = cJSON_AddObjectToObject(o, "models");
  char key[32];
  cJSON_AddNumberToObject(o, "test_users", (double)sm->n[G_ALL]);
  cJSON_AddNumberToObject(o, "new_users", (double)sm->n[G_NEW]);
  cJSON_AddNumberToObject(o, "returning_users", (double)sm->n[G_RETURNING]);
  for (int m = 0; m < M_COUNT; m++) {
    cJSON *mo = cJSON_AddObjectToObject(models, MODEL_NAMES[m]);
    for (int g = 0; g < G_COUNT; g++) {
      if (!sm->n[g]) continue;
      cJSON *go = cJSON_AddObjectToObject(mo, GROUP_NAMES[g]);
      for (int k = 0; k < NK; k++)
        for (int met = 0; met < MET_COUNT; met++) {
          snprintf(key, sizeof key, "%s@%zu", MET_NAMES[met], KS[k]);
          cJSON_AddItemToObject(go, key, ci_json(sm->v[m][g][k][met]));
        }
    }
    for (int k = 0; k < NK; k++) {
      snprintf(key, sizeof key, "coverage@%zu", KS[k]);
      cJSON_AddNumberToObject(mo, key, sm->coverage[m][k]);
      snprintf(key, sizeof key, "novelty@%zu", KS[k]);
      cJSON_AddNumberToObject(mo, key, sm->novelty[m][k]);
    }
  }
  return o;
}

/* ---- a split, end to end ---- */

static void split_destroy(split *s) {
  free(s->train);
  ui_matrix_destroy(&s->R);
  profiles_destroy(&s->prof);
  popularity_destroy(&s->pop);
  itemcf_destroy(&s->cf);
  trained_destroy(&s->als);
  trained_destroy(&s->tt);
  ease_table_destroy(&s->ease);
  free(s->ease_hist);
  free(s->ease_items);
  free(s->ease_w);
  for (size_t t = 0; t < s->n_test; t++) free(s->relevant[t]);
  free(s->users);
  free(s->is_new);
  free(s->in_train);
  free(s->relevant);
  free(s->n_relevant);
  free(s->lists);
  free(s->n_list);
  free(s->tuning);
}

static int train_split(const dataset *d, const build_opts *o, split *s, rec_error *err) {
  s->d = d;
  s->ease_boost = d->has_time ? o->ease_recency_boost : 0; /* without time, no order to weigh */
  s->ease_scale = o->ease_recency_scale;
  s->ease_hist = malloc((d->n_items + 1) * sizeof *s->ease_hist);
  s->ease_items = malloc((RETRIEVE_MAX_HISTORY + 1) * sizeof *s->ease_items);
  s->ease_w = malloc((RETRIEVE_MAX_HISTORY + 1) * sizeof *s->ease_w);
  if (!(s->in_train = calloc(d->n_items + 1, sizeof *s->in_train)) || !s->ease_hist || !s->ease_items || !s->ease_w)
    return rec_fail(err, REC_ENOMEM, "eval: out of memory");
  for (size_t e = 0; e < d->n_events; e++)
    if (s->train[e] && !s->in_train[d->events[e].item]) s->in_train[d->events[e].item] = true, s->n_train_items++;
  if (ui_matrix_build(d, s->train, &s->R) || profiles_build(d, s->train, o->recent_max, &s->prof) ||
      popularity_build(d, s->train, &s->prof, 0, &s->pop) ||
      itemcf_build(&s->R, o->itemcf_neighbours, &s->cf) || test_sets(d, s))
    return rec_fail(err, REC_ENOMEM, "eval: out of memory");
  if (s->n_test == 0)
    return rec_fail(err, REC_ENOTFOUND, "eval: split %s leaves no test users (a user needs %d interactions "
                    "to be held out)", s->name, MIN_TEST_EVENTS);
  build_opts mo = *o;
  int rc = 0;
  if (s->want[M_ALS]) {
    mo.model = "als";
    rc = train_model(d, &s->R, &s->prof, &mo, NULL, &s->als, err);
  }
  if (!rc && (s->want[M_TT] || s->want[M_HYBRID])) {
    mo.model = "twotower";
    rc = train_model(d, &s->R, &s->prof, &mo, NULL, &s->tt, err);
  }
  if (!rc && s->want[M_EASE]) {
    ease_opts eo = {o->ease_lambda, o->ease_max_items, o->ease_per_item};
    ease_report rep;
    rc = ease_build(&s->R, &eo, &s->ease, &rep, err);
    if (!rc && !o->quiet)
      fprintf(stderr, "ease: lambda %g over %zu of %zu items, %.1f s\n", o->ease_lambda, rep.items_solved,
              rep.items_seen, rep.seconds);
  }
  return rc;
}

/* ---- tuning ---- */

/* Mean NDCG@50 of model m over the split's test users; each user's own
 * into per[0..n_test) unless it is NULL. */
static double mean_ndcg_per(const split *s, int m, size_t n, float *sc, uint32_t *list, double *per) {
  double sum = 0;
  for (size_t t = 0; t < s->n_test; t++) {
    model_scores(s, t, m, n, sc, sc + n);
    size_t len = top_k(sc, n, 50, list);
    double v = rankmetrics_score(list, len, s->relevant[t], s->n_relevant[t], 50).ndcg;
    if (per) per[t] = v;
    sum += v;
  }
  return s->n_test ? sum / (double)s->n_test : 0;
}

static double mean_ndcg(const split *s, int m, size_t n, float *sc, uint32_t *list) {
  return mean_ndcg_per(s, m, n, sc, list, NULL);
}

/* Mean and standard error of the per-user differences a - b (paired). */
static void paired_gap(const double *a, const double *b, size_t n, double *mean, double *se) {
  double sum = 0, sq = 0;
  for (size_t t = 0; t < n; t++) sum += a[t] - b[t];
  *mean = n ? sum / (double)n : 0;
  for (size_t t = 0; t < n; t++) sq += (a[t] - b[t] - *mean) * (a[t] - b[t] - *mean);
  *se = n > 1 ? sqrt(sq / (double)(n - 1) / (double)n) : INFINITY;
}

typedef struct tuner {
  int64_t deadline_ns;       /* no trial starts after it; 0: none */
  bool out_of_time;
  const dataset *d;
  split *s;
  float *sc;
  uint32_t *list;
  cJSON *trials;
  bool quiet;
  double best_als;           /* the ALS pick's validation NDCG@50; < 0: no trial ran */
} tuner;

/* Whether another trial may start (--tune-seconds). */
static bool may_start(tuner *t) {
  if (t->deadline_ns && rec_mono_ns() > t->deadline_ns) t->out_of_time = true;
  return !t->out_of_time;
}

static void trial(tuner *t, const char *model, const char *params, double ndcg) {
  cJSON *x = cJSON_CreateObject();
  cJSON_AddStringToObject(x, "model", model);
  cJSON_AddStringToObject(x, "params", params);
  cJSON_AddNumberToObject(x, "ndcg@50", round(ndcg * 1e5) / 1e5);
  cJSON_AddItemToArray(t->trials, x);
  if (!t->quiet) fprintf(stderr, "tune: %-9s %-32s NDCG@50 %.4f\n", model, params, ndcg);
}

static int tune_ease(tuner *t, build_opts *o, rec_error *err) {
  static const double GRID[] = {100, 300, 1000, 3000};
  double best = -1, pick = o->ease_lambda;
  for (size_t g = 0; g < sizeof GRID / sizeof *GRID && may_start(t); g++) {
    ease_opts eo = {GRID[g], o->ease_max_items, o->ease_per_item};
    ease_report rep;
    int rc = ease_build(&t->s->R, &eo, &t->s->ease, &rep, err);
    if (rc) return rc;
    double v = mean_ndcg(t->s, M_EASE, t->d->n_items, t->sc, t->list);
    ease_table_destroy(&t->s->ease);
    char p[64];
    snprintf(p, sizeof p, "lambda=%g", GRID[g]);
    trial(t, "ease", p, v);
    if (v > best) best = v, pick = GRID[g];
  }
  if (best >= 0) o->ease_lambda = pick;
  return 0;
}

/* The recency weights of EASE's sum at the chosen lambda: none, then each
 * boost and scale. Data without time has no order to weigh. */
static int tune_ease_recency(tuner *t, build_opts *o, rec_error *err) {
  static const float BOOST[] = {0, 1, 3, 10, 30}, SCALE[] = {5, 20, 50};
  if (!t->d->has_time || !may_start(t)) return 0;
  ease_opts eo = {o->ease_lambda, o->ease_max_items, o->ease_per_item};
  ease_report rep;
  int rc = ease_build(&t->s->R, &eo, &t->s->ease, &rep, err);
  if (rc) return rc;
  double best = -1;
  float pick_b = o->ease_recency_boost, pick_s = o->ease_recency_scale;
  for (size_t b = 0; b < sizeof BOOST / sizeof *BOOST; b++)
    for (size_t k = 0; k < sizeof SCALE / sizeof *SCALE && (b || !k) && may_start(t); k++) {
      t->s->ease_boost = BOOST[b];
      t->s->ease_scale = SCALE[k];
      double v = mean_ndcg(t->s, M_EASE, t->d->n_items, t->sc, t->list);
      char p[64];
      snprintf(p, sizeof p, "recency boost=%g scale=%g", BOOST[b], b ? SCALE[k] : 0);
      trial(t, "ease", p, v);
      if (v > best) best = v, pick_b = BOOST[b], pick_s = SCALE[k];
    }
  ease_table_destroy(&t->s->ease);
  o->ease_recency_boost = pick_b;
  o->ease_recency_scale = pick_s;
  return 0;
}

/* ALS's regularization and alpha, then its popularity prior; then the
 * guard: unless the pick beats popularity on validation significantly (the
 * 95% interval of the paired per-user difference, 1.96 standard errors,
 * excludes 0), the prior goes to its strongest (ALS then ranks in
 * popularity's order, the factors dropped), so that the defaults do
 * not trade popularity for a gain the validation cannot tell from noise:
 * on Superstore a gain of 1.4 standard errors on validation was a loss on
 * the test split. */
static int tune_als_grid(tuner *t, build_opts *o, double *cur, double *best_per, rec_error *err);

static int tune_als(tuner *t, build_opts *o, rec_error *err) {
  size_t nt = t->s->n_test;
  double *cur = malloc((2 * nt + 1) * sizeof *cur), *best_per = cur + nt;
  if (!cur) return rec_fail(err, REC_ENOMEM, "tune: out of memory");
  int rc = tune_als_grid(t, o, cur, best_per, err);
  if (!rc && !(o->fixed & TUNE_ALS_POPULARITY) && t->best_als >= 0 && nt) {
    mean_ndcg_per(t->s, M_POP, t->d->n_items, t->sc, t->list, cur);
    double gap, se;
    paired_gap(best_per, cur, nt, &gap, &se);
    bool ahead = gap > 1.96 * se;
    cJSON *x = cJSON_CreateObject();
    cJSON_AddStringToObject(x, "model", "als");
    cJSON_AddStringToObject(x, "guard", ahead ? "significantly ahead of popularity: the pick stands"
                                              : "not significantly ahead of popularity (95%): strongest prior");
    cJSON_AddNumberToObject(x, "ndcg@50_over_popularity", round(gap * 1e5) / 1e5);
    cJSON_AddNumberToObject(x, "standard_error", round(se * 1e5) / 1e5);
    cJSON_AddItemToArray(t->trials, x);
    if (!ahead) o->als_popularity = ALS_PRIOR_MAX;
    if (!t->quiet)
      fprintf(stderr, "tune: als       NDCG@50 %+.4f over popularity (standard error %.4f): %s\n", gap, se,
              ahead ? "the pick stands" : "popularity prior set to its strongest");
  }
  free(cur);
  return rc;
}

static int tune_als_grid(tuner *t, build_opts *o, double *cur, double *best_per, rec_error *err) {
  static const float REG[] = {0.1f, 1, 10, 100}, ALPHA[] = {0.3f, 1, 10, 40};
  enum { NREG = sizeof REG / sizeof *REG, NALPHA = sizeof ALPHA / sizeof *ALPHA };
  double best = -1;
  size_t nt = t->s->n_test;
  build_opts mo = *o, pick = *o;
  mo.model = "als";
  mo.quiet = true;
  for (size_t r = 0; r < NREG; r++)
    for (size_t a = 0; a < NALPHA; a++) {
      if (((o->fixed & TUNE_REGULARIZATION) && r) || ((o->fixed & TUNE_ALPHA) && a) || !may_start(t)) continue;
      if (!(o->fixed & TUNE_REGULARIZATION)) mo.als.regularization = REG[r];
      if (!(o->fixed & TUNE_ALPHA)) mo.als.alpha = ALPHA[a];
      int rc = train_model(t->d, &t->s->R, &t->s->prof, &mo, NULL, &t->s->als, err);
      if (rc) return rc;
      double v = mean_ndcg_per(t->s, M_ALS, t->d->n_items, t->sc, t->list, cur);
      trained_destroy(&t->s->als);
      char p[64];
      snprintf(p, sizeof p, "regularization=%g alpha=%g", mo.als.regularization, mo.als.alpha);
      trial(t, "als", p, v);
      if (v > best) best = v, pick = mo, memcpy(best_per, cur, nt * sizeof *cur);
    }
  o->als.regularization = pick.als.regularization;
  o->als.alpha = pick.als.alpha;
  /* Then the popularity prior at those: on sparse data the factors alone
   * can rank below popularity itself; a strong prior becomes it. */
  static const float PRIOR[] = {0.3f, 1, 3, 30, ALS_PRIOR_MAX};
  mo = pick;
  mo.quiet = true;
  for (size_t k = 0; k < sizeof PRIOR / sizeof *PRIOR && !(o->fixed & TUNE_ALS_POPULARITY) && may_start(t); k++) {
    mo.als_popularity = PRIOR[k];
    int rc = train_model(t->d, &t->s->R, &t->s->prof, &mo, NULL, &t->s->als, err);
    if (rc) return rc;
    double v = mean_ndcg_per(t->s, M_ALS, t->d->n_items, t->sc, t->list, cur);
    trained_destroy(&t->s->als);
    char p[96];
    snprintf(p, sizeof p, "regularization=%g alpha=%g popularity=%g", mo.als.regularization, mo.als.alpha,
             mo.als_popularity);
    trial(t, "als", p, v);
    if (v > best) best = v, pick = mo, memcpy(best_per, cur, nt * sizeof *cur);
  }
  o->als_popularity = pick.als_popularity;
  t->best_als = best;
  return 0;
}

static int tune_twotower(tuner *t, build_opts *o, rec_error *err) {
  static const float TEMP[] = {0.05f, 0.1f, 0.2f};
  double best = -1;
  build_opts mo = *o, pick = *o;
  mo.model = "twotower";
  mo.quiet = true;
  /* The temperature at the default epochs, then twice the epochs at the best. */
  for (size_t k = 0; k < 4; k++) {
    if (k < 3 && (o->fixed & TUNE_TEMPERATURE) && k) continue;
    if ((k == 3 && (o->fixed & TUNE_EPOCHS)) || !may_start(t)) continue;
    mo = pick;
    mo.model = "twotower";
    mo.quiet = true;
    if (k < 3 && !(o->fixed & TUNE_TEMPERATURE)) mo.tt.temperature = TEMP[k];
    if (k == 3) mo.tt.epochs = 2 * o->tt.epochs;
    int rc = train_model(t->d, &t->s->R, &t->s->prof, &mo, NULL, &t->s->tt, err);
    if (rc) return rc;
    double v = mean_ndcg(t->s, M_TT, t->d->n_items, t->sc, t->list);
    trained_destroy(&t->s->tt);
    char p[64];
    snprintf(p, sizeof p, "temperature=%g epochs=%d", mo.tt.temperature, mo.tt.epochs);
    trial(t, "two-tower", p, v);
    if (v > best) best = v, pick = mo;
  }
  o->tt.temperature = pick.tt.temperature;
  o->tt.epochs = pick.tt.epochs;
  return 0;
}

int eval_tune(const dataset *d, const bool *scope, build_opts *o, bool every_model, char **json, rec_error *err) {
  split s = {.name = "validation", .scope = scope};
  tuner t = {.d = d, .s = &s, .quiet = o->quiet, .best_als = -1,
             .deadline_ns = o->tune_seconds > 0 ? rec_mono_ns() + (int64_t)(o->tune_seconds * 1e9) : 0};
  cJSON *j = cJSON_CreateObject();
  int rc = 0;
  s.train = malloc((d->n_events + 1) * sizeof *s.train);
  t.sc = malloc(3 * d->n_items * sizeof *t.sc + 1);
  t.list = malloc(64 * sizeof *t.list);
  if (!s.train || !t.sc || !t.list || !j) rc = rec_fail(err, REC_ENOMEM, "tune: out of memory");
  if (!rc) {
    mask_user(d, scope, s.train);
    rc = train_split(d, o, &s, err); /* features only: no model is wanted yet */
  }
  bool ease = o->ease_lambda > 0 && !(o->fixed & TUNE_EASE_LAMBDA);
  bool als = every_model || strcmp(o->model, "als") == 0, tt = every_model || strcmp(o->model, "twotower") == 0;
  if (!rc) {
    cJSON_AddStringToObject(j, "protocol", d->has_time ? "validation: the last 20% by time of each user's training "
                                                         "interactions (users with 5 or more), NDCG@50; the rest fits"
                                                       : "validation: a random 20% of each user's training "
                                                         "interactions (no time column; users with 5 or more), "
                                                         "NDCG@50; the rest fits");
    cJSON_AddNumberToObject(j, "validation_users", (double)s.n_test);
    t.trials = cJSON_AddArrayToObject(j, "trials");
  }
  if (!rc && ease) rc = tune_ease(&t, o, err);
  if (!rc && o->ease_lambda > 0 && !(o->fixed & TUNE_EASE_RECENCY)) rc = tune_ease_recency(&t, o, err);
  unsigned als_knobs = TUNE_REGULARIZATION | TUNE_ALPHA | TUNE_ALS_POPULARITY;
  if (!rc && als && (o->fixed & als_knobs) != als_knobs)
    rc = tune_als(&t, o, err);
  if (!rc && tt && (o->fixed & (TUNE_TEMPERATURE | TUNE_EPOCHS)) != (TUNE_TEMPERATURE | TUNE_EPOCHS))
    rc = tune_twotower(&t, o, err);
  if (!rc) {
    if (t.out_of_time) { /* the rest of the grid did not run: the values as given stand there */
      cJSON_AddNumberToObject(j, "out_of_time_after_s", o->tune_seconds);
      if (!o->quiet) fprintf(stderr, "tune: --tune-seconds %g reached: the remaining trials did not run\n", o->tune_seconds);
    }
    cJSON *c = cJSON_AddObjectToObject(j, "chosen");
    if (o->ease_lambda > 0) cJSON_AddNumberToObject(c, "ease_lambda", o->ease_lambda);
    if (o->ease_lambda > 0 && d->has_time) {
      cJSON_AddNumberToObject(c, "ease_recency_boost", o->ease_recency_boost);
      cJSON_AddNumberToObject(c, "ease_recency_scale", o->ease_recency_scale);
    }
    if (als) {
      cJSON_AddNumberToObject(c, "als_regularization", round(o->als.regularization * 1e6) / 1e6);
      cJSON_AddNumberToObject(c, "als_alpha", o->als.alpha);
      cJSON_AddNumberToObject(c, "als_popularity", round(o->als_popularity * 1e6) / 1e6);
    }
    if (tt) {
      cJSON_AddNumberToObject(c, "twotower_temperature", round(o->tt.temperature * 1e6) / 1e6);
      cJSON_AddNumberToObject(c, "twotower_epochs", o->tt.epochs);
    }
    *json = cJSON_PrintUnformatted(j);
    if (!*json) rc = rec_fail(err, REC_ENOMEM, "tune: out of memory");
  }
  cJSON_Delete(j);
  free(t.sc);
  free(t.list);
  split_destroy(&s);
  return rc;
}

void eval_holdout_mask(const dataset *d, bool *train) { mask_user(d, NULL, train); }

static int run_split(const dataset *d, const build_opts *o, split *s, int bootstrap, summary *sm,
                     rec_error *err) {
  s->train = malloc((d->n_events + 1) * sizeof *s->train);
  if (!s->train) return rec_fail(err, REC_ENOMEM, "eval: out of memory");
  if (strcmp(s->name, "global") == 0) {
    if (mask_global(d, s->train)) return rec_fail(err, REC_ENOMEM, "eval: out of memory");
  } else {
    mask_user(d, NULL, s->train);
  }
  /* Hyper-parameters chosen inside the training side, never on the test. */
  s->tuned = *o;
  s->o = &s->tuned;
  int rc = o->tune ? eval_tune(d, s->train, &s->tuned, true, &s->tuning, err) : 0;
  if (rc == REC_ENOTFOUND) rc = 0; /* too few users to validate on: the options as given */
  if (!rc) rc = train_split(d, &s->tuned, s, err);
  if (rc) return rc;
  if ((rc = rank_all(d, s, err))) return err && err->msg[0] ? rc : rec_fail(err, rc, "eval: out of memory");
  if (summarise(d, s, bootstrap, sm)) return rec_fail(err, REC_ENOMEM, "eval: out of memory");
  return 0;
}

static int write_chart(const char *path, const summary *sms, const char *const *names, size_t n_splits,
                       rec_error *err) {
  const char *groups[8];
  char labels[8][48];
  double mean[8 * M_COUNT], lo[8 * M_COUNT], hi[8 * M_COUNT];
  size_t g = 0;
  for (size_t sp = 0; sp < n_splits; sp++)
    for (int met = 0; met < 2; met++, g++) {
      snprintf(labels[g], sizeof labels[g], "%s@50 (%s)", met ? "NDCG" : "Recall", names[sp]);
      groups[g] = labels[g];
      for (int m = 0; m < M_COUNT; m++) {
        rankmetrics_ci c = sms[sp].v[m][G_ALL][1][met ? MET_NDCG : MET_RECALL];
        mean[g * M_COUNT + m] = c.mean;
        lo[g * M_COUNT + m] = c.lo;
        hi[g * M_COUNT + m] = c.hi;
      }
    }
  return chart_svg_bars(path, "recctl eval: Recall@50 and NDCG@50 with 95% bootstrap intervals",
                        groups, g, MODEL_NAMES, M_COUNT, mean, lo, hi, err);
}

static int write_json(const char *path, cJSON *j, rec_error *err) {
  char *text = cJSON_Print(j);
  FILE *fp = text ? fopen(path, "w") : NULL;
  int ok = fp && fputs(text, fp) >= 0 && fputc('\n', fp) != EOF;
  if (fp && fclose(fp) != 0) ok = 0;
  free(text);
  return ok ? 0 : rec_fail(err, REC_EIO, "%s: cannot write", path);
}

int eval_run(const eval_opts *o, rec_error *err) {
  const char *names[2];
  size_t n_splits = 0;
  if (!strcmp(o->split, "user") || !strcmp(o->split, "both")) names[n_splits++] = "user";
  if (!strcmp(o->split, "global") || !strcmp(o->split, "both")) names[n_splits++] = "global";
  if (!n_splits) return rec_fail(err, REC_EINVAL, "--split must be user, global or both");
  train_threads(o->b.threads);
  dataset *d;
  int rc = dataset_load(o->b.interactions, o->b.catalog, &o->b.schema, &d, err);
  if (rc) return rc;
  if (!d->has_time && strcmp(names[n_splits - 1], "global") == 0) {
    if (n_splits == 1) {
      dataset_free(d);
      return rec_fail(err, REC_EINVAL, "--split global needs a time column; without one, use --split user "
                      "(a random 20%% of each user's interactions)");
    }
    n_splits--;
    fprintf(stderr, "eval: no time column: the user split takes a random 20%% of each user's interactions; "
            "no global split\n");
  }
  summary *sms = calloc(n_splits, sizeof *sms);
  cJSON *j = cJSON_CreateObject(), *splits = cJSON_AddObjectToObject(j, "splits");
  cJSON_AddStringToObject(j, "interactions", o->b.interactions);
  for (size_t i = 0; !rc && i < n_splits; i++) {
    split s = {.name = names[i], .want = {true, true, true, true, o->b.ease_lambda > 0, true, o->served},
               .ranking_config = o->ranking_config};
    rc = sms ? run_split(d, &o->b, &s, o->bootstrap, &sms[i], err) : REC_ENOMEM;
    if (!rc) {
      print_table(&s, &sms[i]);
      cJSON *sj = split_json(&sms[i]);
      if (s.tuning) {
        printf("tuned on the training side's own validation split: %s\n", s.tuning);
        cJSON_AddItemToObject(sj, "tuning", cJSON_Parse(s.tuning));
      }
      cJSON_AddItemToObject(splits, names[i], sj);
    }
    split_destroy(&s);
  }
  if (!rc && o->json_path) rc = write_json(o->json_path, j, err);
  if (!rc && o->chart_path) rc = write_chart(o->chart_path, sms, names, n_splits, err);
  cJSON_Delete(j);
  free(sms);
  dataset_free(d);
  return rc;
}

int eval_holdout_summary(const dataset *d, const build_opts *o, char **json, rec_error *err) {
  int mine = strcmp(o->model, "als") == 0 ? M_ALS : strcmp(o->model, "ease") == 0 ? M_EASE : M_TT;
  split s = {.name = "user"};
  s.want[M_POP] = s.want[mine] = true;
  summary *sm = calloc(1, sizeof *sm);
  int rc = sm ? run_split(d, o, &s, 200, sm, err) : REC_ENOMEM;
  if (!rc) {
    cJSON *j = cJSON_CreateObject(), *m = cJSON_AddObjectToObject(j, "metrics");
    cJSON_AddStringToObject(m, "protocol", d->has_time ? "per-user holdout of the last 20% by time (users with 5 or more)"
                                                       : "per-user holdout of a random 20% (no time column; users with "
                                                         "5 or more)");
    cJSON_AddNumberToObject(m, "test_users", (double)sm->n[G_ALL]);
    int models[2] = {mine, M_POP};
    for (int k = 0; k < 2; k++) {
      cJSON *mo = cJSON_AddObjectToObject(m, MODEL_NAMES[models[k]]);
      cJSON_AddItemToObject(mo, "recall@50", ci_json(sm->v[models[k]][G_ALL][1][MET_RECALL]));
      cJSON_AddItemToObject(mo, "ndcg@50", ci_json(sm->v[models[k]][G_ALL][1][MET_NDCG]));
    }
    *json = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
  }
  split_destroy(&s);
  free(sm);
  return rc;
}
