/* tools/offline/synth.c - see synth.h. The user tower is built by hand so that it
 * passes a user's pooled item embedding through unchanged (relu(x) - relu(-x)
 * = x) plus a little noise: the bundle exercises the real forward pass while
 * keeping answers predictable enough to test. */
#include "tools/offline/synth.h"
#include "common/rng.h"
#include "retrieval/bundle_write.h"

#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static float normal(rec_rng *r) { return (float)rec_rng_normal(r); }

static void normalize(float *v, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; i++) s += (double)v[i] * v[i];
  float inv = (float)(1.0 / sqrt(s > 0 ? s : 1));
  for (size_t i = 0; i < n; i++) v[i] *= inv;
}

static const char *const CATEGORY_NAMES[] = {"electronics", "books", "garden", "toys",
                                             "kitchen", "sports", "beauty", "grocery",
                                             "office", "music", "pets", "outdoor"};

size_t synth_user_category(const synth_opts *o, size_t u) { return (u * 7 + 3) % o->categories; }

void synth_category_name(size_t c, char *buf, size_t len) {
  size_t nn = sizeof CATEGORY_NAMES / sizeof *CATEGORY_NAMES;
  snprintf(buf, len, c < nn ? "%s" : "%s-%zu", CATEGORY_NAMES[c % nn], c / nn);
}

typedef struct synth_data {
  char **item_ids, **cat_names, **user_ids;
  const char **item_cats;
  float *price, *pop, *emb, *centroids, *subs, *features;
  bool *stock;
  tower_layer layers[2];
} synth_data;

static void free_data(synth_data *d, const synth_opts *o) {
  for (size_t i = 0; d->item_ids && i < o->items; i++) free(d->item_ids[i]);
  for (size_t i = 0; d->user_ids && i < o->users; i++) free(d->user_ids[i]);
  for (size_t i = 0; d->cat_names && i < o->categories; i++) free(d->cat_names[i]);
  free(d->item_ids);
  free(d->user_ids);
  free(d->cat_names);
  free(d->item_cats);
  free(d->price);
  free(d->pop);
  free(d->emb);
  free(d->centroids);
  free(d->subs);
  free(d->features);
  free(d->stock);
  for (int l = 0; l < 2; l++) {
    free(d->layers[l].w);
    free(d->layers[l].b);
  }
}

/* Every item and user draws from its own stream, seeded from the bundle's
 * seed and its row, so rows are generated in parallel and the bytes do not
 * depend on the thread count. */
static rec_rng stream(uint64_t seed, uint64_t kind, size_t row) {
  rec_rng r = {seed ^ (kind * 0xd1b54a32d192ed03ull)};
  r.s += (uint64_t)row * 0x9e3779b97f4a7c15ull;
  rec_rng_next(&r);
  return (rec_rng){rec_rng_next(&r)};
}

/* Catalogs are clustered twice over, as trained embeddings are: categories
 * are random directions; each holds sub-clusters (product lines) of about
 * SUB_ITEMS items, spread around it; items spread around their sub-cluster.
 * Sub-cluster s belongs to category s % C. */
#define SUB_ITEMS 256
static size_t sub_count(const synth_opts *o) {
  size_t s = o->items / SUB_ITEMS;
  return s < o->categories ? o->categories : s;
}

/* Rows generated in parallel: each of up to 16 threads (one per core) a
 * contiguous range; pthreads rather than OpenMP so that ThreadSanitizer sees
 * the joins. */
typedef struct rows_job {
  synth_data *d;
  const synth_opts *o;
} rows_job;
typedef void rows_fn(const rows_job *j, size_t from, size_t to);
typedef struct rows_part {
  rows_fn *fn;
  const rows_job *job;
  size_t from, to;
} rows_part;

static void *rows_thread(void *arg) {
  rows_part *p = arg;
  p->fn(p->job, p->from, p->to);
  return NULL;
}

static void run_rows(size_t n, rows_fn *fn, const rows_job *job) {
  enum { MAX_THREADS = 16 };
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  size_t t = cores < 1 ? 1 : cores > MAX_THREADS ? MAX_THREADS : (size_t)cores;
  if (n < 4096) t = 1;
  pthread_t th[MAX_THREADS];
  rows_part part[MAX_THREADS];
  bool started[MAX_THREADS] = {false};
  for (size_t k = 0; k < t; k++) {
    part[k] = (rows_part){fn, job, n * k / t, n * (k + 1) / t};
    if (k > 0) started[k] = pthread_create(&th[k], NULL, rows_thread, &part[k]) == 0;
  }
  fn(job, part[0].from, part[0].to);
  for (size_t k = 1; k < t; k++) {
    if (started[k]) pthread_join(th[k], NULL);
    else fn(job, part[k].from, part[k].to); /* no thread: this one does it */
  }
}

static void item_rows(const rows_job *job, size_t from, size_t to);
static void user_rows(const rows_job *job, size_t from, size_t to);

static void make_items(synth_data *d, const synth_opts *o, rec_rng *r) {
  size_t D = o->dim, C = o->categories, S = sub_count(o);
  float noise = 1.0f / sqrtf((float)D);
  for (size_t c = 0; c < C; c++) {
    char name[64];
    synth_category_name(c, name, sizeof name);
    d->cat_names[c] = strdup(name);
    for (size_t j = 0; j < D; j++) d->centroids[c * D + j] = normal(r);
    normalize(d->centroids + c * D, D);
  }
  for (size_t k = 0; k < S; k++) {
    float *sc = d->subs + k * D;
    const float *cc = d->centroids + (k % C) * D;
    for (size_t j = 0; j < D; j++) sc[j] = cc[j] + 0.6f * noise * normal(r);
    normalize(sc, D);
  }
  run_rows(o->items, item_rows, &(rows_job){d, o});
}

static void item_rows(const rows_job *job, size_t from, size_t to) {
  synth_data *d = job->d;
  const synth_opts *o = job->o;
  size_t D = o->dim, C = o->categories, N = o->items, S = sub_count(o);
  float noise = 1.0f / sqrtf((float)D);
  uint64_t seed = o->seed;
  for (size_t i = from; i < to; i++) {
    rec_rng ri = stream(seed, 1, i);
    char id[32];
    snprintf(id, sizeof id, "P%06zu", i);
    d->item_ids[i] = strdup(id);
    size_t c = (size_t)(rec_rng_next(&ri) % C);
    /* A sub-cluster of category c: c, c + C, c + 2C, ... below S. */
    size_t per = (S - c + C - 1) / C;
    size_t k = c + C * (size_t)(rec_rng_next(&ri) % per);
    d->item_cats[i] = d->cat_names[c];
    float *e = d->emb + i * D;
    for (size_t j = 0; j < D; j++) e[j] = d->subs[k * D + j] + 0.35f * noise * normal(&ri);
    normalize(e, D);
    d->price[i] = roundf(100.0f * (float)exp(2.0 + 0.4 * (double)c / (double)C + 0.6 * normal(&ri))) / 100.0f;
    d->stock[i] = rec_rng_uniform(&ri) < 0.95;
    d->pop[i] = (float)(1000.0 / pow(1.0 + (double)(rec_rng_next(&ri) % N), 0.8));
  }
}

static void make_users(synth_data *d, const synth_opts *o) {
  run_rows(o->users, user_rows, &(rows_job){d, o});
}

static void user_rows(const rows_job *job, size_t from, size_t to) {
  synth_data *d = job->d;
  const synth_opts *o = job->o;
  size_t D = o->dim, F = D + 2, C = o->categories, S = sub_count(o);
  float noise = 1.0f / sqrtf((float)D);
  uint64_t seed = o->seed;
  for (size_t u = from; u < to; u++) {
    rec_rng r = stream(seed, 2, u);
    char id[32];
    snprintf(id, sizeof id, "U%05zu", u);
    d->user_ids[u] = strdup(id);
    size_t c = synth_user_category(o, u);
    size_t per = (S - c + C - 1) / C;
    size_t k = c + C * (size_t)(rec_rng_next(&r) % per);
    float *f = d->features + u * F;
    /* The pooled embedding of a few items the user bought: mostly from one
     * product line of their category, some from elsewhere in it. */
    for (size_t j = 0; j < D; j++)
      f[j] = 0.7f * d->subs[k * D + j] + 0.3f * d->centroids[c * D + j] + 0.3f * noise * normal(&r);
    normalize(f, D);
    f[D] = (float)(2.0 + rec_rng_uniform(&r));   /* log average price */
    f[D + 1] = (float)(rec_rng_next(&r) % 4);    /* spending segment */
  }
}

static bool make_tower(synth_data *d, const synth_opts *o, rec_rng *r) {
  size_t D = o->dim, F = D + 2, H = 2 * D;
  tower_layer *l0 = &d->layers[0], *l1 = &d->layers[1];
  *l0 = (tower_layer){F, H, calloc(F * H, sizeof(float)), calloc(H, sizeof(float)), TOWER_RELU};
  *l1 = (tower_layer){H, D, calloc(H * D, sizeof(float)), calloc(D, sizeof(float)), TOWER_LINEAR};
  if (!l0->w || !l0->b || !l1->w || !l1->b) return false;
  for (size_t j = 0; j < D; j++) {
    l0->w[j * H + j] = 1.0f;
    l0->w[j * H + D + j] = -1.0f;
    l1->w[j * D + j] = 1.0f;
    l1->w[(D + j) * D + j] = -1.0f;
  }
  for (size_t i = 0; i < H * D; i++) l1->w[i] += 0.01f * normal(r);
  for (size_t i = D * H; i < F * H; i++) l0->w[i] = 0.001f * normal(r); /* user features */
  return true;
}

static bool alloc_data(synth_data *d, const synth_opts *o) {
  size_t N = o->items, U = o->users, D = o->dim, C = o->categories;
  d->item_ids = calloc(N, sizeof *d->item_ids);
  d->user_ids = calloc(U ? U : 1, sizeof *d->user_ids);
  d->cat_names = calloc(C, sizeof *d->cat_names);
  d->item_cats = calloc(N, sizeof *d->item_cats);
  d->price = calloc(N, sizeof *d->price);
  d->pop = calloc(N, sizeof *d->pop);
  d->emb = calloc(N * D, sizeof *d->emb);
  d->centroids = calloc(C * D, sizeof *d->centroids);
  d->subs = calloc(sub_count(o) * D, sizeof *d->subs);
  d->features = calloc((U ? U : 1) * (D + 2), sizeof *d->features);
  d->stock = calloc(N, sizeof *d->stock);
  return d->item_ids && d->user_ids && d->cat_names && d->item_cats && d->price && d->pop &&
         d->emb && d->centroids && d->subs && d->features && d->stock;
}

int synth_bundle(const char *dir, const synth_opts *o, rec_error *err) {
  if (o->items < 1 || o->items > 10000000 || o->users > 10000000 || o->dim < 2 || o->dim > 1024 ||
      o->categories < 1 || o->categories > o->items)
    return rec_fail(err, REC_EINVAL, "synth: want 1 <= categories <= items <= 10M, users <= 10M, "
                    "2 <= dim <= 1024");
  synth_data d = {0};
  rec_rng r = {o->seed};
  int rc;
  if (!alloc_data(&d, o)) {
    rc = rec_fail(err, REC_ENOMEM, "synth: out of memory");
    goto done;
  }
  make_items(&d, o, &r);
  make_users(&d, o);
  for (size_t i = 0; i < o->items; i++)
    if (!d.item_ids[i]) {
      rc = rec_fail(err, REC_ENOMEM, "synth: out of memory");
      goto done;
    }
  for (size_t u = 0; u < o->users; u++)
    if (!d.user_ids[u]) {
      rc = rec_fail(err, REC_ENOMEM, "synth: out of memory");
      goto done;
    }
  if (!make_tower(&d, o, &r)) {
    rc = rec_fail(err, REC_ENOMEM, "synth: out of memory");
    goto done;
  }
  char version[64], index[32];
  snprintf(version, sizeof version, "synth-%llu-%zu", (unsigned long long)o->seed, o->items);
  bundle_spec s = {
      .version = o->version ? o->version : version, .dim = o->dim, .item_count = o->items,
      .item_ids = (const char *const *)d.item_ids, .item_categories = d.item_cats,
      .item_price = d.price, .item_in_stock = d.stock, .item_popularity = d.pop,
      .item_emb = d.emb, .user_count = o->users, .feature_dim = o->dim + 2,
      .user_ids = (const char *const *)d.user_ids, .user_features = d.features, .n_layers = 2,
      .layers = d.layers,
      /* Small test bundles keep exercising the graph search. */
      .index_type = o->index_type                   ? o->index_type
                    : o->items <= BUNDLE_FLAT_MAX ? "HNSW32"
                                                  : bundle_default_index(o->items, index, sizeof index),
      .ef_search = o->ef_search, .ef_construction = o->ef_construction};
  rc = bundle_write(dir, &s, err);
done:
  free_data(&d, o);
  return rc;
}
