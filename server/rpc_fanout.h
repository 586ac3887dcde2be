/* server/rpc_fanout.h - one unary call sent to every shard of a tier at
 * once over gRPC's C core, answered by whatever arrives before the deadline.
 * The ranking tier uses it to ask the candidate tier's shards in parallel.
 * Thread-safe: each call has its own completion queue. */
#ifndef REC_RPC_FANOUT_H
#define REC_RPC_FANOUT_H
#include <stddef.h>
#include <stdint.h>
#include <protobuf-c/protobuf-c.h>
#include "common/arena.h"
#include "common/err.h"

typedef struct fanout fanout;

/* Channels to each "host:port" of the comma-separated 'targets'. */
int  fanout_new(const char *targets, fanout **out, rec_error *err);
void fanout_free(fanout *f);                          /* NULL is a no-op */
size_t fanout_count(const fanout *f);
const char *fanout_target(const fanout *f, size_t i);

/* Sends 'req' to every target with the deadline 'deadline_ns' (on
 * rec_mono_ns()'s clock) and waits for all to finish or the deadline to
 * pass. resps[i] is target i's decoded reply (arena memory) or NULL, and
 * status[i] its gRPC status (DEADLINE_EXCEEDED, UNAVAILABLE, ...). */
void fanout_call(fanout *f, const char *method, const ProtobufCMessage *req,
                 const ProtobufCMessageDescriptor *resp_desc, int64_t deadline_ns, arena *a,
                 ProtobufCMessage **resps, int *status);
#endif
