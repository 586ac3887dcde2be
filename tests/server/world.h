/* tests/server/world.h - an in-process recd for the service suites: a
 * parsed configuration, a synthetic bundle loaded into an app, optionally an
 * event log, and calls through rpc_local_call (no gRPC). */
#ifndef REC_TEST_WORLD_H
#define REC_TEST_WORLD_H
#include "server/app.h"
#include "server/rpc.h"

typedef struct world {
  recd_config cfg;
  app ap;
  arena a;           /* each call's arena, reset by world_call */
  arena req;         /* requests built by the test */
  rpc_ctx ctx;       /* the last call's (its err holds the message) */
  bool open_ctx;
} world;

/* A recd over the 300-item synthetic bundle with the given extra flags
 * (NULL-terminated, may be NULL); 'events' opens an event log in a fresh
 * directory. Reloads through ap.reload_start run on a new thread. */
void world_open(world *w, const char *const *flags, bool events);
void world_close(world *w);
/* Calls m with 'in' and the deadline 'deadline_ns' (INT64_MAX: none);
 * returns the handler's code; *out is valid until the next call. */
int  world_call(world *w, const rpc_method *m, const ProtobufCMessage *in, int64_t deadline_ns,
                const ProtobufCMessage **out);
/* SQLite-style: calls m with allocation N failing for N = 0, 1, 2, ...
 * until the call succeeds; every failing run must return REC_ENOMEM (and,
 * under ASan, leak nothing). Returns how many runs failed. */
size_t world_fail_each_allocation(world *w, const rpc_method *m, const ProtobufCMessage *in);
/* True when the reply's degraded_reasons holds 'reason' exactly. */
bool world_has(char **reasons, size_t n, const char *reason);
#endif
