/* server/app.c - see app.h. */
#include "server/app.h"
#include "common/clock.h"
#include "common/fileio.h"
#include "common/log.h"
#include "server/bundle_root.h"
#include "server/metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void app_init(app *a, const recd_config *cfg) {
  memset(a, 0, sizeof *a);
  a->cfg = cfg;
  a->started_ns = rec_mono_ns();
  atomic_init(&a->seq, 0);
  atomic_init(&a->events_applied, 0);
  pthread_mutex_init(&a->mu, NULL);
  pthread_mutex_init(&a->reload_mu, NULL);
  pthread_mutex_init(&a->ranking_mu, NULL);
  pthread_mutex_init(&a->exp_mu, NULL);
  a->current = NULL;
  a->ranking = NULL;
}

void app_destroy(app *a) {
  bundle_unref(a->current);
  a->current = NULL;
  pthread_mutex_destroy(&a->mu);
  pthread_mutex_destroy(&a->reload_mu);
  app_ranking_unref(a->ranking);
  pthread_mutex_destroy(&a->ranking_mu);
  pthread_mutex_destroy(&a->exp_mu);
  attribution_free(a->attr);
  a->attr = NULL;
}

bundle *app_acquire(app *a) {
  pthread_mutex_lock(&a->mu);
  bundle *b = a->current ? bundle_ref(a->current) : NULL;
  pthread_mutex_unlock(&a->mu);
  return b;
}

void app_swap(app *a, bundle *b) {
  pthread_mutex_lock(&a->mu);
  bundle *old = a->current;
  a->current = b;
  pthread_mutex_unlock(&a->mu);
  bundle_unref(old);
}

app_ranking *app_acquire_ranking(app *a) {
  pthread_mutex_lock(&a->ranking_mu);
  app_ranking *r = a->ranking;
  if (r) atomic_fetch_add(&r->refs, 1);
  pthread_mutex_unlock(&a->ranking_mu);
  return r;
}

static void ranking_free(app_ranking *r) {
  if (!r) return;
  exp_plan_free(r->plan);
  for (size_t i = 0; i < r->n_res; i++) bundle_unref(r->res[i].b);
  free(r->res);
  free(r->changes);
  rank_config_free(r->cfg);
  free(r);
}

void app_ranking_unref(app_ranking *r) {
  if (!r || atomic_fetch_sub(&r->refs, 1) != 1) return;
  ranking_free(r);
}

const bundle *app_resident_bundle(const app_ranking *r, const char *name) {
  for (size_t i = 0; i < r->n_res; i++)
    if (strcmp(r->res[i].name, name) == 0) return r->res[i].b;
  return NULL;
}

/* Reads the ranking settings file (or the defaults) and the experiments
 * file with the bundles its arms name into a new reference, not yet
 * compiled (*e: the experiments, or NULL without). */
static int load_ranking(app *a, app_ranking **out, experiments **e, rec_error *err) {
  *e = NULL;
  app_ranking *r = calloc(1, sizeof *r);
  if (!r) return rec_fail(err, REC_ENOMEM, "out of memory");
  atomic_init(&r->refs, 1);
  int rc = rank_config_load(a->cfg->ranking_config[0] ? a->cfg->ranking_config : NULL, &r->cfg, err);
  uint64_t bytes;
  if (!rc && a->cfg->ranking_config[0]) rc = rec_hash_file(a->cfg->ranking_config, &r->settings_hash, &bytes, err);
  if (!rc && a->cfg->experiments[0]) rc = rec_hash_file(a->cfg->experiments, &r->experiments_hash, &bytes, err);
  if (!rc && a->cfg->experiments[0]) {
    app_ranking *cur = app_acquire_ranking(a);
    rc = app_exp_prepare(a, r, cur, e, err);
    app_ranking_unref(cur);
  }
  if (rc) {
    ranking_free(r);
    return rc == REC_EIO ? REC_EINVAL : rc;
  }
  *out = r;
  return 0;
}

int app_reload(app *a, const char *path, char old_v[REC_ID_MAX + 1], char new_v[REC_ID_MAX + 1],
               rec_error *err) {
  pthread_mutex_lock(&a->reload_mu);
  int64_t t0 = rec_mono_ns();
  bundle *old = app_acquire(a), *b = NULL;
  snprintf(old_v, REC_ID_MAX + 1, "%s", old ? old->version : "");
  bundle_unref(old);
  double recall = 1;
  app_ranking *ranking = NULL;
  experiments *exps = NULL;
  int rc = load_ranking(a, &ranking, &exps, err);
  /* A path other than --bundle came from Admin.Reload, resolved under the
   * bundle root when asked; resolve it again now, at load time, in case a
   * symlink was swapped in meanwhile. */
  char real[4096];
  if (!rc && strcmp(path, a->cfg->bundle) != 0) {
    if (!a->bundle_root[0]) rc = rec_fail(err, REC_EDENIED, "this process has no bundle root");
    else if (!(rc = bundle_root_resolve(a->bundle_root, path, real, sizeof real, err))) path = real;
  }
  if (!rc) rc = bundle_load(path, &b, err);
  if (!rc) rc = bundle_check_recall(b, 32, 10, 0.9, &recall, err);
  if (!rc && a->cfg->role == REC_ROLE_RETRIEVAL)
    rc = bundle_set_shard(b, a->cfg->shard_index, a->cfg->shard_count, err);
  else if (!rc && b->partition) /* it would serve a part of the catalog as if it were all of it */
    rc = rec_fail(err, REC_EMISMATCH, "%s holds only shard %u/%u of its bundle's items: serve it with "
                  "--role=retrieval --shard=%u/%u, and give the ranking tier the whole bundle", path, b->shard,
                  b->shards, b->shard, b->shards);
  /* From the state file's read to the swap, no runtime change can slip in
   * between and be lost. */
  pthread_mutex_lock(&a->exp_mu);
  if (!rc && exps) {
    rc = app_exp_finish(a, ranking, exps, err); /* takes 'exps' over */
    exps = NULL;
  }
  if (!rc && a->live) rc = live_catalog_set_base(a->live, b, err); /* publishes b with the catalog's changes */
  if (rc) {
    pthread_mutex_unlock(&a->exp_mu);
    experiments_free(exps);
    char qpath[600], qerr[600];
    LOG_ERROR("bundle refused", "path=\"%s\" error=\"%s\" serving=%s", rec_log_quote(qpath, sizeof qpath, path, strlen(path)),
              err ? rec_log_quote(qerr, sizeof qerr, err->msg, strlen(err->msg)) : "", old_v[0] ? old_v : "none");
    bundle_unref(b);
    app_ranking_unref(ranking);
    metrics_reload(0);
    pthread_mutex_unlock(&a->reload_mu);
    return rc;
  }
  snprintf(new_v, REC_ID_MAX + 1, "%s", b->version);
  LOG_INFO("bundle loaded", "version=%s previous=%s items=%zu users=%zu dim=%zu index=%s "
           "smoke_recall=%.3f ms=%lld", b->version, old_v[0] ? old_v : "none", b->catalog->count,
           b->user_count, b->dim, b->index_type, recall, (long long)((rec_mono_ns() - t0) / 1000000));
  if (a->live) bundle_unref(b); /* the live catalog published its view of it above */
  else app_swap(a, b);
  pthread_mutex_lock(&a->ranking_mu);
  app_ranking *old_ranking = a->ranking;
  a->ranking = ranking;
  pthread_mutex_unlock(&a->ranking_mu);
  pthread_mutex_unlock(&a->exp_mu);
  app_ranking_unref(old_ranking);
  metrics_reload(1);
  pthread_mutex_unlock(&a->reload_mu);
  return 0;
}
