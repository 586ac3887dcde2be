/* common/trace.h - W3C Trace Context (https://www.w3.org/TR/trace-context/)
 * for recd's calls: a `traceparent` value parsed strictly, a new trace when
 * a call brings none (or a bad one: it is never echoed), and the value for
 * a call made on the trace's behalf, with a new span id. Ids are lowercase
 * hex text, ready for log lines and metadata. Thread-safe (random ids come
 * from a per-thread generator seeded by getrandom). */
#ifndef REC_TRACE_H
#define REC_TRACE_H
#include <stdbool.h>
#include <stddef.h>

enum { TRACEPARENT_LEN = 55 };     /* "00-" 32 hex "-" 16 hex "-" 2 hex */

typedef struct trace_ctx {
  char trace_id[33];               /* 32 hex; "" when the call is not traced at all */
  char span_id[17];                /* this call's span, made here */
  char parent_id[17];              /* the caller's span, "" when this call started the trace */
  bool sampled;                    /* the caller's sampled flag (trace-flags bit 0) */
} trace_ctx;

/* Parses a traceparent value of 'n' bytes (not NUL-terminated) into 't'
 * (trace id, parent id, sampled) and gives the call a new span id. Refuses
 * (false, 't' untouched) anything the specification says to ignore: a
 * length other than 55 for version 00, upper-case or non-hex digits, version
 * ff, an all-zero trace or parent id, a later version whose 56th byte is
 * not '-'. */
bool trace_parse(const char *v, size_t n, trace_ctx *t);
/* Starts a new trace in 't': new trace and span ids, no parent, not sampled. */
void trace_start(trace_ctx *t);
/* The traceparent for a call made on t's behalf: same trace id and flags,
 * a new span id (the callee's parent). Writes TRACEPARENT_LEN + 1 bytes. */
void trace_child(const trace_ctx *t, char out[TRACEPARENT_LEN + 1]);
#endif
