/* server/rpc_client.c - a blocking unary call: the one client batch
 * (rpc_unary.c) on a private queue, plucked. */
#include "server/rpc_client.h"
#include "server/rpc_internal.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct rpc_client {
  grpc_channel *channel;
  char *auth;               /* "Bearer TOKEN", or NULL */
  grpc_metadata md;
};

int rpc_client_new(const char *target, const rpc_client_tls *tls, const char *token, rpc_client **out,
                   rec_error *err) {
  rpc_client *c = calloc(1, sizeof *c);
  if (!c) return rec_fail(err, REC_ENOMEM, "out of memory");
  if (token) {
    size_t n = strlen(token) + 8;
    if (!(c->auth = malloc(n))) {
      free(c);
      return rec_fail(err, REC_ENOMEM, "out of memory");
    }
    snprintf(c->auth, n, "Bearer %s", token);
    c->md.key = grpc_slice_from_static_string("authorization");
    c->md.value = grpc_slice_from_static_string(c->auth);
  }
  rpc__runtime_init();
  grpc_init();
  if (!(c->channel = rpc__channel_new(target, tls, err))) {
    rpc_client_free(c);
    return err ? err->code : REC_EINVAL;
  }
  *out = c;
  return 0;
}

void rpc_client_free(rpc_client *c) {
  if (!c) return;
  if (c->channel) grpc_channel_destroy(c->channel);
  if (c->auth) {
    memset(c->auth, 0, strlen(c->auth));
    free(c->auth);
  }
  free(c);
  grpc_shutdown();
}

const char *rpc_status_name(int code) {
  static const char *const names[] = {
      "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
      "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
      "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
      "UNAUTHENTICATED"};
  return code >= 0 && code < (int)(sizeof names / sizeof names[0]) ? names[code] : "UNKNOWN";
}

int rpc_client_call(rpc_client *c, const char *method, const ProtobufCMessage *req,
                    const ProtobufCMessageDescriptor *resp_desc, int64_t timeout_ms, arena *a,
                    ProtobufCMessage **resp, rpc_status *st) {
  grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
  grpc_byte_buffer *send = rpc__pack(req);
  rpc_unary u;
  int rc = -1;
  if (!rpc__unary_start_md(&u, c->channel, cq, method, send, rpc__deadline_in(timeout_ms * 1000000),
                           c->auth ? &c->md : NULL, c->auth ? 1 : 0, &u)) {
    st->code = GRPC_STATUS_INTERNAL;
    st->unreached = false;
    snprintf(st->message, sizeof st->message, "could not start the call");
    goto done;
  }
  grpc_completion_queue_pluck(cq, &u, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
  st->code = u.status;
  /* A channel that is not READY after a failed call never had a server to
   * talk to; the status a server sends (even UNAVAILABLE) leaves it READY. */
  st->unreached = u.status != GRPC_STATUS_OK &&
                  grpc_channel_check_connectivity_state(c->channel, 0) != GRPC_CHANNEL_READY;
  snprintf(st->message, sizeof st->message, "%.*s", (int)GRPC_SLICE_LENGTH(u.details),
           (const char *)GRPC_SLICE_START_PTR(u.details));
  if (u.status != GRPC_STATUS_OK) goto done;
  if (!u.recv || !(*resp = rpc__unpack(u.recv, resp_desc, a))) {
    st->code = GRPC_STATUS_INTERNAL;
    snprintf(st->message, sizeof st->message, "reply is not a valid %s", resp_desc->name);
    goto done;
  }
  rc = 0;
done:
  rpc__unary_end(&u);
  grpc_byte_buffer_destroy(send);
  grpc_completion_queue_shutdown(cq);
  grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
  grpc_completion_queue_destroy(cq);
  return rc;
}
