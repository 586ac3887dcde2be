/* server/rpc_fanout.c - see rpc_fanout.h. Every call carries the deadline,
 * so gRPC itself ends the slow ones: the wait is for exactly n completions. */
#include "server/rpc_fanout.h"
#include "server/rpc_internal.h"
#include "common/clock.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct fanout {
  size_t n;
  char **targets;
  grpc_channel **channels;
};

typedef struct leg {
  grpc_call *call;
  grpc_byte_buffer *send;    /* per call: gRPC takes the slices out of what it sends */
  grpc_byte_buffer *recv;
  grpc_metadata_array init_md, trail_md;
  grpc_status_code status;
  grpc_slice details;
} leg;

int fanout_new(const char *targets, fanout **out, rec_error *err) {
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
  grpc_init();
  grpc_channel_credentials *creds = grpc_insecure_credentials_create();
  for (char *t = strtok_r(copy, ",", &save); t && f->targets; t = strtok_r(NULL, ",", &save)) {
    f->targets[f->n] = strdup(t);
    f->channels[f->n] = grpc_channel_create(t, creds, NULL);
    f->n++;
  }
  grpc_channel_credentials_release(creds);
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

static bool start(grpc_channel *ch, grpc_completion_queue *cq, const char *method,
                  const grpc_byte_buffer *send, gpr_timespec deadline, leg *l) {
  l->send = grpc_byte_buffer_copy((grpc_byte_buffer *)send);
  grpc_metadata_array_init(&l->init_md);
  grpc_metadata_array_init(&l->trail_md);
  l->details = grpc_empty_slice();
  l->status = GRPC_STATUS_UNAVAILABLE;
  l->call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
                                     grpc_slice_from_static_string(method), NULL, deadline, NULL);
  grpc_op ops[6];
  memset(ops, 0, sizeof ops);
  ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
  ops[1].op = GRPC_OP_SEND_MESSAGE;
  ops[1].data.send_message.send_message = l->send;
  ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
  ops[3].data.recv_initial_metadata.recv_initial_metadata = &l->init_md;
  ops[4].op = GRPC_OP_RECV_MESSAGE;
  ops[4].data.recv_message.recv_message = &l->recv;
  ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  ops[5].data.recv_status_on_client.trailing_metadata = &l->trail_md;
  ops[5].data.recv_status_on_client.status = &l->status;
  ops[5].data.recv_status_on_client.status_details = &l->details;
  return grpc_call_start_batch(l->call, ops, 6, l, NULL) == GRPC_CALL_OK;
}

void fanout_call(fanout *f, const char *method, const ProtobufCMessage *req,
                 const ProtobufCMessageDescriptor *resp_desc, int64_t deadline_ns, arena *a,
                 ProtobufCMessage **resps, int *status) {
  grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
  int64_t left = deadline_ns - rec_mono_ns();
  gpr_timespec deadline = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                       gpr_time_from_nanos(left > 0 ? left : 0, GPR_TIMESPAN));
  grpc_byte_buffer *send = rpc__pack(req);
  leg *legs = calloc(f->n, sizeof *legs);
  size_t started = 0;
  for (size_t i = 0; legs && i < f->n; i++) started += start(f->channels[i], cq, method, send, deadline, &legs[i]);
  for (size_t done = 0; done < started;) { /* each call ends by its deadline at the latest */
    grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
    if (ev.type == GRPC_OP_COMPLETE) done++;
  }
  for (size_t i = 0; i < f->n; i++) {
    resps[i] = NULL;
    status[i] = legs ? (int)legs[i].status : GRPC_STATUS_RESOURCE_EXHAUSTED;
    if (!legs) continue;
    if (legs[i].status == GRPC_STATUS_OK && legs[i].recv) resps[i] = rpc__unpack(legs[i].recv, resp_desc, a);
    if (legs[i].recv) grpc_byte_buffer_destroy(legs[i].recv);
    if (legs[i].send) grpc_byte_buffer_destroy(legs[i].send);
    grpc_slice_unref(legs[i].details);
    grpc_metadata_array_destroy(&legs[i].init_md);
    grpc_metadata_array_destroy(&legs[i].trail_md);
    if (legs[i].call) grpc_call_unref(legs[i].call);
  }
  free(legs);
  grpc_byte_buffer_destroy(send);
  grpc_completion_queue_shutdown(cq);
  while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type != GRPC_QUEUE_SHUTDOWN) {
  }
  grpc_completion_queue_destroy(cq);
}
