/* server/rpc_unary.c - the one unary client batch (see rpc_internal.h):
 * recctl's blocking client, the ranking tier's fan-out and the load
 * generator differ only in which queue they wait on. */
#include "server/rpc_internal.h"

#include <grpc/byte_buffer.h>
#include <grpc/support/time.h>
#include <string.h>

gpr_timespec rpc__deadline_in(int64_t ns) {
  return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_nanos(ns > 0 ? ns : 0, GPR_TIMESPAN));
}

bool rpc__md_value_ok(const char *s) {
  size_t n = 0;
  for (; s[n]; n++)
    if (s[n] < 0x21 || s[n] > 0x7e || n == 128) return false;
  return n > 0;
}

bool rpc__unary_start(rpc_unary *u, grpc_channel *ch, grpc_completion_queue *cq, const char *method,
                      grpc_byte_buffer *send, gpr_timespec deadline, void *tag) {
  return rpc__unary_start_md(u, ch, cq, method, send, deadline, NULL, 0, tag);
}

bool rpc__unary_start_md(rpc_unary *u, grpc_channel *ch, grpc_completion_queue *cq, const char *method,
                         grpc_byte_buffer *send, gpr_timespec deadline, grpc_metadata *md, size_t n_md,
                         void *tag) {
  memset(u, 0, sizeof *u);
  u->send = grpc_byte_buffer_copy(send);
  grpc_metadata_array_init(&u->init_md);
  grpc_metadata_array_init(&u->trail_md);
  u->details = grpc_empty_slice();
  u->status = GRPC_STATUS_UNAVAILABLE; /* what a batch that never ran reports */
  u->call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
                                     grpc_slice_from_static_string(method), NULL, deadline, NULL);
  grpc_op ops[6];
  memset(ops, 0, sizeof ops);
  ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
  ops[0].data.send_initial_metadata.count = n_md;
  ops[0].data.send_initial_metadata.metadata = md;
  ops[1].op = GRPC_OP_SEND_MESSAGE;
  ops[1].data.send_message.send_message = u->send;
  ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
  ops[3].data.recv_initial_metadata.recv_initial_metadata = &u->init_md;
  ops[4].op = GRPC_OP_RECV_MESSAGE;
  ops[4].data.recv_message.recv_message = &u->recv;
  ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  ops[5].data.recv_status_on_client.trailing_metadata = &u->trail_md;
  ops[5].data.recv_status_on_client.status = &u->status;
  ops[5].data.recv_status_on_client.status_details = &u->details;
  grpc_call *call = u->call;
  if (!call) return false;
  rpc__tag_release(tag);
  return grpc_call_start_batch(call, ops, 6, tag, NULL) == GRPC_CALL_OK;
}

void rpc__unary_end(rpc_unary *u) {
  if (u->recv) grpc_byte_buffer_destroy(u->recv);
  if (u->send) grpc_byte_buffer_destroy(u->send);
  grpc_slice_unref(u->details);
  grpc_metadata_array_destroy(&u->init_md);
  grpc_metadata_array_destroy(&u->trail_md);
  if (u->call) grpc_call_unref(u->call);
  memset(u, 0, sizeof *u);
}
