/* tools/offline/eval.h - `recctl eval`: offline measurement without look-ahead.
 * Trains its models through train.h; pipeline.h calls it for the holdout a
 * build records, never the reverse (train -> eval -> pipeline).
 *
 * Splits: "user" holds out each user's last 20% of interactions by time
 * (users with one interaction stay in training); "global" cuts at the time
 * below which 80% of interactions fall. Every model is trained on the
 * training side only. A test user's relevant items are the items of its test
 * interactions it had not met in training; candidates exclude its training
 * items. Users with no training interactions ("new") get popularity from
 * every model, as the server would serve them.
 *
 * Models: popularity (all-time strength, no decay), item-CF (sum of
 * neighbour similarity times strength over the user's items), ALS, two-tower,
 * and the hybrid blend 0.4 two-tower + 0.4 item-CF + 0.2 popularity of
 * per-user min-max normalised scores. Metrics at K in {10, 50, 100}, each with
 * a 95% bootstrap interval over test users, for all, new and returning users. */
#ifndef REC_EVAL_H
#define REC_EVAL_H
#include "common/err.h"
#include "tools/offline/dataset.h"
#include "tools/offline/train.h"

typedef struct eval_opts {
  build_opts b;            /* data, schema, model hyper-parameters, threads */
  const char *split;       /* "user", "global" or "both" */
  int bootstrap;           /* resamples, e.g. 1000 */
  const char *json_path;   /* NULL: no JSON file */
  const char *chart_path;  /* NULL: no chart */
  bool served;             /* the "served" row (served.h) */
  const char *ranking_config; /* its settings; NULL: recd's defaults */
} eval_opts;

/* Runs the evaluation, prints the tables on stdout, writes JSON and chart.
 * Returns 0 or a negative code with 'err' filled. */
int eval_run(const eval_opts *o, rec_error *err);

/* Recall@50 and NDCG@50 of build model 'o->model' and of popularity on the
 * per-user holdout, for the manifest of `recctl build`: on success *json is
 * {"metrics": ...}, freed by the caller with free(), and 0 is returned; else
 * a negative code (REC_ENOTFOUND: no user has enough interactions to hold
 * any out). */
int eval_holdout_summary(const dataset *d, const build_opts *o, char **json, rec_error *err);

/* Chooses the hyper-parameters of o (EASE lambda; ALS regularization and
 * alpha; two-tower temperature and epochs; those of the models trained:
 * o->model's, or with 'every_model' all; never one in o->fixed) by NDCG@50
 * on a validation split inside 'scope' (the events tuning may see, NULL:
 * all): each user's last 20% of them (users with 5 or more), the rest to
 * fit. Small fixed grids, the same whatever the machine. Writes the
 * choices into o and a JSON report (trials and choices) into *json, freed by
 * the caller; REC_ENOTFOUND when no user has enough events to validate on. */
int eval_tune(const dataset *d, const bool *scope, build_opts *o, bool every_model, char **json, rec_error *err);
/* The per-user holdout's training side (eval_holdout_summary's split). */
void eval_holdout_mask(const dataset *d, bool *train);
#endif
