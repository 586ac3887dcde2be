/* server/rpc_internal.h - shared between the rpc_*.c files only. */
#ifndef REC_RPC_INTERNAL_H
#define REC_RPC_INTERNAL_H
#include <grpc/grpc.h>
#include <grpc/status.h>
#include <pthread.h>
#include <stdatomic.h>
#include "server/rpc.h"

/* What a completion-queue tag points at; the first member of every tagged struct. */
typedef enum { TAG_CALL, TAG_WATCH_SEND, TAG_WATCH_CLOSE, TAG_SHUTDOWN } rpc_tag_kind;
typedef struct rpc_tag {
  rpc_tag_kind kind;
} rpc_tag;

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
#endif
