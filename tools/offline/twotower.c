/* tools/offline/twotower.c - see twotower.h. One batch: gather inputs, run both
 * towers forward, score every user against every item of the batch, and push
 * the softmax gradient back through normalisation, the dense layers and into
 * the embedding rows the batch touched. */
#include "tools/offline/twotower.h"
#include "common/rng.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { CAT_DIM = 16, PRICE_DIM = 8, PRICE_BUCKETS = 10, USER_EXTRA = 1 + SEG_COUNT };

typedef struct param {           /* a dense tensor with its gradient and Adam moments */
  size_t n;
  float *w, *g, *m, *v;
} param;

typedef struct table {           /* an embedding table, updated lazily row by row */
  size_t rows, cols;
  param p;
  uint32_t *touched;
  uint8_t *is_touched;
  size_t n_touched;
} table;

typedef struct dense {
  size_t in, out;
  param w, b;
} dense;

struct tt_model {
  tt_opts o;
  size_t n_items, n_users;
  uint32_t *item_cat, *item_bucket;
  table e_id, e_cat, e_price;
  dense it1, it2, ut1, ut2;
  float *logq;                   /* [n_items] log sampling probability */
  float *hist_w;                 /* [n_users x recent_max] strength of each recent item */
  float price_mu, price_sd;      /* standardisation of log(1 + mean price) */
  rec_rng rng;
  uint64_t step;
  double last_loss;
};

/* ---- small utilities ---- */


static int param_init(param *p, size_t n, float scale, rec_rng *rng) {
  p->n = n;
  p->w = malloc(n * sizeof *p->w);
  p->g = calloc(n, sizeof *p->g);
  p->m = calloc(n, sizeof *p->m);
  p->v = calloc(n, sizeof *p->v);
  if (!p->w || !p->g || !p->m || !p->v) return REC_ENOMEM;
  for (size_t i = 0; i < n; i++) p->w[i] = scale ? (float)((2 * rec_rng_uniform(rng) - 1) * scale) : 0;
  return 0;
}

static void param_free(param *p) {
  free(p->w);
  free(p->g);
  free(p->m);
  free(p->v);
}

static int dense_init(dense *l, size_t in, size_t out, rec_rng *rng) {
  l->in = in;
  l->out = out;
  float glorot = sqrtf(6.0f / (float)(in + out));
  if (param_init(&l->w, in * out, glorot, rng) || param_init(&l->b, out, 0, rng)) return REC_ENOMEM;
  return 0;
}

static int table_init(table *t, size_t rows, size_t cols, float scale, rec_rng *rng) {
  t->rows = rows;
  t->cols = cols;
  t->touched = malloc((rows + 1) * sizeof *t->touched);
  t->is_touched = calloc(rows + 1, 1);
  if (!t->touched || !t->is_touched) return REC_ENOMEM;
  return param_init(&t->p, rows * cols, scale, rng);
}

static void table_free(table *t) {
  param_free(&t->p);
  free(t->touched);
  free(t->is_touched);
}

/* Adds g[cols] to row r's gradient, remembering the row. */
static void table_grad(table *t, uint32_t r, const float *g, float scale) {
  if (!t->is_touched[r]) {
    t->is_touched[r] = 1;
    t->touched[t->n_touched++] = r;
  }
  cblas_saxpy((blasint)t->cols, scale, g, 1, t->p.g + (size_t)r * t->cols, 1);
}

/* Adam's bias corrections for one step, computed once and shared. */
typedef struct adam_step {
  float lr, c1, c2;
} adam_step;

static adam_step adam_at(float lr, uint64_t step) {
  return (adam_step){lr, 1.0f - powf(0.9f, (float)step), 1.0f - powf(0.999f, (float)step)};
}

static void adam(float *w, float *g, float *m, float *v, size_t n, adam_step a) {
  const float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
  float lr1 = a.lr / a.c1, inv_c2 = 1.0f / a.c2;
  for (size_t i = 0; i < n; i++) {
    m[i] = b1 * m[i] + (1 - b1) * g[i];
    v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
    w[i] -= lr1 * m[i] / (sqrtf(v[i] * inv_c2) + eps);
    g[i] = 0;
  }
}

static void step_param(param *p, adam_step a) { adam(p->w, p->g, p->m, p->v, p->n, a); }

static void step_table(table *t, adam_step a) {
  for (size_t k = 0; k < t->n_touched; k++) {
    size_t off = (size_t)t->touched[k] * t->cols;
    adam(t->p.w + off, t->p.g + off, t->p.m + off, t->p.v + off, t->cols, a);
    t->is_touched[t->touched[k]] = 0;
  }
  t->n_touched = 0;
}

/* Y[B x out] = act(X[B x in] W + b). */
static void dense_fwd(const dense *l, const float *X, size_t B, float *Y, bool relu) {
  for (size_t r = 0; r < B; r++) memcpy(Y + r * l->out, l->b.w, l->out * sizeof *Y);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)B, (blasint)l->out,
              (blasint)l->in, 1.0f, X, (blasint)l->in, l->w.w, (blasint)l->out, 1.0f, Y,
              (blasint)l->out);
  if (relu)
    for (size_t i = 0; i < B * l->out; i++) Y[i] = Y[i] > 0 ? Y[i] : 0;
}

/* Given dY (zeroed where a relu was off), accumulates dW, db and writes dX. */
static void dense_bwd(dense *l, const float *X, const float *dY, size_t B, float *dX) {
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (blasint)l->in, (blasint)l->out,
              (blasint)B, 1.0f, X, (blasint)l->in, dY, (blasint)l->out, 1.0f, l->w.g,
              (blasint)l->out);
  for (size_t r = 0; r < B; r++)
    cblas_saxpy((blasint)l->out, 1.0f, dY + r * l->out, 1, l->b.g, 1);
  if (dX)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)B, (blasint)l->in,
                (blasint)l->out, 1.0f, dY, (blasint)l->out, l->w.w, (blasint)l->out, 0.0f, dX,
                (blasint)l->in);
}

static void relu_mask(float *dY, const float *Y, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (Y[i] <= 0) dY[i] = 0;
}

/* Normalises rows of Z in place, keeping their norms for the backward pass. */
static void normalize_rows(float *Z, size_t B, size_t D, float *norms) {
  for (size_t r = 0; r < B; r++) {
    float n = cblas_snrm2((blasint)D, Z + r * D, 1);
    norms[r] = n > 1e-12f ? n : 1e-12f;
    cblas_sscal((blasint)D, 1.0f / norms[r], Z + r * D, 1);
  }
}

/* d(z/|z|): dZ = (dV - V (V . dV)) / |z|, in place on dV. */
static void normalize_bwd(const float *V, float *dV, size_t B, size_t D, const float *norms) {
  for (size_t r = 0; r < B; r++) {
    float dot = cblas_sdot((blasint)D, V + r * D, 1, dV + r * D, 1);
    for (size_t k = 0; k < D; k++) dV[r * D + k] = (dV[r * D + k] - V[r * D + k] * dot) / norms[r];
  }
}

/* ---- model set-up ---- */

static int by_float(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return x < y ? -1 : x > y;
}

/* Price deciles of the catalog -> bucket per item (all 0 without prices). */
static int price_buckets(tt_model *m, const dataset *d) {
  float *p = malloc((d->n_items + 1) * sizeof *p);
  if (!p) return REC_ENOMEM;
  for (size_t i = 0; i < d->n_items; i++) p[i] = d->items[i].price;
  qsort(p, d->n_items, sizeof *p, by_float);
  for (size_t i = 0; i < d->n_items; i++) {
    uint32_t b = 0;
    while (b + 1 < PRICE_BUCKETS && d->items[i].price > p[(b + 1) * d->n_items / PRICE_BUCKETS]) b++;
    m->item_bucket[i] = b;
    m->item_cat[i] = d->items[i].category_idx;
  }
  free(p);
  return 0;
}

/* log Q(i): how often item i appears as a training positive. */
static void sampling_logq(tt_model *m, const ui_matrix *R) {
  for (size_t i = 0; i < m->n_items; i++) m->logq[i] = 0;
  for (size_t k = 0; k < R->nnz; k++) m->logq[R->colidx[k]] += 1;
  for (size_t i = 0; i < m->n_items; i++)
    m->logq[i] = logf((m->logq[i] + 1.0f) / (float)(R->nnz + m->n_items));
}

/* Strength of (u, item) in R, by binary search in u's sorted row; 0 if absent. */
static float strength_of(const ui_matrix *R, uint32_t u, uint32_t item) {
  size_t lo = R->rowptr[u], hi = R->rowptr[u + 1];
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (R->colidx[mid] == item) return R->vals[mid];
    if (R->colidx[mid] < item) lo = mid + 1;
    else hi = mid;
  }
  return 0;
}

static void user_stats(tt_model *m, const profiles *p, const ui_matrix *R) {
  double s = 0, s2 = 0;
  size_t n = 0;
  for (size_t u = 0; u < p->n_users; u++) {
    float *w = m->hist_w + u * p->recent_max;
    for (uint32_t k = 0; k < p->n_recent[u]; k++)
      w[k] = strength_of(R, (uint32_t)u, p->recent[u * p->recent_max + k]);
    if (R->rowptr[u + 1] == R->rowptr[u]) continue;
    double x = log1p(p->mean_price[u]);
    s += x;
    s2 += x * x;
    n++;
  }
  m->price_mu = n ? (float)(s / (double)n) : 0;
  double var = n ? s2 / (double)n - (s / (double)n) * (s / (double)n) : 0;
  m->price_sd = var > 1e-12 ? (float)sqrt(var) : 1.0f;
}

static int model_new(const dataset *d, const profiles *p, const ui_matrix *R, const tt_opts *o,
                     tt_model **out) {
  tt_model *m = calloc(1, sizeof *m);
  if (!m) return REC_ENOMEM;
  m->o = *o;
  m->n_items = d->n_items;
  m->n_users = d->n_users;
  m->rng.s = o->seed;
  size_t ncat = d->n_categories ? d->n_categories : 1, H = o->hidden;
  m->item_cat = calloc(d->n_items + 1, sizeof *m->item_cat);
  m->item_bucket = calloc(d->n_items + 1, sizeof *m->item_bucket);
  m->logq = calloc(d->n_items + 1, sizeof *m->logq);
  m->hist_w = calloc(p->n_users * p->recent_max + 1, sizeof *m->hist_w);
  int rc = !m->item_cat || !m->item_bucket || !m->logq || !m->hist_w ? REC_ENOMEM : 0;
  if (!rc) rc = table_init(&m->e_id, d->n_items, o->id_dim, 0.05f, &m->rng);
  if (!rc) rc = table_init(&m->e_cat, ncat, CAT_DIM, 0.05f, &m->rng);
  if (!rc) rc = table_init(&m->e_price, PRICE_BUCKETS, PRICE_DIM, 0.05f, &m->rng);
  if (!rc) rc = dense_init(&m->it1, o->id_dim + CAT_DIM + PRICE_DIM, H, &m->rng);
  if (!rc) rc = dense_init(&m->it2, H, o->dim, &m->rng);
  if (!rc) rc = dense_init(&m->ut1, o->id_dim + USER_EXTRA, H, &m->rng);
  if (!rc) rc = dense_init(&m->ut2, H, o->dim, &m->rng);
  if (!rc) rc = price_buckets(m, d);
  if (rc) {
    tt_free(m);
    return rc;
  }
  sampling_logq(m, R);
  user_stats(m, p, R);
  *out = m;
  return 0;
}

void tt_free(tt_model *m) {
  if (!m) return;
  free(m->item_cat);
  free(m->item_bucket);
  free(m->logq);
  free(m->hist_w);
  table_free(&m->e_id);
  table_free(&m->e_cat);
  table_free(&m->e_price);
  dense *ls[] = {&m->it1, &m->it2, &m->ut1, &m->ut2};
  for (int i = 0; i < 4; i++) {
    param_free(&ls[i]->w);
    param_free(&ls[i]->b);
  }
  free(m);
}

/* ---- inputs ---- */

static size_t item_in_dim(const tt_model *m) { return m->o.id_dim + CAT_DIM + PRICE_DIM; }
size_t tt_user_feature_dim(const tt_model *m) { return m->o.id_dim + USER_EXTRA; }

static void item_input(const tt_model *m, uint32_t i, float *x) {
  size_t E = m->o.id_dim;
  memcpy(x, m->e_id.p.w + (size_t)i * E, E * sizeof *x);
  memcpy(x + E, m->e_cat.p.w + (size_t)m->item_cat[i] * CAT_DIM, CAT_DIM * sizeof *x);
  memcpy(x + E + CAT_DIM, m->e_price.p.w + (size_t)m->item_bucket[i] * PRICE_DIM,
         PRICE_DIM * sizeof *x);
}

/* The user tower's input with 'skip' (an item, or UINT32_MAX) left out of
 * the pool; returns the pool's total weight. */
static float user_input(const tt_model *m, const profiles *p, uint32_t u, uint32_t skip, float *x) {
  size_t E = m->o.id_dim;
  const uint32_t *recent = p->recent + (size_t)u * p->recent_max;
  const float *w = m->hist_w + (size_t)u * p->recent_max;
  float total = 0;
  memset(x, 0, tt_user_feature_dim(m) * sizeof *x);
  for (uint32_t k = 0; k < p->n_recent[u]; k++) {
    if (recent[k] == skip) continue;
    cblas_saxpy((blasint)E, w[k], m->e_id.p.w + (size_t)recent[k] * E, 1, x, 1);
    total += w[k];
  }
  if (total > 0) cblas_sscal((blasint)E, 1.0f / total, x, 1);
  x[E] = ((float)log1p(p->mean_price[u]) - m->price_mu) / m->price_sd;
  x[E + 1 + p->segment[u]] = 1.0f;
  return total;
}

void tt_user_features(const tt_model *m, const profiles *p, uint32_t u, float *out) {
  user_input(m, p, u, UINT32_MAX, out);
}

/* ---- one batch ---- */

typedef struct batch {
  size_t B;
  uint32_t *user, *item;
  float *w;                            /* loss weight per row (strength) */
  float *Xi, *Ai, *Vi, *ni, *Xu, *Au, *Qu, *nu, *S, *dV, *dQ, *dAi, *dAu, *dXi, *dXu;
} batch;

static int batch_init(batch *b, const tt_model *m, size_t B) {
  size_t H = m->o.hidden, D = m->o.dim, DI = item_in_dim(m), DU = tt_user_feature_dim(m);
  b->B = B;
  b->user = malloc(B * sizeof *b->user);
  b->item = malloc(B * sizeof *b->item);
  float **f[] = {&b->w, &b->Xi, &b->Ai, &b->Vi, &b->ni, &b->Xu, &b->Au, &b->Qu, &b->nu, &b->S,
                 &b->dV, &b->dQ, &b->dAi, &b->dAu, &b->dXi, &b->dXu};
  size_t n[] = {B, B * DI, B * H, B * D, B, B * DU, B * H, B * D, B, B * B,
                B * D, B * D, B * H, B * H, B * DI, B * DU};
  int ok = b->user && b->item;
  for (size_t k = 0; k < sizeof n / sizeof *n; k++) ok &= (*f[k] = calloc(n[k], sizeof(float))) != NULL;
  return ok ? 0 : REC_ENOMEM;
}

static void batch_destroy(batch *b) {
  free(b->user);
  free(b->item);
  float *f[] = {b->w, b->Xi, b->Ai, b->Vi, b->ni, b->Xu, b->Au, b->Qu, b->nu, b->S,
                b->dV, b->dQ, b->dAi, b->dAu, b->dXi, b->dXu};
  for (size_t k = 0; k < sizeof f / sizeof *f; k++) free(f[k]);
}

static void towers_forward(tt_model *m, const profiles *p, batch *b) {
  size_t B = b->B, DI = item_in_dim(m), DU = tt_user_feature_dim(m);
  for (size_t r = 0; r < B; r++) {
    item_input(m, b->item[r], b->Xi + r * DI);
    user_input(m, p, b->user[r], b->item[r], b->Xu + r * DU);
  }
  dense_fwd(&m->it1, b->Xi, B, b->Ai, true);
  dense_fwd(&m->it2, b->Ai, B, b->Vi, false);
  normalize_rows(b->Vi, B, m->o.dim, b->ni);
  dense_fwd(&m->ut1, b->Xu, B, b->Au, true);
  dense_fwd(&m->ut2, b->Au, B, b->Qu, false);
  normalize_rows(b->Qu, B, m->o.dim, b->nu);
}

/* Softmax over the batch's items for every user row; leaves the logit
 * gradient in S and returns the weighted mean loss. */
static double softmax_loss(const tt_model *m, batch *b) {
  size_t B = b->B, D = m->o.dim;
  float inv_t = 1.0f / m->o.temperature;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)B, (blasint)B, (blasint)D, inv_t,
              b->Qu, (blasint)D, b->Vi, (blasint)D, 0.0f, b->S, (blasint)B);
  double wsum = 0, loss = 0;
  for (size_t a = 0; a < B; a++) wsum += b->w[a];
  for (size_t a = 0; a < B; a++) {
    float *row = b->S + a * B, mx = -INFINITY;
    for (size_t c = 0; c < B; c++) {
      /* The same item elsewhere in the batch is a positive, not a negative. */
      row[c] = c != a && b->item[c] == b->item[a] ? -INFINITY : row[c] - m->logq[b->item[c]];
      if (row[c] > mx) mx = row[c];
    }
    float z = 0;
    for (size_t c = 0; c < B; c++) z += row[c] = expf(row[c] - mx); /* row now holds e^(l - max) */
    double scale = b->w[a] / wsum;
    loss -= scale * (double)logf(row[a] / z);
    float s = (float)scale / z;
    for (size_t c = 0; c < B; c++) row[c] *= s;
    row[a] -= (float)scale;
  }
  return loss;
}

static void towers_backward(tt_model *m, const profiles *p, batch *b) {
  size_t B = b->B, D = m->o.dim, H = m->o.hidden, DI = item_in_dim(m), DU = tt_user_feature_dim(m);
  size_t E = m->o.id_dim;
  float inv_t = 1.0f / m->o.temperature;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)B, (blasint)D, (blasint)B, inv_t,
              b->S, (blasint)B, b->Vi, (blasint)D, 0.0f, b->dQ, (blasint)D);
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (blasint)B, (blasint)D, (blasint)B, inv_t,
              b->S, (blasint)B, b->Qu, (blasint)D, 0.0f, b->dV, (blasint)D);
  normalize_bwd(b->Vi, b->dV, B, D, b->ni);
  normalize_bwd(b->Qu, b->dQ, B, D, b->nu);
  dense_bwd(&m->it2, b->Ai, b->dV, B, b->dAi);
  relu_mask(b->dAi, b->Ai, B * H);
  dense_bwd(&m->it1, b->Xi, b->dAi, B, b->dXi);
  dense_bwd(&m->ut2, b->Au, b->dQ, B, b->dAu);
  relu_mask(b->dAu, b->Au, B * H);
  dense_bwd(&m->ut1, b->Xu, b->dAu, B, b->dXu);
  for (size_t r = 0; r < B; r++) {
    const float *gx = b->dXi + r * DI;
    uint32_t i = b->item[r];
    table_grad(&m->e_id, i, gx, 1.0f);
    table_grad(&m->e_cat, m->item_cat[i], gx + E, 1.0f);
    table_grad(&m->e_price, m->item_bucket[i], gx + E + CAT_DIM, 1.0f);
    /* The pooled history: each item received weight w_k / total. */
    uint32_t u = b->user[r];
    const uint32_t *recent = p->recent + (size_t)u * p->recent_max;
    const float *w = m->hist_w + (size_t)u * p->recent_max;
    float total = 0;
    for (uint32_t k = 0; k < p->n_recent[u]; k++) total += recent[k] == i ? 0 : w[k];
    for (uint32_t k = 0; total > 0 && k < p->n_recent[u]; k++)
      if (recent[k] != i) table_grad(&m->e_id, recent[k], b->dXu + r * DU, w[k] / total);
  }
}

static void optimizer_step(tt_model *m) {
  adam_step a = adam_at(m->o.lr, ++m->step);
  dense *ls[] = {&m->it1, &m->it2, &m->ut1, &m->ut2};
  for (int i = 0; i < 4; i++) {
    step_param(&ls[i]->w, a);
    step_param(&ls[i]->b, a);
  }
  step_table(&m->e_id, a);
  step_table(&m->e_cat, a);
  step_table(&m->e_price, a);
}

/* ---- training ---- */

typedef struct example {
  uint32_t user, item;
  float w;
} example;

static example *examples_of(const ui_matrix *R) {
  example *ex = malloc((R->nnz + 1) * sizeof *ex);
  if (!ex) return NULL;
  for (size_t u = 0; u < R->rows; u++)
    for (size_t k = R->rowptr[u]; k < R->rowptr[u + 1]; k++)
      ex[k] = (example){(uint32_t)u, R->colidx[k], R->vals[k]};
  return ex;
}

static void shuffle(example *ex, size_t n, rec_rng *rng) {
  for (size_t i = n; i > 1; i--) {
    size_t j = (size_t)(rec_rng_next(rng) % i);
    example t = ex[i - 1];
    ex[i - 1] = ex[j];
    ex[j] = t;
  }
}

static double run_epoch(tt_model *m, const profiles *p, example *ex, size_t n, batch *b) {
  shuffle(ex, n, &m->rng);
  double loss = 0;
  size_t batches = 0;
  for (size_t at = 0; at + 2 <= n; at += b->B) {
    size_t B = n - at < b->B ? n - at : b->B;
    size_t full = b->B;
    b->B = B;
    for (size_t r = 0; r < B; r++) {
      b->user[r] = ex[at + r].user;
      b->item[r] = ex[at + r].item;
      b->w[r] = ex[at + r].w;
    }
    towers_forward(m, p, b);
    loss += softmax_loss(m, b);
    towers_backward(m, p, b);
    optimizer_step(m);
    batches++;
    b->B = full;
  }
  return batches ? loss / (double)batches : 0;
}

static int check_opts(const tt_opts *o, const ui_matrix *R, rec_error *err) {
  if (o->dim < 2 || o->dim > 1024 || o->id_dim < 1 || o->id_dim > 1024 || o->hidden < 1 ||
      o->hidden > 4096)
    return rec_fail(err, REC_EINVAL, "two-tower: dim 2..1024, id_dim 1..1024, hidden 1..4096");
  if (o->epochs < 1 || o->batch < 2 || o->batch > 65536 || !(o->lr > 0) || !(o->temperature > 0))
    return rec_fail(err, REC_EINVAL, "two-tower: epochs >= 1, batch 2..65536, lr > 0, temperature > 0");
  if (R->nnz < 2) return rec_fail(err, REC_EINVAL, "two-tower: fewer than 2 training pairs");
  return 0;
}

int tt_train(const dataset *d, const ui_matrix *R, const profiles *p, const tt_opts *o,
             tt_model **out, rec_error *err) {
  int rc = check_opts(o, R, err);
  if (rc) return rc;
  tt_model *m;
  if (model_new(d, p, R, o, &m)) return rec_fail(err, REC_ENOMEM, "two-tower: out of memory");
  example *ex = examples_of(R);
  batch b = {0};
  if (!ex || batch_init(&b, m, o->batch < R->nnz ? o->batch : R->nnz)) {
    rc = rec_fail(err, REC_ENOMEM, "two-tower: out of memory");
    goto done;
  }
  for (int e = 1; e <= o->epochs; e++) {
    m->last_loss = run_epoch(m, p, ex, R->nnz, &b);
    if (o->progress) o->progress(o->progress_arg, e, m->last_loss);
  }
done:
  free(ex);
  batch_destroy(&b);
  if (rc) tt_free(m);
  else *out = m;
  return rc;
}

double tt_last_loss(const tt_model *m) { return m->last_loss; }

int tt_item_embeddings(const tt_model *m, float *out) {
  size_t chunk = 1024, DI = item_in_dim(m), H = m->o.hidden;
  float *X = malloc(chunk * DI * sizeof *X), *A = malloc(chunk * H * sizeof *A);
  float *norms = malloc(chunk * sizeof *norms);
  if (!X || !A || !norms) {
    free(X);
    free(A);
    free(norms);
    return REC_ENOMEM;
  }
  for (size_t at = 0; at < m->n_items; at += chunk) {
    size_t B = m->n_items - at < chunk ? m->n_items - at : chunk;
    for (size_t r = 0; r < B; r++) item_input(m, (uint32_t)(at + r), X + r * DI);
    dense_fwd(&m->it1, X, B, A, true);
    dense_fwd(&m->it2, A, B, out + at * m->o.dim, false);
    normalize_rows(out + at * m->o.dim, B, m->o.dim, norms);
  }
  free(X);
  free(A);
  free(norms);
  return 0;
}

static int copy_layer(const dense *l, tower_layer *t, tower_act act) {
  *t = (tower_layer){l->in, l->out, malloc(l->w.n * sizeof(float)), malloc(l->b.n * sizeof(float)), act};
  if (!t->w || !t->b) return REC_ENOMEM;
  memcpy(t->w, l->w.w, l->w.n * sizeof(float));
  memcpy(t->b, l->b.w, l->b.n * sizeof(float));
  return 0;
}

int tt_user_tower(const tt_model *m, tower_layer layers[2]) {
  memset(layers, 0, 2 * sizeof *layers);
  if (copy_layer(&m->ut1, &layers[0], TOWER_RELU) || copy_layer(&m->ut2, &layers[1], TOWER_LINEAR)) {
    for (int i = 0; i < 2; i++) {
      free(layers[i].w);
      free(layers[i].b);
    }
    return REC_ENOMEM;
  }
  return 0;
}

void tt_item_tower_destroy(tt_item_tower *t) {
  free(t->cat_id);
  free(t->cat_emb);
  free(t->price_emb);
  free(t->price_edges);
  for (int i = 0; i < 2; i++) {
    free(t->layers[i].w);
    free(t->layers[i].b);
  }
  memset(t, 0, sizeof *t);
}

int tt_item_tower_export(const tt_model *m, const dataset *d, tt_item_tower *out) {
  size_t E = m->o.id_dim, nc = m->e_cat.rows;
  tt_item_tower t = {.n_categories = nc, .id_dim = E, .cat_dim = CAT_DIM, .n_buckets = PRICE_BUCKETS,
                     .price_dim = PRICE_DIM};
  t.cat_id = calloc(nc * E + 1, sizeof *t.cat_id);
  t.cat_emb = malloc((nc * CAT_DIM + 1) * sizeof *t.cat_emb);
  t.price_emb = malloc(PRICE_BUCKETS * PRICE_DIM * sizeof *t.price_emb);
  t.price_edges = malloc((PRICE_BUCKETS - 1) * sizeof *t.price_edges);
  float *p = malloc((d->n_items + 1) * sizeof *p);
  size_t *count = calloc(nc + 1, sizeof *count);
  int rc = !t.cat_id || !t.cat_emb || !t.price_emb || !t.price_edges || !p || !count ||
           copy_layer(&m->it1, &t.layers[0], TOWER_RELU) || copy_layer(&m->it2, &t.layers[1], TOWER_LINEAR)
               ? REC_ENOMEM : 0;
  if (!rc) {
    /* An item the model never saw has no id embedding of its own: its
     * category's mean stands in. */
    for (size_t i = 0; i < m->n_items; i++) {
      uint32_t c = m->item_cat[i];
      const float *e = m->e_id.p.w + i * E;
      for (size_t k = 0; k < E; k++) t.cat_id[c * E + k] += e[k];
      count[c]++;
    }
    for (size_t c = 0; c < nc; c++)
      for (size_t k = 0; k < E && count[c]; k++) t.cat_id[c * E + k] /= (float)count[c];
    memcpy(t.cat_emb, m->e_cat.p.w, nc * CAT_DIM * sizeof *t.cat_emb);
    memcpy(t.price_emb, m->e_price.p.w, PRICE_BUCKETS * PRICE_DIM * sizeof *t.price_emb);
    /* price_buckets' edges: bucket b + 1 starts above the (b+1)/B quantile. */
    for (size_t i = 0; i < d->n_items; i++) p[i] = d->items[i].price;
    qsort(p, d->n_items, sizeof *p, by_float);
    for (size_t b = 0; b + 1 < PRICE_BUCKETS; b++) t.price_edges[b] = d->n_items ? p[(b + 1) * d->n_items / PRICE_BUCKETS] : 0;
  }
  free(p);
  free(count);
  if (rc) {
    tt_item_tower_destroy(&t);
    return rc;
  }
  *out = t;
  return 0;
}
