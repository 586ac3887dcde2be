/* tests/server/world.c - see world.h. */
#include "tests/server/world.h"
#include "common/clock.h"
#include "tests/test.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct reload_job {
  app *ap;
  char path[4096];
  app_reload_fn done;
  void *arg;
} reload_job;

static void *reload_thread(void *p) {
  reload_job *j = p;
  char old_v[REC_ID_MAX + 1], new_v[REC_ID_MAX + 1];
  rec_error err = {0};
  int rc = app_reload(j->ap, j->path, old_v, new_v, &err);
  j->done(j->arg, rc, old_v, new_v, &err);
  free(j);
  return NULL;
}

static int start_reload(void *owner, const char *path, int64_t deadline_ns, app_reload_fn done, void *arg,
                        rec_error *err) {
  (void)deadline_ns;
  reload_job *j = calloc(1, sizeof *j);
  if (!j) return rec_fail(err, REC_ENOMEM, "out of memory");
  *j = (reload_job){.ap = owner, .done = done, .arg = arg};
  snprintf(j->path, sizeof j->path, "%s", path);
  pthread_t t;
  if (pthread_create(&t, NULL, reload_thread, j) != 0) {
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

void world_open(world *w, const char *const *flags, bool events) {
  static int n_logs;
  memset(w, 0, sizeof *w);
  char bundle_flag[600];
  snprintf(bundle_flag, sizeof bundle_flag, "--bundle=%s", test_synth_bundle("world", 300, "HNSW32"));
  const char *argv[16] = {"recd", bundle_flag};
  int argc = 2;
  for (size_t i = 0; flags && flags[i] && argc < 16; i++) argv[argc++] = flags[i];
  rec_error err = {0};
  FILE *devnull = fopen("/dev/null", "w");
  CU_ASSERT_EQUAL_FATAL(config_parse(argc, (char **)argv, &w->cfg, devnull, &err), 0);
  fclose(devnull);
  app_init(&w->ap, &w->cfg);
  w->ap.reload_start = start_reload;
  w->ap.reload_owner = &w->ap;
  CU_ASSERT_EQUAL_FATAL(online_new(&w->ap.online), 0);
  if (events) {
    char name[32];
    snprintf(name, sizeof name, "world-events-%d", n_logs++);
    size_t replayed;
    CU_ASSERT_EQUAL_FATAL(eventlog_open(test_path(name), 1 << 20, replay, w->ap.online, &w->ap.log,
                                        &replayed, &err), 0);
  }
  char old_v[REC_ID_MAX + 1], new_v[REC_ID_MAX + 1];
  CU_ASSERT_EQUAL_FATAL(app_reload(&w->ap, w->cfg.bundle, old_v, new_v, &err), 0);
  arena_init(&w->a, 0);
  arena_init(&w->req, 0);
}

static void end_call(world *w) {
  if (w->open_ctx) rpc_local_end(&w->ctx);
  w->open_ctx = false;
  arena_reset(&w->a);
}

void world_close(world *w) {
  end_call(w);
  arena_destroy(&w->a);
  arena_destroy(&w->req);
  eventlog_close(w->ap.log);
  online_free(w->ap.online);
  app_destroy(&w->ap);
}

int world_call(world *w, const rpc_method *m, const ProtobufCMessage *in, int64_t deadline_ns,
               const ProtobufCMessage **out) {
  end_call(w);
  rpc_local_begin(&w->ctx, &w->a, &w->ap, deadline_ns);
  w->open_ctx = true;
  return rpc_local_call(&w->ctx, m, in, out);
}

size_t world_fail_each_allocation(world *w, const rpc_method *m, const ProtobufCMessage *in) {
  for (size_t n = 0;; n++) {
    const ProtobufCMessage *out;
    end_call(w);
    arena_fail_after(&w->a, n);
    rpc_local_begin(&w->ctx, &w->a, &w->ap, INT64_MAX);
    w->open_ctx = true;
    int rc = rpc_local_call(&w->ctx, m, in, &out);
    arena_fail_after(&w->a, SIZE_MAX);
    if (rc == 0) {
      CU_ASSERT_PTR_NOT_NULL(out);
      end_call(w);
      return n;
    }
    if (rc != REC_ENOMEM) fprintf(stderr, "%s: allocation %zu failed, got %d (%s)\n", m->path, n, rc, w->ctx.err.msg);
    CU_ASSERT_EQUAL(rc, REC_ENOMEM);
    if (n > 100000) {
      CU_FAIL("a call that never succeeds");
      return n;
    }
  }
}

bool world_has(char **reasons, size_t n, const char *reason) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(reasons[i], reason) == 0) return true;
  return false;
}
