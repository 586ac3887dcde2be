/* server/rpc_server.c - the gRPC C core server: workers, pre-posted requests,
 * the unary call state machine and shutdown. See rpc.h for the contract. */
#include "server/rpc_internal.h"
#include "common/clock.h"
#include "common/log.h"
#include "server/auth.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <string.h>

typedef struct worker worker;

/* One call from request to final status. A worker recycles these. */
typedef struct ucall {
  rpc_tag tag;              /* TAG_CALL */
  worker *w;                /* the worker whose queue the call is bound to */
  bool finishing;           /* false: waiting for a call; true: status being sent */
  int reg;                  /* index into rpc_server.regs; -1: unregistered method */
  grpc_call *call;
  gpr_timespec deadline;
  grpc_metadata_array md;
  grpc_call_details details; /* unregistered methods only */
  grpc_byte_buffer *payload, *reply;
  grpc_slice status_details;
  grpc_metadata reply_md;   /* x-request-id back to the caller */
  bool has_reply_md;
  int cancelled;
  bool counted;             /* holds one of the server's in-flight slots */
  bool open;                /* counted in rpc_server.open_calls */
  int64_t start_ns;         /* arrival, for the latency observed */
  grpc_status_code status;  /* sent with the final batch */
  char identity[AUTH_NAME_MAX + 8]; /* on an authenticated server: "token:NAME" or "cert:SUBJECT" */
  arena arena;
  rpc_ctx ctx;              /* the handler's view; lives until the call is released */
  struct ucall *next_free;
  /* While its final batch is out (rpc_server.sending): the neighbours, when
   * it went out, and whether the sweep cancelled it. */
  struct ucall *send_prev, *send_next;
  int64_t send_ns;
  bool sending, send_cancelled, send_over_cap;
} ucall;

struct rpc_cleanup {
  void (*fn)(void *);
  void *arg;
  rpc_cleanup *next;
};

/* An in-process call's outcome (rpc_local_call). */
struct rpc_local {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool done;
  int rc;
  const ProtobufCMessage *reply;
};

struct worker {
  rpc_server *srv;
  grpc_completion_queue *cq;
  pthread_t thread;
  ucall *free_calls;
  arena_cache blocks;       /* its calls' arena blocks between calls */
};

typedef struct reg_method {
  const rpc_method *m;
  void *handle;             /* from grpc_server_register_method */
  bool watch;               /* grpc.health.v1.Health/Watch: a server stream */
  bool reflect;             /* ServerReflectionInfo (v1, v1alpha): a bidi stream */
} reg_method;

struct rpc_server {
  rpc_server_opts opts;
  grpc_server *server;
  worker *workers;
  reg_method *regs;
  size_t n_regs;
  atomic_bool stopping;
  atomic_int inflight;      /* calls between arrival and their final status going out */
  atomic_int open_calls;    /* calls handled and not yet released, pending ones included */
  rpc_health health;
  rpc_reflect reflect;
  rpc_tls_state *tls;       /* NULL: plaintext */
  /* passive_io: a queue no thread waits on, registered only so that gRPC
   * has a pollset to hand new connections (it needs one); NULL otherwise. */
  grpc_completion_queue *idle_cq;
  /* Calls whose final batch is out, oldest first (send_sweep). */
  pthread_mutex_t send_mu;
  ucall *send_head, *send_tail;
  int n_sending, n_send_cancelled; /* of them, cancelled by the sweep and not yet released */
};

static const rpc_tag shutdown_tag = {TAG_SHUTDOWN, NULL};

/* Frees a call's request metadata, which gRPC filled in on whichever
 * thread polled the connection (see md_copy_value; tests/tsan.supp). */
__attribute__((noinline)) static void md_destroy(grpc_metadata_array *md) { grpc_metadata_array_destroy(md); }

/* The worker this thread runs, if any: a call completed from elsewhere
 * must not touch its worker's free list. */
static _Thread_local worker *this_worker;

rpc_health *rpc__server_health(rpc_server *s) { return &s->health; }

int rpc_fail(rpc_ctx *ctx, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(ctx->err.msg, sizeof ctx->err.msg, fmt, ap);
  va_end(ap);
  ctx->err.code = code;
  return code;
}

int rpc_on_done(rpc_ctx *ctx, void (*fn)(void *), void *arg) {
  rpc_cleanup *c = arena_alloc(ctx->arena, sizeof *c);
  if (!c) return REC_ENOMEM;
  *c = (rpc_cleanup){fn, arg, ctx->cleanups};
  ctx->cleanups = c;
  return 0;
}

static void run_cleanups(rpc_ctx *ctx) {
  for (rpc_cleanup *c = ctx->cleanups; c; c = c->next) c->fn(c->arg);
  ctx->cleanups = NULL;
}

grpc_completion_queue *rpc__ctx_cq(const rpc_ctx *ctx) {
  return ctx->call ? ((const ucall *)ctx->call)->w->cq : NULL;
}

bool rpc_deadline_passed(const rpc_ctx *ctx) { return rec_mono_ns() >= ctx->deadline_ns; }

/* gRPC hands us a deadline on its own clock (which differs from
 * CLOCK_MONOTONIC by an offset); carry only the time left across. */
static int64_t mono_deadline(gpr_timespec d) {
  if (gpr_time_cmp(d, gpr_inf_future(d.clock_type)) == 0) return INT64_MAX;
  gpr_timespec left = gpr_time_sub(d, gpr_now(d.clock_type));
  if (left.tv_sec > 1000000000) return INT64_MAX;
  return rec_mono_ns() + (int64_t)left.tv_sec * 1000000000 + left.tv_nsec;
}

static ucall *ucall_get(worker *w) {
  ucall *c = w->free_calls;
  if (c) {
    w->free_calls = c->next_free;
  } else {
    c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->tag.kind = TAG_CALL;
    arena_init(&c->arena, 0);
  }
  return c;
}

static void ucall_put(worker *w, ucall *c) {
  arena_reset(&c->arena);
  c->next_free = w->free_calls;
  w->free_calls = c;
}

/* Posts one request for registered method 'reg' (or, for -1, any method the
 * server does not know) on worker 'to's queue, from worker 'from's free list. */
static void post_request(worker *from, worker *to, int reg) {
  rpc_server *s = from->srv;
  ucall *c = ucall_get(from);
  if (!c) {
    LOG_ERROR("cannot post request", "reason=\"out of memory\"");
    return;
  }
  c->reg = reg;
  c->finishing = false;
  c->call = NULL;
  c->payload = c->reply = NULL;
  grpc_metadata_array_init(&c->md);
  grpc_call_error e;
  rpc__tag_release(c);
  if (reg >= 0) {
    /* A stream reads its own messages: gRPC wants no payload pointer for it. */
    e = grpc_server_request_registered_call(s->server, s->regs[reg].handle, &c->call, &c->deadline, &c->md,
                                            s->regs[reg].reflect ? NULL : &c->payload, to->cq, to->cq, c);
  } else {
    grpc_call_details_init(&c->details);
    e = grpc_server_request_call(s->server, &c->call, &c->details, &c->md, to->cq, to->cq, c);
  }
  if (e != GRPC_CALL_OK) {
    LOG_ERROR("cannot post request", "grpc_call_error=%d", (int)e);
    grpc_metadata_array_destroy(&c->md);
    if (reg < 0) grpc_call_details_destroy(&c->details);
    ucall_put(from, c);
  }
}

/* The method path an unregistered call asked for, as far as it is safe to
 * show: at most 'cap' - 1 bytes, each byte outside [A-Za-z0-9._/-] a '?'
 * (a client's bytes never reach a log line or an error message as sent). */
static void safe_path(const ucall *c, char *out, size_t cap) {
  size_t n = GRPC_SLICE_LENGTH(c->details.method), i;
  const unsigned char *p = GRPC_SLICE_START_PTR(c->details.method);
  for (i = 0; i < n && i + 1 < cap; i++)
    out[i] = p[i] && strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._/-", p[i]) ? (char)p[i]
                                                                                                        : '?';
  out[i] = '\0';
}

/* On an authenticated server every finished call is an operator's action:
 * who, what, and how it ended. */
static void log_action(const rpc_server *s, const ucall *c) {
  char path[160];
  if (c->reg >= 0) {
    const rpc_method *m = s->regs[c->reg].m;
    if (m == &rpc__health_check || s->regs[c->reg].watch) return;
    snprintf(path, sizeof path, "%s", m->path);
  } else {
    safe_path(c, path, sizeof path);
  }
  char detail[300];
  rec_log_quote(detail, sizeof detail, c->status ? c->ctx.err.msg : "", c->status ? strlen(c->ctx.err.msg) : 0);
  rec_log(c->status == GRPC_STATUS_OK ? REC_LOG_INFO : REC_LOG_WARN, "admin call",
          "listener=%s who=\"%s\" method=%s status=%d ms=%.1f detail=\"%s\"", s->opts.name ? s->opts.name : "?",
          c->identity[0] ? c->identity : "anonymous", path, (int)c->status,
          (double)(rec_mono_ns() - c->start_ns) / 1e6, detail);
}

/* Off the list of calls whose final batch is out; under send_mu, so that
 * the sweep never cancels a call being released. */
static void send_unlink(rpc_server *s, ucall *c) {
  pthread_mutex_lock(&s->send_mu);
  if (c->sending) {
    if (c->send_prev) c->send_prev->send_next = c->send_next;
    else s->send_head = c->send_next;
    if (c->send_next) c->send_next->send_prev = c->send_prev;
    else s->send_tail = c->send_prev;
    c->send_prev = c->send_next = NULL;
    c->sending = false;
    s->n_sending--;
    s->n_send_cancelled -= c->send_cancelled;
  }
  pthread_mutex_unlock(&s->send_mu);
}

/* 'c''s final batch goes out now: onto the list, and those that have
 * waited longer than send_timeout_ms cancelled, and, while more than
 * max_inflight (1024 with no cap) wait, the oldest that have waited over a
 * second. A client that never reads its replies (a zero flow-control
 * window) would otherwise keep each call's memory until its connection
 * dies. The sweep runs on every finishing call, refused ones included. */
static int64_t send_timeout_ns(const rpc_server *s) {
  return (int64_t)(s->opts.send_timeout_ms > 0 ? s->opts.send_timeout_ms : RPC_SEND_TIMEOUT_MS) * 1000000;
}

/* Under send_mu: cancels, oldest first, the replies waiting past the
 * timeout and, while more than the cap wait, those waiting over a second
 * (a healthy reply is sent in far less). The list is in send order, so
 * the walk stops at the first reply young enough to stay. */
static void sweep_locked(rpc_server *s, int64_t now) {
  const int64_t timeout = send_timeout_ns(s), grace = timeout < 1000000000 ? timeout : 1000000000;
  int over = s->n_sending - s->n_send_cancelled - (s->opts.max_inflight > 0 ? s->opts.max_inflight : 1024);
  for (ucall *o = s->send_head; o && now - o->send_ns > grace; o = o->send_next) {
    if (o->send_cancelled) continue;
    bool late = now - o->send_ns > timeout;
    if (!late && over <= 0) break;
    o->send_cancelled = true;
    o->send_over_cap = !late;
    over--;
    s->n_send_cancelled++;
    grpc_call_cancel_with_status(o->call, GRPC_STATUS_DEADLINE_EXCEEDED, "reply not read in time", NULL);
  }
}

static void send_link_and_sweep(rpc_server *s, ucall *c) {
  int64_t now = rec_mono_ns();
  pthread_mutex_lock(&s->send_mu);
  c->send_ns = now;
  c->send_cancelled = c->send_over_cap = false;
  c->sending = true;
  c->send_next = NULL;
  c->send_prev = s->send_tail;
  if (s->send_tail) s->send_tail->send_next = c;
  else s->send_head = c;
  s->send_tail = c;
  s->n_sending++;
  sweep_locked(s, now);
  pthread_mutex_unlock(&s->send_mu);
}

void rpc_server_sweep_replies(rpc_server *s) {
  pthread_mutex_lock(&s->send_mu);
  sweep_locked(s, rec_mono_ns());
  pthread_mutex_unlock(&s->send_mu);
}

static void release(worker *w, ucall *c) {
  send_unlink(w->srv, c);
  /* What really happened to a call the client never saw answered: the
   * status it was sent would be the wrong one to count and log (a stream
   * reset before its message would read "request message missing"). */
  if (c->finishing && c->send_cancelled) {
    c->status = GRPC_STATUS_DEADLINE_EXCEEDED;
    if (c->send_over_cap)
      snprintf(c->ctx.err.msg, sizeof c->ctx.err.msg, "the client did not read the reply for over a second while "
               "more than max_inflight replies waited: cancelled");
    else
      snprintf(c->ctx.err.msg, sizeof c->ctx.err.msg, "the client did not read the reply within %d ms: cancelled",
               w->srv->opts.send_timeout_ms > 0 ? w->srv->opts.send_timeout_ms : RPC_SEND_TIMEOUT_MS);
  } else if (c->finishing && c->cancelled && c->status != GRPC_STATUS_DEADLINE_EXCEEDED) {
    bool expired = c->ctx.deadline_ns > 0 && rec_mono_ns() >= c->ctx.deadline_ns;
    c->status = expired ? GRPC_STATUS_DEADLINE_EXCEEDED : GRPC_STATUS_CANCELLED;
    snprintf(c->ctx.err.msg, sizeof c->ctx.err.msg, "%s",
             expired ? "the caller's deadline passed before it had the reply" : "cancelled: the client went away");
  }
  if (c->counted) atomic_fetch_sub(&w->srv->inflight, 1); /* a call that never reached finish */
  if (c->finishing && c->reg >= 0 && w->srv->opts.observe)
    w->srv->opts.observe((size_t)c->reg, (int)c->status, rec_mono_ns() - c->start_ns, &c->ctx);
  if (c->finishing && w->srv->opts.auth) log_action(w->srv, c);
  c->ctx.call = NULL;
  c->counted = false;
  if (c->open) atomic_fetch_sub(&w->srv->open_calls, 1);
  c->open = false;
  if (c->payload) grpc_byte_buffer_destroy(c->payload);
  if (c->reply) grpc_byte_buffer_destroy(c->reply);
  if (c->finishing) grpc_slice_unref(c->status_details);
  if (c->has_reply_md) grpc_slice_unref(c->reply_md.value);
  c->has_reply_md = false;
  md_destroy(&c->md);
  if (c->reg < 0) grpc_call_details_destroy(&c->details);
  if (c->call) grpc_call_unref(c->call);
  if (this_worker == w) {
    ucall_put(w, c);
  } else { /* off the worker: its free list is not ours to touch */
    arena_destroy(&c->arena);
    free(c);
  }
}

/* Sends the reply (when rc == 0) or the mapped status, and asks to hear when
 * the call is over; the completion releases the call. */
static void finish(ucall *c, int rc, const ProtobufCMessage *out) {
  worker *w = c->w;
  rpc_ctx *ctx = &c->ctx;
  grpc_op ops[4];
  size_t n = 0;
  memset(ops, 0, sizeof ops);
  ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
  if (ctx->request_id && rpc__md_value_ok(ctx->request_id)) {
    c->reply_md = (grpc_metadata){.key = grpc_slice_from_static_string("x-request-id"),
                                  .value = grpc_slice_from_copied_string(ctx->request_id)};
    c->has_reply_md = true;
    ops[n].data.send_initial_metadata.count = 1;
    ops[n].data.send_initial_metadata.metadata = &c->reply_md;
  }
  n++;
  if (rc == 0 && !out) rc = rpc_fail(ctx, REC_EINTERNAL, "handler returned no reply");
  if (rc == 0) {
    c->reply = rpc__pack(out);
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n++].data.send_message.send_message = c->reply;
  }
  run_cleanups(ctx);
  grpc_status_code code = c->status = rpc__status_of(rc);
  if (code == GRPC_STATUS_INTERNAL)
    LOG_ERROR("internal error", "method=%s error=\"%s\"",
              c->reg >= 0 ? w->srv->regs[c->reg].m->path : "?", ctx->err.msg);
  const char *msg = rc == 0 ? "" : ctx->err.msg[0] ? ctx->err.msg : rec_strerror(rc);
  c->status_details = grpc_slice_from_copied_string(msg);
  c->finishing = true;
  ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
  ops[n].data.send_status_from_server.status = code;
  ops[n++].data.send_status_from_server.status_details = &c->status_details;
  ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
  ops[n++].data.recv_close_on_server.cancelled = &c->cancelled;
  grpc_call *call = c->call; /* read before the release: from it on, c may be the worker's */
  /* Out of the in-flight count: its work is done, and a reply the client
   * is slow to take must not hold a slot others need. */
  if (c->counted) atomic_fetch_sub(&w->srv->inflight, 1);
  c->counted = false;
  send_link_and_sweep(w->srv, c);
  c->cancelled = 0; /* gRPC sets it when the batch completes; before the tag is published */
  rpc__tag_release(c);
  grpc_call_error e = grpc_call_start_batch(call, ops, n, c, NULL);
  if (e != GRPC_CALL_OK) {
    LOG_ERROR("cannot finish call", "grpc_call_error=%d", (int)e);
    release(w, c);
  }
}

void rpc_complete(rpc_ctx *ctx, int rc, const ProtobufCMessage *reply) {
  if (ctx->local) {
    rpc_local *l = ctx->local;
    pthread_mutex_lock(&l->mu);
    l->rc = rc;
    l->reply = rc == 0 ? reply : NULL;
    l->done = true;
    pthread_cond_signal(&l->cv);
    pthread_mutex_unlock(&l->mu);
    return;
  }
  finish(ctx->call, rc, reply);
}

/* The request metadata gRPC filled in on whichever thread polled the
 * connection; ThreadSanitizer cannot see gRPC's synchronisation, so these
 * two touch it and tests/tsan.supp names them (never inlined, so that the
 * name is on the stack). */
__attribute__((noinline)) static void md_copy_value(const grpc_metadata_array *md, const char *key, char *out,
                                                   size_t cap, size_t *len, bool *found) {
  *found = false;
  *len = 0;
  for (size_t i = 0; i < md->count && !*found; i++)
    if (grpc_slice_str_cmp(md->metadata[i].key, key) == 0) {
      size_t n = GRPC_SLICE_LENGTH(md->metadata[i].value);
      *found = true;
      *len = n < cap ? n : cap; /* longer than 'cap' matches no token anyway */
      memcpy(out, GRPC_SLICE_START_PTR(md->metadata[i].value), *len);
    }
}


/* The first value of auth-context property 'name', copied into 'buf'. */
/* The first value of auth-context property 'name', whole, copied into the
 * call's arena (an identity is compared in full, never cut to a buffer). */
static const char *auth_prop(grpc_auth_context *ac, const char *name, arena *a) {
  grpc_auth_property_iterator it = grpc_auth_context_find_properties_by_name(ac, name);
  const grpc_auth_property *p = grpc_auth_property_iterator_next(&it);
  if (!p || memchr(p->value, '\0', p->value_length)) return NULL;
  return arena_strndup(a, p->value, p->value_length);
}

/* "cert:SUBJECT" for the logs (cut to fit; quotes and control bytes made '?'). */
static void cert_identity(ucall *c, const char *sub, const char *name) {
  snprintf(c->identity, sizeof c->identity, "cert:%s", sub ? sub : name ? name : "?");
  for (char *p = c->identity; *p; p++) /* it goes between quotes in log lines */
    if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20) *p = '?';
}

/* A bearer token from the configured file, or a verified client
 * certificate on the allow-list; else UNAUTHENTICATED. Fills c->identity. */
static int authenticate(const rpc_server *s, ucall *c) {
  char value[320], who[AUTH_NAME_MAX + 1]; /* "Bearer " and a token of at most 256 fit */
  size_t len;
  bool v;
  md_copy_value(&c->md, "authorization", value, sizeof value, &len, &v);
  bool good = v && auth_bearer(s->opts.auth, value, len, who);
  memset(value, 0, sizeof value);
  if (good) {
    snprintf(c->identity, sizeof c->identity, "token:%s", who);
    c->ctx.identity = c->identity;
    return 0;
  }
  const char *why = v ? "the token matches none configured" : "no authorization header and no allowed client certificate";
  grpc_auth_context *ac = grpc_call_auth_context(c->call);
  if (ac && grpc_auth_context_peer_is_authenticated(ac)) {
    const char *sub = auth_prop(ac, GRPC_X509_SUBJECT_PROPERTY_NAME, &c->arena);
    const char *name = auth_prop(ac, GRPC_X509_CN_PROPERTY_NAME, &c->arena);
    cert_identity(c, sub, name); /* logged, allowed or not */
    if (!v && auth_identity_allowed(s->opts.auth, sub, name)) {
      c->ctx.identity = c->identity;
      grpc_auth_context_release(ac);
      return 0;
    }
    if (!v) why = "the client certificate is not on the allow-list";
  }
  if (ac) grpc_auth_context_release(ac);
  return rpc_fail(&c->ctx, REC_EUNAUTH, "%s: send \"authorization: Bearer TOKEN\" with a token from "
                  "recd's --admin_token_file%s", why, s->opts.tls ? ", or an allowed client certificate" : "");
}

/* The caller's trace context and request id, from the request metadata.
 * A traceparent that is not valid starts a new trace: never echoed, never
 * logged. An x-request-id outside 1 to 128 printable ASCII bytes is
 * ignored the same way. */
static void read_context(ucall *c) {
  char v[130];
  size_t len;
  bool found;
  md_copy_value(&c->md, "traceparent", v, sizeof v, &len, &found);
  if (!found || !trace_parse(v, len, &c->ctx.trace)) trace_start(&c->ctx.trace);
  md_copy_value(&c->md, "x-request-id", v, sizeof v, &len, &found);
  if (found && len < sizeof v) {
    v[len] = '\0';
    if (strlen(v) == len && rpc__md_value_ok(v)) c->ctx.request_id = arena_strndup(&c->arena, v, len);
  }
}

static void handle(worker *w, ucall *c) {
  rpc_server *s = w->srv;
  c->start_ns = rec_mono_ns();
  c->w = w;
  c->open = true;
  atomic_fetch_add(&s->open_calls, 1);
  arena_set_limit(&c->arena, s->opts.max_call_bytes ? s->opts.max_call_bytes : SIZE_MAX);
  /* The worker running the call lends it blocks (a call is posted by the
   * worker before this one, from that worker's free list). */
  arena_use_cache(&c->arena, &w->blocks);
  c->ctx = (rpc_ctx){.arena = &c->arena, .app = s->opts.app, .server = s, .call = c};
  c->identity[0] = '\0';
  rpc_ctx *ctx = &c->ctx;
  ProtobufCMessage *in = NULL, *out = NULL;
  int rc;
  if (c->reg < 0) {
    /* On an authenticated listener even a wrong method needs credentials:
     * nobody learns what exists without being someone. */
    char path[160];
    safe_path(c, path, sizeof path);
    if (!s->opts.auth || (rc = authenticate(s, c)) == 0)
      rc = rpc_fail(ctx, REC_EUNIMPL, "unknown method %s%s", path,
                    GRPC_SLICE_LENGTH(c->details.method) >= sizeof path ? "..." : "");
    finish(c, rc, NULL);
    return;
  }
  const rpc_method *m = s->regs[c->reg].m;
  ctx->deadline_ns = mono_deadline(c->deadline);
  /* Past the cap, fail at once rather than queue: a queue that grows only
   * turns overload into timeouts. Health always answers. */
  bool health = m == &rpc__health_check || s->regs[c->reg].watch;
  if (!health) read_context(c);
  if (s->opts.auth && !health && (rc = authenticate(s, c)) != 0) {
    finish(c, rc, NULL);
    return;
  }
  if (s->opts.max_inflight > 0 && !health) {
    c->counted = true;
    if (atomic_fetch_add(&s->inflight, 1) >= s->opts.max_inflight) {
      rc = rpc_fail(ctx, REC_EOVERLOAD, "server overloaded: %d calls in flight; retry with backoff",
                    s->opts.max_inflight);
      finish(c, rc, NULL);
      return;
    }
  }
  if (s->regs[c->reg].reflect) {
    if ((rc = rpc__reflect_stream_start(&s->reflect, c->call, &ctx->err)) != 0) {
      finish(c, rc, NULL);
      return;
    }
    c->call = NULL; /* the stream owns it now */
    release(w, c);
    return;
  }
  if (!c->payload)
    rc = rpc_fail(ctx, REC_EINVAL, "request message missing");
  else if (!(in = rpc__read_request(c->payload, m->in, &s->opts.limits, (size_t)s->opts.max_message_bytes,
                                    &c->arena, &ctx->err)))
    rc = ctx->err.code;
  else if (s->regs[c->reg].watch) {
    rpc__health_watch_start(&s->health, c->call, in);
    c->call = NULL; /* the watch owns it now */
    release(w, c);
    return;
  } else if (!m->fn)
    rc = rpc_fail(ctx, REC_EUNIMPL, "%s is not implemented by this server yet", m->path);
  else if (rpc_deadline_passed(ctx))
    rc = rpc_fail(ctx, REC_EDEADLINE, "deadline passed before the call was handled");
  else if ((rc = m->fn(ctx, in, &out)) == RPC_PENDING)
    return; /* rpc_complete finishes it */
  finish(c, rc, out);
}

/* gRPC hands a connection's calls to the queue it picked for that connection
 * for as long as that queue has requests posted. Re-posting on our own queue
 * would therefore pin a busy client connection to one worker while the others
 * idle; re-posting on the next worker's queue drains the busy one, so the
 * matcher moves on. */
static worker *next_worker(worker *w) {
  rpc_server *s = w->srv;
  size_t i = (size_t)(w - s->workers) + 1;
  return &s->workers[i % (size_t)s->opts.threads];
}

static void on_call(worker *w, ucall *c, bool ok) {
  if (c->finishing) {
    release(w, c);
  } else if (!ok) {
    release(w, c); /* shutting down: this request was never matched */
  } else {
    /* Re-post first so the method never runs out of posted requests. */
    if (!atomic_load(&w->srv->stopping)) post_request(w, next_worker(w), c->reg);
    handle(w, c);
  }
}

/* Workers of polling servers waiting for their next event, in the whole
 * process: while one waits, a thread is polling (epoll1 keeps one poller
 * whenever any thread waits), so a passive worker need not. */
static atomic_int waiting_pollers;

/* A passive worker's wait for its own events while some worker of a
 * polling server waits too (so a thread is polling and reads the passive
 * server's sockets): it wakes only to look again. When none waits (a load
 * that keeps every serving worker busy), nobody would read the sockets,
 * so the passive worker polls for everyone, a millisecond at a time, and
 * takes its own events between turns: it is then the third poller it
 * would always be without passive_io, but only while it is needed. */
enum { PASSIVE_WAIT_MS = 25, PASSIVE_POLL_MS = 1 };

static gpr_timespec in_ms(int ms) {
  return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(ms, GPR_TIMESPAN));
}

static grpc_event next_event(worker *w) {
  rpc_server *s = w->srv;
  if (!s->idle_cq) {
    atomic_fetch_add_explicit(&waiting_pollers, 1, memory_order_relaxed);
    grpc_event ev = grpc_completion_queue_next(w->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
    atomic_fetch_sub_explicit(&waiting_pollers, 1, memory_order_relaxed);
    return ev;
  }
  for (;;) {
    if (atomic_load_explicit(&waiting_pollers, memory_order_relaxed) > 0) {
      grpc_event ev = grpc_completion_queue_next(w->cq, in_ms(PASSIVE_WAIT_MS), NULL);
      if (ev.type != GRPC_QUEUE_TIMEOUT) return ev;
      continue;
    }
    grpc_completion_queue_next(s->idle_cq, in_ms(PASSIVE_POLL_MS), NULL); /* no events: polls until then */
    grpc_event ev = grpc_completion_queue_next(w->cq, gpr_inf_past(GPR_CLOCK_MONOTONIC), NULL);
    if (ev.type != GRPC_QUEUE_TIMEOUT) return ev;
  }
}

static void *worker_main(void *arg) {
  worker *w = arg;
  rpc_server *s = w->srv;
  this_worker = w;
  if (s->opts.thread_init) s->opts.thread_init();
  for (;;) {
    grpc_event ev = next_event(w);
    if (ev.type == GRPC_QUEUE_SHUTDOWN) break;
    if (ev.type != GRPC_OP_COMPLETE) continue;
    rpc_tag *t = ev.tag;
    rpc__tag_acquire(t);
    if (t->kind == TAG_CALL) on_call(w, (ucall *)t, ev.success != 0);
    else if (t->kind == TAG_CLIENT) t->fn(t, ev.success != 0);
    else if (t->kind == TAG_REFLECT || t->kind == TAG_REFLECT_CLOSE)
      rpc__reflect_stream_event(&w->srv->reflect, t, ev.success != 0);
    else rpc__health_watch_event(&w->srv->health, t, ev.success != 0);
  }
  while (w->free_calls) {
    ucall *c = w->free_calls;
    w->free_calls = c->next_free;
    arena_destroy(&c->arena);
    free(c);
  }
  return NULL;
}

static int register_methods(rpc_server *s, rec_error *err) {
  static const rpc_method *const BUILT_IN[] = {&rpc__health_check, &rpc__health_watch, &rpc__reflect_v1,
                                               &rpc__reflect_v1alpha};
  s->n_regs = s->opts.n_methods + sizeof BUILT_IN / sizeof BUILT_IN[0];
  s->regs = calloc(s->n_regs, sizeof *s->regs);
  if (!s->regs) return rec_fail(err, REC_ENOMEM, "out of memory");
  for (size_t i = 0; i < s->n_regs; i++) {
    reg_method *r = &s->regs[i];
    r->m = i < s->opts.n_methods ? s->opts.methods[i] : BUILT_IN[i - s->opts.n_methods];
    r->watch = r->m == &rpc__health_watch;
    r->reflect = r->m == &rpc__reflect_v1 || r->m == &rpc__reflect_v1alpha;
    r->handle = grpc_server_register_method(s->server, r->m->path, NULL,
                                            r->reflect ? GRPC_SRM_PAYLOAD_NONE : GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER,
                                            0);
    if (!r->handle) return rec_fail(err, REC_EINVAL, "cannot register method %s", r->m->path);
  }
  return 0;
}

static grpc_server *create_server(const rpc_server_opts *o) {
  grpc_arg args[] = {
      {GRPC_ARG_INTEGER, GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, {.integer = o->max_message_bytes}},
      {GRPC_ARG_INTEGER, GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, {.integer = o->max_message_bytes}},
      {GRPC_ARG_INTEGER, GRPC_ARG_MAX_CONCURRENT_STREAMS, {.integer = o->max_concurrent_streams}},
      /* Without this a second recd on the same port would silently share it. */
      {GRPC_ARG_INTEGER, GRPC_ARG_ALLOW_REUSEPORT, {.integer = 0}},
      {GRPC_ARG_INTEGER, GRPC_ARG_KEEPALIVE_TIME_MS, {.integer = o->keepalive_ms ? o->keepalive_ms : 7200000}},
      {GRPC_ARG_INTEGER, GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
       {.integer = o->keepalive_timeout_ms ? o->keepalive_timeout_ms : 20000}},
      /* Clients may ping idle connections, but not more often than every 10 s. */
      {GRPC_ARG_INTEGER, GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, {.integer = 10000}},
      {GRPC_ARG_INTEGER, GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, {.integer = 1}},
      {GRPC_ARG_INTEGER, GRPC_ARG_ENABLE_PER_MESSAGE_DECOMPRESSION, {.integer = 0}},
      /* Connections that hold a file descriptor and do nothing do not stay:
       * run out of descriptors and gRPC 1.51 stops accepting for good. */
      {GRPC_ARG_INTEGER, GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS,
       {.integer = o->handshake_timeout_ms ? o->handshake_timeout_ms : 120000}},
      {GRPC_ARG_INTEGER, GRPC_ARG_MAX_CONNECTION_IDLE_MS,
       {.integer = o->max_connection_idle_ms ? o->max_connection_idle_ms : INT32_MAX}},
  };
  grpc_channel_args ca = {sizeof args / sizeof args[0], args};
  return grpc_server_create(&ca, NULL);
}

static int check_opts(const rpc_server_opts *o, rec_error *err) {
  if (!o->listen || !*o->listen) return rec_fail(err, REC_EINVAL, "listen address is empty");
  if (o->threads < 1 || o->threads > 1024) return rec_fail(err, REC_EINVAL, "threads must be 1..1024");
  if (o->requests_per_method < 1) return rec_fail(err, REC_EINVAL, "requests_per_method must be >= 1");
  if (o->max_message_bytes < 1 || o->max_concurrent_streams < 1)
    return rec_fail(err, REC_EINVAL, "message and stream limits must be >= 1");
  return 0;
}

/* Frees what rpc_server_start built; the workers must not be running. */
static void destroy(rpc_server *s) {
  if (s->server) grpc_server_destroy(s->server);
  for (int i = 0; s->workers && i < s->opts.threads; i++)
    if (s->workers[i].cq) {
      grpc_completion_queue_shutdown(s->workers[i].cq);
      grpc_completion_queue_destroy(s->workers[i].cq);
      arena_cache_destroy(&s->workers[i].blocks);
    }
  if (s->idle_cq) {
    grpc_completion_queue_shutdown(s->idle_cq);
    while (grpc_completion_queue_next(s->idle_cq, gpr_inf_past(GPR_CLOCK_MONOTONIC), NULL).type == GRPC_OP_COMPLETE) {
    }
    grpc_completion_queue_destroy(s->idle_cq);
  }
  free(s->workers);
  free(s->regs);
  rpc__tls_free(s->tls);
  rpc__health_destroy(&s->health);
  rpc__reflect_stream_destroy(&s->reflect);
  pthread_mutex_destroy(&s->send_mu);
  free(s);
  grpc_shutdown();
}

static int bind_and_start(rpc_server *s, int *port, rec_error *err) {
  grpc_server_credentials *creds = s->tls ? rpc__tls_server_creds(s->tls) : grpc_insecure_server_credentials_create();
  if (!creds) return rec_fail(err, REC_EINVAL, "gRPC refused the TLS settings");
  int p = grpc_server_add_http2_port(s->server, s->opts.listen, creds);
  grpc_server_credentials_release(creds);
  if (p == 0)
    return rec_fail(err, REC_EINVAL, "cannot listen on %s (address in use, not local, or "
                    "malformed)", s->opts.listen);
  grpc_server_start(s->server);
  for (int i = 0; i < s->opts.threads; i++) {
    worker *w = &s->workers[i];
    for (int r = -1; r < (int)s->n_regs; r++)
      for (int k = 0; k < s->opts.requests_per_method; k++) post_request(w, w, r);
  }
  *port = p;
  return 0;
}

/* Servers in this process whose workers poll: a passive one needs one. */
static atomic_int polling_servers;

/* The engine gRPC chose at grpc_init: GRPC_POLL_STRATEGY names candidates,
 * and one that fails to start (epoll1 without epoll_create1, say) gives way
 * to the next, so only gRPC can say. Its C++ accessor is exported by
 * libgrpc but not declared for C; "?" if it is not there. */
static const char *poll_strategy(void) {
  const char *(*name)(void) = (const char *(*)(void))dlsym(RTLD_DEFAULT, "_Z27grpc_get_poll_strategy_namev");
  const char *v = name ? name() : NULL;
  return v ? v : "?";
}

static grpc_completion_queue *create_non_polling_cq(void) {
  grpc_completion_queue_attributes a = {.version = GRPC_CQ_CURRENT_VERSION, .cq_completion_type = GRPC_CQ_NEXT,
                                        .cq_polling_type = GRPC_CQ_NON_POLLING};
  return grpc_completion_queue_create(grpc_completion_queue_factory_lookup(&a), &a, NULL);
}

int rpc_server_start(const rpc_server_opts *o, rpc_server **out, int *port, rec_error *err) {
  int rc = check_opts(o, err);
  if (rc) return rc;
  rpc__runtime_init();
  grpc_init();
  rpc_server *s = calloc(1, sizeof *s);
  if (!s) {
    grpc_shutdown();
    return rec_fail(err, REC_ENOMEM, "out of memory");
  }
  s->opts = *o;
  if (!s->opts.limits.max_repeated) s->opts.limits = rpc_default_limits;
  atomic_init(&s->stopping, false);
  atomic_init(&s->inflight, 0);
  atomic_init(&s->open_calls, 0);
  pthread_mutex_init(&s->send_mu, NULL);
  s->workers = calloc((size_t)o->threads, sizeof *s->workers);
  if (rpc__reflect_init() != 0) /* a build fault; the streams answer an error_response */
    LOG_ERROR("server reflection has no descriptors", "reason=\"the embedded descriptor set does not decode\"");
  if (rpc__reflect_stream_init(&s->reflect, o, &s->opts.limits) != 0 || !s->workers ||
      rpc__health_init(&s->health, o->methods, o->n_methods) != 0) {
    s->opts.threads = 0;
    destroy(s);
    return rec_fail(err, REC_ENOMEM, "out of memory");
  }
  if (o->tls && (rc = rpc__tls_new(o->tls, &s->tls, err)) != 0) {
    s->opts.threads = 0;
    destroy(s);
    return rc;
  }
  s->server = create_server(o);
  /* Passive only under epoll1, whose one epoll set holds every descriptor
   * of the process (any thread waiting on any polling queue reads any
   * connection), and only while a server with polling workers runs. */
  const char *engine = poll_strategy();
  bool passive = o->passive_io && strcmp(engine, "epoll1") == 0 && atomic_load(&polling_servers) > 0;
  if (o->passive_io)
    LOG_INFO("listener I/O", "listener=%s io=%s poller=%s", o->name ? o->name : "?",
             passive ? "passive" : "polling", engine);
  for (int i = 0; i < o->threads; i++) {
    s->workers[i].srv = s;
    arena_cache_init(&s->workers[i].blocks, 0, RPC_ARENA_CACHE_BYTES);
    s->workers[i].cq = passive ? create_non_polling_cq() : grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(s->server, s->workers[i].cq, NULL);
  }
  if (passive) {
    s->idle_cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(s->server, s->idle_cq, NULL);
  }
  if ((rc = register_methods(s, err)) || (rc = bind_and_start(s, port, err))) goto fail;
  if (!passive) atomic_fetch_add(&polling_servers, 1); /* rpc_server_stop takes it back */
  for (int i = 0; i < o->threads; i++) {
    if (pthread_create(&s->workers[i].thread, NULL, worker_main, &s->workers[i]) != 0) {
      s->opts.threads = i; /* stop joins the ones that started */
      rpc_server_stop(s, 0);
      return rec_fail(err, REC_ENOMEM, "cannot start worker thread %d", i);
    }
  }
  *out = s;
  return 0;
fail:
  /* Not started yet, so the server can be destroyed without a shutdown. */
  destroy(s);
  return rc;
}

int rpc_server_reload_tls(rpc_server *s, rec_error *err) {
  return s->tls ? rpc__tls_reload(s->tls, err) : 0;
}

void rpc_server_set_serving(rpc_server *s, bool serving) { rpc__health_set(&s->health, serving); }

int rpc_server_inflight(const rpc_server *s) {
  return atomic_load(&((rpc_server *)s)->inflight);
}

size_t rpc_method_count(const rpc_server *s) { return s->n_regs; }

const char *rpc_method_path(const rpc_server *s, size_t method) {
  return method < s->n_regs ? s->regs[method].m->path : "";
}

bool rpc_server_serving(const rpc_server *s) {
  rpc_health *h = (rpc_health *)&s->health;
  pthread_mutex_lock(&h->mu);
  bool v = h->serving;
  pthread_mutex_unlock(&h->mu);
  return v;
}

/* A call still waiting for rpc_complete (a shard's answer, a group commit)
 * would start its final batch on a queue already shut down, which gRPC
 * treats as a fatal bug: the queues stay up, and the workers keep running,
 * until every such call is over, and every reflection stream has seen its
 * last completion. Each of those waits is bounded (deadlines,
 * the commit thread), so this is too; the extra margin is for a bug. */
static void wait_for_pending(rpc_server *s, int drain_ms) {
  int64_t until = rec_mono_ns() + ((int64_t)drain_ms + 60000) * 1000000;
  while ((atomic_load(&s->open_calls) > 0 || rpc__reflect_stream_live(&s->reflect) > 0) && rec_mono_ns() < until)
    nanosleep(&(struct timespec){0, 1000000}, NULL);
  int left = atomic_load(&s->open_calls) + rpc__reflect_stream_live(&s->reflect);
  if (left > 0) LOG_ERROR("calls never completed; stopping anyway", "calls=%d", left);
}

/* The order gRPC requires: shutdown_and_notify, wait (bounded), cancel the
 * rest, let pending calls finish, then shut the queues down and drain them
 * before destroying. */
void rpc_server_stop(rpc_server *s, int drain_ms) {
  atomic_store(&s->stopping, true);
  if (!s->idle_cq) atomic_fetch_sub(&polling_servers, 1);
  rpc__health_set(&s->health, false);
  grpc_completion_queue *scq = grpc_completion_queue_create_for_pluck(NULL);
  grpc_server_shutdown_and_notify(s->server, scq, (void *)&shutdown_tag);
  rpc__health_cancel_watches(&s->health);
  rpc__reflect_stream_cancel_all(&s->reflect);
  gpr_timespec until = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                    gpr_time_from_millis(drain_ms, GPR_TIMESPAN));
  grpc_event ev = grpc_completion_queue_pluck(scq, (void *)&shutdown_tag, until, NULL);
  if (ev.type != GRPC_OP_COMPLETE) {
    LOG_WARN("drain timeout; cancelling calls in flight", "drain_ms=%d", drain_ms);
    grpc_server_cancel_all_calls(s->server);
    grpc_completion_queue_pluck(scq, (void *)&shutdown_tag, gpr_inf_future(GPR_CLOCK_MONOTONIC),
                                NULL);
  }
  grpc_completion_queue_shutdown(scq);
  grpc_completion_queue_pluck(scq, NULL, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
  grpc_completion_queue_destroy(scq);
  wait_for_pending(s, drain_ms);
  for (int i = 0; i < s->opts.threads; i++) grpc_completion_queue_shutdown(s->workers[i].cq);
  for (int i = 0; i < s->opts.threads; i++) pthread_join(s->workers[i].thread, NULL);
  destroy(s);
}

/* ---- in-process calls ---- */

void rpc_local_begin(rpc_ctx *ctx, arena *a, void *app, int64_t deadline_ns) {
  *ctx = (rpc_ctx){.arena = a, .app = app, .deadline_ns = deadline_ns};
}

int rpc_local_call(rpc_ctx *ctx, const rpc_method *m, const ProtobufCMessage *in,
                   const ProtobufCMessage **out) {
  rpc_local l = {.done = false};
  pthread_mutex_init(&l.mu, NULL);
  pthread_cond_init(&l.cv, NULL);
  ctx->local = &l;
  ProtobufCMessage *reply = NULL;
  int rc = m->fn(ctx, in, &reply);
  if (rc == RPC_PENDING) {
    pthread_mutex_lock(&l.mu);
    while (!l.done) pthread_cond_wait(&l.cv, &l.mu);
    pthread_mutex_unlock(&l.mu);
    rc = l.rc;
    *out = l.reply;
  } else {
    *out = rc == 0 ? reply : NULL;
  }
  if (rc == 0 && !*out) rc = rpc_fail(ctx, REC_EINTERNAL, "handler returned no reply");
  ctx->local = NULL;
  pthread_mutex_destroy(&l.mu);
  pthread_cond_destroy(&l.cv);
  return rc;
}

void rpc_local_end(rpc_ctx *ctx) { run_cleanups(ctx); }
