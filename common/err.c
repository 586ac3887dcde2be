/* common/err.c - names for recd's error codes. */
#include "common/err.h"

#include <stdarg.h>
#include <stdio.h>

const char *rec_strerror(int code) {
  switch (code) {
  case REC_OK: return "ok";
  case REC_EINVAL: return "invalid argument";
  case REC_ENOTFOUND: return "not found";
  case REC_EUNAVAIL: return "unavailable";
  case REC_EDEADLINE: return "deadline exceeded";
  case REC_ENOMEM: return "out of memory";
  case REC_ETOOBIG: return "over size limit";
  case REC_EUNIMPL: return "not implemented";
  case REC_EIO: return "i/o error";
  case REC_ECORRUPT: return "corrupt data";
  case REC_EMISMATCH: return "mismatch";
  case REC_EOVERLOAD: return "overloaded";
  case REC_EINTERNAL: return "internal error";
  case REC_EPRECOND: return "failed precondition";
  case REC_EUNAUTH: return "unauthenticated";
  case REC_EDENIED: return "permission denied";
  default: return "unknown error";
  }
}

int rec_fail(rec_error *e, int code, const char *fmt, ...) {
  if (e) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    e->code = code;
  }
  return code;
}
