/* tools/offline/train.c - see train.h. Both trainers report progress per
 * epoch or sweep; ALS's factors are mapped into the two-tower's serving form
 * (a linear user tower, unit item vectors) so the bundle and eval treat the
 * two models alike. */
#include "tools/offline/train.h"
#include "tools/offline/progress.h"
#include "common/clock.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void build_opts_default(build_opts *o) {
  memset(o, 0, sizeof *o);
  o->schema = DS_SCHEMA_DEFAULT;
  o->model = "twotower";
  o->tt = (tt_opts){.dim = 64, .id_dim = 64, .hidden = 128, .epochs = 10, .batch = 512,
                    .lr = 0.003f, .temperature = 0.07f, .seed = 42};
  o->als = (als_opts){.factors = 64, .iterations = 15, .regularization = 0.05f, .alpha = 20.0f,
                      .cg_steps = 3, .seed = 42};
  o->itemcf_neighbours = 50;
  o->ease_lambda = 400;
  o->ease_recency_boost = 3; /* without tuning; none for data without time (pipeline.c, eval.c) */
  o->ease_recency_scale = 20;
  o->half_life_days = 90;
  o->recent_max = 50;
  o->evaluate = true;
  o->tune = true;
  o->tune_seconds = 900;
}

void train_threads(int n) {
  if (n <= 0) {
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    n = c > 0 ? (int)c : 1;
  }
  omp_set_num_threads(n);
  /* The trainers' matrices are small (a batch of 512 by a few hundred):
   * OpenBLAS's own threads cost more in hand-offs than they win, and ALS
   * parallelises over rows with OpenMP instead. */
  openblas_set_num_threads(1);
}

void trained_destroy(trained *t) {
  free(t->item_emb);
  free(t->user_feat);
  for (size_t i = 0; i < t->n_layers; i++) {
    free(t->layers[i].w);
    free(t->layers[i].b);
  }
  if (t->has_item_tower) tt_item_tower_destroy(&t->item_tower);
  memset(t, 0, sizeof *t);
}

int trained_scores(const trained *t, uint32_t u, float *scores) {
  float q[1024 + 1], scratch[2 * 4096];
  tower tw = {.n_layers = t->n_layers, .layers = (tower_layer *)t->layers,
              .in_dim = t->feature_dim, .out_dim = t->dim, .max_width = 0};
  for (size_t i = 0; i < t->n_layers; i++) {
    size_t w = t->layers[i].out > t->layers[i].in ? t->layers[i].out : t->layers[i].in;
    if (w > tw.max_width) tw.max_width = w;
  }
  if (t->dim > 1024 || tw.max_width > 4096) return REC_EINVAL;
  if (tower_forward(&tw, t->user_feat + (size_t)u * t->feature_dim, q, scratch) != 0) {
    memset(scores, 0, t->n_items * sizeof *scores); /* nothing known: no preference */
    return 0;
  }
  cblas_sgemv(CblasRowMajor, CblasNoTrans, (blasint)t->n_items, (blasint)t->dim, 1.0f,
              t->item_emb, (blasint)t->dim, q, 1, 0.0f, scores, 1);
  return 0;
}

/* After a two-tower epoch or an ALS sweep; 'arg' is the step's progress. */
static void on_step(void *arg, int step, double loss) {
  char note[64];
  snprintf(note, sizeof note, "loss %.4f", loss);
  progress_update(arg, (size_t)step, note);
}

static int train_twotower(const dataset *d, const ui_matrix *R, const profiles *p,
                          const build_opts *o, trained *t, rec_error *err) {
  progress pr;
  tt_opts to = o->tt;
  to.progress = on_step;
  to.progress_arg = &pr;
  progress_start(&pr, "two-tower", (size_t)to.epochs, o->quiet);
  tt_model *m;
  int rc = tt_train(d, R, p, &to, &m, err);
  if (rc) return rc;
  t->dim = to.dim;
  t->feature_dim = tt_user_feature_dim(m);
  t->item_emb = malloc(d->n_items * t->dim * sizeof(float));
  t->user_feat = malloc((d->n_users + 1) * t->feature_dim * sizeof(float));
  if (!t->item_emb || !t->user_feat || tt_item_embeddings(m, t->item_emb) || tt_user_tower(m, t->layers)) {
    tt_free(m);
    return rec_fail(err, REC_ENOMEM, "two-tower: out of memory");
  }
  t->n_layers = 2;
  if (tt_item_tower_export(m, d, &t->item_tower) != 0) {
    tt_free(m);
    return rec_fail(err, REC_ENOMEM, "two-tower: out of memory");
  }
  t->has_item_tower = true;
  for (size_t u = 0; u < d->n_users; u++) tt_user_features(m, p, (uint32_t)u, t->user_feat + u * t->feature_dim);
  t->loss = tt_last_loss(m);
  char note[64];
  snprintf(note, sizeof note, "%d epochs, final loss %.4f", to.epochs, t->loss);
  progress_end(&pr, note);
  tt_free(m);
  return 0;
}

/* Inner product to cosine: item v -> [v / M, sqrt(1 - |v|^2 / M^2)] with M
 * the largest item norm, user u -> [u, 0]. Every item row has norm 1 and
 * u . item = (u . v) / M, so the order of scores is kept exactly. */
static void mips_to_cosine(const float *V, size_t n, size_t f, float *out) {
  double M = 0;
  for (size_t i = 0; i < n; i++) {
    double s = cblas_sdot((blasint)f, V + i * f, 1, V + i * f, 1);
    if (s > M) M = s;
  }
  M = M > 0 ? sqrt(M) : 1;
  for (size_t i = 0; i < n; i++) {
    double s = 0;
    for (size_t k = 0; k < f; k++) {
      out[i * (f + 1) + k] = (float)(V[i * f + k] / M);
      s += (double)out[i * (f + 1) + k] * out[i * (f + 1) + k];
    }
    out[i * (f + 1) + f] = (float)sqrt(s < 1 ? 1 - s : 0);
    float norm = cblas_snrm2((blasint)(f + 1), out + i * (f + 1), 1);
    cblas_sscal((blasint)(f + 1), 1.0f / norm, out + i * (f + 1), 1);
  }
}

/* The popularity prior: V's column f (of f + 1) set to c * log(1 + pop_j) /
 * log(1 + the largest pop), pop_j the item's summed interaction strength
 * (the popularity model's own order, so a strong prior ranks as it does),
 * with c = weight times the root mean square of the model's own scores
 * u . v over R's entries, so the weight means the same at any scale.
 * Columns 0..f-1 of V hold the factors. At ALS_PRIOR_MAX the factors are
 * dropped and the column is log(1 + pop_j): the order of the summed
 * strengths `recctl eval`'s popularity row ranks by (a large c alone lets
 * u . v reorder items whose counts differ by less than its own spread). */
static int popularity_column(const ui_matrix *R, const float *U, float *V, size_t f, float weight) {
  size_t n = R->cols, k1 = f + 1, pairs = 0;
  double *pop = calloc(n + 1, sizeof *pop), most = 0, sq = 0;
  if (!pop) return REC_ENOMEM;
  for (size_t u = 0; u < R->rows; u++)
    for (size_t e = R->rowptr[u]; e < R->rowptr[u + 1]; e++) {
      if (!(R->vals[e] > 0)) continue;
      uint32_t j = R->colidx[e];
      if ((pop[j] += R->vals[e]) > most) most = pop[j];
      double s = cblas_sdot((blasint)f, U + u * f, 1, V + (size_t)j * k1, 1);
      sq += s * s;
      pairs++;
    }
  double c = weight * (pairs ? sqrt(sq / (double)pairs) : 1) / log1p(most > 0 ? most : 1);
  bool only = weight >= ALS_PRIOR_MAX; /* popularity's order exactly: the factors go */
  for (size_t j = 0; j < n; j++) {
    if (only) memset(V + j * k1, 0, f * sizeof *V);
    V[j * k1 + f] = (float)(only ? log1p(pop[j]) : c * log1p(pop[j]));
  }
  free(pop);
  return 0;
}

static int train_als(const dataset *d, const ui_matrix *R, const build_opts *o, trained *t,
                     rec_error *err) {
  size_t f = o->als.factors;
  progress pr;
  als_opts ao = o->als;
  ao.progress = on_step;
  ao.progress_arg = &pr;
  /* With the popularity prior, user u is [x_u, 1] and item j [v_j, p_j]:
   * one more column each side. */
  size_t g = f + (o->als_popularity > 0);
  float *V = malloc(d->n_items * (f + 1) * sizeof *V), *F = malloc(d->n_items * f * sizeof *F);
  t->dim = g + 1;
  t->feature_dim = f;
  t->user_feat = malloc((d->n_users + 1) * f * sizeof(float));
  t->item_emb = malloc(d->n_items * (g + 1) * sizeof(float));
  t->layers[0] = (tower_layer){f, g + 1, calloc(f * (g + 1), sizeof(float)),
                               calloc(g + 1, sizeof(float)), TOWER_LINEAR};
  t->n_layers = 1;
  if (!V || !F || !t->user_feat || !t->item_emb || !t->layers[0].w || !t->layers[0].b) {
    free(V), free(F);
    return rec_fail(err, REC_ENOMEM, "als: out of memory");
  }
  for (size_t k = 0; k < f; k++) t->layers[0].w[k * (g + 1) + k] = 1.0f; /* [u, 0] or [u, 1, 0] */
  if (g > f) t->layers[0].b[f] = 1.0f;
  progress_start(&pr, "als", (size_t)ao.iterations, o->quiet);
  csr m = ui_matrix_csr(R);
  int rc = als_train(&m, &ao, t->user_feat, F, err);
  if (!rc) {
    for (size_t j = 0; j < d->n_items; j++) memcpy(V + j * g, F + j * f, f * sizeof *V);
    if (g > f && popularity_column(R, t->user_feat, V, f, o->als_popularity))
      rc = rec_fail(err, REC_ENOMEM, "als: out of memory");
  }
  if (!rc) {
    mips_to_cosine(V, d->n_items, g, t->item_emb);
    t->loss = als_loss(&m, &ao, t->user_feat, F);
    char note[64];
    snprintf(note, sizeof note, "%d sweeps, loss %.4f", ao.iterations, t->loss);
    progress_end(&pr, note);
  }
  free(V);
  free(F);
  return rc;
}

/* EASE's weights B ~ L R^T (ease_factorise) in serving form: user u's
 * feature is the sum of L over its items, the tower the identity (one more
 * output, 0), item j's vector R[j] mapped to the unit sphere with one more
 * dimension, so cosine search returns the inner product's order. */
static int train_ease(const dataset *d, const ui_matrix *R, const ease_table *e, const build_opts *o, trained *t,
                      rec_error *err) {
  size_t n = d->n_items, k = o->tt.dim < n ? o->tt.dim : n;
  if (!e || e->n_items != n) return rec_fail(err, REC_EINVAL, "--model ease needs EASE: --ease-lambda must be above 0");
  if (!e->off[n])
    return rec_fail(err, REC_EINVAL, "--model ease: EASE learned no weights from this data (no user met two items); "
                                     "use --model twotower or als");
  progress pr;
  progress_start(&pr, "ease model", 1, o->quiet);
  int64_t t0 = rec_mono_ns();
  float *Lf = malloc((n * k + 1) * sizeof *Lf), *Rf = malloc((n * k + 1) * sizeof *Rf);
  double *sg = malloc((k + 1) * sizeof *sg);
  t->dim = k + 1;
  t->feature_dim = k;
  t->user_feat = calloc((d->n_users + 1) * k, sizeof(float));
  t->item_emb = malloc(n * (k + 1) * sizeof(float));
  t->layers[0] = (tower_layer){k, k + 1, calloc(k * (k + 1), sizeof(float)), calloc(k + 1, sizeof(float)),
                               TOWER_LINEAR};
  t->n_layers = 1;
  int rc = 0;
  if (!Lf || !Rf || !sg || !t->user_feat || !t->item_emb || !t->layers[0].w || !t->layers[0].b)
    rc = rec_fail(err, REC_ENOMEM, "ease model: out of memory");
  if (!rc) rc = ease_factorise(e, k, (uint64_t)o->tt.seed, Lf, Rf, sg, err);
  if (!rc) {
    for (size_t c = 0; c < k; c++) t->layers[0].w[c * (k + 1) + c] = 1.0f;
    for (size_t u = 0; u < d->n_users; u++)
      for (size_t x = R->rowptr[u]; x < R->rowptr[u + 1]; x++)
        if (R->vals[x] > 0) cblas_saxpy((blasint)k, 1.0f, Lf + (size_t)R->colidx[x] * k, 1, t->user_feat + u * k, 1);
    mips_to_cosine(Rf, n, k, t->item_emb);
    t->loss = 0; /* no training loss: the note reports the spectrum */
    char note[128];
    snprintf(note, sizeof note, "rank %zu of EASE's weights, singular values %.3g .. %.3g, %.1f s", k, sg[0],
             sg[k - 1], (double)(rec_mono_ns() - t0) / 1e9);
    progress_end(&pr, note);
  }
  free(Lf), free(Rf), free(sg);
  return rc;
}

int train_model(const dataset *d, const ui_matrix *R, const profiles *p, const build_opts *o,
                const ease_table *ease, trained *out, rec_error *err) {
  trained t = {.n_items = d->n_items, .n_users = d->n_users};
  int rc;
  if (strcmp(o->model, "twotower") == 0) rc = train_twotower(d, R, p, o, &t, err);
  else if (strcmp(o->model, "als") == 0) rc = train_als(d, R, o, &t, err);
  else if (strcmp(o->model, "ease") == 0) rc = train_ease(d, R, ease, o, &t, err);
  else rc = rec_fail(err, REC_EINVAL, "--model must be twotower, als or ease, got '%s'", o->model);
  if (rc) {
    trained_destroy(&t);
    return rc;
  }
  *out = t;
  return 0;
}
