/* ranking/experiments.h - layered A/B experiments: which arm of each layer
 * a request is in, and what that arm changes (docs/operations.md).
 *
 * An experiments file declares layers; each has a salt, a unit (the user
 * id, or the session id from the request's context) and arms with shares
 * in basis points laid out in the order the file declares them. A unit's
 * bucket in a layer is XXH3(unit, seed XXH3(salt)) mod 10000: deterministic, uniform,
 * and independent between layers with different salts. An arm may override
 * ranking settings ("set.KEY = VALUE", any key of ranking/config.h), serve
 * from another resident bundle ("bundle = NAME"), or be a holdout served
 * popularity only. Units outside every arm's range (shares under 10000)
 * get the defaults and no arm for that layer.
 *
 *   layer.ranker.salt = ranker-2026-12
 *   layer.ranker.unit = user
 *   layer.ranker.arm.control.share = 4500
 *   layer.ranker.arm.lowmmr.share = 4500
 *   layer.ranker.arm.lowmmr.set.diversity.mmr_lambda = 0.5
 *   layer.ranker.arm.holdout.share = 1000
 *   layer.ranker.arm.holdout.holdout = true
 *
 * An 'experiments' is plain data (parse, copy, change shares); an exp_plan
 * is one compiled against the ranking settings serving now: one settings
 * struct per combination of arms that override settings, made and checked
 * once, so a request only picks a pointer. Both are read-only once built,
 * so any number of threads may share them. */
#ifndef REC_EXPERIMENTS_H
#define REC_EXPERIMENTS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "common/err.h"
#include "ranking/config.h"

enum {
  EXP_MAX_LAYERS = 8,
  EXP_MAX_ARMS = 16,         /* per layer */
  EXP_NAME_MAX = 32,         /* layer and arm names: [A-Za-z0-9_-] */
  EXP_SALT_MAX = 64,         /* salts: [A-Za-z0-9_.:-] */
  EXP_MAX_SETTINGS = 32,     /* overridden settings per arm */
  EXP_MAX_COMBOS = 256,      /* settings combinations across layers */
  EXP_BP = 10000,            /* shares are in basis points of this */
};

typedef enum { EXP_UNIT_USER, EXP_UNIT_SESSION } exp_unit;

typedef struct exp_arm {
  char name[EXP_NAME_MAX + 1];
  uint32_t share;                      /* basis points */
  bool holdout;                        /* popularity only */
  char bundle[256];                    /* "" = the main bundle */
  size_t n_set;
  char *set_key[EXP_MAX_SETTINGS], *set_value[EXP_MAX_SETTINGS]; /* owned */
} exp_arm;

typedef struct exp_layer {
  char name[EXP_NAME_MAX + 1];
  char salt[EXP_SALT_MAX + 1];
  exp_unit unit;
  bool stopped;
  int control;                         /* index of the control arm */
  size_t n_arms;
  exp_arm arms[EXP_MAX_ARMS];
} exp_layer;

typedef struct experiments {
  size_t n_layers;
  exp_layer layers[EXP_MAX_LAYERS];
} experiments;

/* Parses the file at 'path' whole. Returns 0 with *out owned by the caller
 * (experiments_free), or REC_EINVAL with 'err' naming file:line (or "file:
 * ..." for a rule over the whole file: a layer without salt or arms, shares
 * over 10000, an unknown control arm), REC_EIO, REC_ENOMEM. Ranking keys are
 * checked by exp_compile, against the settings they apply to. */
int  experiments_load(const char *path, experiments **out, rec_error *err);
/* The same from text in memory ('name' stands for the file in errors). */
int  experiments_parse(const char *text, size_t len, const char *name, experiments **out, rec_error *err);
int  experiments_copy(const experiments *e, experiments **out);   /* 0 or REC_ENOMEM */
void experiments_free(experiments *e);                            /* NULL is a no-op */
/* The layer named 'name', or -1; the arm of layer 'l' named 'name', or -1. */
int  experiments_layer(const experiments *e, const char *name);
int  experiments_arm(const exp_layer *l, const char *name);
/* Sets arm 'a' of layer 'l' to 'share' basis points: REC_EINVAL (err says
 * why) when the layer's shares would pass 10000; nothing changes then. */
int  experiments_set_share(experiments *e, int l, int a, uint32_t share, rec_error *err);
const char *exp_unit_name(exp_unit u);                             /* "user", "session" */

/* A unit's bucket in a layer with 'salt': 0 .. EXP_BP - 1. */
uint32_t exp_bucket(const char *salt, const char *unit, size_t len);
/* The arm of 'l' whose range holds 'bucket', or -1 (a stopped layer: -1). */
int  exp_arm_of(const exp_layer *l, uint32_t bucket);

typedef struct exp_plan exp_plan;

/* Compiles 'e' (copied) against 'base' (cloned): every arm's settings are
 * applied to the base in layer order for every combination of overriding
 * arms and checked like a settings file. REC_EINVAL names the layer, arm and
 * key; more than EXP_MAX_COMBOS combinations, or bundle arms in two layers,
 * are refused too. */
int  exp_compile(const experiments *e, const rank_config *base, exp_plan **out, rec_error *err);
void exp_plan_free(exp_plan *p);                                   /* NULL is a no-op */
const experiments *exp_plan_experiments(const exp_plan *p);
const rank_config *exp_plan_base(const exp_plan *p);

/* One request's assignment: arm[l] per layer (-1: none). 'session' may be
 * NULL or empty: session-unit layers then use the user id. */
typedef struct exp_assignment {
  int arm[EXP_MAX_LAYERS];
  size_t n_layers;
  const rank_config *cfg;              /* the settings its arms make */
  bool holdout;                        /* an arm is a holdout: popularity only */
  const char *bundle;                  /* an arm's bundle name, or NULL */
} exp_assignment;
void exp_assign(const exp_plan *p, const char *user, size_t user_len, const char *session,
                size_t session_len, exp_assignment *out);
#endif
