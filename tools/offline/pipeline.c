/* tools/offline/pipeline.c - see pipeline.h. The bundle's derived files
 * (item-CF, popularity, profiles, purchases, repurchase cycles) are
 * bundle_write extras; build and import share all of it but where the model
 * comes from. */
#include "tools/offline/pipeline.h"
#include "common/fileio.h"
#include "common/npy.h"
#include "common/catalog.h"
#include "retrieval/bundle_write.h"
#include "tools/offline/ease.h"
#include "tools/offline/eval.h"
#include "tools/offline/progress.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- the bundle's derived files ---- */

typedef struct build_ctx {
  const build_opts *o;
  dataset *d;
  ui_matrix R;
  profiles prof;
  popularity pop;
  itemcf cf;
  ease_table ease;           /* n_items 0: none */
  ease_report ease_rep;
  float *cycle;
  uint32_t *cycle_n;
  trained t;
  char *metrics;             /* {"metrics": ...} from the holdout, or NULL */
  char *tuning;              /* eval_tune's report, or NULL */
  const char *const *user_ids; /* the bundle's users (rows of t.user_feat) */
  size_t n_users;
  char *user_text;           /* import: the users file, which user_ids point into */
} build_ctx;

static int closed(FILE *fp, const char *path, rec_error *err) {
  int bad = ferror(fp);
  if (fclose(fp) != 0 || bad) return rec_fail(err, REC_EIO, "%s: write failed", path);
  return 0;
}

#define OPEN_OR_FAIL(fp, path, err)                                            \
  FILE *fp = fopen(path, "w");                                                 \
  if (!fp) return rec_fail(err, REC_EIO, "%s: cannot create", path)

static int write_itemcf(const char *path, void *arg, rec_error *err) {
  const build_ctx *c = arg;
  OPEN_OR_FAIL(fp, path, err);
  fputs("item_id\tneighbour_id\tscore\n", fp);
  for (size_t i = 0; i < c->cf.n_items; i++)
    for (uint32_t k = 0; k < c->cf.count[i]; k++)
      fprintf(fp, "%s\t%s\t%.6g\n", c->d->items[i].id,
              c->d->items[c->cf.nbr[i * c->cf.per_item + k]].id,
              (double)c->cf.sim[i * c->cf.per_item + k]);
  return closed(fp, path, err);
}

/* An EASE table with at least one weight (none without interactions). */
static bool has_ease(const build_ctx *c) { return c->ease.n_items && c->ease.off[c->ease.n_items] > 0; }

static int write_ease(const char *path, void *arg, rec_error *err) {
  const build_ctx *c = arg;
  OPEN_OR_FAIL(fp, path, err);
  fputs("item_id\tneighbour_id\tweight\n", fp);
  for (size_t i = 0; i < c->ease.n_items; i++)
    for (size_t e = c->ease.off[i]; e < c->ease.off[i + 1]; e++)
      fprintf(fp, "%s\t%s\t%.9g\n", c->d->items[i].id, c->d->items[c->ease.nbr[e]].id, (double)c->ease.w[e]);
  return closed(fp, path, err);
}

/* Writes the top 'n' items of 'score' (optionally only category 'cat'). */
static void top_list(FILE *fp, const build_ctx *c, const char *list, const float *score,
                     int64_t cat, size_t n) {
  const dataset *d = c->d;
  uint32_t *idx = malloc(n * sizeof *idx);
  size_t m = 0;
  for (size_t i = 0; idx && i < d->n_items; i++) {
    if (score[i] <= 0 || (cat >= 0 && d->items[i].category_idx != (uint32_t)cat)) continue;
    size_t at;
    if (m < n) at = m++;
    else if (score[i] > score[idx[n - 1]]) at = n - 1;
    else continue;
    while (at > 0 && score[idx[at - 1]] < score[i]) {
      idx[at] = idx[at - 1];
      at--;
    }
    idx[at] = (uint32_t)i;
  }
  for (size_t k = 0; k < m; k++) fprintf(fp, "%s\t%s\t%.6g\n", list, d->items[idx[k]].id, (double)score[idx[k]]);
  free(idx);
}

static int write_popularity(const char *path, void *arg, rec_error *err) {
  const build_ctx *c = arg;
  OPEN_OR_FAIL(fp, path, err);
  char list[REC_ID_MAX + 16];
  fputs("list\titem_id\tscore\n", fp);
  top_list(fp, c, "global", c->pop.global, -1, 500);
  for (size_t s = 0; s < SEG_COUNT; s++) {
    snprintf(list, sizeof list, "segment:%s", SEGMENT_NAMES[s]);
    top_list(fp, c, list, c->pop.by_segment + s * c->d->n_items, -1, 200);
  }
  for (size_t k = 0; k < c->d->n_categories; k++) {
    snprintf(list, sizeof list, "category:%s", c->d->categories[k]);
    top_list(fp, c, list, c->pop.global, (int64_t)k, 200);
  }
  return closed(fp, path, err);
}

static int write_profiles(const char *path, void *arg, rec_error *err) {
  const build_ctx *c = arg;
  const profiles *p = &c->prof;
  OPEN_OR_FAIL(fp, path, err);
  fputs("user_id\tmean_price\tsegment\trecent_items\n", fp);
  for (size_t u = 0; u < p->n_users; u++) {
    fprintf(fp, "%s\t%.4f\t%s\t", c->d->user_ids[u], (double)p->mean_price[u],
            SEGMENT_NAMES[p->segment[u]]);
    for (uint32_t k = 0; k < p->n_recent[u]; k++) /* a column each: ids may hold spaces */
      fprintf(fp, "%s%s", k ? "\t" : "", c->d->items[p->recent[u * p->recent_max + k]].id);
    fputc('\n', fp);
  }
  return closed(fp, path, err);
}

/* Per (user, item): the last interaction time and how many there were.
 * Events are sorted by user then time, so a later event overwrites. */
static int write_purchases(const char *path, void *arg, rec_error *err) {
  const build_ctx *c = arg;
  const dataset *d = c->d;
  int64_t *last = malloc((d->n_items + 1) * sizeof *last);
  uint32_t *count = calloc(d->n_items + 1, sizeof *count);
  FILE *fp = last && count ? fopen(path, "w") : NULL;
  if (!fp) {
    free(last);
    free(count);
    return rec_fail(err, REC_EIO, "%s: cannot create", path);
  }
  fputs("user_id\titem_id\tlast_time\tcount\n", fp);
  for (size_t u = 0; u < d->n_users; u++) {
    for (size_t e = d->user_start[u]; e < d->user_start[u + 1]; e++) {
      last[d->events[e].item] = d->events[e].time;
      count[d->events[e].item]++;
    }
    for (size_t k = c->R.rowptr[u]; k < c->R.rowptr[u + 1]; k++) {
      uint32_t i = c->R.colidx[k];
      fprintf(fp, "%s\t%s\t%lld\t%u\n", d->user_ids[u], d->items[i].id, (long long)last[i], count[i]);
      count[i] = 0;
    }
  }
  free(last);
  free(count);
  return closed(fp, path, err);
}

static int write_repurchase(const char *path, void *arg, rec_error *err) {
  const build_ctx *c = arg;
  OPEN_OR_FAIL(fp, path, err);
  fputs("item_id\tcycle_days\tsamples\n", fp);
  for (size_t i = 0; i < c->d->n_items; i++)
    if (c->cycle_n[i]) fprintf(fp, "%s\t%.3f\t%u\n", c->d->items[i].id, (double)c->cycle[i], c->cycle_n[i]);
  return closed(fp, path, err);
}

/* ---- build ---- */

/* The manifest's "training" (configuration, data report) and "metrics" keys. */
static char *training_json(const build_ctx *c) {
  const build_opts *o = c->o;
  const ds_report *r = &c->d->report;
  cJSON *m = c->metrics ? cJSON_Parse(c->metrics) : cJSON_CreateObject();
  cJSON *t = cJSON_AddObjectToObject(m, "training");
  cJSON_AddStringToObject(t, "model", o->model);
  if (strcmp(o->model, "import") == 0) {
    cJSON_AddStringToObject(t, "source", "recctl import: embeddings and user tower trained elsewhere");
  } else if (strcmp(o->model, "twotower") == 0) {
    cJSON_AddNumberToObject(t, "dim", (double)o->tt.dim);
    cJSON_AddNumberToObject(t, "id_dim", (double)o->tt.id_dim);
    cJSON_AddNumberToObject(t, "hidden", (double)o->tt.hidden);
    cJSON_AddNumberToObject(t, "epochs", o->tt.epochs);
    cJSON_AddNumberToObject(t, "batch", (double)o->tt.batch);
    cJSON_AddNumberToObject(t, "lr", o->tt.lr);
    cJSON_AddNumberToObject(t, "temperature", o->tt.temperature);
    cJSON_AddNumberToObject(t, "seed", (double)o->tt.seed);
  } else if (strcmp(o->model, "ease") == 0) {
    cJSON_AddStringToObject(t, "source", "a rank-dim factorisation of EASE's weights (ease.lambda)");
    cJSON_AddNumberToObject(t, "dim", (double)(o->tt.dim < c->d->n_items ? o->tt.dim : c->d->n_items));
    cJSON_AddNumberToObject(t, "seed", (double)o->tt.seed);
  } else {
    cJSON_AddNumberToObject(t, "factors", (double)o->als.factors);
    cJSON_AddNumberToObject(t, "iterations", o->als.iterations);
    cJSON_AddNumberToObject(t, "regularization", o->als.regularization);
    cJSON_AddNumberToObject(t, "alpha", o->als.alpha);
    cJSON_AddNumberToObject(t, "popularity_prior", o->als_popularity);
    cJSON_AddNumberToObject(t, "seed", (double)o->als.seed);
  }
  cJSON_AddNumberToObject(t, "final_loss", c->t.loss);
  if (c->tuning) cJSON_AddItemToObject(t, "tuning", cJSON_Parse(c->tuning));
  cJSON_AddNumberToObject(t, "itemcf_neighbours", (double)o->itemcf_neighbours);
  if (has_ease(c)) {
    cJSON *e = cJSON_AddObjectToObject(t, "ease");
    cJSON_AddNumberToObject(e, "lambda", o->ease_lambda);
    cJSON_AddNumberToObject(e, "neighbours", (double)(o->ease_per_item ? o->ease_per_item : EASE_PER_ITEM));
    cJSON_AddNumberToObject(e, "items_solved", (double)c->ease_rep.items_solved);
    cJSON_AddNumberToObject(e, "items_seen", (double)c->ease_rep.items_seen);
    /* What recd reads: the weights of EASE's sum over a history listed most
     * recent first (retrieval/signals.h). Data without time has no order. */
    if (c->d->has_time && o->ease_recency_boost > 0) {
      cJSON *w = cJSON_AddObjectToObject(m, "ease_recency");
      cJSON_AddNumberToObject(w, "boost", o->ease_recency_boost);
      cJSON_AddNumberToObject(w, "scale", o->ease_recency_scale);
    }
  }
  cJSON_AddNumberToObject(t, "half_life_days", o->half_life_days);
  cJSON_AddNumberToObject(t, "users", (double)c->d->n_users);
  cJSON_AddNumberToObject(t, "items", (double)c->d->n_items);
  cJSON *data = cJSON_AddObjectToObject(t, "data");
  cJSON_AddNumberToObject(data, "rows", (double)r->rows);
  cJSON_AddNumberToObject(data, "kept", (double)r->kept);
  cJSON_AddNumberToObject(data, "dropped_returns", (double)r->returns);
  cJSON_AddNumberToObject(data, "dropped_duplicates", (double)r->duplicates);
  cJSON_AddNumberToObject(data, "zero_price_kept", (double)r->zero_price);
  char *s = cJSON_PrintUnformatted(m);
  cJSON_Delete(m);
  return s;
}

static int derive_features(build_ctx *c, rec_error *err) {
  const build_opts *o = c->o;
  dataset *d = c->d;
  progress pr;
  progress_start(&pr, "features", 4, o->quiet);
  c->cycle = calloc(d->n_items + 1, sizeof *c->cycle);
  c->cycle_n = calloc(d->n_items + 1, sizeof *c->cycle_n);
  if (!c->cycle || !c->cycle_n || ui_matrix_build(d, NULL, &c->R) ||
      profiles_build(d, NULL, o->recent_max, &c->prof) ||
      popularity_build(d, NULL, &c->prof, o->half_life_days, &c->pop))
    return rec_fail(err, REC_ENOMEM, "features: out of memory");
  progress_update(&pr, 2, "matrix, profiles, popularity");
  if (itemcf_build(&c->R, o->itemcf_neighbours, &c->cf) || repurchase_build(d, NULL, c->cycle, c->cycle_n))
    return rec_fail(err, REC_ENOMEM, "features: out of memory");
  progress_update(&pr, 3, "item-CF, repurchase cycles");
  if (o->ease_lambda > 0) {
    ease_opts eo = {o->ease_lambda, o->ease_max_items, o->ease_per_item};
    int rc = ease_build(&c->R, &eo, &c->ease, &c->ease_rep, err);
    if (rc) return rc;
  }
  char note[200];
  int w = snprintf(note, sizeof note, "%zu user-item pairs, item-CF top %zu", c->R.nnz, o->itemcf_neighbours);
  if (o->ease_lambda > 0)
    snprintf(note + w, sizeof note - (size_t)w, ", EASE over %zu of %zu items (%.1f s)%s", c->ease_rep.items_solved,
             c->ease_rep.items_seen, c->ease_rep.seconds,
             c->ease_rep.items_solved < c->ease_rep.items_seen ? ": the rarest have no EASE weights (--ease-max-items)"
                                                               : "");
  progress_end(&pr, note);
  return 0;
}

static void on_indexed(void *arg, size_t done, size_t total) {
  (void)total;
  progress_update(arg, done, "items indexed");
}

static int write_bundle(build_ctx *c, rec_error *err) {
  const build_opts *o = c->o;
  const dataset *d = c->d;
  size_t n = d->n_items;
  const char **ids = malloc(n * sizeof *ids), **cats = malloc(n * sizeof *cats);
  float *price = malloc(n * sizeof *price), *margin = malloc(n * sizeof *margin);
  bool *stock = malloc(n * sizeof *stock);
  char *json = training_json(c);
  int rc = REC_ENOMEM;
  if (!ids || !cats || !price || !margin || !stock || !json) {
    rec_fail(err, rc, "bundle: out of memory");
    goto done;
  }
  for (size_t i = 0; i < n; i++) {
    ids[i] = d->items[i].id;
    cats[i] = d->items[i].category;
    price[i] = d->items[i].price;
    stock[i] = d->items[i].in_stock;
    margin[i] = d->items[i].margin;
  }
  char index[32];
  bundle_extra extras[] = {{"item_cf.tsv", "item_cf", write_itemcf, c},
                           {"popularity.tsv", "popularity", write_popularity, c},
                           {"profiles.tsv", "profiles", write_profiles, c},
                           {"purchases.tsv", "purchases", write_purchases, c},
                           {"repurchase.tsv", "repurchase", write_repurchase, c},
                           {"ease.tsv", "ease", write_ease, c}};
  bundle_spec s = {.version = o->version, .version_prefix = o->model, .dim = c->t.dim,
                   .item_count = n, .item_ids = ids, .item_categories = cats, .item_price = price,
                   .item_in_stock = stock, .item_popularity = c->pop.global, .item_margin = margin,
                   .item_emb = c->t.item_emb, .user_count = c->n_users,
                   .feature_dim = c->t.feature_dim, .user_ids = c->user_ids,
                   .user_features = c->t.user_feat, .n_layers = c->t.n_layers,
                   .layers = c->t.layers,
                   .index_type = o->index_type ? o->index_type : bundle_default_index(n, index, sizeof index),
                   .ef_search = o->ef_search, .ef_construction = o->ef_construction,
                   .extras = extras,
                   .n_extras = sizeof extras / sizeof *extras - !has_ease(c), .manifest_json = json};
  bundle_item_tower it;
  if (c->t.has_item_tower) {
    const tt_item_tower *x = &c->t.item_tower;
    it = (bundle_item_tower){.n_categories = x->n_categories, .id_dim = x->id_dim, .cat_dim = x->cat_dim,
                             .n_buckets = x->n_buckets, .price_dim = x->price_dim, .categories = d->categories,
                             .cat_id = x->cat_id, .cat_emb = x->cat_emb, .price_emb = x->price_emb,
                             .price_edges = x->price_edges, .n_layers = 2, .layers = x->layers};
    s.item_tower = &it;
  }
  progress pr;
  progress_start(&pr, "bundle", n, o->quiet);
  s.progress = on_indexed;
  s.progress_arg = &pr;
  rc = bundle_write(o->out, &s, err); /* FAISS builds on one thread: see ann_index_add */
  char note[600];
  snprintf(note, sizeof note, "%s (%s index, %zu items, dim %zu)", o->out, s.index_type, n, c->t.dim);
  if (!rc) progress_end(&pr, note);
done:
  free(ids);
  free(cats);
  free(price);
  free(margin);
  free(stock);
  free(json);
  return rc;
}

static void build_ctx_destroy(build_ctx *c) {
  dataset_free(c->d);
  ui_matrix_destroy(&c->R);
  profiles_destroy(&c->prof);
  popularity_destroy(&c->pop);
  itemcf_destroy(&c->cf);
  ease_table_destroy(&c->ease);
  free(c->cycle);
  free(c->cycle_n);
  trained_destroy(&c->t);
  free(c->metrics);
  free(c->tuning);
  if (c->user_text) free((void *)c->user_ids);
  free(c->user_text);
}

/* Measures the model on a per-user holdout before training on everything. */
static int holdout(build_ctx *c, rec_error *err) {
  progress pr;
  progress_start(&pr, "holdout eval", 1, c->o->quiet);
  build_opts quiet = *c->o;
  quiet.quiet = true;
  int rc = eval_holdout_summary(c->d, &quiet, &c->metrics, err);
  if (rc == REC_ENOTFOUND) { /* too little data to measure: the bundle says so */
    if (!(c->metrics = strdup("{\"metrics\":{\"skipped\":\"no user has enough interactions to hold "
                              "20% of them out\"}}")))
      return rec_fail(err, REC_ENOMEM, "out of memory");
    progress_end(&pr, "skipped: no user has enough interactions to hold some out");
    return 0;
  }
  if (rc) return rc;
  cJSON *j = cJSON_Parse(c->metrics), *m = cJSON_GetObjectItem(j, "metrics");
  const char *model = c->o->model;
  cJSON *mine = cJSON_GetObjectItem(m, !strcmp(model, "als") ? "als" : !strcmp(model, "ease") ? "ease" : "two-tower");
  cJSON *pop = cJSON_GetObjectItem(m, "popularity");
  char note[200];
  snprintf(note, sizeof note, "Recall@50 %.4f NDCG@50 %.4f (popularity %.4f / %.4f), %d users",
           cJSON_GetObjectItem(cJSON_GetObjectItem(mine, "recall@50"), "mean")->valuedouble,
           cJSON_GetObjectItem(cJSON_GetObjectItem(mine, "ndcg@50"), "mean")->valuedouble,
           cJSON_GetObjectItem(cJSON_GetObjectItem(pop, "recall@50"), "mean")->valuedouble,
           cJSON_GetObjectItem(cJSON_GetObjectItem(pop, "ndcg@50"), "mean")->valuedouble,
           cJSON_GetObjectItem(m, "test_users")->valueint);
  cJSON_Delete(j);
  progress_end(&pr, note);
  return 0;
}

int pipeline_build(const build_opts *o, rec_error *err) {
  if (!o->interactions || !o->catalog || !o->out)
    return rec_fail(err, REC_EINVAL, "build needs --interactions, --catalog and --out");
  if (access(o->out, F_OK) == 0)
    return rec_fail(err, REC_EINVAL, "%s: already exists; bundles are immutable, choose a new --out", o->out);
  train_threads(o->threads);
  build_ctx c = {.o = o};
  progress pr;
  progress_start(&pr, "load", 1, o->quiet);
  int rc = dataset_load(o->interactions, o->catalog, &o->schema, &c.d, err);
  if (rc) return rc;
  char note[256];
  const ds_report *r = &c.d->report;
  snprintf(note, sizeof note, "%zu rows: kept %zu, dropped %zu returns and %zu duplicates, "
           "%zu zero-price kept; %zu users, %zu items", r->rows, r->kept, r->returns,
           r->duplicates, r->zero_price, c.d->n_users, c.d->n_items);
  progress_end(&pr, note);
  /* The hyper-parameters, chosen inside the holdout's training side, so
   * that the holdout measured next has not been seen by the choice. */
  build_opts tuned = *o;
  tuned.tune = false;
  if (o->tune) {
    progress_start(&pr, "tune", 1, o->quiet);
    bool *mask = malloc((c.d->n_events + 1) * sizeof *mask);
    if (!mask) rc = rec_fail(err, REC_ENOMEM, "out of memory");
    else eval_holdout_mask(c.d, mask);
    if (!rc) rc = eval_tune(c.d, mask, &tuned, false, &c.tuning, err);
    free(mask);
    if (rc == REC_ENOTFOUND) rc = 0; /* too few users to validate on: the options as given */
    progress_end(&pr, c.tuning ? "chosen on the validation split" : "skipped: too few users to validate on");
  }
  c.o = &tuned;
  if (!rc) rc = derive_features(&c, err);
  if (!rc && o->evaluate) rc = holdout(&c, err);
  if (!rc) rc = train_model(c.d, &c.R, &c.prof, &tuned, &c.ease, &c.t, err);
  c.user_ids = (const char *const *)c.d->user_ids;
  c.n_users = c.d->n_users;
  if (!rc) rc = write_bundle(&c, err);
  build_ctx_destroy(&c);
  return rc;
}

/* ---- import ---- */

static int import_items(build_ctx *c, const char *path, rec_error *err) {
  npy_f32 a;
  int rc = npy_f32_read(path, &a, err);
  if (rc) return rc;
  if (a.ndim != 2 || a.rows != c->d->n_items) {
    npy_f32_destroy(&a);
    return rec_fail(err, REC_EMISMATCH, "%s: shape (%zu, %zu), want one row per catalog item (%zu rows)",
                    path, a.rows, a.cols, c->d->n_items);
  }
  for (size_t i = 0; i < a.rows; i++)
    if (!tower_l2_normalize(a.data + i * a.cols, a.cols)) {
      npy_f32_destroy(&a);
      return rec_fail(err, REC_EINVAL, "%s: row %zu (item %s) is zero or not finite", path, i,
                      c->d->items[i].id);
    }
  c->t.item_emb = a.data;
  c->t.dim = a.cols;
  return 0;
}

/* One user id per line, in the row order of the user-features matrix. */
static int import_users(build_ctx *c, const char *ids_path, const char *feat_path, rec_error *err) {
  size_t len, n = 0;
  if (!(c->user_text = rec_read_file(ids_path, &len, err))) return err ? err->code : REC_EIO;
  const char **ids = calloc(len / 2 + 2, sizeof *ids);
  if (!ids) return rec_fail(err, REC_ENOMEM, "out of memory");
  c->user_ids = ids;
  int lineno = 0;
  for (char *line = c->user_text, *nl; line && *line; line = nl ? nl + 1 : NULL) {
    nl = strchr(line, '\n');
    if (nl) *nl = '\0';
    lineno++;
    size_t l = strlen(line);
    if (l && line[l - 1] == '\r') line[--l] = '\0';
    if (!l || l > REC_ID_MAX || strchr(line, '\t'))
      return rec_fail(err, REC_EINVAL, "%s:%d: user id must be 1 to %d bytes without tabs", ids_path,
                      lineno, REC_ID_MAX);
    ids[n++] = line;
  }
  c->n_users = n;
  npy_f32 a;
  int rc = npy_f32_read(feat_path, &a, err);
  if (rc) return rc;
  c->t.user_feat = a.data;
  c->t.feature_dim = a.cols;
  if (a.ndim != 2 || a.rows != n)
    return rec_fail(err, REC_EMISMATCH, "%s: shape (%zu, %zu), want one row per user in %s (%zu)",
                    feat_path, a.rows, a.cols, ids_path, n);
  return 0;
}

/* "W.npy:B.npy:activation" for each layer, chained feature_dim -> ... -> dim. */
static int import_layers(build_ctx *c, const char *const *specs, size_t n, rec_error *err) {
  if (n < 1 || n > 2) return rec_fail(err, REC_EINVAL, "give one or two --layer W.npy:B.npy:activation");
  size_t in = c->t.feature_dim;
  for (size_t i = 0; i < n; i++) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", specs[i]);
    char *b = strchr(buf, ':'), *act = b ? strchr(b + 1, ':') : NULL;
    if (!act || tower_act_parse(act + 1) < 0)
      return rec_fail(err, REC_EINVAL, "--layer '%s': want W.npy:B.npy:relu|tanh|linear", specs[i]);
    *b++ = '\0';
    *act++ = '\0';
    npy_f32 w, bias;
    int rc = npy_f32_read(buf, &w, err);
    if (rc) return rc;
    tower_layer *l = &c->t.layers[c->t.n_layers++];
    *l = (tower_layer){w.rows, w.cols, w.data, NULL, (tower_act)tower_act_parse(act)};
    if ((rc = npy_f32_read(b, &bias, err))) return rc;
    l->b = bias.data;
    if (w.ndim != 2 || w.rows != in || bias.rows * bias.cols != w.cols)
      return rec_fail(err, REC_EMISMATCH, "--layer %zu: weights (%zu, %zu) and bias of %zu; want "
                      "(%zu, out) and out values (PyTorch Linear.weight is (out, in): save its .T)",
                      i, w.rows, w.cols, bias.rows * bias.cols, in);
    in = w.cols;
  }
  if (in != c->t.dim)
    return rec_fail(err, REC_EMISMATCH, "the user tower gives %zu outputs, item embeddings have %zu",
                    in, c->t.dim);
  return 0;
}

int pipeline_import(const import_opts *o, rec_error *err) {
  const build_opts *b = &o->b;
  if (!b->catalog || !b->out || !o->item_embeddings || !o->users || !o->user_features)
    return rec_fail(err, REC_EINVAL, "import needs --catalog, --item-embeddings, --users, "
                    "--user-features, --layer and --out");
  if (access(b->out, F_OK) == 0)
    return rec_fail(err, REC_EINVAL, "%s: already exists; bundles are immutable, choose a new --out", b->out);
  train_threads(b->threads);
  build_ctx c = {.o = b};
  int rc = dataset_load(b->interactions, b->catalog, &b->schema, &c.d, err);
  if (!rc) rc = derive_features(&c, err);
  if (!rc) rc = import_items(&c, o->item_embeddings, err);
  if (!rc) rc = import_users(&c, o->users, o->user_features, err);
  if (!rc) rc = import_layers(&c, o->layers, o->n_layers, err);
  if (!rc) rc = write_bundle(&c, err);
  build_ctx_destroy(&c);
  return rc;
}
