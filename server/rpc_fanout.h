/* server/rpc_fanout.h - one unary call sent to every shard of a tier at
 * once over gRPC's C core, answered by whatever arrives before the deadline.
 * The ranking tier uses it to ask the candidate tier's shards in parallel
 * without waiting: the calls ride on the completion queue of the worker that
 * runs the server call, and the answer is a callback on that worker.
 * A fanout (its channels) is shared by every worker; starting calls is
 * thread-safe. */
#ifndef REC_RPC_FANOUT_H
#define REC_RPC_FANOUT_H
#include <stddef.h>
#include <stdint.h>
#include <protobuf-c/protobuf-c.h>
#include "common/err.h"
#include "server/rpc.h"
#include "server/rpc_client.h"

typedef struct fanout fanout;

/* Channels to each "host:port" of the comma-separated 'targets'. */
int  fanout_new(const char *targets, const rpc_client_tls *tls, fanout **out, rec_error *err);
void fanout_free(fanout *f);                          /* NULL is a no-op */
size_t fanout_count(const fanout *f);
const char *fanout_target(const fanout *f, size_t i);

/* resps[i] is target i's decoded reply (in the call's arena) or NULL, and
 * status[i] its gRPC status (DEADLINE_EXCEEDED, UNAVAILABLE, ...), or
 * FANOUT_SKIPPED for a target not asked. */
enum { FANOUT_SKIPPED = -1, FANOUT_OUT_OF_TIME = 4 /* gRPC's DEADLINE_EXCEEDED */ };
typedef void (*fanout_done_fn)(void *arg, ProtobufCMessage **resps, const int *status);

/* Sends 'req' to every target (but those with skip[i] set; 'skip' may be
 * NULL) with the deadline 'deadline_ns' (on rec_mono_ns()'s clock). When the
 * last call has landed (each ends by the
 * deadline at the latest, gRPC sees to it) 'done' runs once on the worker
 * running ctx's call, possibly before fanout_start returns when no call
 * could start. Returns 0, or REC_ENOMEM, or REC_EINVAL for an in-process
 * ctx (no worker to ride on); then 'done' never runs. */
int fanout_start(fanout *f, rpc_ctx *ctx, const char *method, const ProtobufCMessage *req,
                 const ProtobufCMessageDescriptor *resp_desc, int64_t deadline_ns,
                 const unsigned char *skip, fanout_done_fn done, void *arg);
#endif
