/* server/config.h - recd's configuration: one table of settings (name, type,
 * default, range, help) read from an optional key = value file and then from
 * --name=value flags, validated once into an immutable struct. Documented in
 * docs/configuration.md; `recd --help` prints the same table. */
#ifndef REC_CONFIG_H
#define REC_CONFIG_H
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include "common/err.h"

/* What a recd process serves: one names table (rec_role_name) for the
 * flag, the logs and Admin.Status. */
typedef enum rec_role {
  REC_ROLE_ALL,          /* both tiers in one process */
  REC_ROLE_RETRIEVAL,    /* the candidate tier, one shard */
  REC_ROLE_RANKING,      /* the ranking tier, asking remote shards */
  REC_ROLE_COUNT
} rec_role;
const char *rec_role_name(rec_role r);

typedef struct recd_config {
  char listen[256];          /* gRPC address host:port */
  char bundle[4096];         /* bundle directory */
  char admin_listen[256];    /* admin HTTP host:port */
  char admin_grpc_listen[256]; /* Admin RPCs host:port, "" = none */
  char admin_token_file[4096]; /* named bearer tokens for the admin surface */
  char admin_allow[4096];    /* client-certificate identities allowed on it, ';'-separated */
  char admin_http_auth[8];   /* "auto" (token off loopback) or "token" (always) */
  bool admin_http_token;     /* parsed: the admin HTTP port asks for the token */
  char bundle_root[4096];    /* Admin.Reload loads only under here; "" = --bundle's directory */
  char tls_cert[4096], tls_key[4096]; /* the gRPC listeners' certificate and key; "" = plaintext */
  char tls_client_ca[4096];  /* CA client certificates must chain to */
  char tls_client_auth[12];  /* serving listener: none, optional or require */
  char admin_client_auth[12]; /* admin listener: none, optional or require */
  int tls_client_mode, admin_client_mode; /* parsed: rpc_client_cert values */
  char shard_tls_ca[4096], shard_tls_cert[4096], shard_tls_key[4096], shard_tls_name[256];
  bool watch_bundle;         /* reload when the bundle path changes */
  rec_role role;
  char retrieval[4096];      /* role=ranking: shard addresses, comma-separated */
  char shard[32];            /* role=retrieval: "I/N" */
  unsigned shard_index, shard_count; /* parsed from shard */
  int retrieval_timeout_ms;
  int degrade_ef_below_ms, degrade_mmr_below_ms, degrade_popularity_below_ms;
  int threads;               /* completion-queue workers; 0 at parse = one per core */
  int max_k;
  int max_exclude;
  int max_message_bytes;
  int max_call_mb;           /* memory one call may hold */
  int max_concurrent_streams;
  int requests_per_method;
  int max_inflight;
  int keepalive_ms, keepalive_timeout_ms;
  int handshake_timeout_ms, max_connection_idle_ms, send_timeout_ms;
  int selfprobe_ms;          /* probe the serving listener this often; 0 = never */
  int drain_ms;
  int drain_grace_ms;
  char log_level[8];
  char ranking_config[4096];
  char event_log[4096];        /* event log directory, "" = none */
  char catalog_log[4096];      /* live catalog log directory, "" = no rec.v1.Catalog */
  int event_segment_mb;
  int event_commit_us;   /* the ranking tier's settings file, "" = defaults */
  char experiments[4096];      /* experiment layers file, "" = none */
  char experiments_state[4096]; /* runtime experiment changes (parsed: EXPERIMENTS.state by default) */
  int attribution_window_s, attribution_slates, attribution_mb;
  char call_log[8];            /* all, errors or off */
  int slow_call_ms;            /* a call this slow logs its stage timings; 0 = never */
  char decision_log[4096];     /* decision log file, "" = none (declog.h) */
  double decision_log_rate;    /* share of Recommend calls logged */
  int64_t decision_log_max_bytes; /* a file's size before it is rotated */
  int decision_log_keep;       /* rotated files kept */
  int decision_log_queue;      /* records waiting for the writer before new ones are dropped */
} recd_config;

/* Fills *cfg from defaults, then --config=FILE if given, then the other flags.
 * Returns 0; 1 when --help was asked (usage already printed to 'out'); or a
 * negative code with 'err' holding one line naming the setting and its range. */
int  config_parse(int argc, char **argv, recd_config *cfg, FILE *out, rec_error *err);
void config_usage(FILE *out);
#endif
