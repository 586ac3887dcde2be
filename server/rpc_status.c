/* server/rpc_status.c - the one table from rec error codes to gRPC status
 * codes. Anything the caller did maps to a caller-facing code; INTERNAL is kept
 * for recd's own bugs. */
#include "server/rpc_internal.h"

static const struct {
  int code;
  grpc_status_code status;
} MAP[] = {
    {REC_OK, GRPC_STATUS_OK},
    {REC_EINVAL, GRPC_STATUS_INVALID_ARGUMENT},
    {REC_ENOTFOUND, GRPC_STATUS_NOT_FOUND},
    {REC_EUNAVAIL, GRPC_STATUS_UNAVAILABLE},
    {REC_EDEADLINE, GRPC_STATUS_DEADLINE_EXCEEDED},
    {REC_ENOMEM, GRPC_STATUS_RESOURCE_EXHAUSTED},
    {REC_ETOOBIG, GRPC_STATUS_RESOURCE_EXHAUSTED},
    {REC_EUNIMPL, GRPC_STATUS_UNIMPLEMENTED},
    {REC_EIO, GRPC_STATUS_INTERNAL},
    {REC_ECORRUPT, GRPC_STATUS_FAILED_PRECONDITION},
    {REC_EMISMATCH, GRPC_STATUS_FAILED_PRECONDITION},
    {REC_EOVERLOAD, GRPC_STATUS_RESOURCE_EXHAUSTED},
    {REC_EINTERNAL, GRPC_STATUS_INTERNAL},
    {REC_EPRECOND, GRPC_STATUS_FAILED_PRECONDITION},
    {REC_EUNAUTH, GRPC_STATUS_UNAUTHENTICATED},
    {REC_EDENIED, GRPC_STATUS_PERMISSION_DENIED},
};

grpc_status_code rpc__status_of(int code) {
  for (size_t i = 0; i < sizeof MAP / sizeof MAP[0]; i++)
    if (MAP[i].code == code) return MAP[i].status;
  return GRPC_STATUS_INTERNAL;
}
