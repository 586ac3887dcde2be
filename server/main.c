/* server/main.c - recd: parse the configuration, listen, load the bundle,
 * report SERVING, and stop cleanly on SIGINT or SIGTERM. */
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

/* Every rec.v1 method this process serves. */
static const rpc_method *const METHODS[] = {
    &h_recommend, &h_similar_items, &retrieve, &record, &h_reload, &h_status,
};

static void on_signal(uv_signal_t *h, int signum) {
  LOG_INFO("signal received; shutting down", "signal=%s", strsignal(signum));
  uv_stop(h->loop);
}

/* SIGHUP reloads the configured path: point a `current` link at a new
 * bundle directory, then send SIGHUP. */
static void on_sighup(uv_signal_t *h, int signum) {
  (void)signum;
  app *ap = h->data;
  char old_v[REC_ID_MAX + 1], new_v[REC_ID_MAX + 1];
  rec_error err = {0};
  app_reload(ap, ap->cfg->bundle, old_v, new_v, &err); /* logs either way */
}

static rec_log_level level_of(const char *s) {
  return strcmp(s, "debug") == 0 ? REC_LOG_DEBUG : strcmp(s, "warn") == 0 ? REC_LOG_WARN
       : strcmp(s, "error") == 0 ? REC_LOG_ERROR : REC_LOG_INFO;
}

/* Waits on libuv until SIGINT or SIGTERM, reloading on SIGHUP. */
static void wait_for_signal(app *ap) {
  uv_loop_t loop;
  uv_signal_t sigint, sigterm, sighup;
  uv_loop_init(&loop);
  uv_signal_init(&loop, &sigint);
  uv_signal_init(&loop, &sigterm);
  uv_signal_init(&loop, &sighup);
  sighup.data = ap;
  uv_signal_start(&sigint, on_signal, SIGINT);
  uv_signal_start(&sigterm, on_signal, SIGTERM);
  uv_signal_start(&sighup, on_sighup, SIGHUP);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_close((uv_handle_t *)&sigint, NULL);
  uv_close((uv_handle_t *)&sigterm, NULL);
  uv_close((uv_handle_t *)&sighup, NULL);
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
                       .max_inflight = cfg.max_inflight, .keepalive_ms = cfg.keepalive_ms,
                       .keepalive_timeout_ms = cfg.keepalive_timeout_ms,
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
  char old_v[REC_ID_MAX + 1], new_v[REC_ID_MAX + 1];
  if (app_reload(&ap, cfg.bundle, old_v, new_v, &err) != 0) {
    rpc_server_stop(srv, 0);
    app_destroy(&ap);
    rank_config_free(rank_cfg);
    return 1;
  }
  rpc_server_set_serving(srv, true);
  LOG_INFO("serving", "port=%d", port);
  wait_for_signal(&ap);
  rpc_server_stop(srv, cfg.drain_ms);
  app_destroy(&ap);
  rank_config_free(rank_cfg);
  LOG_INFO("stopped", "%s", "");
  return 0;
}
