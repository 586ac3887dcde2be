/* server/config.c - recd's settings table, and the command line on top of
 * common/cfgtable: the file first, then flags, then the checks that span
 * settings. */
#include "server/config.h"

#include <stddef.h>
#include <string.h>
#include <unistd.h>

#include "common/cfgtable.h"
#include "server/auth.h"
#include "server/rpc.h"

#define STR(f) .type = CFG_STR, .offset = offsetof(recd_config, f), \
               .size = sizeof(((recd_config *)0)->f)
#define INT(f, lo, hi) .type = CFG_INT, .offset = offsetof(recd_config, f), .size = sizeof(int), \
                       .min = lo, .max = hi

static const char *const ROLE_NAMES[REC_ROLE_COUNT + 1] = {
    [REC_ROLE_ALL] = "all", [REC_ROLE_RETRIEVAL] = "retrieval", [REC_ROLE_RANKING] = "ranking", NULL};

const char *rec_role_name(rec_role r) { return r >= 0 && r < REC_ROLE_COUNT ? ROLE_NAMES[r] : "?"; }

static const cfg_field FIELDS[] = {
    {"listen", STR(listen), .def = "127.0.0.1:50051",
     .help = "gRPC serving address host:port (port 0: any free port); 0.0.0.0:50051 to serve other hosts"},
    {"tls_cert", STR(tls_cert), .def = "",
     .help = "PEM certificate chain for the gRPC listeners (TLS); empty = plaintext; re-read on SIGHUP"},
    {"tls_key", STR(tls_key), .def = "", .help = "PEM private key of --tls_cert"},
    {"tls_client_ca", STR(tls_client_ca), .def = "",
     .help = "PEM CA that client certificates must chain to (mutual TLS)"},
    {"tls_client_auth", STR(tls_client_auth), .def = "none",
     .help = "serving listener client certificates: none, optional (verified when sent) or require"},
    {"admin_grpc_listen", STR(admin_grpc_listen), .def = "127.0.0.1:50052",
     .help = "Admin RPC address (Reload, Status; every write API): token or allowed certificate required; "
             "empty = no admin RPCs"},
    {"admin_token_file", STR(admin_token_file), .def = "",
     .help = "file of admin bearer tokens, 'NAME TOKEN' per line, mode 0600; read at start"},
    {"admin_allow", STR(admin_allow), .def = "",
     .help = "client-certificate identities allowed on the admin listener: subjects or CN=name, ';'-separated"},
    {"admin_client_auth", STR(admin_client_auth), .def = "optional",
     .help = "admin listener client certificates (with --tls_client_ca): none, optional or require"},
    {"admin_http_auth", STR(admin_http_auth), .def = "auto",
     .help = "admin HTTP port: auto (token needed when not bound to loopback) or token (always); "
             "/healthz and /readyz never need it"},
    {"bundle_root", STR(bundle_root), .def = "",
     .help = "Admin.Reload loads bundles only from under this directory; empty = the directory holding --bundle"},
    {"shard_tls_ca", STR(shard_tls_ca), .def = "",
     .help = "role=ranking: PEM CA the shards' certificates chain to; empty = plaintext to the shards"},
    {"shard_tls_cert", STR(shard_tls_cert), .def = "", .help = "role=ranking: client certificate for the shards (mTLS)"},
    {"shard_tls_key", STR(shard_tls_key), .def = "", .help = "role=ranking: its private key"},
    {"shard_tls_name", STR(shard_tls_name), .def = "",
     .help = "role=ranking: name the shards' certificates carry, when not the --retrieval host"},
    {"bundle", STR(bundle), .def = "", .help = "bundle directory to serve (required)"},
    {"role", .type = CFG_ENUM, .offset = offsetof(recd_config, role), .size = sizeof(int),
     .names = ROLE_NAMES, .def = "all",
     .help = "all (both tiers in one process), retrieval (serves Retrieve) or ranking (calls --retrieval)"},
    {"retrieval", STR(retrieval), .def = "",
     .help = "role=ranking: the candidate tier's shards, host:port[,host:port...]"},
    {"shard", STR(shard), .def = "0/1",
     .help = "role=retrieval: which shard of how many this process serves, I/N"},
    {"degrade_ef_below_ms", INT(degrade_ef_below_ms, 0, 600000), .def = "10",
     .help = "with less time than this left before the caller's deadline, search HNSW with efSearch 16"},
    {"degrade_mmr_below_ms", INT(degrade_mmr_below_ms, 0, 600000), .def = "5",
     .help = "with less time than this left before the caller's deadline, skip MMR"},
    {"degrade_popularity_below_ms", INT(degrade_popularity_below_ms, 0, 600000), .def = "2",
     .help = "with less time than this left, answer from popularity alone"},
    {"retrieval_timeout_ms", INT(retrieval_timeout_ms, 1, 60000), .def = "200",
     .help = "role=ranking: longest wait for the shards (less when the caller's deadline is nearer)"},
    {"watch_bundle", .type = CFG_BOOL, .offset = offsetof(recd_config, watch_bundle),
     .size = sizeof(bool), .def = "false",
     .help = "reload when the --bundle path changes (e.g. a `current` link repointed)"},
    {"admin_listen", STR(admin_listen), .def = "127.0.0.1:9464",
     .help = "admin HTTP address: /metrics, /healthz, /readyz, /status (port 0: any free port)"},
    {"threads", INT(threads, 0, 256), .def = "0",
     .help = "completion-queue worker threads; 0 = one per core"},
    {"max_k", INT(max_k, 1, 10000), .def = "200", .help = "largest k a request may ask for"},
    {"max_exclude", INT(max_exclude, 0, 100000), .def = "1000",
     .help = "most exclude_item_ids per request"},
    {"max_call_mb", INT(max_call_mb, 16, 65536), .def = "256",
     .help = "memory one call may take (decoded request, candidates, reply), in MiB; past it RESOURCE_EXHAUSTED"},
    {"max_message_bytes", INT(max_message_bytes, 1024, 67108864), .def = "4194304",
     .help = "largest request or reply, in bytes (larger: RESOURCE_EXHAUSTED)"},
    {"max_concurrent_streams", INT(max_concurrent_streams, 1, 65536), .def = "256",
     .help = "HTTP/2 streams per connection"},
    {"max_inflight", INT(max_inflight, 0, 1000000), .def = "1024",
     .help = "calls in flight past which new ones fail RESOURCE_EXHAUSTED at once; 0 = no cap"},
    {"send_timeout_ms", INT(send_timeout_ms, 100, 3600000), .def = "10000",
     .help = "a reply the client has not read this long after it was ready is cancelled (DEADLINE_EXCEEDED); "
             "past max_inflight waiting replies, the oldest waiting over a second is too"},
    {"keepalive_ms", INT(keepalive_ms, 1000, 3600000), .def = "60000",
     .help = "HTTP/2 keepalive ping interval on idle connections"},
    {"keepalive_timeout_ms", INT(keepalive_timeout_ms, 1000, 600000), .def = "20000",
     .help = "a connection whose keepalive ping is not answered in this time is closed"},
    {"handshake_timeout_ms", INT(handshake_timeout_ms, 100, 600000), .def = "10000",
     .help = "a gRPC connection that has not finished its HTTP/2 and TLS handshake by then is closed"},
    {"max_connection_idle_ms", INT(max_connection_idle_ms, 0, 86400000), .def = "600000",
     .help = "a gRPC connection with no call for this long is closed (clients reconnect); 0 = never"},
    {"selfprobe_ms", INT(selfprobe_ms, 0, 3600000), .def = "5000",
     .help = "connect to the serving port this often; 3 failures in a row make /healthz and /readyz 503; 0 = never"},
    {"requests_per_method", INT(requests_per_method, 1, 1024), .def = "16",
     .help = "requests kept posted per method and worker"},
    {"drain_grace_ms", INT(drain_grace_ms, 0, 600000), .def = "0",
     .help = "on SIGTERM, keep serving this long while health says NOT_SERVING"},
    {"drain_ms", INT(drain_ms, 0, 600000), .def = "5000",
     .help = "on shutdown, how long calls in flight may finish"},
    /* A string, not CFG_ENUM: the struct keeps the name, checked in check(). */
    {"log_level", STR(log_level), .def = "info", .help = "debug, info, warn or error"},
    {"event_log", STR(event_log), .def = "",
     .help = "directory of the durable event log (Events.Record); empty = events are refused"},
    {"catalog_log", STR(catalog_log), .def = "",
     .help = "directory of the live catalog's log (rec.v1.Catalog on the admin listener); empty = catalog "
             "updates are refused"},
    {"event_commit_us", INT(event_commit_us, 0, 1000000), .def = "0",
     .help = "group commit: wait this long for more events before each fdatasync (0: at once)"},
    {"event_segment_mb", INT(event_segment_mb, 1, 4096), .def = "64",
     .help = "event log segment size before a new file starts, in MiB"},
    {"ranking_config", STR(ranking_config), .def = "",
     .help = "ranking settings file (docs/configuration.md); empty = defaults"},
    {"experiments", STR(experiments), .def = "",
     .help = "experiment layers file (docs/operations.md), reloaded with the ranking settings; empty = none"},
    {"experiments_state", STR(experiments_state), .def = "",
     .help = "where runtime experiment changes (ControlExperiment) are kept; empty = EXPERIMENTS.state"},
    {"attribution_window_s", INT(attribution_window_s, 1, 30 * 86400), .def = "3600",
     .help = "a purchase without slate_request_id counts for the user's last slate this recent"},
    {"attribution_slates", INT(attribution_slates, 1, 10000000), .def = "200000",
     .help = "slates remembered for attribution (the oldest are forgotten first)"},
    {"attribution_mb", INT(attribution_mb, 1, 65536), .def = "64",
     .help = "memory the remembered slates may take, in MiB"},
    {"call_log", STR(call_log), .def = "all",
     .help = "a log line per serving call: all, errors (non-OK only) or off"},
    {"slow_call_ms", INT(slow_call_ms, 0, 600000), .def = "50",
     .help = "a serving call at least this slow (or traced: traceparent sampled) logs its stage timings; 0 = never"},
    {"decision_log", STR(decision_log), .def = "",
     .help = "file for the decision log (what each logged Recommend saw and served, for recctl replay); "
             "empty = none"},
    {"decision_log_rate", .type = CFG_FLOAT, .offset = offsetof(recd_config, decision_log_rate),
     .size = sizeof(double), .min = 0, .max = 1, .def = "0.01",
     .help = "share of Recommend calls logged, chosen by request id (1 = every call); traced calls always are"},
    {"decision_log_max_bytes", .type = CFG_INT, .offset = offsetof(recd_config, decision_log_max_bytes),
     .size = sizeof(int64_t), .min = 4096, .max = 1099511627776.0, .def = "268435456",
     .help = "size of a decision log file before it is rotated to FILE.1"},
    {"decision_log_keep", INT(decision_log_keep, 0, 1000), .def = "4",
     .help = "rotated decision log files kept (FILE.1 .. FILE.N)"},
    {"decision_log_queue", INT(decision_log_queue, 1, 1000000), .def = "4096",
     .help = "records waiting for the decision log's writer before new ones are dropped (and counted)"},
};
static const cfg_table TABLE = {FIELDS, sizeof FIELDS / sizeof FIELDS[0], NULL};

static int client_mode(const char *v, const char *name, int *mode, rec_error *err) {
  if (strcmp(v, "none") == 0) *mode = RPC_CLIENT_CERT_NONE;
  else if (strcmp(v, "optional") == 0) *mode = RPC_CLIENT_CERT_OPTIONAL;
  else if (strcmp(v, "require") == 0) *mode = RPC_CLIENT_CERT_REQUIRE;
  else return rec_fail(err, REC_EINVAL, "%s: must be none, optional or require, got '%s'", name, v);
  return 0;
}

static int check(recd_config *cfg, rec_error *err) {
  int rc;
  if (!cfg->bundle[0]) return rec_fail(err, REC_EINVAL, "bundle: required (--bundle=DIR)");
  if (!strchr(cfg->listen, ':'))
    return rec_fail(err, REC_EINVAL, "listen: want host:port, got '%s'", cfg->listen);
  const char *lv = cfg->log_level;
  if (cfg->role == REC_ROLE_RANKING && !cfg->retrieval[0])
    return rec_fail(err, REC_EINVAL, "retrieval: role=ranking needs --retrieval=host:port[,host:port...]");
  unsigned si, sn;
  char tail;
  if (sscanf(cfg->shard, "%u/%u%c", &si, &sn, &tail) != 2 || sn < 1 || sn > 1024 || si >= sn)
    return rec_fail(err, REC_EINVAL, "shard: want I/N with 0 <= I < N <= 1024, got '%s'", cfg->shard);
  cfg->shard_index = si;
  cfg->shard_count = sn;
  if (strcmp(lv, "debug") && strcmp(lv, "info") && strcmp(lv, "warn") && strcmp(lv, "error"))
    return rec_fail(err, REC_EINVAL, "log_level: must be debug, info, warn or error, got '%s'", lv);
  if ((rc = client_mode(cfg->tls_client_auth, "tls_client_auth", &cfg->tls_client_mode, err)) ||
      (rc = client_mode(cfg->admin_client_auth, "admin_client_auth", &cfg->admin_client_mode, err)))
    return rc;
  if (!cfg->tls_client_ca[0]) {
    if (cfg->tls_client_mode != RPC_CLIENT_CERT_NONE)
      return rec_fail(err, REC_EINVAL, "tls_client_auth: %s needs --tls_client_ca", cfg->tls_client_auth);
    if (strcmp(cfg->admin_client_auth, "require") == 0)
      return rec_fail(err, REC_EINVAL, "admin_client_auth: require needs --tls_client_ca");
    cfg->admin_client_mode = RPC_CLIENT_CERT_NONE; /* "optional" without a CA: nothing to ask for */
  }
  if (!cfg->tls_cert[0] != !cfg->tls_key[0])
    return rec_fail(err, REC_EINVAL, "tls_cert, tls_key: TLS needs both");
  if (!cfg->tls_cert[0] && cfg->tls_client_ca[0])
    return rec_fail(err, REC_EINVAL, "tls_client_ca: client certificates need TLS (--tls_cert, --tls_key)");
  if (cfg->admin_allow[0] && !cfg->tls_client_ca[0])
    return rec_fail(err, REC_EINVAL, "admin_allow: certificate identities need --tls_client_ca");
  if (cfg->admin_allow[0] && cfg->admin_client_mode == RPC_CLIENT_CERT_NONE)
    return rec_fail(err, REC_EINVAL, "admin_allow: needs --admin_client_auth=optional or require (with none, "
                    "no certificate is asked for)");
  if (strcmp(cfg->admin_http_auth, "auto") && strcmp(cfg->admin_http_auth, "token"))
    return rec_fail(err, REC_EINVAL, "admin_http_auth: must be auto or token, got '%s'", cfg->admin_http_auth);
  cfg->admin_http_token = strcmp(cfg->admin_http_auth, "token") == 0 || !auth_addr_is_loopback(cfg->admin_listen);
  if (cfg->admin_http_token && !cfg->admin_token_file[0])
    return rec_fail(err, REC_EINVAL, "admin_listen: %s is not loopback (or admin_http_auth=token), so "
                    "its routes need a token: set --admin_token_file", cfg->admin_listen);
  if (cfg->admin_grpc_listen[0] && !strchr(cfg->admin_grpc_listen, ':'))
    return rec_fail(err, REC_EINVAL, "admin_grpc_listen: want host:port, got '%s'", cfg->admin_grpc_listen);
  size_t nl = strlen(cfg->listen);
  if (cfg->admin_grpc_listen[0] && strcmp(cfg->admin_grpc_listen, cfg->listen) == 0 &&
      !(nl >= 2 && strcmp(cfg->listen + nl - 2, ":0") == 0))
    return rec_fail(err, REC_EINVAL, "admin_grpc_listen: must differ from --listen");
  if (!cfg->shard_tls_ca[0] && (cfg->shard_tls_cert[0] || cfg->shard_tls_key[0]))
    return rec_fail(err, REC_EINVAL, "shard_tls_cert: a client certificate needs --shard_tls_ca");
  if (!cfg->shard_tls_cert[0] != !cfg->shard_tls_key[0])
    return rec_fail(err, REC_EINVAL, "shard_tls_cert, shard_tls_key: give both");
  if (strcmp(cfg->call_log, "all") && strcmp(cfg->call_log, "errors") && strcmp(cfg->call_log, "off"))
    return rec_fail(err, REC_EINVAL, "call_log: must be all, errors or off, got '%s'", cfg->call_log);
  if (cfg->experiments[0] && cfg->role == REC_ROLE_RETRIEVAL)
    return rec_fail(err, REC_EINVAL, "experiments: a retrieval shard does not rank; give --experiments to the "
                    "ranking role");
  if (cfg->experiments[0] && !cfg->experiments_state[0]) {
    if (strlen(cfg->experiments) + 6 >= sizeof cfg->experiments_state)
      return rec_fail(err, REC_EINVAL, "experiments: path too long");
    snprintf(cfg->experiments_state, sizeof cfg->experiments_state, "%s.state", cfg->experiments);
  }
  if (cfg->threads == 0) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    cfg->threads = n < 1 ? 1 : n > 256 ? 256 : (int)n;
  }
  return 0;
}

/* Splits "--name=value" or "--name value"; advances *i past what it used. */
static int flag(int argc, char **argv, int *i, const char **name, size_t *len, const char **val,
                rec_error *err) {
  const char *a = argv[*i];
  if (strncmp(a, "--", 2) != 0)
    return rec_fail(err, REC_EINVAL, "unexpected argument '%s' (settings are --name=value)", a);
  *name = a + 2;
  const char *eq = strchr(*name, '=');
  if (eq) {
    *len = (size_t)(eq - *name);
    *val = eq + 1;
  } else if (*i + 1 < argc) {
    *len = strlen(*name);
    *val = argv[++*i];
  } else {
    return rec_fail(err, REC_EINVAL, "%s: missing value", a);
  }
  return 0;
}

/* A missing or unreadable file is a bad argument from recd's point of view. */
static int load_file(recd_config *cfg, const char *path, rec_error *err) {
  int rc = cfg_load_file(&TABLE, cfg, path, err);
  return rc == REC_EIO ? cfg_error_prefix(err, REC_EINVAL, "--config: ") : rc;
}

int config_parse(int argc, char **argv, recd_config *cfg, FILE *out, rec_error *err) {
  memset(cfg, 0, sizeof *cfg);
  int rc = cfg_defaults(&TABLE, cfg, err);
  if (rc) return rc;
  for (int i = 1; i < argc; i++)
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      config_usage(out);
      return 1;
    }
  const char *name, *val;
  size_t len;
  for (int i = 1; i < argc; i++) { /* the file first, so flags override it */
    if ((rc = flag(argc, argv, &i, &name, &len, &val, err))) return rc;
    if (len == 6 && strncmp(name, "config", 6) == 0 && (rc = load_file(cfg, val, err))) return rc;
  }
  for (int i = 1; i < argc; i++) {
    flag(argc, argv, &i, &name, &len, &val, err);
    if (len == 6 && strncmp(name, "config", 6) == 0) continue;
    const cfg_field *f = cfg_find(&TABLE, name, len);
    if (!f) return rec_fail(err, REC_EINVAL, "unknown option --%.*s (see --help)", (int)len, name);
    if ((rc = cfg_set_field(f, cfg, val, err))) return cfg_error_prefix(err, rc, "--");
  }
  return check(cfg, err);
}

void config_usage(FILE *out) {
  fprintf(out, "usage: recd --bundle=DIR [--name=value ...] [--config=FILE]\n\n"
               "Serves recommendations over gRPC from a model bundle. Settings (FILE holds\n"
               "'name = value' lines; flags override it):\n\n");
  cfg_usage(&TABLE, out, "--");
}
