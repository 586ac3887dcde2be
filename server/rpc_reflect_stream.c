/* server/rpc_reflect_stream.c - ServerReflectionInfo, the bidi stream of
 * server reflection (v1 and v1alpha), built into the RPC layer: receive a
 * request, send its answer (rpc_reflect.c), receive the next, until the
 * client half-closes (then OK) or cancels. One batch at a time besides the
 * RECV_CLOSE_ON_SERVER that tells of the end. A stream's completions all
 * arrive on its call's queue, which one worker serves, so its state needs
 * no lock; the mutex guards the listener's list of open streams only
 * (rpc__reflect_stream_cancel_all walks it from the stopping thread).
 *
 * Bounds: at most RPC_REFLECT_MAX_STREAMS streams open per listener (past
 * it RESOURCE_EXHAUSTED at once), RPC_REFLECT_MAX_REQUEST bytes per request
 * (an error_response, and the stream goes on), RPC_REFLECT_MAX_MESSAGES
 * requests per stream (then RESOURCE_EXHAUSTED ends it), and a per-stream
 * arena reset after every answer. */
#include "server/rpc_internal.h"
#include "common/log.h"
#include "grpc/reflection/v1/reflection.pb-c.h"

#include <grpc/byte_buffer.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The two packages' messages are the same on the wire, so v1's C types serve both. */
const rpc_method rpc__reflect_v1 = {"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                                    &grpc__reflection__v1__server_reflection_request__descriptor,
                                    &grpc__reflection__v1__server_reflection_response__descriptor, NULL};
const rpc_method rpc__reflect_v1alpha = {"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                                         &grpc__reflection__v1__server_reflection_request__descriptor,
                                         &grpc__reflection__v1__server_reflection_response__descriptor, NULL};

/* Memory one answer may take (its structs; file bytes are the embedded set's). */
#define ANSWER_ARENA_LIMIT (1u << 20)

typedef enum { STEP_RECV, STEP_SEND, STEP_STATUS } step;

struct rpc_rstream {
  rpc_tag tag;               /* TAG_REFLECT: the batch in flight (step says which) */
  rpc_tag close_tag;         /* TAG_REFLECT_CLOSE */
  rpc_reflect *owner;
  grpc_call *call;
  step step;
  int refs;                  /* batches in flight */
  bool sent_md;              /* initial metadata went out */
  bool closed;               /* RECV_CLOSE_ON_SERVER came: the call is over, start nothing */
  unsigned n_requests;
  int cancelled;
  grpc_byte_buffer *in, *out;
  grpc_slice details;        /* the final status's, once STEP_STATUS started */
  arena arena;               /* one answer's memory */
  rpc_rstream *prev, *next;
};

int rpc__reflect_stream_init(rpc_reflect *r, const rpc_server_opts *o, const rpc_limits *lim) {
  memset(r, 0, sizeof *r);
  pthread_mutex_init(&r->mu, NULL);
  arena_init(&r->names, 0);
  r->limits = *lim;
  return rpc__reflect_services(o, &r->names, &r->services, &r->n_services);
}

void rpc__reflect_stream_destroy(rpc_reflect *r) {
  arena_destroy(&r->names);
  pthread_mutex_destroy(&r->mu);
}

/* Starts the stream's one batch. gRPC refuses a batch only for a bug of
 * ours; the call is then cancelled, so that RECV_CLOSE_ON_SERVER completes
 * and frees the stream. */
static void start(rpc_rstream *s, step st, grpc_op *ops, size_t n) {
  s->step = st;
  s->refs++;
  grpc_call *call = s->call;
  rpc__tag_release(&s->tag);
  if (grpc_call_start_batch(call, ops, n, &s->tag, NULL) == GRPC_CALL_OK) return;
  LOG_ERROR("reflection stream batch failed", "step=%d", (int)st);
  s->refs--;
  grpc_call_cancel(call, NULL);
}

static void recv_next(rpc_rstream *s) {
  grpc_op op;
  memset(&op, 0, sizeof op);
  op.op = GRPC_OP_RECV_MESSAGE;
  op.data.recv_message.recv_message = &s->in;
  start(s, STEP_RECV, &op, 1);
}

/* The final status; OK when the client half-closed. */
static void send_status(rpc_rstream *s, grpc_status_code code, const char *msg) {
  grpc_op ops[2];
  size_t n = 0;
  memset(ops, 0, sizeof ops);
  if (!s->sent_md) ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
  s->sent_md = true;
  s->details = grpc_slice_from_copied_string(msg);
  ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
  ops[n].data.send_status_from_server.status = code;
  ops[n++].data.send_status_from_server.status_details = &s->details;
  start(s, STEP_STATUS, ops, n);
}

/* Decodes the request in s->in and sends its answer. */
static void answer(rpc_rstream *s) {
  rpc_reflect *r = s->owner;
  rec_error err = {0};
  rpc_reflect_resp *resp = NULL;
  /* rpc__read_request bounds what a compressed request inflates to; gRPC's
   * max_message_bytes, far above what a reflection request needs, bounds the rest. */
  ProtobufCMessage *q = NULL;
  if (grpc_byte_buffer_length(s->in) > RPC_REFLECT_MAX_REQUEST)
    rec_fail(&err, REC_ETOOBIG, "a reflection request is at most %d bytes", RPC_REFLECT_MAX_REQUEST);
  else
    q = rpc__read_request(s->in, &grpc__reflection__v1__server_reflection_request__descriptor, &r->limits,
                          RPC_REFLECT_MAX_REQUEST, &s->arena, &err);
  grpc_byte_buffer_destroy(s->in);
  s->in = NULL;
  int rc = q ? rpc__reflect_answer(r->services, r->n_services, (const rpc_reflect_req *)q, &s->arena, &resp)
             : rpc__reflect_error(err.code, err.msg, &s->arena, &resp);
  if (rc) {
    arena_reset(&s->arena);
    send_status(s, rpc__status_of(rc), "out of memory answering a reflection request");
    return;
  }
  s->out = rpc__pack(&resp->base);
  arena_reset(&s->arena);
  grpc_op ops[2];
  size_t n = 0;
  memset(ops, 0, sizeof ops);
  if (!s->sent_md) ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
  s->sent_md = true;
  ops[n].op = GRPC_OP_SEND_MESSAGE;
  ops[n++].data.send_message.send_message = s->out;
  start(s, STEP_SEND, ops, n);
}

int rpc__reflect_stream_start(rpc_reflect *r, grpc_call *call, rec_error *err) {
  pthread_mutex_lock(&r->mu);
  if (r->n_streams >= RPC_REFLECT_MAX_STREAMS) {
    pthread_mutex_unlock(&r->mu);
    return rec_fail(err, REC_EOVERLOAD, "%d reflection streams are open on this listener; close one and retry",
                    RPC_REFLECT_MAX_STREAMS);
  }
  rpc_rstream *s = calloc(1, sizeof *s);
  if (!s) {
    pthread_mutex_unlock(&r->mu);
    return rec_fail(err, REC_ENOMEM, "out of memory");
  }
  s->tag.kind = TAG_REFLECT;
  s->close_tag.kind = TAG_REFLECT_CLOSE;
  s->owner = r;
  s->call = call;
  arena_init(&s->arena, 0);
  arena_set_limit(&s->arena, ANSWER_ARENA_LIMIT);
  grpc_op op;
  memset(&op, 0, sizeof op);
  op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
  op.data.recv_close_on_server.cancelled = &s->cancelled;
  rpc__tag_release(&s->close_tag);
  if (grpc_call_start_batch(call, &op, 1, &s->close_tag, NULL) != GRPC_CALL_OK) {
    pthread_mutex_unlock(&r->mu);
    arena_destroy(&s->arena);
    free(s);
    return rec_fail(err, REC_EINTERNAL, "cannot start a reflection stream");
  }
  s->refs = 1;
  s->next = r->streams;
  if (r->streams) r->streams->prev = s;
  r->streams = s;
  r->n_streams++;
  r->live++;
  recv_next(s);
  pthread_mutex_unlock(&r->mu);
  return 0;
}

static void stream_free(rpc_rstream *s) {
  if (s->in) grpc_byte_buffer_destroy(s->in);
  if (s->out) grpc_byte_buffer_destroy(s->out);
  if (s->step == STEP_STATUS) grpc_slice_unref(s->details);
  arena_destroy(&s->arena);
  grpc_call_unref(s->call);
  free(s);
}

/* A batch finished. A failed one means the call is over (cancelled, or the
 * connection went): nothing more is started, and RECV_CLOSE_ON_SERVER,
 * which always completes, frees the stream with the last reference. */
static void on_batch(rpc_rstream *s, bool ok) {
  ok = ok && !s->closed;
  if (s->step == STEP_RECV && ok && s->in) {
    s->n_requests++;
    answer(s);
  } else if (s->step == STEP_RECV && ok) {
    send_status(s, GRPC_STATUS_OK, ""); /* the client half-closed */
  } else if (s->step == STEP_SEND) {
    grpc_byte_buffer_destroy(s->out);
    s->out = NULL;
    char msg[96];
    snprintf(msg, sizeof msg, "at most %d reflection requests per stream; open a new stream",
             RPC_REFLECT_MAX_MESSAGES);
    if (ok && s->n_requests >= RPC_REFLECT_MAX_MESSAGES) send_status(s, GRPC_STATUS_RESOURCE_EXHAUSTED, msg);
    else if (ok)
      recv_next(s);
  }
}

void rpc__reflect_stream_event(rpc_reflect *r, rpc_tag *tag, bool ok) {
  rpc_rstream *s;
  if (tag->kind == TAG_REFLECT) {
    s = (rpc_rstream *)((char *)tag - offsetof(rpc_rstream, tag));
    on_batch(s, ok);
  } else { /* out of the list before it can be freed: cancel_all must not find it */
    s = (rpc_rstream *)((char *)tag - offsetof(rpc_rstream, close_tag));
    s->closed = true;
    pthread_mutex_lock(&r->mu);
    if (s->prev) s->prev->next = s->next;
    else r->streams = s->next;
    if (s->next) s->next->prev = s->prev;
    r->n_streams--;
    pthread_mutex_unlock(&r->mu);
  }
  if (--s->refs == 0) {
    stream_free(s);
    pthread_mutex_lock(&r->mu);
    r->live--;
    pthread_mutex_unlock(&r->mu);
  }
}

int rpc__reflect_stream_live(rpc_reflect *r) {
  pthread_mutex_lock(&r->mu);
  int n = r->live;
  pthread_mutex_unlock(&r->mu);
  return n;
}

void rpc__reflect_stream_cancel_all(rpc_reflect *r) {
  pthread_mutex_lock(&r->mu);
  for (rpc_rstream *s = r->streams; s; s = s->next)
    grpc_call_cancel_with_status(s->call, GRPC_STATUS_UNAVAILABLE, "server shutting down", NULL);
  pthread_mutex_unlock(&r->mu);
}
