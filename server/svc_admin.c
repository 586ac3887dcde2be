/* server/svc_admin.c - Admin.Status and Admin.Reload, served only on the
 * authenticated admin listener. Reload's bundle_path is a name or path
 * resolved under the bundle root (bundle_root.h). A reload loads and
 * checks a whole bundle, which takes seconds: the handler hands it to
 * whoever runs reloads off the serving threads (app.reload_start; recd's
 * libuv pool) and returns RPC_PENDING; the load's end completes the call. */
#include "server/handlers.h"
#include "common/clock.h"
#include "rec/v1/admin.pb-c.h"
#include "server/app.h"
#include "server/bundle_root.h"

#include <limits.h>
#include <string.h>

static int status(rpc_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **out) {
  (void)in;
  app *ap = ctx->app;
  Rec__V1__StatusResponse *r = arena_alloc(ctx->arena, sizeof *r);
  if (!r) return REC_ENOMEM;
  rec__v1__status_response__init(r);
  bundle *b = app_acquire(ap);
  if (b) {
    r->bundle_version = arena_strndup(ctx->arena, b->version, strlen(b->version));
    r->bundle_path = arena_strndup(ctx->arena, b->path, strlen(b->path));
    r->item_count = b->catalog->count;
    r->user_count = b->user_count;
    r->dim = (uint32_t)b->dim;
    r->catalog_generation = b->catalog->generation;
    bundle_unref(b);
    if (!r->bundle_version || !r->bundle_path) return REC_ENOMEM;
  }
  r->role = (char *)rec_role_name(ap->cfg->role);
  r->serving = ap->srv ? rpc_server_serving(ap->srv) : ctx->server && rpc_server_serving(ctx->server);
  r->uptime_seconds = (uint64_t)((rec_mono_ns() - ap->started_ns) / 1000000000);
  r->threads = (uint32_t)ap->cfg->threads;
  r->recd_version = RECD_VERSION;
  if (ap->live) r->catalog_overlay_items = live_catalog_size(ap->live);
  *out = &r->base;
  return 0;
}

const rpc_method h_status = {"/rec.v1.Admin/Status", &rec__v1__status_request__descriptor,
                             &rec__v1__status_response__descriptor, status};

/* Off the serving threads, once the load is over. */
static void on_loaded(void *arg, int rc, const char *old_v, const char *new_v, const rec_error *err) {
  rpc_ctx *ctx = arg;
  Rec__V1__ReloadResponse *r = NULL;
  if (rc) {
    ctx->err = *err;
    /* An unreadable path is the caller's to fix; the current bundle serves on. */
    rc = ctx->err.code = rc == REC_EIO ? REC_EINVAL : rc;
  } else if (!(r = arena_alloc(ctx->arena, sizeof *r))) {
    rc = REC_ENOMEM;
  } else {
    rec__v1__reload_response__init(r);
    r->previous_version = arena_strndup(ctx->arena, old_v, strlen(old_v));
    r->version = arena_strndup(ctx->arena, new_v, strlen(new_v));
    if (!r->previous_version || !r->version) rc = REC_ENOMEM;
  }
  rpc_complete(ctx, rc, rc ? NULL : &r->base);
}

static int reload(rpc_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **out) {
  const Rec__V1__ReloadRequest *q = (const Rec__V1__ReloadRequest *)in;
  app *ap = ctx->app;
  (void)out;
  const char *path = ap->cfg->bundle; /* the operator's own flag: not confined */
  if (q->bundle_path[0]) {
    char *resolved = arena_alloc(ctx->arena, PATH_MAX);
    if (!resolved) return REC_ENOMEM;
    if (!ap->bundle_root[0])
      return rpc_fail(ctx, REC_EDENIED, "this process has no bundle root; reload without bundle_path");
    int rc = bundle_root_resolve(ap->bundle_root, q->bundle_path, resolved, PATH_MAX, &ctx->err);
    if (rc) return rc;
    path = resolved;
  }
  if (!ap->reload_start)
    return rpc_fail(ctx, REC_EUNAVAIL, "this process cannot reload; restart it with the new bundle");
  int rc = ap->reload_start(ap->reload_owner, path, ctx->deadline_ns, on_loaded, ctx, &ctx->err);
  return rc ? rc : RPC_PENDING; /* on_loaded owns the call from here */
}

const rpc_method h_reload = {"/rec.v1.Admin/Reload", &rec__v1__reload_request__descriptor,
                             &rec__v1__reload_response__descriptor, reload};

/* The serving port's answer to Admin calls: they live on the admin listener. */
static int elsewhere(rpc_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **out) {
  (void)in, (void)out;
  return rpc_fail(ctx, REC_EDENIED, "Admin calls are served only on recd's admin listener "
                  "(--admin_grpc_listen, loopback by default), with a token");
}

const rpc_method h_reload_denied = {"/rec.v1.Admin/Reload", &rec__v1__reload_request__descriptor,
                                    &rec__v1__reload_response__descriptor, elsewhere};
const rpc_method h_status_denied = {"/rec.v1.Admin/Status", &rec__v1__status_request__descriptor,
                                    &rec__v1__status_response__descriptor, elsewhere};

/* ---- experiments ---- */

/* Layer 'l' of the snapshot 'r' as the API reports it. */
static Rec__V1__LayerReport *layer_report(rpc_ctx *ctx, const app_ranking *r, size_t l) {
  app *ap = ctx->app;
  arena *a = ctx->arena;
  const exp_layer *ly = &exp_plan_experiments(r->plan)->layers[l];
  Rec__V1__LayerReport *lr = arena_alloc(a, sizeof *lr);
  Rec__V1__ArmReport **arms = arena_calloc(a, ly->n_arms + 1, sizeof *arms);
  if (!lr || !arms) return NULL;
  rec__v1__layer_report__init(lr);
  lr->experiment = arena_strndup(a, ly->name, strlen(ly->name));
  lr->salt = arena_strndup(a, ly->salt, strlen(ly->salt));
  lr->unit = (char *)exp_unit_name(ly->unit);
  lr->stopped = ly->stopped;
  for (size_t k = 0; k < ly->n_arms; k++) {
    const exp_arm *arm = &ly->arms[k];
    Rec__V1__ArmReport *x = arena_alloc(a, sizeof *x);
    char **set = arena_calloc(a, arm->n_set + 1, sizeof *set);
    if (!x || !set) return NULL;
    rec__v1__arm_report__init(x);
    x->arm = arena_strndup(a, arm->name, strlen(arm->name));
    x->bundle = arena_strndup(a, arm->bundle, strlen(arm->bundle));
    x->share_bp = arm->share;
    x->control = (int)k == ly->control;
    x->holdout = arm->holdout;
    for (size_t i = 0; i < arm->n_set; i++)
      if (!(set[i] = arena_printf(a, "%s = %s", arm->set_key[i], arm->set_value[i]))) return NULL;
    x->settings = set;
    x->n_settings = arm->n_set;
    arm_outcomes o;
    attribution_outcomes(ap->attr, r->slot[l][k], &o);
    x->slates = o.slates;
    x->items_shown = o.items;
    x->clicks = o.clicks;
    x->clicked_slates = o.clicked_slates;
    x->add_to_carts = o.carts;
    x->purchases = o.purchases;
    x->purchased_slates = o.purchased_slates;
    x->revenue = o.revenue;
    x->revenue_sq = o.revenue_sq;
    if (!x->arm || !x->bundle) return NULL;
    arms[k] = x;
  }
  lr->arms = arms;
  lr->n_arms = ly->n_arms;
  return lr->experiment && lr->salt ? lr : NULL;
}

static void release_snapshot(void *r) { app_ranking_unref(r); }

/* The current snapshot, held until the reply is packed. */
static int hold_snapshot(rpc_ctx *ctx, app_ranking **out) {
  app_ranking *r = app_acquire_ranking(ctx->app);
  if (!r) return rpc_fail(ctx, REC_EUNAVAIL, "still loading; retry shortly");
  if (rpc_on_done(ctx, release_snapshot, r)) {
    app_ranking_unref(r);
    return REC_ENOMEM;
  }
  *out = r;
  return 0;
}

static int experiments_report(rpc_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **out) {
  (void)in;
  app *ap = ctx->app;
  Rec__V1__ExperimentsResponse *r = arena_alloc(ctx->arena, sizeof *r);
  if (!r) return REC_ENOMEM;
  rec__v1__experiments_response__init(r);
  r->file = (char *)ap->cfg->experiments;
  app_ranking *snap;
  int rc;
  if (!ap->cfg->experiments[0]) {
    *out = &r->base;
    return 0;
  }
  if ((rc = hold_snapshot(ctx, &snap))) return rc;
  if (!snap->plan) {
    *out = &r->base;
    return 0;
  }
  const experiments *e = exp_plan_experiments(snap->plan);
  r->layers = arena_calloc(ctx->arena, e->n_layers + 1, sizeof *r->layers);
  r->changes = arena_calloc(ctx->arena, snap->n_changes + 1, sizeof *r->changes);
  if (!r->layers || !r->changes) return REC_ENOMEM;
  for (size_t l = 0; l < e->n_layers; l++)
    if (!(r->layers[r->n_layers++] = layer_report(ctx, snap, l))) return REC_ENOMEM;
  for (size_t i = 0; i < snap->n_changes; i++) {
    const exp_change *c = &snap->changes[i];
    Rec__V1__ExperimentChange *x = arena_alloc(ctx->arena, sizeof *x);
    if (!x) return REC_ENOMEM;
    rec__v1__experiment_change__init(x);
    x->time_unix_ms = c->time_ms;
    x->who = (char *)c->who;
    x->experiment = (char *)c->layer;
    x->action = (char *)c->action;
    x->arm = (char *)c->arm;
    x->share_bp = c->share;
    r->changes[r->n_changes++] = x;
  }
  *out = &r->base;
  return 0;
}

const rpc_method h_experiments = {"/rec.v1.Admin/Experiments", &rec__v1__experiments_request__descriptor,
                                  &rec__v1__experiments_response__descriptor, experiments_report};

static int control_experiment(rpc_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **out) {
  const Rec__V1__ControlExperimentRequest *q = (const Rec__V1__ControlExperimentRequest *)in;
  app *ap = ctx->app;
  if (!ap->cfg->experiments[0]) return rpc_fail(ctx, REC_EPRECOND, "this recd runs without --experiments");
  if (!q->experiment[0]) return rpc_fail(ctx, REC_EINVAL, "experiment is required");
  if (q->action == REC__V1__CONTROL_ACTION__CONTROL_ACTION_SET_SHARE && !q->arm[0])
    return rpc_fail(ctx, REC_EINVAL, "arm is required to set a share");
  if (q->share_bp > EXP_BP) return rpc_fail(ctx, REC_EINVAL, "share_bp must be 0 to %d, got %u", EXP_BP, q->share_bp);
  int rc = app_control_experiment(ap, q->experiment, (int)q->action, q->arm, q->share_bp, ctx->identity, &ctx->err);
  if (rc) return ctx->err.code = rc;
  app_ranking *snap;
  if ((rc = hold_snapshot(ctx, &snap))) return rc;
  int l = snap->plan ? experiments_layer(exp_plan_experiments(snap->plan), q->experiment) : -1;
  Rec__V1__ControlExperimentResponse *r = arena_alloc(ctx->arena, sizeof *r);
  if (!r) return REC_ENOMEM;
  rec__v1__control_experiment_response__init(r);
  if (l >= 0 && !(r->layer = layer_report(ctx, snap, (size_t)l))) return REC_ENOMEM;
  *out = &r->base;
  return 0;
}

const rpc_method h_control_experiment = {"/rec.v1.Admin/ControlExperiment",
                                         &rec__v1__control_experiment_request__descriptor,
                                         &rec__v1__control_experiment_response__descriptor, control_experiment};
const rpc_method h_experiments_denied = {"/rec.v1.Admin/Experiments", &rec__v1__experiments_request__descriptor,
                                         &rec__v1__experiments_response__descriptor, elsewhere};
const rpc_method h_control_experiment_denied = {"/rec.v1.Admin/ControlExperiment",
                                                &rec__v1__control_experiment_request__descriptor,
                                                &rec__v1__control_experiment_response__descriptor, elsewhere};
