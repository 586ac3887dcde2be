/* server/rpc_fanout.c - see rpc_fanout.h. Every leg carries the deadline, so
 * gRPC itself ends the slow ones; the last leg to land runs the merge. All
 * legs complete on one worker's queue, so the count needs no lock. */
#include "server/rpc_fanout.h"
#include "server/rpc_internal.h"
#include "common/clock.h"

#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct fanout {
  size_t n;
  char **targets;
  grpc_channel **channels;
};

typedef struct fan_op fan_op;
typedef struct leg {
  rpc_tag tag;               /* TAG_CLIENT */
  fan_op *op;
  bool skipped;              /* not asked */
  rpc_unary u;
  grpc_metadata md[2];       /* traceparent (a new span of the caller's trace), x-request-id */
  char traceparent[TRACEPARENT_LEN + 1];
} leg;

/* One fan-out in flight, in the call's arena. */
struct fan_op {
  size_t n, landed;
  leg *legs;
  ProtobufCMessage **resps;
  int *status;
  const ProtobufCMessageDescriptor *resp_desc;
  arena *arena;
  fanout_done_fn done;
  void *arg;
};

int fanout_new(const char *targets, const rpc_client_tls *tls, fanout **out, rec_error *err) {
  fanout *f = calloc(1, sizeof *f);
  char *copy = strdup(targets), *save = NULL;
  if (!f || !copy) {
    free(f);
    free(copy);
    return rec_fail(err, REC_ENOMEM, "out of memory");
  }
  size_t cap = 1;
  for (const char *p = targets; *p; p++) cap += *p == ',';
  f->targets = calloc(cap, sizeof *f->targets);
  f->channels = calloc(cap, sizeof *f->channels);
  rpc__runtime_init();
  grpc_init();
  for (char *t = strtok_r(copy, ",", &save); t && f->targets && f->channels; t = strtok_r(NULL, ",", &save)) {
    for (size_t i = 0; i < f->n; i++)
      if (strcmp(f->targets[i], t) == 0) { /* its items would count twice */
        int rc = rec_fail(err, REC_EINVAL, "'%.200s' is listed twice", t);
        free(copy);
        fanout_free(f);
        return rc;
      }
    if (!(f->targets[f->n] = strdup(t))) break;
    if (!(f->channels[f->n] = rpc__channel_new(t, tls, err))) {
      free(f->targets[f->n]);
      f->targets[f->n] = NULL;
      free(copy);
      fanout_free(f);
      return err ? err->code : REC_EINVAL;
    }
    f->n++;
  }
  free(copy);
  if (!f->n) {
    fanout_free(f);
    return rec_fail(err, REC_EINVAL, "no targets in '%s'", targets);
  }
  *out = f;
  return 0;
}

void fanout_free(fanout *f) {
  if (!f) return;
  for (size_t i = 0; i < f->n; i++) {
    grpc_channel_destroy(f->channels[i]);
    free(f->targets[i]);
  }
  free(f->targets);
  free(f->channels);
  free(f);
  grpc_shutdown();
}

size_t fanout_count(const fanout *f) { return f->n; }
const char *fanout_target(const fanout *f, size_t i) { return f->targets[i]; }

static void land(fan_op *op) {
  if (++op->landed < op->n) return;
  for (size_t i = 0; i < op->n; i++) {
    rpc_unary *u = &op->legs[i].u;
    if (op->legs[i].skipped) {
      op->status[i] = FANOUT_SKIPPED;
      continue;
    }
    op->status[i] = (int)u->status;
    if (u->status == GRPC_STATUS_OK && u->recv) op->resps[i] = rpc__unpack(u->recv, op->resp_desc, op->arena);
    rpc__unary_end(u);
  }
  op->done(op->arg, op->resps, op->status);
}

/* The leg's request metadata: the call's trace with a span of its own, so
 * a shard's log line names the ranking tier's trace, and its request id.
 * The values live in the leg, in the arena, until the leg lands. */
static size_t leg_metadata(leg *l, const rpc_ctx *ctx) {
  size_t n = 0;
  if (ctx->trace.trace_id[0]) {
    trace_child(&ctx->trace, l->traceparent);
    l->md[n++] = (grpc_metadata){.key = grpc_slice_from_static_string("traceparent"),
                                 .value = grpc_slice_from_static_buffer(l->traceparent, TRACEPARENT_LEN)};
  }
  if (ctx->request_id && rpc__md_value_ok(ctx->request_id))
    l->md[n++] = (grpc_metadata){.key = grpc_slice_from_static_string("x-request-id"),
                                 .value = grpc_slice_from_static_buffer(ctx->request_id, strlen(ctx->request_id))};
  return n;
}

static void on_leg(rpc_tag *t, bool ok) {
  (void)ok; /* a client batch's status says what happened, ok or not */
  land(((leg *)t)->op);
}

int fanout_start(fanout *f, rpc_ctx *ctx, const char *method, const ProtobufCMessage *req,
                 const ProtobufCMessageDescriptor *resp_desc, int64_t deadline_ns,
                 const unsigned char *skip, fanout_done_fn done, void *arg) {
  grpc_completion_queue *cq = rpc__ctx_cq(ctx);
  if (!cq) return REC_EINVAL;
  arena *a = ctx->arena;
  fan_op *op = arena_calloc(a, 1, sizeof *op);
  leg *legs = arena_calloc(a, f->n, sizeof *legs);
  ProtobufCMessage **resps = arena_calloc(a, f->n, sizeof *resps);
  int *status = arena_calloc(a, f->n, sizeof *status);
  if (!op || !legs || !resps || !status) return REC_ENOMEM;
  *op = (fan_op){.n = f->n, .legs = legs, .resps = resps, .status = status,
                 .resp_desc = resp_desc, .arena = a, .done = done, .arg = arg};
  grpc_byte_buffer *send = rpc__pack(req);
  gpr_timespec deadline = rpc__deadline_in(deadline_ns - rec_mono_ns());
  size_t failed = 0;
  for (size_t i = 0; i < f->n; i++) {
    legs[i].tag = (rpc_tag){TAG_CLIENT, on_leg};
    legs[i].op = op;
    legs[i].skipped = skip && skip[i];
    if (legs[i].skipped || !rpc__unary_start_md(&legs[i].u, f->channels[i], cq, method, send, deadline, legs[i].md,
                                                leg_metadata(&legs[i], ctx), &legs[i].tag))
      failed++;
  }
  grpc_byte_buffer_destroy(send);
  /* Legs skipped or never started will send no completion: land them now
   * (a failed start says UNAVAILABLE), last, so the merge waits for the
   * others. */
  for (size_t i = 0; i < failed; i++) land(op);
  return 0;
}
