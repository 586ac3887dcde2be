/* retrieval/tower.h - the user tower: a small MLP that maps a user's feature
 * vector to a query vector in the item-embedding space, L2-normalised so inner
 * product with item embeddings is cosine similarity. Weights are read-only
 * after load; tower_forward is thread-safe. */
#ifndef REC_TOWER_H
#define REC_TOWER_H
#include <stdbool.h>
#include <stddef.h>
#include "common/err.h"

typedef enum { TOWER_LINEAR, TOWER_RELU, TOWER_TANH } tower_act;

typedef struct tower_layer {
  size_t in, out;
  float *w;        /* in x out, row-major: y = act(x W + b) */
  float *b;        /* out */
  tower_act act;
} tower_layer;

typedef struct tower {
  size_t n_layers;
  tower_layer *layers;  /* owned */
  size_t in_dim, out_dim, max_width;
} tower;

/* Takes ownership of 'layers' (n of them, weights malloc'd) after checking
 * that consecutive shapes chain. Returns 0 or REC_EMISMATCH with 'err' filled;
 * on failure the caller still owns 'layers'. */
int  tower_init(tower *t, tower_layer *layers, size_t n, rec_error *err);
void tower_destroy(tower *t);

/* out[out_dim] = normalise(MLP(x[in_dim])). 'scratch' holds 2 * max_width
 * floats. Returns 0, or REC_EINVAL when the output has zero norm. */
int  tower_forward(const tower *t, const float *x, float *out, float *scratch);

/* Scales v[n] to unit L2 norm; returns false (v untouched) when its norm is 0
 * or not finite. */
bool tower_l2_normalize(float *v, size_t n);

/* Parses "relu", "linear", "tanh"; -1 for anything else. */
int  tower_act_parse(const char *s);
const char *tower_act_name(tower_act a);
#endif
