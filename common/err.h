/* common/err.h - recd's error codes. 0 is success; failures are negative.
 * Codes name what went wrong for the caller, so the RPC layer can map each to
 * exactly one gRPC status (server/rpc_status.c) and never answer INTERNAL for
 * something the caller did. */
#ifndef REC_ERR_H
#define REC_ERR_H

enum {
  REC_OK = 0,
  REC_EINVAL = -1,      /* bad argument or request field */
  REC_ENOTFOUND = -2,   /* a named thing does not exist */
  REC_EUNAVAIL = -3,    /* not ready (no bundle) or shutting down */
  REC_EDEADLINE = -4,   /* the caller's deadline passed */
  REC_ENOMEM = -5,      /* out of memory */
  REC_ETOOBIG = -6,     /* a request or size over a configured limit */
  REC_EUNIMPL = -7,     /* method not built yet */
  REC_EIO = -8,         /* a file could not be read or written */
  REC_ECORRUPT = -9,    /* a file's content is malformed or fails its checksum */
  REC_EMISMATCH = -10,  /* files disagree (dimensions, counts, versions) */
  REC_EOVERLOAD = -11,  /* too many calls in flight */
  REC_EINTERNAL = -12,  /* a bug in recd */
  REC_EPRECOND = -13,   /* the server is not set up for this (e.g. no event log) */
  REC_EUNAUTH = -14,    /* no credentials, or ones that match nothing */
  REC_EDENIED = -15,    /* known caller, or place, not allowed this */
};

/* A static, human-readable name for 'code' ("invalid argument", ...). */
const char *rec_strerror(int code);

/* An error code with a message a person can act on ("items.tsv:12: price
 * 'abc' is not a number"). Functions that can fail in several ways take a
 * rec_error* (which may be NULL) and fill it when they fail. */
typedef struct rec_error {
  int code;
  char msg[512];
} rec_error;

/* Fills 'e' (if not NULL) with 'code' and the formatted message; returns
 * 'code', so a failing path can `return rec_fail(e, REC_EINVAL, ...)`. */
int rec_fail(rec_error *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
