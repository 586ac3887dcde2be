/* retrieval/tower.c - MLP forward pass, one sgemv per layer with OpenBLAS. */
#include "retrieval/tower.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int tower_init(tower *t, tower_layer *layers, size_t n, rec_error *err) {
  if (n == 0) return rec_fail(err, REC_EMISMATCH, "user tower has no layers");
  size_t width = layers[0].in;
  for (size_t i = 0; i < n; i++) {
    if (i > 0 && layers[i].in != layers[i - 1].out)
      return rec_fail(err, REC_EMISMATCH, "user tower layer %zu takes %zu inputs but layer %zu "
                      "gives %zu", i, layers[i].in, i - 1, layers[i - 1].out);
    if (layers[i].out > width) width = layers[i].out;
  }
  t->n_layers = n;
  t->layers = layers;
  t->in_dim = layers[0].in;
  t->out_dim = layers[n - 1].out;
  t->max_width = width;
  return 0;
}

void tower_destroy(tower *t) {
  for (size_t i = 0; i < t->n_layers; i++) {
    free(t->layers[i].w);
    free(t->layers[i].b);
  }
  free(t->layers);
  t->layers = NULL;
  t->n_layers = 0;
}

bool tower_l2_normalize(float *v, size_t n) {
  float norm = cblas_snrm2((blasint)n, v, 1);
  if (!(norm > 0) || !isfinite(norm)) return false;
  cblas_sscal((blasint)n, 1.0f / norm, v, 1);
  return true;
}

static void activate(float *y, size_t n, tower_act act) {
  if (act == TOWER_RELU)
    for (size_t i = 0; i < n; i++) y[i] = y[i] > 0 ? y[i] : 0;
  else if (act == TOWER_TANH)
    for (size_t i = 0; i < n; i++) y[i] = tanhf(y[i]);
}

int tower_forward(const tower *t, const float *x, float *out, float *scratch) {
  const float *cur = x;
  float *buf[2] = {scratch, scratch + t->max_width};
  for (size_t i = 0; i < t->n_layers; i++) {
    const tower_layer *l = &t->layers[i];
    float *y = i + 1 == t->n_layers ? out : buf[i & 1];
    memcpy(y, l->b, l->out * sizeof *y);
    /* y = W^T x + b with W stored in x out, row-major. */
    cblas_sgemv(CblasRowMajor, CblasTrans, (blasint)l->in, (blasint)l->out, 1.0f, l->w,
                (blasint)l->out, cur, 1, 1.0f, y, 1);
    activate(y, l->out, l->act);
    cur = y;
  }
  return tower_l2_normalize(out, t->out_dim) ? 0 : REC_EINVAL;
}

int tower_act_parse(const char *s) {
  if (strcmp(s, "linear") == 0) return TOWER_LINEAR;
  if (strcmp(s, "relu") == 0) return TOWER_RELU;
  if (strcmp(s, "tanh") == 0) return TOWER_TANH;
  return -1;
}

const char *tower_act_name(tower_act a) {
  return a == TOWER_RELU ? "relu" : a == TOWER_TANH ? "tanh" : "linear";
}
