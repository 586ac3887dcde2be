/* server/main.c - recd: parse the configuration, listen, load the bundle,
 * report SERVING, and stop cleanly on SIGINT or SIGTERM. */
#include "common/clock.h"
#include "common/log.h"
#include "rec/v1/admin.pb-c.h"
#include "rec/v1/events.pb-c.h"
#include "rec/v1/ranking.pb-c.h"
#include "rec/v1/retrieval.pb-c.h"
#include "retrieval/retrieve.h"
#include "server/app.h"
#include "server/config.h"
#include "server/handlers.h"
#include "server/rpc.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

/* Methods not built yet: registered so they answer UNIMPLEMENTED. */
static const rpc_method retrieve = {"/rec.v1.Retrieval/Retrieve",
    &rec__v1__retrieve_request__descriptor, &rec__v1__retrieve_response__descriptor, NULL};
static const rpc_method record = {"/rec.v1.Events/Record",
    &rec__v1__record_request__descriptor, &rec__v1__record_response__descriptor, NULL};
static const rpc_method reload = {"/rec.v1.Admin/Reload",
    &rec__v1__reload_request__descriptor, &rec__v1__reload_response__descriptor, NULL};

/* Every rec.v1 method this process serves. */
static const rpc_method *const METHODS[] = {
    &h_recommend, &h_similar_items, &retrieve, &record, &reload, &h_status,
};

static void on_signal(uv_signal_t *h, int signum) {
  LOG_INFO("signal received; shutting down", "signal=%s", strsignal(signum));
  uv_stop(h->loop);
}

static rec_log_level level_of(const char *s) {
  return strcmp(s, "debug") == 0 ? REC_LOG_DEBUG : strcmp(s, "warn") == 0 ? REC_LOG_WARN
       : strcmp(s, "error") == 0 ? REC_LOG_ERROR : REC_LOG_INFO;
}

static int load(app *ap, const char *dir) {
  int64_t t0 = rec_mono_ns();
  bundle *b;
  rec_error err = {0};
  if (bundle_load(dir, &b, &err) != 0) {
    LOG_ERROR("bundle refused", "path=%s error=\"%s\"", dir, err.msg);
    return -1;
  }
  LOG_INFO("bundle loaded", "version=%s items=%zu users=%zu dim=%zu index=%s ms=%lld", b->version,
           b->catalog->count, b->user_count, b->dim, b->index_type,
           (long long)((rec_mono_ns() - t0) / 1000000));
  app_swap(ap, b);
  return 0;
}

/* Waits on libuv until SIGINT or SIGTERM. */
static void wait_for_signal(void) {
  uv_loop_t loop;
  uv_signal_t sigint, sigterm;
  uv_loop_init(&loop);
  uv_signal_init(&loop, &sigint);
  uv_signal_init(&loop, &sigterm);
  uv_signal_start(&sigint, on_signal, SIGINT);
  uv_signal_start(&sigterm, on_signal, SIGTERM);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_close((uv_handle_t *)&sigint, NULL);
  uv_close((uv_handle_t *)&sigterm, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
}

int main(int argc, char **argv) {
  recd_config cfg;
  rec_error err = {0};
  int rc = config_parse(argc, argv, &cfg, stdout, &err);
  if (rc == 1) return 0;
  if (rc) {
    fprintf(stderr, "recd: %s\n", err.msg);
    return 2;
  }
  rec_log_set_level(level_of(cfg.log_level));
  signal(SIGPIPE, SIG_IGN);
  retrieve_thread_init();
  rank_config *rank_cfg;
  if (rank_config_load(cfg.ranking_config[0] ? cfg.ranking_config : NULL, &rank_cfg, &err) != 0) {
    fprintf(stderr, "recd: %s\n", err.msg);
    return 2;
  }
  app ap;
  app_init(&ap, &cfg);
  ap.rank_cfg = rank_cfg;
  rpc_server_opts o = {.listen = cfg.listen, .threads = cfg.threads,
                       .requests_per_method = cfg.requests_per_method,
                       .max_message_bytes = cfg.max_message_bytes,
                       .max_concurrent_streams = cfg.max_concurrent_streams,
                       .methods = METHODS, .n_methods = sizeof METHODS / sizeof METHODS[0],
                       .app = &ap, .thread_init = retrieve_thread_init};
  rpc_server *srv;
  int port;
  if (rpc_server_start(&o, &srv, &port, &err) != 0) {
    fprintf(stderr, "recd: %s\n", err.msg);
    app_destroy(&ap);
    rank_config_free(rank_cfg);
    return 1;
  }
  LOG_INFO("listening", "addr=%s port=%d threads=%d version=%s", cfg.listen, port, cfg.threads,
           RECD_VERSION);
  if (load(&ap, cfg.bundle) != 0) {
    rpc_server_stop(srv, 0);
    app_destroy(&ap);
    rank_config_free(rank_cfg);
    return 1;
  }
  rpc_server_set_serving(srv, true);
  LOG_INFO("serving", "port=%d", port);
  wait_for_signal();
  rpc_server_stop(srv, cfg.drain_ms);
  app_destroy(&ap);
  rank_config_free(rank_cfg);
  LOG_INFO("stopped", "%s", "");
  return 0;
}
