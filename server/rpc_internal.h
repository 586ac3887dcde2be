/* server/rpc_internal.h - shared between the rpc_*.c files only. */
#ifndef REC_RPC_INTERNAL_H
#define REC_RPC_INTERNAL_H
#include <grpc/grpc.h>
#include <grpc/status.h>
#include <pthread.h>
#include <stdatomic.h>
#include "server/rpc.h"
#include "server/rpc_client.h"

/* What a completion-queue tag points at; the first member of every tagged
 * struct. A TAG_CLIENT completion (a client call riding on a worker's queue)
 * runs its 'fn' on that worker. */
typedef enum { TAG_CALL, TAG_WATCH_SEND, TAG_WATCH_CLOSE, TAG_SHUTDOWN, TAG_CLIENT, TAG_REFLECT,
               TAG_REFLECT_CLOSE } rpc_tag_kind;
typedef struct rpc_tag {
  rpc_tag_kind kind;
  void (*fn)(struct rpc_tag *t, bool ok); /* TAG_CLIENT only */
} rpc_tag;

/* ThreadSanitizer cannot see gRPC's own synchronisation (Debian's libgrpc
 * and abseil are not instrumented), so a record handed to gRPC with a tag on
 * one thread and handed back by a completion queue on another looks like a
 * data race to it. The queue does order the two: whatever a thread wrote
 * before it started the batch (or posted the request) happens before
 * whatever the thread that the queue returns the tag to does next.
 * rpc__tag_release before a tag goes to gRPC and rpc__tag_acquire when a
 * queue returns it say so; in every other build they are nothing. */
#if defined(__SANITIZE_THREAD__)
#define RPC_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define RPC_TSAN 1
#endif
#endif
#ifdef RPC_TSAN
#include <sanitizer/tsan_interface.h>
static inline void rpc__tag_release(void *tag) { __tsan_release(tag); }
static inline void rpc__tag_acquire(void *tag) { __tsan_acquire(tag); }
#else
static inline void rpc__tag_release(void *tag) { (void)tag; }
static inline void rpc__tag_acquire(void *tag) { (void)tag; }
#endif

/* One unary client call as one batch: send metadata, message and
 * half-close; receive metadata, message and status. The client, the fan-out
 * and the load generator all use it. */
typedef struct rpc_unary {
  grpc_call *call;
  grpc_byte_buffer *send;    /* a copy per call: gRPC takes the slices out of what it sends */
  grpc_byte_buffer *recv;    /* the reply, or NULL */
  grpc_metadata_array init_md, trail_md;
  grpc_status_code status;
  grpc_slice details;
} rpc_unary;

/* Starts 'method' on 'ch' with a copy of 'send', the absolute 'deadline',
 * completions on 'cq' with 'tag'. Returns true when the batch started (one
 * completion will arrive); either way rpc__unary_end releases it. */
/* Once per process before grpc_init (rpc_runtime.cpp): Abseil's mutex
 * deadlock detection off, as in a release build of Abseil. */
void rpc__runtime_init(void);

/* Whether 's' may go in a metadata value as it is: 1 to 128 printable ASCII
 * bytes (gRPC refuses a batch whose metadata is not printable). */
bool rpc__md_value_ok(const char *s);

bool rpc__unary_start(rpc_unary *u, grpc_channel *ch, grpc_completion_queue *cq, const char *method,
                      grpc_byte_buffer *send, gpr_timespec deadline, void *tag);
/* The same with request metadata ('md' must outlive the call's batch). */
bool rpc__unary_start_md(rpc_unary *u, grpc_channel *ch, grpc_completion_queue *cq, const char *method,
                         grpc_byte_buffer *send, gpr_timespec deadline, grpc_metadata *md, size_t n_md,
                         void *tag);

/* A channel to 'target': plaintext when 'tls' is NULL or names no CA file,
 * else TLS trusting tls->ca_file, with a client certificate when one is
 * given. NULL with 'err' filled (a file unreadable or not PEM, a key that
 * is not the certificate's). rpc_tls.c. */
grpc_channel *rpc__channel_new(const char *target, const rpc_client_tls *tls, rec_error *err);

/* A listener's TLS settings and certificates, re-read by rpc__tls_reload;
 * a handshake after a reload uses the new files. */
typedef struct rpc_tls_state rpc_tls_state;
int  rpc__tls_new(const rpc_tls *o, rpc_tls_state **out, rec_error *err);
int  rpc__tls_reload(rpc_tls_state *t, rec_error *err);
void rpc__tls_free(rpc_tls_state *t);
/* Server credentials reading certificates from 't' (which must outlive them). */
grpc_server_credentials *rpc__tls_server_creds(rpc_tls_state *t);
void rpc__unary_end(rpc_unary *u);
/* An absolute deadline on gRPC's monotonic clock, 'ns' from now (>= 0). */
gpr_timespec rpc__deadline_in(int64_t ns);

/* The completion queue of the worker running 'ctx''s call; NULL for an
 * in-process call. Client calls started on it complete on that worker. */
grpc_completion_queue *rpc__ctx_cq(const rpc_ctx *ctx);

typedef struct rpc_watch rpc_watch;

typedef struct rpc_health {
  pthread_mutex_t mu;
  bool serving;
  const char **services;  /* names Check and Watch know, "" first */
  size_t n_services;
  rpc_watch *watches;     /* open Watch streams */
} rpc_health;

/* A message packed into a new byte buffer (caller destroys it). */
grpc_byte_buffer *rpc__pack(const ProtobufCMessage *m);
/* A request's byte buffer (plain, or gzip/deflate inflated to at most
 * 'max' bytes) decoded into 'a' through rpc_decode; NULL with 'err' filled
 * (REC_EINVAL, REC_ETOOBIG, REC_EUNIMPL, REC_ENOMEM). */
ProtobufCMessage *rpc__read_request(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *d,
                                    const rpc_limits *lim, size_t max, arena *a, rec_error *err);
/* A byte buffer decoded into 'a'; NULL if it is not a valid 'd'. */
ProtobufCMessage *rpc__unpack(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *d, arena *a);

/* The gRPC status for a rec error code (one table, in rpc_status.c). */
grpc_status_code rpc__status_of(int code);

/* Built-in grpc.health.v1 (rpc_health.c). */
int  rpc__health_init(rpc_health *h, const rpc_method *const *methods, size_t n);
void rpc__health_destroy(rpc_health *h);
extern const rpc_method rpc__health_check;
extern const rpc_method rpc__health_watch; /* fn is NULL: the RPC layer streams it */
/* Takes over 'call', a new Watch whose decoded request is 'req'; its
 * completions arrive on the queue the call is bound to, as TAG_WATCH_*. */
void rpc__health_watch_start(rpc_health *h, grpc_call *call, const ProtobufCMessage *req);
void rpc__health_watch_event(rpc_health *h, rpc_tag *tag, bool ok);
void rpc__health_set(rpc_health *h, bool serving);
void rpc__health_cancel_watches(rpc_health *h);
rpc_health *rpc__server_health(rpc_server *s);

/* ---- Server reflection ----
 * rpc_reflect.c answers one request from the descriptor set protoc embedded
 * (no gRPC in it, so a unit test and a fuzz target can call it);
 * rpc_reflect_stream.c carries requests and answers on the bidi stream. */
struct Grpc__Reflection__V1__ServerReflectionRequest;
struct Grpc__Reflection__V1__ServerReflectionResponse;
typedef struct Grpc__Reflection__V1__ServerReflectionRequest rpc_reflect_req;
typedef struct Grpc__Reflection__V1__ServerReflectionResponse rpc_reflect_resp;

/* Indexes the embedded descriptor set, once per process (thread-safe). 0,
 * or REC_ECORRUPT / REC_ENOMEM; every later call returns the same. */
int rpc__reflect_init(void);
/* The services list_services names, in 'a': those of o->methods but not
 * o->unlisted (each once, in table order), then grpc.health.v1.Health and
 * the two reflection services. */
int rpc__reflect_services(const rpc_server_opts *o, arena *a, const char ***out, size_t *n_out);
/* The answer to 'q' in 'a' (it points into 'q' and the embedded set). A
 * question about something that does not exist, or none, is answered with
 * an error_response (NOT_FOUND, INVALID_ARGUMENT); fails only when out of
 * memory (REC_ENOMEM). */
int rpc__reflect_answer(const char *const *services, size_t n_services, const rpc_reflect_req *q, arena *a,
                        rpc_reflect_resp **out);
/* An answer that is only an error_response (a request that did not decode). */
int rpc__reflect_error(int code, const char *msg, arena *a, rpc_reflect_resp **out);

enum {
  RPC_REFLECT_MAX_STREAMS = 64,      /* open reflection streams per listener */
  RPC_REFLECT_MAX_MESSAGES = 1000,   /* requests per stream */
  RPC_REFLECT_MAX_REQUEST = 16384,   /* bytes per request (inflated) */
};

typedef struct rpc_rstream rpc_rstream;
typedef struct rpc_reflect {
  pthread_mutex_t mu;
  const char **services;   /* what list_services answers */
  size_t n_services;
  arena names;             /* holds 'services' */
  rpc_limits limits;
  rpc_rstream *streams;    /* open streams */
  int n_streams;
  int live;                /* streams not yet freed, open or not */
} rpc_reflect;

int  rpc__reflect_stream_init(rpc_reflect *r, const rpc_server_opts *o, const rpc_limits *lim);
void rpc__reflect_stream_destroy(rpc_reflect *r);
/* Takes over 'call' (a new ServerReflectionInfo stream) and returns 0, or
 * returns REC_EOVERLOAD / REC_ENOMEM with 'err' filled and leaves the call
 * to the caller. Its completions arrive on the call's queue as TAG_REFLECT*. */
int  rpc__reflect_stream_start(rpc_reflect *r, grpc_call *call, rec_error *err);
void rpc__reflect_stream_event(rpc_reflect *r, rpc_tag *tag, bool ok);
/* Cancels every open stream (the server is stopping). */
void rpc__reflect_stream_cancel_all(rpc_reflect *r);
/* Streams whose last batch has not completed yet: the queues they use
 * must stay up until this is 0. */
int  rpc__reflect_stream_live(rpc_reflect *r);
extern const rpc_method rpc__reflect_v1, rpc__reflect_v1alpha; /* fn is NULL: the RPC layer streams them */
#endif
