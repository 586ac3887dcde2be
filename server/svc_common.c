/* server/svc_common.c - what every service needs: a hold on the serving
 * bundle and settings for the length of a call, and request ids. */
#include "server/handlers.h"
#include "server/app.h"

#include <inttypes.h>

static void release_bundle(void *b) { bundle_unref(b); }
static void release_ranking(void *r) { app_ranking_unref(r); }

int svc_acquire(rpc_ctx *ctx, const bundle **out, const rank_config **cfg) {
  const app_ranking *r;
  int rc = svc_acquire_snapshot(ctx, out, &r);
  if (!rc && cfg) *cfg = r->cfg;
  return rc;
}

int svc_acquire_snapshot(rpc_ctx *ctx, const bundle **out, const app_ranking **snap) {
  app_ranking *r = app_acquire_ranking(ctx->app);
  bundle *b = r ? app_acquire(ctx->app) : NULL;
  if (!b) {
    app_ranking_unref(r);
    return rpc_fail(ctx, REC_EUNAVAIL, "no bundle loaded yet; retry shortly");
  }
  if (rpc_on_done(ctx, release_bundle, b)) {
    bundle_unref(b);
    app_ranking_unref(r);
    return REC_ENOMEM;
  }
  if (rpc_on_done(ctx, release_ranking, r)) {
    app_ranking_unref(r);
    return REC_ENOMEM; /* the bundle's hold is already on the list */
  }
  *out = b;
  *snap = r;
  return 0;
}

char *svc_request_id(rpc_ctx *ctx, const char *given) {
  app *ap = ctx->app;
  char *id = given[0] ? (char *)given : ctx->request_id ? (char *)ctx->request_id
           : arena_printf(ctx->arena, "recd-%" PRIuFAST64, atomic_fetch_add(&ap->seq, 1) + 1);
  if (id) ctx->request_id = id; /* back to the caller as x-request-id */
  return id;
}
