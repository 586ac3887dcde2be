/* server/main.c - recd: parse the configuration, listen, load the bundle,
 * report SERVING, and stop cleanly on SIGINT or SIGTERM. */
#define _XOPEN_SOURCE 700 /* realpath */
#include "common/clock.h"
#include "common/log.h"
#include "rec/v1/admin.pb-c.h"
#include "rec/v1/events.pb-c.h"
#include "rec/v1/ranking.pb-c.h"
#include "rec/v1/retrieval.pb-c.h"
#include "retrieval/retrieve.h"
#include "server/app.h"
#include "server/config.h"
#include "server/admin_http.h"
#include "server/auth.h"
#include "server/bundle_root.h"
#include "server/declog.h"
#include "server/handlers.h"
#include "server/metrics.h"
#include "server/reloader.h"
#include "server/rpc_fanout.h"
#include "server/rpc.h"
#include "server/selfprobe.h"

#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

/* The serving port's rec.v1 methods. Admin calls there are refused with a
 * pointer to the admin listener. */
static const rpc_method *const METHODS[] = {
    &h_recommend, &h_similar_items, &h_retrieve, &h_record, &h_reload_denied, &h_status_denied,
    &h_catalog_upsert_denied, &h_catalog_delete_denied, &h_experiments_denied, &h_control_experiment_denied,
};
/* Of those, the stubs that send the caller to the admin listener: server
 * reflection on the serving port does not list rec.v1.Admin or rec.v1.Catalog. */
static const rpc_method *const ELSEWHERE[] = {&h_reload_denied, &h_status_denied, &h_catalog_upsert_denied,
                                              &h_catalog_delete_denied, &h_experiments_denied,
                                              &h_control_experiment_denied};
/* The admin listener's: every write API goes here, behind auth. */
static const rpc_method *const ADMIN_METHODS[] = {&h_reload, &h_status, &h_catalog_upsert, &h_catalog_delete,
                                                  &h_experiments, &h_control_experiment};

/* The main thread's libuv loop: signals, the admin port, the bundle
 * watch, and the reloader (bundle loads on libuv's pool). */
typedef struct runtime {
  uv_loop_t loop;
  uv_signal_t sigint, sigterm, sighup;
  uv_timer_t grace;
  uv_fs_event_t watch;       /* the bundle path's directory, with --watch_bundle */
  app *ap;
  rpc_server *srv;
  rpc_server *admin_srv;     /* NULL without --admin_grpc_listen */
  admin_http *admin;
  selfprobe *probe;          /* NULL with --selfprobe_ms=0 */
  reloader *loads;
  int port, exit_code;
  bool served, draining;
  bool abandoned;            /* a load was still running when recd stopped */
} runtime;

/* The first load decides: serve, or exit 1 (nothing to serve). */
static void on_first_load(void *arg, int rc, const rec_error *err) {
  runtime *rt = arg;
  (void)err; /* app_reload logged it */
  if (rc == 0 && !rt->draining) {
    rt->served = true;
    rpc_server_set_serving(rt->srv, true);
    LOG_INFO("serving", "port=%d", rt->port);
  } else if (rc != 0) {
    rt->exit_code = 1;
    uv_stop(&rt->loop);
  }
}

static void start_load(runtime *rt) { reloader_poke(rt->loads); }

static void on_grace_over(uv_timer_t *t) { uv_stop(t->loop); }

/* SIGTERM/SIGINT: report NOT_SERVING at once (health, /readyz) so load
 * balancers stop sending, keep answering for drain_grace_ms, then stop:
 * rpc_server_stop refuses new calls and lets calls in flight finish. */
static void on_signal(uv_signal_t *h, int signum) {
  runtime *rt = h->data;
  LOG_INFO("signal received; draining", "signal=%s grace_ms=%d drain_ms=%d", strsignal(signum),
           rt->ap->cfg->drain_grace_ms, rt->ap->cfg->drain_ms);
  if (rt->draining) return;
  rt->draining = true;
  rpc_server_set_serving(rt->srv, false);
  /* Records waiting for their group commit are answered within the drain. */
  if (rt->ap->log) eventlog_set_commit_delay(rt->ap->log, 0);
  uv_timer_start(&rt->grace, on_grace_over, (uint64_t)rt->ap->cfg->drain_grace_ms, 0);
}

/* SIGHUP reloads the configured path (point a `current` link at a new
 * bundle directory, then send SIGHUP) and re-reads the TLS certificates. */
static void on_sighup(uv_signal_t *h, int signum) {
  (void)signum;
  runtime *rt = h->data;
  rec_error err = {0};
  if (rpc_server_reload_tls(rt->srv, &err) != 0 || (rt->admin_srv && rpc_server_reload_tls(rt->admin_srv, &err) != 0))
    LOG_ERROR("TLS certificates refused; the old ones stay in use", "error=\"%s\"", err.msg);
  start_load(rt);
}

static rec_log_level level_of(const char *s) {
  return strcmp(s, "debug") == 0 ? REC_LOG_DEBUG : strcmp(s, "warn") == 0 ? REC_LOG_WARN
       : strcmp(s, "error") == 0 ? REC_LOG_ERROR : REC_LOG_INFO;
}

/* --watch_bundle: the directory holding the bundle path changed; reload if
 * the change was to that name (a `current` link swapped by rename). */
static void on_path_changed(uv_fs_event_t *h, const char *name, int events, int status) {
  (void)events;
  runtime *rt = h->data;
  const char *path = rt->ap->cfg->bundle, *slash = strrchr(path, '/');
  if (status == 0 && name && strcmp(name, slash ? slash + 1 : path) == 0) start_load(rt);
}

static void watch_bundle(runtime *rt) {
  char dir[4096];
  const char *path = rt->ap->cfg->bundle, *slash = strrchr(path, '/');
  snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - path) : 1, slash ? path : ".");
  uv_fs_event_init(&rt->loop, &rt->watch);
  rt->watch.data = rt;
  int rc = uv_fs_event_start(&rt->watch, on_path_changed, dir[0] ? dir : "/", 0);
  if (rc) LOG_WARN("cannot watch the bundle path", "dir=%s error=\"%s\"", dir, uv_strerror(rc));
  else LOG_INFO("watching the bundle path", "path=%s", path);
}

/* Closes every handle. A load still running gets drain_ms to finish; past
 * that recd stops without it (its caller was answered UNAVAILABLE) rather
 * than wait on a slow disk forever. */
static void close_loop(runtime *rt) {
  reloader_close(rt->loads);
  uv_close((uv_handle_t *)&rt->sigint, NULL);
  uv_close((uv_handle_t *)&rt->sigterm, NULL);
  uv_close((uv_handle_t *)&rt->sighup, NULL);
  uv_close((uv_handle_t *)&rt->grace, NULL);
  if (rt->ap->cfg->watch_bundle) uv_close((uv_handle_t *)&rt->watch, NULL);
  admin_http_close(rt->admin);
  selfprobe_close(rt->probe);
  int64_t until = rec_mono_ns() + (int64_t)rt->ap->cfg->drain_ms * 1000000;
  while (uv_run(&rt->loop, UV_RUN_NOWAIT) && reloader_busy(rt->loads) && rec_mono_ns() < until)
    uv_sleep(2);
  if (reloader_busy(rt->loads)) {
    LOG_WARN("a bundle load is still running; stopping without it", "drain_ms=%d", rt->ap->cfg->drain_ms);
    rt->abandoned = true;
    return;
  }
  uv_run(&rt->loop, UV_RUN_DEFAULT);
  if (uv_loop_close(&rt->loop) != 0 && !rt->exit_code) rt->exit_code = 1;
}

static int run(runtime *rt) {
  uv_signal_init(&rt->loop, &rt->sigint);
  uv_signal_init(&rt->loop, &rt->sigterm);
  uv_signal_init(&rt->loop, &rt->sighup);
  uv_timer_init(&rt->loop, &rt->grace);
  rt->sigint.data = rt->sigterm.data = rt->sighup.data = rt;
  uv_signal_start(&rt->sigint, on_signal, SIGINT);
  uv_signal_start(&rt->sigterm, on_signal, SIGTERM);
  uv_signal_start(&rt->sighup, on_sighup, SIGHUP);
  if (rt->ap->cfg->watch_bundle) watch_bundle(rt);
  uv_run(&rt->loop, UV_RUN_DEFAULT);
  close_loop(rt);
  return rt->exit_code;
}

/* Every connection holds a descriptor, and gRPC 1.51 stops accepting for
 * good once accept4 fails with EMFILE: take all the descriptors the hard
 * limit allows. */
static void raise_fd_limit(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= rl.rlim_max) return;
  rlim_t was = rl.rlim_cur;
  rl.rlim_cur = rl.rlim_max;
  if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
    LOG_INFO("open-file limit raised", "from=%llu to=%llu", (unsigned long long)was, (unsigned long long)rl.rlim_max);
}

enum { CALL_LOG_OFF, CALL_LOG_ERRORS, CALL_LOG_ALL };
static int call_log_mode; /* set before the serving workers start */
static int64_t slow_call_ns; /* a call this slow logs its stages; 0 never; set before the workers start */

/* " trace_id=.. span_id=.. parent_id=.." and, for a traced (sampled) or
 * slow call, its stages in ms, for the call's log line. */
static void trace_fields(char *out, size_t cap, const rpc_ctx *ctx, const call_note *n, int64_t ns) {
  out[0] = '\0';
  if (!ctx || !ctx->trace.trace_id[0]) return;
  const trace_ctx *t = &ctx->trace;
  int w = snprintf(out, cap, " trace_id=%s span_id=%s parent_id=%s sampled=%d", t->trace_id, t->span_id,
                   t->parent_id[0] ? t->parent_id : "-", t->sampled);
  if (!n || !n->timed || w < 0 || (size_t)w >= cap || !(t->sampled || (slow_call_ns && ns >= slow_call_ns))) return;
  snprintf(out + w, cap - (size_t)w, " tower_ms=%.3f ann_ms=%.3f itemcf_ms=%.3f popularity_ms=%.3f sources_ms=%.3f "
           "rank_ms=%.3f mmr_ms=%.3f", (double)n->tower_ns / 1e6, (double)n->ann_ns / 1e6, (double)n->itemcf_ns / 1e6,
           (double)n->pop_ns / 1e6, (double)n->sources_ns / 1e6, (double)n->rank_ns / 1e6, (double)n->mmr_ns / 1e6);
}

/* Per serving call: the metrics, the arms' series, and one log line (--call_log). */
static void observe(size_t method, int status, int64_t ns, const rpc_ctx *ctx) {
  metrics_call(method, status, ns);
  const call_note *n = ctx ? ctx->note : NULL;
  for (size_t i = 0; n && i < n->n_slots; i++) metrics_arm_call(n->slot[i], status, ns);
  const char *name = metrics_method_name(method);
  if (call_log_mode == CALL_LOG_OFF || (call_log_mode == CALL_LOG_ERRORS && status == 0) || !name ||
      method + 2 >= metrics_method_count()) /* the last two are Health/Check and Watch */
    return;
  char rid[300], detail[300], trace[400];
  const char *id = n && n->request_id ? n->request_id : ctx && ctx->request_id ? ctx->request_id : "";
  rec_log_quote(rid, sizeof rid, id, strlen(id));
  rec_log_quote(detail, sizeof detail, status && ctx ? ctx->err.msg : "", status && ctx ? strlen(ctx->err.msg) : 0);
  trace_fields(trace, sizeof trace, ctx, n, ns);
  rec_log(status ? REC_LOG_WARN : REC_LOG_INFO, "call", "method=%s status=%d ms=%.2f request_id=\"%s\" arms=%s%s%s%s%s",
          name, status, (double)ns / 1e6, rid, n && n->arms ? n->arms : "-", trace, status ? " detail=\"" : "",
          status ? detail : "", status ? "\"" : "");
}

/* Where Admin.Reload may load from: --bundle_root, or the directory that
 * holds --bundle's real path. */
static int open_bundle_root(app *ap, rec_error *err) {
  const recd_config *cfg = ap->cfg;
  if (cfg->bundle_root[0]) {
    int rc = bundle_root_open(cfg->bundle_root, ap->bundle_root, sizeof ap->bundle_root, err);
    if (!rc && bundle_root_world_writable(ap->bundle_root))
      LOG_WARN("the bundle root is world-writable: anyone on the host can put a bundle there",
               "bundle_root=%s", ap->bundle_root);
    return rc;
  }
  char real[PATH_MAX];
  rec_error e = {0};
  char *slash = realpath(cfg->bundle, real) ? strrchr(real, '/') : NULL;
  if (slash) *slash = '\0';
  if (!slash || bundle_root_open(real, ap->bundle_root, sizeof ap->bundle_root, &e) != 0 ||
      bundle_root_world_writable(ap->bundle_root)) {
    ap->bundle_root[0] = '\0';
    LOG_WARN("no bundle root: Admin.Reload takes no bundle_path until --bundle_root names a directory "
             "only operators can write", "bundle=%s", cfg->bundle);
  }
  return 0;
}

/* The admin listener: Admin RPCs behind a token or an allowed certificate. */
static int start_admin(runtime *rt, const rpc_server_opts *serving, const rpc_tls *tls, const auth *au,
                       int *port, rec_error *err) {
  const recd_config *cfg = rt->ap->cfg;
  if (!cfg->admin_grpc_listen[0]) return 0;
  rpc_server_opts o = *serving;
  o.name = "admin";
  o.listen = cfg->admin_grpc_listen;
  o.tls = tls;
  o.auth = au;
  o.threads = 1;
  o.passive_io = true; /* the serving workers read its connections too */
  o.requests_per_method = 2;
  o.max_inflight = 64;
  o.methods = ADMIN_METHODS;
  o.n_methods = sizeof ADMIN_METHODS / sizeof ADMIN_METHODS[0];
  o.unlisted = NULL;
  o.n_unlisted = 0;
  o.observe = NULL;
  int rc = rpc_server_start(&o, &rt->admin_srv, port, err);
  if (rc) return rc;
  rpc_server_set_serving(rt->admin_srv, true);
  if (!auth_configured(au))
    LOG_WARN("admin RPCs will be refused: no credentials configured",
             "fix=\"set --admin_token_file (or --admin_allow with mTLS)\"");
  if (!tls && !auth_addr_is_loopback(cfg->admin_grpc_listen))
    LOG_WARN("the admin listener is off loopback without TLS: tokens cross the network in clear",
             "admin_grpc_listen=%s", cfg->admin_grpc_listen);
  return 0;
}

static void replay(void *arg, uint64_t seq, const ev_record *r) {
  app *ap = arg;
  (void)seq;
  online_apply(ap->online, r);
  live_catalog_note_event(ap->live, r->item, r->item_len);
}

/* rec.v1.Catalog's new views become what requests see. */
static void publish_view(void *arg, bundle *view) { app_swap(arg, view); }

/* The event log, replayed into the online state before anything is served. */
static int open_events(app *ap, rec_error *err) {
  if (online_new(&ap->online) != 0) return rec_fail(err, REC_ENOMEM, "out of memory");
  if (!ap->cfg->event_log[0]) return 0;
  size_t n;
  int64_t t0 = rec_mono_ns();
  int rc = eventlog_open(ap->cfg->event_log, (size_t)ap->cfg->event_segment_mb << 20, replay,
                         ap, &ap->log, &n, err);
  if (!rc) {
    atomic_store(&ap->events_applied, eventlog_last_seq(ap->log));
    eventlog_set_commit_delay(ap->log, ap->cfg->event_commit_us);
  }
  if (!rc)
    LOG_INFO("event log replayed", "dir=%s events=%zu users=%zu last_sequence=%llu corrupt_records=%llu ms=%lld",
             ap->cfg->event_log, n, online_users(ap->online),
             (unsigned long long)eventlog_last_seq(ap->log),
             (unsigned long long)eventlog_corrupt_records(ap->log), (long long)((rec_mono_ns() - t0) / 1000000));
  return rc;
}

/* The decision log (declog.h), when asked for; its writer runs from here on. */
static int open_decisions(app *ap, rec_error *err) {
  const recd_config *c = ap->cfg;
  if (!c->decision_log[0]) return 0;
  declog_opts o = {.path = c->decision_log, .max_bytes = c->decision_log_max_bytes, .keep = c->decision_log_keep,
                   .queue = (size_t)c->decision_log_queue};
  int rc = declog_open(&o, &ap->decisions, err);
  if (!rc)
    LOG_INFO("decision log open", "file=%s rate=%g max_bytes=%lld keep=%d", c->decision_log, c->decision_log_rate,
             (long long)c->decision_log_max_bytes, c->decision_log_keep);
  return rc;
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
  /* A fixed threshold: blocks of 256 KiB and more (a large call's arena,
   * big messages) come from mmap and go back to the system when freed.
   * glibc would otherwise raise the threshold after the first large free
   * and keep such memory in the heap for good. */
  mallopt(M_MMAP_THRESHOLD, 256 << 10);
  signal(SIGPIPE, SIG_IGN);
  raise_fd_limit();
  signal(SIGXFSZ, SIG_IGN); /* a file-size limit fails the write (EFBIG), it does not kill recd */
  retrieve_thread_init();
  rank_config *rank_cfg;
  if (rank_config_load(cfg.ranking_config[0] ? cfg.ranking_config : NULL, &rank_cfg, &err) != 0) {
    fprintf(stderr, "recd: %s\n", err.msg);
    return 2;
  }
  /* The experiments file too: parsed and compiled against these settings. */
  experiments *exps = NULL;
  exp_plan *plan = NULL;
  if (cfg.experiments[0] &&
      (experiments_load(cfg.experiments, &exps, &err) != 0 || exp_compile(exps, rank_cfg, &plan, &err) != 0)) {
    fprintf(stderr, "recd: %s%s\n", exps ? "experiments: " : "", err.msg);
    experiments_free(exps);
    rank_config_free(rank_cfg);
    return 2;
  }
  exp_plan_free(plan);
  experiments_free(exps);
  rank_config_free(rank_cfg); /* checked here so a bad file stops recd at once; each load reads it */
  app ap;
  app_init(&ap, &cfg);
  if (cfg.experiments[0] &&
      attribution_new((size_t)cfg.attribution_slates, (size_t)cfg.attribution_mb << 20,
                      (int64_t)cfg.attribution_window_s * 1000, &ap.attr) != 0) {
    fprintf(stderr, "recd: out of memory\n");
    app_destroy(&ap);
    return 1;
  }
  auth *au = NULL;
  if (auth_new(cfg.admin_token_file, cfg.admin_allow, &au, &err) != 0 || open_bundle_root(&ap, &err) != 0) {
    fprintf(stderr, "recd: %s\n", err.msg);
    auth_free(au);
    app_destroy(&ap);
    return 2;
  }
  rpc_tls tls = {.cert_file = cfg.tls_cert, .key_file = cfg.tls_key, .client_ca_file = cfg.tls_client_ca,
                 .client_cert = (rpc_client_cert)cfg.tls_client_mode};
  rpc_tls admin_tls = tls;
  admin_tls.client_cert = (rpc_client_cert)cfg.admin_client_mode;
  rpc_client_tls shard_tls = {.ca_file = cfg.shard_tls_ca, .cert_file = cfg.shard_tls_cert,
                              .key_file = cfg.shard_tls_key, .server_name = cfg.shard_tls_name};
  rpc_server_opts o = {.name = "serving", .listen = cfg.listen, .tls = cfg.tls_cert[0] ? &tls : NULL,
                       .threads = cfg.threads,
                       .requests_per_method = cfg.requests_per_method,
                       .max_message_bytes = cfg.max_message_bytes,
                       .max_call_bytes = (size_t)cfg.max_call_mb << 20,
                       .limits = {.max_repeated = (size_t)(cfg.max_exclude > 10000 ? cfg.max_exclude : 10000),
                                  .max_unknown = rpc_default_limits.max_unknown,
                                  .max_depth = rpc_default_limits.max_depth},
                       .max_concurrent_streams = cfg.max_concurrent_streams,
                       .max_inflight = cfg.max_inflight, .keepalive_ms = cfg.keepalive_ms,
                       .keepalive_timeout_ms = cfg.keepalive_timeout_ms,
                       .handshake_timeout_ms = cfg.handshake_timeout_ms,
                       .max_connection_idle_ms = cfg.max_connection_idle_ms,
                       .send_timeout_ms = cfg.send_timeout_ms,
                       .methods = METHODS, .n_methods = sizeof METHODS / sizeof METHODS[0],
                       .unlisted = ELSEWHERE, .n_unlisted = sizeof ELSEWHERE / sizeof ELSEWHERE[0],
                       .app = &ap, .thread_init = retrieve_thread_init, .observe = observe};
  runtime rt = {.ap = &ap};
  slow_call_ns = (int64_t)cfg.slow_call_ms * 1000000;
  call_log_mode = strcmp(cfg.call_log, "all") == 0 ? CALL_LOG_ALL : strcmp(cfg.call_log, "errors") == 0 ? CALL_LOG_ERRORS
                : CALL_LOG_OFF;
  int admin_port = 0, admin_grpc_port = 0;
  if (cfg.role == REC_ROLE_RANKING && fanout_new(cfg.retrieval, &shard_tls, &ap.shards, &err) != 0) {
    fprintf(stderr, "recd: retrieval: %s\n", err.msg);
    auth_free(au);
    app_destroy(&ap);
    return 2;
  }
  if (cfg.catalog_log[0] && live_catalog_open(cfg.catalog_log, publish_view, &ap, &ap.live, &err) != 0) {
    fprintf(stderr, "recd: catalog log: %s\n", err.msg);
    auth_free(au);
    fanout_free(ap.shards);
    app_destroy(&ap);
    return 1;
  }
  const char *failed = open_events(&ap, &err) != 0 ? "event log" : open_decisions(&ap, &err) != 0 ? "decision log" : NULL;
  if (failed) {
    fprintf(stderr, "recd: %s: %s\n", failed, err.msg);
    eventlog_close(ap.log);
    online_free(ap.online);
    live_catalog_close(ap.live);
    app_destroy(&ap);
    return 1;
  }
  uv_loop_init(&rt.loop);
  /* Loads start only once the loop runs, after the port is open. */
  if (reloader_new(&rt.loop, &ap, on_first_load, &rt, &rt.loads) != 0) {
    fprintf(stderr, "recd: out of memory\n");
    return 1;
  }
  ap.reload_start = reloader_queue;
  ap.reload_owner = rt.loads;
  if (rpc_server_start(&o, &rt.srv, &rt.port, &err) != 0 ||
      (ap.srv = rt.srv, start_admin(&rt, &o, cfg.tls_cert[0] ? &admin_tls : NULL, au, &admin_grpc_port, &err)) != 0) {
    fprintf(stderr, "recd: %s\n", err.msg);
    if (rt.srv) rpc_server_stop(rt.srv, 0);
    auth_free(au);
    reloader_close(rt.loads);
    uv_run(&rt.loop, UV_RUN_DEFAULT);
    uv_loop_close(&rt.loop);
    reloader_free(rt.loads);
    eventlog_close(ap.log);
    live_catalog_close(ap.live);
    declog_close(ap.decisions);
    online_free(ap.online);
    app_destroy(&ap);
    return 1;
  }
  static const char *names[METRICS_MAX_METHODS];
  size_t n = rpc_method_count(rt.srv);
  for (size_t i = 0; i < n && i < METRICS_MAX_METHODS; i++) names[i] = rpc_method_path(rt.srv, i);
  metrics_set_methods(names, n);
  if (admin_http_start(&rt.loop, cfg.admin_listen, &ap, rt.srv, cfg.admin_http_token ? au : NULL, &rt.admin,
                       &admin_port, &err) != 0) {
    fprintf(stderr, "recd: %s\n", err.msg);
    rt.exit_code = 2;
    reloader_close(rt.loads);
    uv_run(&rt.loop, UV_RUN_DEFAULT); /* finish closing the listener */
    uv_loop_close(&rt.loop);
  } else {
    LOG_INFO("listening", "addr=%s port=%d tls=%s admin_port=%d admin_grpc_port=%d threads=%d role=%s "
             "shard=%s bundle_root=%s version=%s", cfg.listen, rt.port,
             !cfg.tls_cert[0] ? "off" : cfg.tls_client_mode == RPC_CLIENT_CERT_REQUIRE ? "mtls" : "on",
             admin_port, admin_grpc_port, cfg.threads, rec_role_name(cfg.role), cfg.shard,
             ap.bundle_root[0] ? ap.bundle_root : "none", RECD_VERSION);
    if (cfg.selfprobe_ms &&
        selfprobe_start(&rt.loop, cfg.listen, rt.port, cfg.tls_cert[0] != '\0', cfg.selfprobe_ms, &ap.listener_stuck,
                        &rt.probe) != 0)
      LOG_WARN("cannot start the listener probe", "reason=\"out of memory\"");
    rc = run(&rt);
  }
  if (rt.admin_srv) rpc_server_stop(rt.admin_srv, 0); /* the catalog writer answers its pending calls */
  rpc_server_stop(rt.srv, cfg.drain_ms);
  eventlog_close(ap.log); /* every acknowledged event is on disk */
  live_catalog_close(ap.live); /* every acknowledged catalog batch was on disk when acknowledged */
  ap.live = NULL;
  declog_close(ap.decisions); /* the records queued by the calls above are written */
  ap.decisions = NULL;
  int code = rt.exit_code ? rt.exit_code : rc;
  if (rt.abandoned) { /* the load's thread still uses the app: leave it all to the exit */
    LOG_INFO("stopped", "exit=%d", code);
    _Exit(code);
  }
  online_free(ap.online);
  fanout_free(ap.shards);
  app_destroy(&ap);
  auth_free(au);
  reloader_free(rt.loads);
  LOG_INFO("stopped", "exit=%d", code);
  return code;
}
