/* tools/offline/features.c - see features.h. Events arrive sorted by user then time,
 * which every builder here relies on. */
#include "tools/offline/features.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *const SEGMENT_NAMES[SEG_COUNT] = {"small", "low", "average", "high"};

static bool used(const bool *mask, size_t i) { return !mask || mask[i]; }

typedef struct pair {
  uint32_t col;
  float val;
} pair;

static int by_col(const void *a, const void *b) {
  const pair *x = a, *y = b;
  return x->col < y->col ? -1 : x->col > y->col;
}

/* Sorts p[0..n) by column, sums equal columns, appends the row to m. */
static void append_row(ui_matrix *m, pair *p, size_t n) {
  qsort(p, n, sizeof *p, by_col);
  for (size_t i = 0; i < n; i++) {
    if (m->nnz > m->rowptr[m->rows] && m->colidx[m->nnz - 1] == p[i].col) {
      m->vals[m->nnz - 1] += p[i].val;
      continue;
    }
    m->colidx[m->nnz] = p[i].col;
    m->vals[m->nnz++] = p[i].val;
  }
  m->rowptr[++m->rows] = m->nnz;
}

int ui_matrix_build(const dataset *d, const bool *mask, ui_matrix *out) {
  ui_matrix m = {.cols = d->n_items};
  m.rowptr = calloc(d->n_users + 1, sizeof *m.rowptr);
  m.colidx = malloc((d->n_events + 1) * sizeof *m.colidx);
  m.vals = malloc((d->n_events + 1) * sizeof *m.vals);
  pair *p = malloc((d->n_events + 1) * sizeof *p);
  if (!m.rowptr || !m.colidx || !m.vals || !p) {
    free(p);
    ui_matrix_destroy(&m);
    return REC_ENOMEM;
  }
  for (size_t u = 0; u < d->n_users; u++) {
    size_t n = 0;
    for (size_t e = d->user_start[u]; e < d->user_start[u + 1]; e++)
      if (used(mask, e)) p[n++] = (pair){d->events[e].item, d->events[e].strength};
    append_row(&m, p, n);
  }
  free(p);
  *out = m;
  return 0;
}

void ui_matrix_destroy(ui_matrix *m) {
  free(m->rowptr);
  free(m->colidx);
  free(m->vals);
  memset(m, 0, sizeof *m);
}

int ui_matrix_transpose(const ui_matrix *m, ui_matrix *out) {
  ui_matrix t = {.rows = m->cols, .cols = m->rows, .nnz = m->nnz};
  t.rowptr = calloc(m->cols + 1, sizeof *t.rowptr);
  t.colidx = malloc((m->nnz + 1) * sizeof *t.colidx);
  t.vals = malloc((m->nnz + 1) * sizeof *t.vals);
  size_t *fill = calloc(m->cols + 1, sizeof *fill);
  if (!t.rowptr || !t.colidx || !t.vals || !fill) {
    free(fill);
    ui_matrix_destroy(&t);
    return REC_ENOMEM;
  }
  for (size_t i = 0; i < m->nnz; i++) t.rowptr[m->colidx[i] + 1]++;
  for (size_t c = 0; c < m->cols; c++) t.rowptr[c + 1] += t.rowptr[c];
  memcpy(fill, t.rowptr, (m->cols + 1) * sizeof *fill);
  for (size_t r = 0; r < m->rows; r++)
    for (size_t i = m->rowptr[r]; i < m->rowptr[r + 1]; i++) {
      size_t at = fill[m->colidx[i]]++;
      t.colidx[at] = (uint32_t)r; /* rows ascend, so each column stays sorted */
      t.vals[at] = m->vals[i];
    }
  free(fill);
  *out = t;
  return 0;
}

/* ---- item-CF ---- */

/* Keeps the best 'k' (sim, nbr) in descending order: insertion into a short list. */
static void keep_top(uint32_t *nbr, float *sim, uint32_t *count, size_t k, uint32_t j, float s) {
  size_t n = *count;
  if (n == k && s <= sim[n - 1]) return;
  size_t at = n < k ? n : k - 1;
  while (at > 0 && sim[at - 1] < s) {
    sim[at] = sim[at - 1];
    nbr[at] = nbr[at - 1];
    at--;
  }
  sim[at] = s;
  nbr[at] = j;
  if (n < k) (*count)++;
}

/* acc[j] = sum over users u of item i of r_ui * r_uj (dense accumulator,
 * touched columns remembered so clearing costs what filling did). */
static size_t co_occurrence(const ui_matrix *R, const ui_matrix *T, uint32_t i, float *acc,
                            uint32_t *touched) {
  size_t nt = 0;
  for (size_t a = T->rowptr[i]; a < T->rowptr[i + 1]; a++) {
    uint32_t u = T->colidx[a];
    float rui = T->vals[a];
    for (size_t b = R->rowptr[u]; b < R->rowptr[u + 1]; b++) {
      uint32_t j = R->colidx[b];
      if (acc[j] == 0) touched[nt++] = j;
      acc[j] += rui * R->vals[b];
    }
  }
  return nt;
}

int itemcf_build(const ui_matrix *R, size_t per_item, itemcf *out) {
  size_t n = R->cols;
  itemcf cf = {.n_items = n, .per_item = per_item};
  ui_matrix T = {0};
  float *norm = calloc(n, sizeof *norm), *acc = calloc(n, sizeof *acc);
  uint32_t *touched = malloc((n + 1) * sizeof *touched);
  cf.nbr = calloc(n * per_item + 1, sizeof *cf.nbr);
  cf.sim = calloc(n * per_item + 1, sizeof *cf.sim);
  cf.count = calloc(n + 1, sizeof *cf.count);
  int rc = REC_ENOMEM;
  if (!norm || !acc || !touched || !cf.nbr || !cf.sim || !cf.count || ui_matrix_transpose(R, &T))
    goto done;
  for (size_t i = 0; i < n; i++)
    for (size_t a = T.rowptr[i]; a < T.rowptr[i + 1]; a++) norm[i] += T.vals[a] * T.vals[a];
  for (size_t i = 0; i < n; i++) norm[i] = sqrtf(norm[i]);
  for (uint32_t i = 0; i < n; i++) {
    size_t nt = co_occurrence(R, &T, i, acc, touched);
    for (size_t t = 0; t < nt; t++) {
      uint32_t j = touched[t];
      if (j != i && per_item > 0)
        keep_top(cf.nbr + i * per_item, cf.sim + i * per_item, &cf.count[i], per_item, j,
                 acc[j] / (norm[i] * norm[j]));
      acc[j] = 0;
    }
  }
  rc = 0;
done:
  free(norm);
  free(acc);
  free(touched);
  ui_matrix_destroy(&T);
  if (rc) itemcf_destroy(&cf);
  else *out = cf;
  return rc;
}

void itemcf_destroy(itemcf *cf) {
  free(cf->nbr);
  free(cf->sim);
  free(cf->count);
  memset(cf, 0, sizeof *cf);
}

/* ---- profiles ---- */

static int by_float(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return x < y ? -1 : x > y;
}

/* Quartile boundaries of the users' mean prices -> segment per user. */
static int assign_segments(profiles *p, const bool *active) {
  float *sorted = malloc((p->n_users + 1) * sizeof *sorted);
  if (!sorted) return REC_ENOMEM;
  size_t n = 0;
  for (size_t u = 0; u < p->n_users; u++)
    if (active[u]) sorted[n++] = p->mean_price[u];
  qsort(sorted, n, sizeof *sorted, by_float);
  float q1 = n ? sorted[n / 4] : 0, q2 = n ? sorted[n / 2] : 0, q3 = n ? sorted[3 * n / 4] : 0;
  for (size_t u = 0; u < p->n_users; u++) {
    float m = p->mean_price[u];
    /* Without price spread (a ratings dataset) everyone is average. */
    p->segment[u] = q1 == q3 ? SEG_AVERAGE
                  : m < q1 ? SEG_SMALL : m < q2 ? SEG_LOW : m < q3 ? SEG_AVERAGE : SEG_HIGH;
  }
  free(sorted);
  return 0;
}

static void recent_items(const dataset *d, const bool *mask, size_t u, profiles *p) {
  uint32_t *r = p->recent + u * p->recent_max;
  uint32_t n = 0;
  for (size_t e = d->user_start[u + 1]; e-- > d->user_start[u] && n < p->recent_max;) {
    if (!used(mask, e)) continue;
    bool seen = false;
    for (uint32_t k = 0; k < n && !seen; k++) seen = r[k] == d->events[e].item;
    if (!seen) r[n++] = d->events[e].item;
  }
  p->n_recent[u] = n;
}

int profiles_build(const dataset *d, const bool *mask, size_t recent_max, profiles *out) {
  profiles p = {.n_users = d->n_users, .recent_max = recent_max};
  size_t nu = d->n_users + 1;
  p.mean_price = calloc(nu, sizeof *p.mean_price);
  p.segment = calloc(nu, sizeof *p.segment);
  p.recent = calloc(nu * (recent_max ? recent_max : 1), sizeof *p.recent);
  p.n_recent = calloc(nu, sizeof *p.n_recent);
  bool *active = calloc(nu, sizeof *active);
  if (!p.mean_price || !p.segment || !p.recent || !p.n_recent || !active) goto oom;
  for (size_t u = 0; u < d->n_users; u++) {
    double sum = 0;
    size_t n = 0;
    for (size_t e = d->user_start[u]; e < d->user_start[u + 1]; e++)
      if (used(mask, e)) {
        sum += d->events[e].price;
        n++;
      }
    p.mean_price[u] = n ? (float)(sum / (double)n) : 0;
    active[u] = n > 0;
    recent_items(d, mask, u, &p);
  }
  if (assign_segments(&p, active)) goto oom;
  free(active);
  *out = p;
  return 0;
oom:
  free(active);
  profiles_destroy(&p);
  return REC_ENOMEM;
}

void profiles_destroy(profiles *p) {
  free(p->mean_price);
  free(p->segment);
  free(p->recent);
  free(p->n_recent);
  memset(p, 0, sizeof *p);
}

/* ---- popularity ---- */

int popularity_build(const dataset *d, const bool *mask, const profiles *p, double half_life_days,
                     popularity *out) {
  popularity pop = {.n_items = d->n_items, .reference_time = INT64_MIN};
  pop.global = calloc(d->n_items + 1, sizeof *pop.global);
  pop.by_segment = calloc(SEG_COUNT * d->n_items + 1, sizeof *pop.by_segment);
  if (!pop.global || !pop.by_segment) {
    popularity_destroy(&pop);
    return REC_ENOMEM;
  }
  for (size_t e = 0; e < d->n_events; e++)
    if (used(mask, e) && d->events[e].time > pop.reference_time) pop.reference_time = d->events[e].time;
  double per_sec = half_life_days > 0 ? 1.0 / (half_life_days * 86400.0) : 0;
  for (size_t e = 0; e < d->n_events; e++) {
    if (!used(mask, e)) continue;
    const ds_event *ev = &d->events[e];
    float w = ev->strength * (float)exp2(-(double)(pop.reference_time - ev->time) * per_sec);
    pop.global[ev->item] += w;
    pop.by_segment[(size_t)p->segment[ev->user] * d->n_items + ev->item] += w;
  }
  *out = pop;
  return 0;
}

void popularity_destroy(popularity *p) {
  free(p->global);
  free(p->by_segment);
  memset(p, 0, sizeof *p);
}

/* ---- repurchase cycles ---- */

typedef struct interval {
  uint32_t item;
  float days;
} interval;

static int by_item_days(const void *a, const void *b) {
  const interval *x = a, *y = b;
  if (x->item != y->item) return x->item < y->item ? -1 : 1;
  return x->days < y->days ? -1 : x->days > y->days;
}

/* Intervals between consecutive purchases of the same item within each user. */
static size_t collect_intervals(const dataset *d, const bool *mask, interval *out, int64_t *last) {
  size_t n = 0;
  for (size_t u = 0; u < d->n_users; u++) {
    for (size_t e = d->user_start[u]; e < d->user_start[u + 1]; e++) {
      if (!used(mask, e)) continue;
      const ds_event *ev = &d->events[e];
      if (last[ev->item] != INT64_MIN && ev->time > last[ev->item])
        out[n++] = (interval){ev->item, (float)(ev->time - last[ev->item]) / 86400.0f};
      last[ev->item] = ev->time;
    }
    for (size_t e = d->user_start[u]; e < d->user_start[u + 1]; e++) last[d->events[e].item] = INT64_MIN;
  }
  return n;
}

int repurchase_build(const dataset *d, const bool *mask, float *cycle_days, uint32_t *samples) {
  interval *iv = malloc((d->n_events + 1) * sizeof *iv);
  int64_t *last = malloc((d->n_items + 1) * sizeof *last);
  if (!iv || !last) {
    free(iv);
    free(last);
    return REC_ENOMEM;
  }
  for (size_t i = 0; i < d->n_items; i++) last[i] = INT64_MIN;
  size_t n = collect_intervals(d, mask, iv, last);
  qsort(iv, n, sizeof *iv, by_item_days);
  memset(cycle_days, 0, d->n_items * sizeof *cycle_days);
  memset(samples, 0, d->n_items * sizeof *samples);
  for (size_t a = 0, b; a < n; a = b) {
    for (b = a; b < n && iv[b].item == iv[a].item; b++) {
    }
    size_t m = b - a;
    cycle_days[iv[a].item] = m % 2 ? iv[a + m / 2].days : 0.5f * (iv[a + m / 2 - 1].days + iv[a + m / 2].days);
    samples[iv[a].item] = (uint32_t)m;
  }
  free(iv);
  free(last);
  return 0;
}
