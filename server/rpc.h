/* server/rpc.h - recd's RPC layer over gRPC's C core. It owns completion
 * queues, tags, byte buffers, metadata, deadlines and status codes; handlers
 * see none of that. A handler gets a decoded request, an arena that dies with
 * the call, and the caller's deadline, and returns a reply or a negative
 * rec error code (common/err.h) that the layer maps to one gRPC status.
 *
 * Threads: N workers, each with its own completion queue, on which requests
 * for every method are pre-posted; a handler runs inline on the worker that
 * received its call, so it must not block. A handler whose answer needs a
 * wait (a shard's reply, an fdatasync, a bundle load) starts that work and
 * returns RPC_PENDING; whoever finishes the work calls rpc_complete, from any
 * thread, exactly once. Until then the call, its ctx and its arena stay
 * alive and count as in flight. grpc.health.v1.Health (Check and Watch) is
 * built in and reports SERVING only after rpc_server_set_serving; so is
 * server reflection (grpc.reflection.v1 and v1alpha), which lists the
 * services of the listener's methods and serves the descriptors of
 * proto/ that protoc embedded at build time. */
#ifndef REC_RPC_H
#define REC_RPC_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <protobuf-c/protobuf-c.h>
#include "common/arena.h"
#include "common/err.h"
#include "common/trace.h"

typedef struct rpc_server rpc_server;
typedef struct rpc_cleanup rpc_cleanup;
typedef struct rpc_local rpc_local;
typedef struct auth auth; /* server/auth.h */

/* A handler's return value when the reply will come through rpc_complete. */
enum { RPC_PENDING = 1 };

typedef struct rpc_ctx {
  arena *arena;          /* per-call memory; also the protobuf-c allocator */
  int64_t deadline_ns;   /* on rec_mono_ns()'s clock; INT64_MAX when the caller set none */
  void *app;             /* rpc_server_opts.app */
  rec_error err;         /* set with rpc_fail when returning an error */
  rpc_server *server;    /* NULL for an in-process call (rpc_local_call) */
  rpc_cleanup *cleanups; /* rpc_on_done's list, newest first */
  void *call;            /* the RPC layer's own record of the call */
  rpc_local *local;      /* set for an in-process call */
  const char *identity;  /* on a server with rpc_server_opts.auth: who called,
                            "token:NAME" or "cert:SUBJECT"; else NULL */
  void *note;            /* what the handler leaves for rpc_server_opts.observe
                            (in the arena, e.g. the call's experiment arms); NULL */
  trace_ctx trace;       /* W3C trace context: the caller's traceparent when valid, else
                            a new trace; all "" for an in-process call. Fan-out calls
                            carry it on with new span ids */
  const char *request_id; /* in: the caller's x-request-id metadata (1 to 128 printable
                             ASCII bytes) or NULL; a handler may set it to the id it
                             used, which goes back as x-request-id metadata */
  bool quiet;            /* an in-process look-up that must leave no trace (the
                            admin console): no metrics, no attribution */
} rpc_ctx;

typedef int (*rpc_handler_fn)(rpc_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **out);

/* What any request may hold, checked on its bytes before decoding. */
typedef struct rpc_limits {
  size_t max_repeated;           /* elements of any one repeated field */
  size_t max_unknown;            /* unknown fields in any one message */
  int max_depth;                 /* message nesting */
} rpc_limits;
extern const rpc_limits rpc_default_limits;

/* Decodes a request the way the server does: a walk of the bytes against
 * 'd' refuses, before anything is allocated, a string field that is not
 * UTF-8 or holds a NUL byte (REC_EINVAL, 'err' naming the field, e.g.
 * "events[3].user_id is not valid UTF-8"), a repeated field past
 * max_repeated elements (REC_ETOOBIG), too many unknown fields, too deep
 * nesting and malformed bytes (REC_EINVAL); then protobuf-c unpacks into
 * 'a'. Returns the message, or NULL with 'err' filled. NULL 'lim': the
 * defaults. */
ProtobufCMessage *rpc_decode(const uint8_t *p, size_t n, const ProtobufCMessageDescriptor *d,
                             const rpc_limits *lim, arena *a, rec_error *err);

typedef struct rpc_method {
  const char *path;                        /* "/rec.v1.Ranking/Recommend" */
  const ProtobufCMessageDescriptor *in, *out;
  rpc_handler_fn fn;                       /* NULL: answers UNIMPLEMENTED */
} rpc_method;

/* TLS on a listener. Files are PEM; rpc_server_reload_tls re-reads them. */
typedef enum rpc_client_cert {
  RPC_CLIENT_CERT_NONE,          /* no client certificates asked for */
  RPC_CLIENT_CERT_OPTIONAL,      /* asked for, verified when sent */
  RPC_CLIENT_CERT_REQUIRE,       /* a connection without a valid one is refused */
} rpc_client_cert;
typedef struct rpc_tls {
  const char *cert_file, *key_file;  /* the server's certificate chain and key */
  const char *client_ca_file;        /* CA client certificates must chain to */
  rpc_client_cert client_cert;
} rpc_tls;

#define RPC_SEND_TIMEOUT_MS 10000

/* What each worker keeps of its calls' arena blocks between calls (an
 * arena_cache; common/arena.h). A Recommend holds 160 KiB to 2 MiB until its
 * reply is sent, and under load a worker has a dozen or more such calls at
 * once (their send completions queue behind new calls): with 4 MiB a worker
 * still mapped and unmapped a block every 25 calls, with 16 MiB none at 32
 * calls in flight. */
#define RPC_ARENA_CACHE_BYTES (16u << 20)

typedef struct rpc_server_opts {
  const char *name;              /* what the logs call this listener ("serving", "admin") */
  const char *listen;            /* "host:port"; port 0 picks a free one */
  const rpc_tls *tls;            /* NULL: plaintext */
  /* Non-NULL: every call but health needs a bearer token or an allowed
   * client certificate from it, else UNAUTHENTICATED; each call is logged
   * with its caller's identity, method and outcome. */
  const auth *auth;
  int threads;                   /* completion-queue workers, >= 1 */
  int requests_per_method;       /* requests kept posted per method and worker */
  int max_message_bytes;         /* larger requests fail RESOURCE_EXHAUSTED */
  rpc_limits limits;             /* what a request may hold; zeros: rpc_default_limits */
  size_t max_call_bytes;         /* memory one call's arena may hold; 0: no cap */
  int max_concurrent_streams;    /* per HTTP/2 connection */
  int max_inflight;              /* calls past this fail RESOURCE_EXHAUSTED at once; 0 = no cap */
  int keepalive_ms;              /* ping idle connections this often; 0 = gRPC's default */
  int keepalive_timeout_ms;      /* and close them if a ping goes unanswered this long */
  int handshake_timeout_ms;      /* a connection that has not finished its HTTP/2 (and TLS) handshake
                                    by then is closed; 0 = gRPC's default (120 s) */
  int max_connection_idle_ms;    /* a connection with no call this long is closed (clients reconnect);
                                    0 = never */
  /* A call whose reply the client has not taken this long after it was
   * ready (a reader that never opens its flow-control window) is
   * cancelled, its memory given back; and while more than max_inflight
   * (1024 with no cap) wait, the oldest waiting over a second is. A waiting
   * reply holds no in-flight slot. 0: RPC_SEND_TIMEOUT_MS. */
  int send_timeout_ms;
  /* Its workers only take completions and leave reading and writing the
   * sockets to the threads of another server in this process (the serving
   * one), which gRPC's epoll1 poller already has watch every descriptor of
   * the process; only while no worker of a polling server waits between
   * calls (a saturating load) does it poll, for everyone, so that the
   * admin listener keeps answering. Without it, a quiet
   * listener's worker (the admin one) is a third thread that wakes to read
   * the busy listener's calls and hands each to one of its workers: a
   * context switch more per call. Ignored (the workers poll, and a line
   * says so) unless gRPC chose epoll1 and a server with polling workers
   * runs; stop a passive server before the polling one. */
  bool passive_io;
  const rpc_method *const *methods; /* unary methods; must outlive the server */
  size_t n_methods;
  /* Those of 'methods' server reflection does not list (stubs that send the
   * caller to another listener): a service is listed when one of its
   * methods is not here. */
  const rpc_method *const *unlisted;
  size_t n_unlisted;
  void *app;                     /* handed to handlers in rpc_ctx.app */
  void (*thread_init)(void);     /* run first on every worker thread; may be NULL */
  /* Called once per finished call of a known method: its index (methods
   * first, then grpc.health.v1 Check and Watch, then the two reflection
   * streams, which are never observed), gRPC status and time from arrival
   * to status. May be NULL; must be thread-safe. */
  void (*observe)(size_t method, int status, int64_t ns, const rpc_ctx *ctx);
} rpc_server_opts;

/* Binds, registers methods and starts the workers. Health says NOT_SERVING
 * until rpc_server_set_serving(s, true). Stores the bound port in *port.
 * Returns 0, or REC_EINVAL (bad options, address in use) with 'err' filled. */
int  rpc_server_start(const rpc_server_opts *o, rpc_server **out, int *port, rec_error *err);
/* Re-reads the TLS files; connections made from now on use them. On a bad
 * file returns REC_EINVAL/REC_EIO with 'err' filled and keeps the old ones.
 * 0 when the server has no TLS. */
int  rpc_server_reload_tls(rpc_server *s, rec_error *err);
/* Switches the health status; Watch streams hear of the change. Thread-safe. */
void rpc_server_set_serving(rpc_server *s, bool serving);
bool rpc_server_serving(const rpc_server *s);
/* Calls between arrival and final status right now. */
int  rpc_server_inflight(const rpc_server *s);
/* Cancels the replies that have waited too long for their client to read
 * them (rpc_server_opts.send_timeout_ms); every finishing call does this
 * too, and recd's admin HTTP timer every second, so an idle server frees
 * them as well. Thread-safe. */
void rpc_server_sweep_replies(rpc_server *s);
/* The names observe() indexes by: each method's path, then the two health
 * methods and the two reflection streams. Valid for the server's life. */
const char *rpc_method_path(const rpc_server *s, size_t method);
size_t rpc_method_count(const rpc_server *s);
/* Stops accepting calls, lets calls in flight finish for up to 'drain_ms',
 * cancels the rest, joins the workers and frees the server. */
void rpc_server_stop(rpc_server *s, int drain_ms);

/* Fills ctx->err and returns 'code', for `return rpc_fail(ctx, REC_EINVAL, ...)`. */
int  rpc_fail(rpc_ctx *ctx, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Runs fn(arg) once the reply has been packed (or the call failed): for
 * handlers whose reply points into shared data they hold a reference to.
 * Any number per call, run newest first. Returns 0, or REC_ENOMEM and then
 * does not take 'fn' on (the caller still holds what 'arg' refers to). */
int  rpc_on_done(rpc_ctx *ctx, void (*fn)(void *), void *arg);
/* True once the caller's deadline has passed. */
bool rpc_deadline_passed(const rpc_ctx *ctx);

/* Finishes a call whose handler returned RPC_PENDING: 'rc' and 'reply' mean
 * what a handler's return and *out mean (an error's message is in ctx->err,
 * set with rpc_fail first). Callable from any thread, exactly once; 'ctx'
 * and its arena are gone when it returns. */
void rpc_complete(rpc_ctx *ctx, int rc, const ProtobufCMessage *reply);

/* In-process calls, with no gRPC underneath: for unit tests and tools that
 * run a handler directly. rpc_local_call runs m's handler on 'in' (which
 * may live in 'a'), waits for rpc_complete if it went pending, and returns
 * its code; *out (on 0) and ctx->err stay valid until rpc_local_end, which
 * runs the rpc_on_done list. 'app' is handed to the handler. */
void rpc_local_begin(rpc_ctx *ctx, arena *a, void *app, int64_t deadline_ns);
int  rpc_local_call(rpc_ctx *ctx, const rpc_method *m, const ProtobufCMessage *in,
                    const ProtobufCMessage **out);
void rpc_local_end(rpc_ctx *ctx);
#endif
