/* server/app_experiments.c - the experiments file in the serving state:
 * the resident bundles its arms name, the runtime changes kept in the
 * state file, and ControlExperiment. See app.h.
 *
 * The state file holds one line per change, appended and fsync'd before
 * the change serves:
 *   TIME_MS <TAB> WHO <TAB> LAYER <TAB> SALT <TAB> ACTION <TAB> ARM <TAB> SHARE
 * At each load the changes are replayed over the experiments file in
 * order; one whose layer now has another salt (a new experiment), or
 * whose layer or arm is gone, lapses and is logged. A torn last line
 * (a crash mid-append) is skipped. */
#include "server/app.h"
#include "common/clock.h"
#include "common/log.h"
#include "server/bundle_root.h"
#include "server/metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The resident bundle for 'name': one 'cur' holds at the same real path, or a new load. */
static int resident(app *a, app_ranking *r, const app_ranking *cur, const char *name, rec_error *err) {
  for (size_t i = 0; i < r->n_res; i++)
    if (strcmp(r->res[i].name, name) == 0) return 0;
  if (!a->bundle_root[0])
    return rec_fail(err, REC_EINVAL, "experiments: arm bundle '%s' needs a bundle root (--bundle_root)", name);
  app_resident *res = realloc(r->res, (r->n_res + 1) * sizeof *res);
  if (!res) return rec_fail(err, REC_ENOMEM, "out of memory");
  r->res = res;
  app_resident *x = &res[r->n_res];
  memset(x, 0, sizeof *x);
  snprintf(x->name, sizeof x->name, "%s", name);
  rec_error e2 = {0};
  if (bundle_root_resolve(a->bundle_root, name, x->real, sizeof x->real, &e2))
    return rec_fail(err, REC_EINVAL, "experiments: arm bundle: %s", e2.msg);
  for (size_t i = 0; cur && i < cur->n_res; i++)
    if (strcmp(cur->res[i].real, x->real) == 0) {
      x->b = bundle_ref(cur->res[i].b);
      r->n_res++;
      return 0;
    }
  double recall = 1;
  int rc = bundle_load(x->real, &x->b, &e2);
  if (!rc) rc = bundle_check_recall(x->b, 32, 10, 0.9, &recall, &e2);
  if (!rc && x->b->partition)
    rc = rec_fail(&e2, REC_EINVAL, "it holds only shard %u/%u of its items (recctl shard); an arm needs a whole bundle",
                  x->b->shard, x->b->shards);
  if (rc) {
    bundle_unref(x->b);
    return rec_fail(err, rc == REC_EIO ? REC_EINVAL : rc, "experiments: arm bundle '%s': %s", name, e2.msg);
  }
  LOG_INFO("arm bundle loaded", "name=%s version=%s items=%zu smoke_recall=%.3f", name, x->b->version,
           x->b->catalog->count, recall);
  r->n_res++;
  return 0;
}

int app_exp_prepare(app *a, app_ranking *r, const app_ranking *cur, experiments **out, rec_error *err) {
  experiments *e;
  int rc = experiments_load(a->cfg->experiments, &e, err);
  if (rc) return rc;
  for (size_t l = 0; !rc && l < e->n_layers; l++)
    for (size_t k = 0; !rc && k < e->layers[l].n_arms; k++) {
      const exp_arm *arm = &e->layers[l].arms[k];
      if (!arm->bundle[0]) continue;
      if (a->cfg->role != REC_ROLE_ALL)
        rc = rec_fail(err, REC_EINVAL, "%s: layer %s arm %s: a bundle arm needs role=all (the shards serve one "
                      "bundle); canary a whole ranking tier behind the gateway instead", a->cfg->experiments,
                      e->layers[l].name, arm->name);
      else if (a->live)
        rc = rec_fail(err, REC_EINVAL, "%s: layer %s arm %s: bundle arms are not served with --catalog_log (the "
                      "live catalog applies to the main bundle only)", a->cfg->experiments, e->layers[l].name,
                      arm->name);
      else
        rc = resident(a, r, cur, arm->bundle, err);
    }
  if (rc) {
    experiments_free(e);
    return rc;
  }
  *out = e;
  return 0;
}

/* ---- the state file ---- */

/* 'in' with tabs, line ends and anything unprintable made '?'. */
static void clean(char *out, size_t cap, const char *in) {
  snprintf(out, cap, "%s", in ? in : "");
  for (char *p = out; *p; p++)
    if ((unsigned char)*p < 0x20 || (unsigned char)*p == 0x7f) *p = '?';
}

static const char *const ACTIONS[] = {"", "share", "stop", "resume"};

/* Applies 'c' to 'e'. 0, or why not in 'err'. */
static int apply(experiments *e, const exp_change *c, rec_error *err) {
  int l = experiments_layer(e, c->layer);
  if (l < 0) return rec_fail(err, REC_ENOTFOUND, "no experiment named '%s'", c->layer);
  exp_layer *ly = &e->layers[l];
  if (strcmp(ly->salt, c->salt) != 0)
    return rec_fail(err, REC_ENOTFOUND, "experiment %s has a new salt", c->layer);
  if (strcmp(c->action, "stop") == 0) {
    ly->stopped = true;
    return 0;
  }
  if (strcmp(c->action, "resume") == 0) {
    ly->stopped = false;
    return 0;
  }
  int k = experiments_arm(ly, c->arm);
  if (k < 0) return rec_fail(err, REC_ENOTFOUND, "experiment %s has no arm '%s'", c->layer, c->arm);
  return experiments_set_share(e, l, k, c->share, err);
}

/* Splits one state-file line; false for a line that is not one. */
static bool parse_change(char *line, exp_change *c) {
  char *f[7];
  size_t n = 0;
  for (char *p = line; n < 7; n++) {
    f[n] = p;
    char *tab = strchr(p, '\t');
    if (!tab) {
      n++;
      break;
    }
    *tab = '\0';
    p = tab + 1;
  }
  if (n != 7) return false;
  char *end;
  memset(c, 0, sizeof *c);
  c->time_ms = strtoll(f[0], &end, 10);
  if (*end) return false;
  long share = strtol(f[6], &end, 10);
  if (*end || share < 0 || share > EXP_BP) return false;
  c->share = (uint32_t)share;
  if (strlen(f[2]) > EXP_NAME_MAX || strlen(f[3]) > EXP_SALT_MAX || strlen(f[5]) > EXP_NAME_MAX ||
      (strcmp(f[4], "share") && strcmp(f[4], "stop") && strcmp(f[4], "resume")))
    return false;
  clean(c->who, sizeof c->who, f[1]);
  snprintf(c->layer, sizeof c->layer, "%s", f[2]);
  snprintf(c->salt, sizeof c->salt, "%s", f[3]);
  snprintf(c->action, sizeof c->action, "%s", f[4]);
  snprintf(c->arm, sizeof c->arm, "%s", f[5]);
  return true;
}

static int add_change(app_ranking *r, const exp_change *c) {
  exp_change *x = realloc(r->changes, (r->n_changes + 1) * sizeof *x);
  if (!x) return REC_ENOMEM;
  r->changes = x;
  x[r->n_changes++] = *c;
  return 0;
}

/* Replays the state file over 'e', recording the changes that hold in 'r'. */
static int replay_state(const app *a, app_ranking *r, experiments *e, rec_error *err) {
  FILE *fp = fopen(a->cfg->experiments_state, "r");
  if (!fp) {
    if (errno == ENOENT) return 0;
    return rec_fail(err, REC_EIO, "%s: %s", a->cfg->experiments_state, strerror(errno));
  }
  char *line = NULL;
  size_t cap = 0;
  ssize_t len;
  long lineno = 0;
  int rc = 0;
  while (!rc && (len = getline(&line, &cap, fp)) >= 0) {
    lineno++;
    exp_change c;
    bool whole = len > 0 && line[len - 1] == '\n';
    if (whole) line[len - 1] = '\0';
    if (!whole || !parse_change(line, &c)) {
      LOG_WARN("experiments state: line skipped", "file=%s line=%ld reason=\"%s\"", a->cfg->experiments_state,
               lineno, whole ? "not a change" : "cut short");
      continue;
    }
    rec_error why;
    if (apply(e, &c, &why)) {
      char q[600];
      LOG_WARN("experiments state: change lapsed", "file=%s line=%ld reason=\"%s\"", a->cfg->experiments_state,
               lineno, rec_log_quote(q, sizeof q, why.msg, strlen(why.msg)));
      continue;
    }
    if (add_change(r, &c)) rc = rec_fail(err, REC_ENOMEM, "out of memory");
  }
  free(line);
  fclose(fp);
  return rc;
}

/* The directory holding 'path' made durable (a new file's name in it). */
static int sync_dir(const char *path) {
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash == dir) slash[1] = '\0';
  else if (slash) *slash = '\0';
  else snprintf(dir, sizeof dir, ".");
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return -1;
  int rc = fsync(fd);
  close(fd);
  return rc;
}

/* Appends 'c' to the state file and makes it durable. A torn last line (a
 * crash or a failed write mid-append) is ended first, so this change is a
 * line of its own and replays. */
static int append_state(const app *a, const exp_change *c, rec_error *err) {
  const char *path = a->cfg->experiments_state;
  int fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0)
    return rec_fail(err, REC_EUNAVAIL, "experiments state file %s cannot be opened (%s); nothing changed", path,
                    strerror(errno));
  char line[1024];
  size_t n = 0;
  off_t size = lseek(fd, 0, SEEK_END);
  char last = '\n';
  if (size > 0 && pread(fd, &last, 1, size - 1) != 1) last = '\n';
  if (last != '\n') line[n++] = '\n';
  int m = snprintf(line + n, sizeof line - n, "%lld\t%s\t%s\t%s\t%s\t%s\t%u\n", (long long)c->time_ms, c->who,
                   c->layer, c->salt, c->action, c->arm, c->share);
  int rc = 0;
  if (m < 0 || (size_t)m >= sizeof line - n || write(fd, line, n + (size_t)m) != (ssize_t)(n + (size_t)m) ||
      fsync(fd) != 0 || (size == 0 && sync_dir(path) != 0))
    rc = rec_fail(err, REC_EUNAVAIL, "experiments state file %s: write failed (%s); nothing changed", path,
                  strerror(errno));
  close(fd);
  return rc;
}

/* Compiles 'e' (taken over) into r->plan with each arm's metric slot. */
static int compile(app_ranking *r, experiments *e, rec_error *err) {
  int rc = exp_compile(e, r->cfg, &r->plan, err);
  for (size_t l = 0; !rc && l < e->n_layers; l++)
    for (size_t k = 0; !rc && k < EXP_MAX_ARMS; k++) {
      const exp_layer *ly = &e->layers[l];
      r->slot[l][k] = k < ly->n_arms ? metrics_arm_slot(ly->name, ly->salt, ly->arms[k].name) : -1;
      if (k < ly->n_arms && r->slot[l][k] < 0)
        rc = rec_fail(err, REC_EINVAL, "experiments: layer %s arm %s would be arm number %d counted since recd "
                      "started (each salt counts anew), past the %d that /metrics and the report hold; restart recd",
                      ly->name, ly->arms[k].name, METRICS_MAX_ARMS + 1, METRICS_MAX_ARMS);
    }
  experiments_free(e);
  return rc;
}

int app_exp_finish(app *a, app_ranking *r, experiments *e, rec_error *err) {
  int rc = replay_state(a, r, e, err);
  if (rc) {
    experiments_free(e);
    return rc;
  }
  return compile(r, e, err);
}

/* A new snapshot: 'cur' with experiments 'e' and one more change. */
static int rebuild(const app_ranking *cur, experiments *e, const exp_change *c, app_ranking **out, rec_error *err) {
  app_ranking *r = calloc(1, sizeof *r);
  if (!r) {
    experiments_free(e);
    return rec_fail(err, REC_ENOMEM, "out of memory");
  }
  atomic_init(&r->refs, 1);
  int rc = rank_config_clone(cur->cfg, &r->cfg) ? REC_ENOMEM : 0;
  if (!rc && cur->n_res && !(r->res = malloc(cur->n_res * sizeof *r->res))) rc = REC_ENOMEM;
  for (size_t i = 0; !rc && i < cur->n_res; i++) {
    r->res[i] = cur->res[i];
    bundle_ref(r->res[i].b);
    r->n_res++;
  }
  for (size_t i = 0; !rc && i < cur->n_changes; i++) rc = add_change(r, &cur->changes[i]);
  if (!rc) rc = add_change(r, c);
  if (rc) {
    experiments_free(e);
    app_ranking_unref(r);
    return rec_fail(err, REC_ENOMEM, "out of memory");
  }
  if ((rc = compile(r, e, err))) {
    app_ranking_unref(r);
    return rc;
  }
  *out = r;
  return 0;
}

int app_control_experiment(app *a, const char *layer, int action, const char *arm, uint32_t share, const char *who,
                           rec_error *err) {
  if (action < 1 || action > 3)
    return rec_fail(err, REC_EINVAL, "action must be CONTROL_ACTION_SET_SHARE, _STOP or _RESUME");
  pthread_mutex_lock(&a->exp_mu);
  app_ranking *cur = app_acquire_ranking(a), *next = NULL;
  experiments *e = NULL;
  exp_change c = {.time_ms = rec_wall_ms(), .share = share};
  int rc = 0;
  if (!cur || !cur->plan) {
    rc = rec_fail(err, REC_EPRECOND, "this recd runs without --experiments");
  } else if (experiments_copy(exp_plan_experiments(cur->plan), &e)) {
    rc = rec_fail(err, REC_ENOMEM, "out of memory");
  } else {
    int l = experiments_layer(e, layer);
    if (l < 0) {
      rc = rec_fail(err, REC_ENOTFOUND, "no experiment named '%.64s'", layer);
    } else {
      clean(c.who, sizeof c.who, who ? who : "anonymous");
      snprintf(c.layer, sizeof c.layer, "%s", e->layers[l].name);
      snprintf(c.salt, sizeof c.salt, "%s", e->layers[l].salt);
      snprintf(c.action, sizeof c.action, "%s", ACTIONS[action]);
      if (action == 1) {
        int k = experiments_arm(&e->layers[l], arm);
        if (k < 0) rc = rec_fail(err, REC_ENOTFOUND, "experiment %s has no arm '%.64s'", c.layer, arm);
        else snprintf(c.arm, sizeof c.arm, "%s", e->layers[l].arms[k].name);
      }
      if (!rc) rc = apply(e, &c, err);
    }
  }
  if (!rc) {
    rc = rebuild(cur, e, &c, &next, err); /* takes 'e' over */
    e = NULL;
  }
  if (!rc) rc = append_state(a, &c, err);
  if (!rc) {
    pthread_mutex_lock(&a->ranking_mu);
    app_ranking *old = a->ranking;
    a->ranking = next;
    pthread_mutex_unlock(&a->ranking_mu);
    app_ranking_unref(old);
    next = NULL;
    LOG_INFO("experiment changed", "who=\"%s\" experiment=%s action=%s arm=%s share_bp=%u", c.who, c.layer, c.action,
             c.arm[0] ? c.arm : "-", c.share);
  }
  pthread_mutex_unlock(&a->exp_mu);
  experiments_free(e);
  app_ranking_unref(next);
  app_ranking_unref(cur);
  return rc;
}
