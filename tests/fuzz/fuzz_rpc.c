/* tests/fuzz/fuzz_rpc.c - every rec.v1 request from its bytes, in process:
 * rpc_decode (the wire walk, then protobuf-c), then, when it decodes, the
 * method's handler through rpc_local_call on an app serving a small
 * synthetic bundle with an event log, and the reply packed and decoded back
 * (a reply must be a valid message: UTF-8 strings without NUL bytes); an
 * INTERNAL answer is a finding too (common/err.h: never for a caller's input).
 *
 * Input: byte 0 picks the method (low 3 bits, modulo the table and one
 * more: server reflection, whose answer the RPC layer makes itself) and,
 * with bit 3, a deadline that has already passed (the deadline policy's
 * paths, deterministically); the rest is the request body. Admin.Reload runs with a
 * fake reload_start that loads nothing: fuzzing must not load whatever path
 * an input names. */
#include "rec/v1/admin.pb-c.h"
#include "server/app.h"
#include "server/handlers.h"
#include "server/rpc_internal.h"
#include "tests/fuzz/fuzz.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const rpc_method *const METHODS[] = {&h_recommend, &h_similar_items, &h_retrieve,
                                            &h_record,    &h_status,        &h_reload};
enum { N_METHODS = sizeof METHODS / sizeof METHODS[0] };

static recd_config cfg;
static app ap;
static arena call_arena, check_arena;

typedef struct fake_reload {
  app_reload_fn done;
  void *arg;
  int rc;
} fake_reload;

static void *fake_reload_thread(void *p) {
  fake_reload *j = p;
  rec_error err = {0};
  if (j->rc) rec_fail(&err, j->rc, "fuzz: nothing is loaded");
  j->done(j->arg, j->rc, "synth-11", j->rc ? "" : "fuzz", &err);
  free(j);
  return NULL;
}

/* Answers on another thread, as main.c's reload queue does: an odd-length
 * path "fails to load", an even one "loads" without touching the disk. */
static int fake_reload_start(void *owner, const char *path, int64_t deadline_ns, app_reload_fn done,
                             void *arg, rec_error *err) {
  (void)owner; (void)deadline_ns;
  fake_reload *j = malloc(sizeof *j);
  if (!j) return rec_fail(err, REC_ENOMEM, "out of memory");
  *j = (fake_reload){.done = done, .arg = arg, .rc = strlen(path) % 2 ? REC_EIO : 0};
  pthread_t t;
  if (pthread_create(&t, NULL, fake_reload_thread, j) != 0) {
    free(j);
    return rec_fail(err, REC_ENOMEM, "cannot start a thread");
  }
  pthread_detach(t);
  return 0;
}

static void replay(void *arg, uint64_t seq, const ev_record *r) {
  (void)seq;
  online_apply(arg, r);
}

static void die(const char *what, const rec_error *err) {
  fprintf(stderr, "fuzz_rpc: %s: %s\n", what, err->msg);
  abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc; (void)argv;
  fuzz_quiet();
  const char *dir = fuzz_tmpdir("rpc");
  fuzz_synth_bundle(fuzz_path(dir, "bundle"), 60);
  static char flag[1100];
  snprintf(flag, sizeof flag, "--bundle=%s", fuzz_path(dir, "bundle"));
  char *args[] = {"recd", flag, "--threads=1", NULL};
  rec_error err = {0};
  FILE *devnull = fopen("/dev/null", "w");
  if (config_parse(3, args, &cfg, devnull, &err) != 0) die("config_parse", &err);
  fclose(devnull);
  app_init(&ap, &cfg);
  ap.reload_start = fake_reload_start;
  if (online_new(&ap.online) != 0) abort();
  size_t replayed;
  if (eventlog_open(fuzz_path(dir, "events"), 1 << 20, replay, ap.online, &ap.log, &replayed, &err))
    die("eventlog_open", &err);
  char old_v[REC_ID_MAX + 1], new_v[REC_ID_MAX + 1];
  if (app_reload(&ap, cfg.bundle, old_v, new_v, &err) != 0) die("app_reload", &err);
  arena_init(&call_arena, 0);
  arena_set_limit(&call_arena, (size_t)cfg.max_call_mb << 20);
  arena_init(&check_arena, 0);
  return 0;
}

/* A reply must pack into a message that the strictest reader accepts. */
static void check_reply(const rpc_method *m, const ProtobufCMessage *reply) {
  size_t n = protobuf_c_message_get_packed_size(reply);
  uint8_t *buf = arena_alloc(&check_arena, n);
  if (!buf || protobuf_c_message_pack(reply, buf) != n) abort();
  rpc_limits lim = {.max_repeated = SIZE_MAX, .max_unknown = 0, .max_depth = 8};
  rec_error err = {0};
  if (!rpc_decode(buf, n, m->out, &lim, &check_arena, &err)) {
    fprintf(stderr, "fuzz_rpc: %s replied with a message that does not decode: %s\n", m->path, err.msg);
    abort();
  }
  arena_reset(&check_arena);
}

/* A ServerReflectionInfo request, decoded as the stream decodes it, and its
 * answer (or the error_response a request that does not decode gets). */
static void reflect(const uint8_t *data, size_t size) {
  static const char *const services[] = {"rec.v1.Ranking", "grpc.health.v1.Health"};
  const rpc_method *m = &rpc__reflect_v1;
  rec_error err = {0};
  rpc_reflect_resp *out = NULL;
  ProtobufCMessage *in = rpc_decode(data, size, m->in, NULL, &call_arena, &err);
  int rc = in ? rpc__reflect_answer(services, 2, (const rpc_reflect_req *)in, &call_arena, &out)
              : rpc__reflect_error(err.code, err.msg, &call_arena, &out);
  fuzz_report(m->path, in ? rc : err.code, err.msg);
  if (rc != 0) { /* nothing a client sends may make an answer fail */
    fprintf(stderr, "fuzz_rpc: reflection answer failed: %d\n", rc);
    abort();
  }
  check_reply(m, (const ProtobufCMessage *)out);
  arena_reset(&call_arena);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  if ((data[0] & 7) % (N_METHODS + 1) == N_METHODS) {
    reflect(data + 1, size - 1);
    return 0;
  }
  const rpc_method *m = METHODS[(data[0] & 7) % (N_METHODS + 1)];
  int64_t deadline = data[0] & 8 ? 1 : INT64_MAX; /* 1 ns after the clock's start: long past */
  rec_error err = {0};
  ProtobufCMessage *in = rpc_decode(data + 1, size - 1, m->in, NULL, &call_arena, &err);
  if (!in) fuzz_report(m->path, err.code, err.msg);
  if (in) {
    rpc_ctx ctx;
    const ProtobufCMessage *out = NULL;
    rpc_local_begin(&ctx, &call_arena, &ap, deadline);
    int rc = rpc_local_call(&ctx, m, in, &out);
    fuzz_report(m->path, rc, ctx.err.msg);
    if (rc == 0) check_reply(m, out);
    if (rc == REC_EINTERNAL) { /* err.h: never INTERNAL for something the caller did */
      fprintf(stderr, "fuzz_rpc: %s answered INTERNAL: %s\n", m->path, ctx.err.msg);
      abort();
    }
    rpc_local_end(&ctx);
  }
  arena_reset(&call_arena);
  return 0;
}
