/* server/rpc_health.c - grpc.health.v1.Health, built into the RPC layer:
 * Check answers from the current status; Watch keeps a server stream open
 * and sends the status again whenever it changes. One mutex guards the
 * status and the list of open watches; a watch is freed when its last
 * outstanding batch (send or close) has completed. */
#include "server/rpc_internal.h"
#include "common/log.h"
#include "grpc/health/v1/health.pb-c.h"

#include <grpc/byte_buffer.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

typedef Grpc__Health__V1__HealthCheckRequest hc_req;
typedef Grpc__Health__V1__HealthCheckResponse hc_resp;

struct rpc_watch {
  rpc_tag send_tag;            /* TAG_WATCH_SEND */
  rpc_tag close_tag;           /* TAG_WATCH_CLOSE */
  grpc_call *call;
  bool known;                  /* the requested service exists */
  bool sent_initial_md;
  bool busy;                   /* a send batch is in flight */
  bool closed;                 /* the call is over */
  int refs;                    /* batches in flight */
  int last_sent;               /* status in the last message, -1 before the first */
  int cancelled;
  grpc_byte_buffer *out;
  rpc_watch *prev, *next;
};

static int check(rpc_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **out);

const rpc_method rpc__health_check = {
    "/grpc.health.v1.Health/Check", &grpc__health__v1__health_check_request__descriptor,
    &grpc__health__v1__health_check_response__descriptor, check};
const rpc_method rpc__health_watch = {
    "/grpc.health.v1.Health/Watch", &grpc__health__v1__health_check_request__descriptor,
    &grpc__health__v1__health_check_response__descriptor, NULL};

/* "/rec.v1.Ranking/Recommend" -> "rec.v1.Ranking", or NULL if malformed. */
static char *service_of(const char *path) {
  const char *slash = strrchr(path, '/');
  if (path[0] != '/' || !slash || slash == path) return NULL;
  return strndup(path + 1, (size_t)(slash - path - 1));
}

int rpc__health_init(rpc_health *h, const rpc_method *const *methods, size_t n) {
  memset(h, 0, sizeof *h);
  pthread_mutex_init(&h->mu, NULL);
  h->services = calloc(n + 2, sizeof *h->services);
  if (!h->services) return REC_ENOMEM;
  h->services[h->n_services++] = strdup("");
  h->services[h->n_services++] = strdup("grpc.health.v1.Health");
  for (size_t i = 0; i < n; i++) {
    char *svc = service_of(methods[i]->path);
    bool seen = false;
    for (size_t j = 0; svc && j < h->n_services; j++) seen |= strcmp(h->services[j], svc) == 0;
    if (svc && !seen) h->services[h->n_services++] = svc;
    else free(svc);
  }
  return 0;
}

void rpc__health_destroy(rpc_health *h) {
  for (size_t i = 0; i < h->n_services; i++) free((char *)h->services[i]);
  free(h->services);
  h->services = NULL;
  pthread_mutex_destroy(&h->mu);
}

static bool known(const rpc_health *h, const char *svc) {
  for (size_t i = 0; i < h->n_services; i++)
    if (strcmp(h->services[i], svc) == 0) return true;
  return false;
}

/* Caller holds h->mu. */
static int status_of(const rpc_health *h, bool svc_known) {
  if (!svc_known) return GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN;
  return h->serving ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
                    : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
}

static int check(rpc_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **out) {
  const hc_req *req = (const hc_req *)in;
  rpc_health *h = rpc__server_health(ctx->server);
  if (!known(h, req->service))
    return rpc_fail(ctx, REC_ENOTFOUND, "unknown service '%s'", req->service);
  hc_resp *r = arena_alloc(ctx->arena, sizeof *r);
  if (!r) return REC_ENOMEM;
  grpc__health__v1__health_check_response__init(r);
  pthread_mutex_lock(&h->mu);
  r->status = status_of(h, true);
  pthread_mutex_unlock(&h->mu);
  *out = &r->base;
  return 0;
}

/* Starts sending the current status. Caller holds h->mu; w is not busy. */
static void send_status(rpc_health *h, rpc_watch *w) {
  hc_resp r = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
  r.status = status_of(h, w->known);
  unsigned char buf[16];
  size_t len = grpc__health__v1__health_check_response__pack(&r, buf);
  grpc_slice s = grpc_slice_from_copied_buffer((const char *)buf, len);
  w->out = grpc_raw_byte_buffer_create(&s, 1);
  grpc_slice_unref(s);
  grpc_op ops[2];
  size_t n = 0;
  memset(ops, 0, sizeof ops);
  if (!w->sent_initial_md) ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
  ops[n].op = GRPC_OP_SEND_MESSAGE;
  ops[n++].data.send_message.send_message = w->out;
  grpc_call *call = w->call;
  rpc__tag_release(&w->send_tag);
  if (grpc_call_start_batch(call, ops, n, &w->send_tag, NULL) != GRPC_CALL_OK) {
    LOG_ERROR("health watch send failed", "%s", "");
    grpc_byte_buffer_destroy(w->out);
    w->out = NULL;
    return;
  }
  w->sent_initial_md = true;
  w->busy = true;
  w->refs++;
  w->last_sent = r.status;
}

void rpc__health_watch_start(rpc_health *h, grpc_call *call, const ProtobufCMessage *req) {
  rpc_watch *w = calloc(1, sizeof *w);
  if (!w) {
    grpc_call_cancel_with_status(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory", NULL);
    grpc_call_unref(call);
    return;
  }
  w->send_tag.kind = TAG_WATCH_SEND;
  w->close_tag.kind = TAG_WATCH_CLOSE;
  w->call = call;
  w->last_sent = -1;
  pthread_mutex_lock(&h->mu);
  w->known = known(h, ((const hc_req *)req)->service);
  grpc_op op;
  memset(&op, 0, sizeof op);
  op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
  op.data.recv_close_on_server.cancelled = &w->cancelled;
  rpc__tag_release(&w->close_tag);
  if (grpc_call_start_batch(call, &op, 1, &w->close_tag, NULL) != GRPC_CALL_OK) {
    pthread_mutex_unlock(&h->mu);
    grpc_call_unref(call);
    free(w);
    return;
  }
  w->refs = 1;
  w->next = h->watches;
  if (h->watches) h->watches->prev = w;
  h->watches = w;
  send_status(h, w);
  pthread_mutex_unlock(&h->mu);
}

static void watch_free(rpc_watch *w) {
  if (w->out) grpc_byte_buffer_destroy(w->out);
  grpc_call_unref(w->call);
  free(w);
}

void rpc__health_watch_event(rpc_health *h, rpc_tag *tag, bool ok) {
  rpc_watch *w;
  pthread_mutex_lock(&h->mu);
  if (tag->kind == TAG_WATCH_SEND) {
    w = (rpc_watch *)((char *)tag - offsetof(rpc_watch, send_tag));
    grpc_byte_buffer_destroy(w->out);
    w->out = NULL;
    w->busy = false;
    /* The status may have changed while this message was on its way. */
    if (ok && !w->closed && status_of(h, w->known) != w->last_sent) send_status(h, w);
  } else {
    w = (rpc_watch *)((char *)tag - offsetof(rpc_watch, close_tag));
    w->closed = true;
    if (w->prev) w->prev->next = w->next;
    else h->watches = w->next;
    if (w->next) w->next->prev = w->prev;
  }
  int refs = --w->refs;
  pthread_mutex_unlock(&h->mu);
  if (refs == 0) watch_free(w);
}

void rpc__health_set(rpc_health *h, bool serving) {
  pthread_mutex_lock(&h->mu);
  h->serving = serving;
  for (rpc_watch *w = h->watches; w; w = w->next)
    if (!w->busy && !w->closed && status_of(h, w->known) != w->last_sent) send_status(h, w);
  pthread_mutex_unlock(&h->mu);
}

void rpc__health_cancel_watches(rpc_health *h) {
  pthread_mutex_lock(&h->mu);
  for (rpc_watch *w = h->watches; w; w = w->next)
    grpc_call_cancel_with_status(w->call, GRPC_STATUS_UNAVAILABLE, "server shutting down", NULL);
  pthread_mutex_unlock(&h->mu);
}
