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
