/* server/rpc_client.h - a small blocking unary client over gRPC's C core, for
 * recctl and tests. One client holds one channel; calls on one client are
 * thread-safe (each has its own completion queue). */
#ifndef REC_RPC_CLIENT_H
#define REC_RPC_CLIENT_H
#include <stdbool.h>
#include <stdint.h>
#include <protobuf-c/protobuf-c.h>
#include "common/arena.h"
#include "common/err.h"

typedef struct rpc_client rpc_client;

/* TLS towards a server. No CA file: plaintext. */
typedef struct rpc_client_tls {
  const char *ca_file;      /* PEM roots the server's certificate must chain to */
  const char *cert_file;    /* client certificate for mutual TLS; NULL for none */
  const char *key_file;     /* its private key */
  const char *server_name;  /* name to check the server's certificate against, when
                               it differs from the target's host; NULL for the host */
} rpc_client_tls;

typedef struct rpc_status {
  int code;           /* gRPC status code; 0 is OK */
  char message[512];  /* the server's status details, or the client's own reason */
  bool unreached;     /* the call failed without a connection to a server: nothing
                         listening, a name that does not resolve, a TLS handshake that
                         failed, or no connection within the timeout */
} rpc_status;

/* A channel to 'target' ("host:port"), over TLS when 'tls' names a CA file
 * (NULL: plaintext), sending "authorization: Bearer TOKEN" with every call
 * when 'token' is not NULL. Connects lazily; never fails for an
 * unreachable peer (the first call does). Returns 0, or REC_EINVAL /
 * REC_EIO (TLS files) / REC_ENOMEM with 'err' filled. */
int  rpc_client_new(const char *target, const rpc_client_tls *tls, const char *token, rpc_client **out,
                    rec_error *err);
void rpc_client_free(rpc_client *c);                  /* NULL is a no-op */

/* Calls 'method' with 'req' and waits up to 'timeout_ms'. On OK decodes the
 * reply into *resp (memory from 'a') and returns 0; otherwise returns -1 with
 * *st holding the status. */
int  rpc_client_call(rpc_client *c, const char *method, const ProtobufCMessage *req,
                     const ProtobufCMessageDescriptor *resp_desc, int64_t timeout_ms, arena *a,
                     ProtobufCMessage **resp, rpc_status *st);

/* "OK", "INVALID_ARGUMENT", ... for a gRPC status code. */
const char *rpc_status_name(int code);
#endif
