/* server/metrics.c - fixed tables of atomic counters; see metrics.h. Latency
 * histograms share one set of bucket bounds, in seconds as Prometheus
 * expects. */
#include "server/metrics.h"
#include "server/attribution.h"
#include "server/rpc_client.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

static const double BOUNDS[] = {50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3,
                                50e-3, 100e-3, 250e-3, 1.0};
enum { NB = sizeof BOUNDS / sizeof BOUNDS[0] };

typedef struct histogram {
  atomic_uint_fast64_t bucket[NB + 1]; /* the last is +Inf */
  atomic_uint_fast64_t sum_ns;
} histogram;

/* Workers count calls from the moment the RPC server starts, and recd names
 * the methods only then (their names come from the server), so the count is
 * published after the names with release order and read with acquire: a
 * call that finds it 0 is simply not counted. */
static const char *const *method_names;
static atomic_size_t n_methods;
static atomic_uint_fast64_t calls[METRICS_MAX_METHODS][METRICS_STATUSES];
static histogram call_latency[METRICS_MAX_METHODS];
static histogram stages[STAGE_COUNT];
static atomic_uint_fast64_t candidates[REC_SRC_COUNT];
static const char *const STAGE_NAMES[STAGE_COUNT] = {"user_tower", "ann", "sources", "ranking", "total",
                                                         "item_cf", "popularity", "mmr", "response"};
static atomic_uint_fast64_t degraded[REC_DEG_COUNT];
static atomic_uint_fast64_t strategies[REC_STRATEGY_COUNT];
static atomic_uint_fast64_t reloads[2];
static atomic_uint_fast64_t events;
static atomic_uint_fast64_t decisions[2]; /* queued, dropped */

/* Experiment arms: names handed out under a lock, published by the count. */
static pthread_mutex_t arms_mu = PTHREAD_MUTEX_INITIALIZER;
static char arm_exp[METRICS_MAX_ARMS][40], arm_salt[METRICS_MAX_ARMS][72], arm_name[METRICS_MAX_ARMS][40];
static atomic_int n_arms;
static atomic_uint_fast64_t arm_calls[METRICS_MAX_ARMS][METRICS_STATUSES];
static histogram arm_latency[METRICS_MAX_ARMS];
static atomic_uint_fast64_t arm_degraded[METRICS_MAX_ARMS][REC_DEG_COUNT];

void metrics_set_methods(const char *const *names, size_t n) {
  method_names = names;
  atomic_store_explicit(&n_methods, n < METRICS_MAX_METHODS ? n : METRICS_MAX_METHODS,
                        memory_order_release);
}

const char *metrics_method_name(size_t method) {
  return method < atomic_load_explicit(&n_methods, memory_order_acquire) ? method_names[method] : NULL;
}

size_t metrics_method_count(void) { return atomic_load_explicit(&n_methods, memory_order_acquire); }

static void observe(histogram *h, int64_t ns) {
  double s = (double)ns / 1e9;
  size_t b = 0;
  while (b < NB && s > BOUNDS[b]) b++;
  atomic_fetch_add_explicit(&h->bucket[b], 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&h->sum_ns, (uint_fast64_t)(ns > 0 ? ns : 0), memory_order_relaxed);
}

void metrics_call(size_t method, int status, int64_t ns) {
  if (method >= atomic_load_explicit(&n_methods, memory_order_acquire) || status < 0 ||
      status >= METRICS_STATUSES)
    return;
  atomic_fetch_add_explicit(&calls[method][status], 1, memory_order_relaxed);
  observe(&call_latency[method], ns);
}

void metrics_observe_stage(metrics_stage s, int64_t ns) { observe(&stages[s], ns); }

void metrics_candidates(const size_t per_source[REC_SRC_COUNT]) {
  for (int s = 0; s < REC_SRC_COUNT; s++)
    atomic_fetch_add_explicit(&candidates[s], per_source[s], memory_order_relaxed);
}

void metrics_degraded(rec_degraded reason) {
  if (reason >= 0 && reason < REC_DEG_COUNT)
    atomic_fetch_add_explicit(&degraded[reason], 1, memory_order_relaxed);
}

void metrics_strategy(rec_strategy s) {
  if (s >= 0 && s < REC_STRATEGY_COUNT) atomic_fetch_add_explicit(&strategies[s], 1, memory_order_relaxed);
}

void metrics_decision(bool dropped) {
  atomic_fetch_add_explicit(&decisions[dropped ? 1 : 0], 1, memory_order_relaxed);
}

void metrics_reload(int ok) { atomic_fetch_add_explicit(&reloads[ok ? 0 : 1], 1, memory_order_relaxed); }

int metrics_arm_slot(const char *experiment, const char *salt, const char *arm) {
  pthread_mutex_lock(&arms_mu);
  int n = atomic_load(&n_arms), slot = -1;
  for (int i = 0; i < n && slot < 0; i++)
    if (strcmp(arm_exp[i], experiment) == 0 && strcmp(arm_salt[i], salt) == 0 && strcmp(arm_name[i], arm) == 0)
      slot = i;
  if (slot < 0 && n < METRICS_MAX_ARMS) {
    snprintf(arm_exp[n], sizeof arm_exp[n], "%s", experiment);
    snprintf(arm_salt[n], sizeof arm_salt[n], "%s", salt);
    snprintf(arm_name[n], sizeof arm_name[n], "%s", arm);
    atomic_store_explicit(&n_arms, n + 1, memory_order_release);
    slot = n;
  }
  pthread_mutex_unlock(&arms_mu);
  return slot;
}

void metrics_arm_call(int slot, int status, int64_t ns) {
  if (slot < 0 || slot >= METRICS_MAX_ARMS || status < 0 || status >= METRICS_STATUSES) return;
  atomic_fetch_add_explicit(&arm_calls[slot][status], 1, memory_order_relaxed);
  observe(&arm_latency[slot], ns);
}

void metrics_arm_degraded(int slot, rec_degraded reason) {
  if (slot >= 0 && slot < METRICS_MAX_ARMS && reason >= 0 && reason < REC_DEG_COUNT)
    atomic_fetch_add_explicit(&arm_degraded[slot][reason], 1, memory_order_relaxed);
}

void metrics_events(size_t n) { atomic_fetch_add_explicit(&events, n, memory_order_relaxed); }

/* ---- rendering ---- */

typedef struct buf {
  char *s;
  size_t n, cap;
  bool failed;               /* out of memory: the render is refused, never served cut short */
} buf;

static void put(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(buf *b, const char *fmt, ...) {
  while (!b->failed) {
    va_list ap;
    va_start(ap, fmt);
    int m = b->s ? vsnprintf(b->s + b->n, b->cap - b->n, fmt, ap) : -1;
    va_end(ap);
    if (m >= 0 && (size_t)m < b->cap - b->n) {
      b->n += (size_t)m;
      return;
    }
    size_t cap = b->cap ? b->cap * 2 : 16384;
    char *s = realloc(b->s, cap);
    if (!s) {
      b->failed = true;
      return;
    }
    b->s = s;
    b->cap = cap;
  }
}

static uint64_t get(atomic_uint_fast64_t *v) { return atomic_load_explicit(v, memory_order_relaxed); }

static void put_histogram(buf *b, const char *name, const char *label, const char *value,
                          histogram *h) {
  uint64_t cum = 0;
  for (size_t i = 0; i <= NB; i++) {
    cum += get(&h->bucket[i]);
    if (i < NB) put(b, "%s_bucket{%s=\"%s\",le=\"%g\"} %llu\n", name, label, value, BOUNDS[i], (unsigned long long)cum);
    else put(b, "%s_bucket{%s=\"%s\",le=\"+Inf\"} %llu\n", name, label, value, (unsigned long long)cum);
  }
  put(b, "%s_sum{%s=\"%s\"} %.9f\n", name, label, value, (double)get(&h->sum_ns) / 1e9);
  /* The count is the buckets' total, so +Inf and _count agree even while
   * other threads observe. */
  put(b, "%s_count{%s=\"%s\"} %llu\n", name, label, value, (unsigned long long)cum);
}

static void render_calls(buf *b) {
  size_t n = atomic_load_explicit(&n_methods, memory_order_acquire);
  put(b, "# HELP recd_requests_total RPCs finished, by method and gRPC status.\n"
         "# TYPE recd_requests_total counter\n");
  for (size_t m = 0; m < n; m++)
    for (int s = 0; s < METRICS_STATUSES; s++)
      if (get(&calls[m][s]) || s == 0)
        put(b, "recd_requests_total{method=\"%s\",status=\"%s\"} %llu\n", method_names[m],
            rpc_status_name(s), (unsigned long long)get(&calls[m][s]));
  put(b, "# HELP recd_request_duration_seconds RPC latency inside recd, by method.\n"
         "# TYPE recd_request_duration_seconds histogram\n");
  for (size_t m = 0; m < n; m++)
    put_histogram(b, "recd_request_duration_seconds", "method", method_names[m], &call_latency[m]);
}

static void render_pipeline(buf *b) {
  put(b, "# HELP recd_stage_duration_seconds Recommend pipeline time per stage.\n"
         "# TYPE recd_stage_duration_seconds histogram\n");
  for (int s = 0; s < STAGE_COUNT; s++)
    put_histogram(b, "recd_stage_duration_seconds", "stage", STAGE_NAMES[s], &stages[s]);
  put(b, "# HELP recd_candidates_total Candidates ranked, by the source that proposed them.\n"
         "# TYPE recd_candidates_total counter\n");
  for (int s = 0; s < REC_SRC_COUNT; s++)
    put(b, "recd_candidates_total{source=\"%s\"} %llu\n", rec_source_name(s), (unsigned long long)get(&candidates[s]));
  put(b, "# HELP recd_degraded_total Responses degraded, by reason (docs/api.md lists them).\n"
         "# TYPE recd_degraded_total counter\n");
  for (int i = 0; i < REC_DEG_COUNT; i++)
    put(b, "recd_degraded_total{reason=\"%s\"} %llu\n", rec_degraded_name(i), (unsigned long long)get(&degraded[i]));
  put(b, "# HELP recd_recommend_strategy_total Recommend responses by strategy.\n"
         "# TYPE recd_recommend_strategy_total counter\n");
  for (int i = 0; i < REC_STRATEGY_COUNT; i++)
    put(b, "recd_recommend_strategy_total{strategy=\"%s\"} %llu\n", rec_strategy_name(i), (unsigned long long)get(&strategies[i]));
}

/* A label value with \\, \" and \n escaped, as the text format wants. */
static void escape(const char *in, char *out, size_t cap) {
  size_t n = 0;
  for (; *in && n + 3 < cap; in++) {
    if (*in == '\\' || *in == '"') out[n++] = '\\';
    if (*in == '\n') {
      out[n++] = '\\';
      out[n++] = 'n';
      continue;
    }
    out[n++] = *in;
  }
  out[n] = '\0';
}

/* Per experiment arm: Recommend calls, latency and degraded answers, and
 * what the arm's slates led to (attribution.h). Names and salts are
 * [A-Za-z0-9_.:-] (ranking/experiments.h), safe in a label as they are. */
static void render_arms(buf *b, struct attribution *attr) {
  int n = atomic_load_explicit(&n_arms, memory_order_acquire);
  if (!n) return;
  put(b, "# HELP recd_arm_requests_total Recommend calls by experiment arm and gRPC status.\n"
         "# TYPE recd_arm_requests_total counter\n");
  for (int a = 0; a < n; a++)
    for (int st = 0; st < METRICS_STATUSES; st++) {
      uint64_t v = get(&arm_calls[a][st]);
      if (v || st == 0)
        put(b, "recd_arm_requests_total{experiment=\"%s\",salt=\"%s\",arm=\"%s\",status=\"%s\"} %llu\n", arm_exp[a],
            arm_salt[a], arm_name[a], rpc_status_name(st), (unsigned long long)v);
    }
  put(b, "# HELP recd_arm_request_duration_seconds Recommend latency inside recd, by experiment arm.\n"
         "# TYPE recd_arm_request_duration_seconds histogram\n");
  for (int a = 0; a < n; a++) {
    char label[256];
    snprintf(label, sizeof label, "%.39s\",salt=\"%.71s\",arm=\"%.39s", arm_exp[a], arm_salt[a], arm_name[a]);
    put_histogram(b, "recd_arm_request_duration_seconds", "experiment", label, &arm_latency[a]);
  }
  put(b, "# HELP recd_arm_degraded_total Recommend responses degraded, by experiment arm and reason.\n"
         "# TYPE recd_arm_degraded_total counter\n");
  for (int a = 0; a < n; a++)
    for (int r = 0; r < REC_DEG_COUNT; r++) {
      uint64_t v = get(&arm_degraded[a][r]);
      if (v)
        put(b, "recd_arm_degraded_total{experiment=\"%s\",salt=\"%s\",arm=\"%s\",reason=\"%s\"} %llu\n",
            arm_exp[a], arm_salt[a], arm_name[a], rec_degraded_name(r), (unsigned long long)v);
    }
  static const struct {
    const char *name, *help;
  } OUT[] = {
      {"recd_arm_slates_total", "Recommend answers served by experiment arm."},
      {"recd_arm_items_shown_total", "Items on those answers."},
      {"recd_arm_clicks_total", "Clicks on shown items attributed to the arm (once per item and slate)."},
      {"recd_arm_clicked_slates_total", "Slates with at least one attributed click."},
      {"recd_arm_add_to_carts_total", "Add-to-carts of shown items attributed to the arm."},
      {"recd_arm_purchases_total", "Purchases of shown items attributed to the arm."},
      {"recd_arm_purchased_slates_total", "Slates with at least one attributed purchase."},
      {"recd_arm_revenue_total", "Revenue (price x quantity) of attributed purchases."},
  };
  arm_outcomes *o = calloc((size_t)n, sizeof *o);
  if (!o) {
    b->failed = true;
    return;
  }
  for (int a = 0; a < n; a++) attribution_outcomes(attr, a, &o[a]);
  for (size_t m = 0; m < sizeof OUT / sizeof OUT[0]; m++) {
    put(b, "# HELP %s %s\n# TYPE %s counter\n", OUT[m].name, OUT[m].help, OUT[m].name);
    for (int a = 0; a < n; a++) {
      const arm_outcomes *x = &o[a];
      uint64_t v[] = {x->slates, x->items, x->clicks, x->clicked_slates, x->carts, x->purchases, x->purchased_slates};
      if (m < 7)
        put(b, "%s{experiment=\"%s\",salt=\"%s\",arm=\"%s\"} %llu\n", OUT[m].name, arm_exp[a], arm_salt[a],
            arm_name[a], (unsigned long long)v[m]);
      else
        put(b, "%s{experiment=\"%s\",salt=\"%s\",arm=\"%s\"} %.4f\n", OUT[m].name, arm_exp[a], arm_salt[a],
            arm_name[a], x->revenue);
    }
  }
  free(o);
}

/* ---- the process, from /proc (Prometheus's standard process_* names) ---- */

typedef struct proc_stat {
  double cpu_s, start_s;
  unsigned long long vsize, rss_bytes;
} proc_stat;

/* /proc/self/stat's times and sizes; false when it cannot be read. The
 * command name in parentheses may hold anything, so fields are counted
 * from the last ')'. */
static bool read_proc_stat(proc_stat *p) {
  char text[1024];
  FILE *f = fopen("/proc/self/stat", "r");
  size_t n = f ? fread(text, 1, sizeof text - 1, f) : 0;
  if (f) fclose(f);
  text[n] = '\0';
  const char *s = strrchr(text, ')');
  unsigned long long utime, stime, start, vsize;
  long long rss;
  /* fields 3.. : state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime
   * cstime priority nice threads itrealvalue starttime vsize rss */
  if (!s || sscanf(s + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d %*d %llu %llu %lld",
                   &utime, &stime, &start, &vsize, &rss) != 5)
    return false;
  double tick = (double)sysconf(_SC_CLK_TCK);
  unsigned long long btime = 0;
  char line[256];
  if ((f = fopen("/proc/stat", "r"))) {
    while (fgets(line, sizeof line, f) && sscanf(line, "btime %llu", &btime) != 1) continue;
    fclose(f);
  }
  *p = (proc_stat){.cpu_s = (double)(utime + stime) / tick, .start_s = (double)btime + (double)start / tick,
                   .vsize = vsize, .rss_bytes = rss > 0 ? (unsigned long long)rss * (unsigned long long)sysconf(_SC_PAGESIZE) : 0};
  return true;
}

static long open_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  if (!d) return -1;
  long n = 0;
  for (struct dirent *e; (e = readdir(d));) n += e->d_name[0] != '.';
  closedir(d);
  return n - 1; /* the directory's own */
}

static void render_process(buf *b) {
  proc_stat p;
  if (read_proc_stat(&p))
    put(b, "# HELP process_cpu_seconds_total User and system CPU time spent, in seconds.\n"
           "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total %.2f\n"
           "# HELP process_start_time_seconds Start time of the process since the Unix epoch, in seconds.\n"
           "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds %.2f\n"
           "# HELP process_virtual_memory_bytes Virtual memory size, in bytes.\n"
           "# TYPE process_virtual_memory_bytes gauge\nprocess_virtual_memory_bytes %llu\n"
           "# HELP process_resident_memory_bytes Resident memory size, in bytes.\n"
           "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes %llu\n",
        p.cpu_s, p.start_s, p.vsize, p.rss_bytes);
  long fds = open_fds();
  if (fds >= 0)
    put(b, "# HELP process_open_fds Open file descriptors.\n# TYPE process_open_fds gauge\nprocess_open_fds %ld\n", fds);
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
    put(b, "# HELP process_max_fds Most open file descriptors allowed.\n# TYPE process_max_fds gauge\n"
           "process_max_fds %llu\n", (unsigned long long)rl.rlim_cur);
}

char *metrics_render(const char *version, int serving, int64_t uptime_s, int inflight,
                     const metrics_log *log) {
  buf b = {0};
  char v[3 * 128 + 4];
  escape(version, v, sizeof v);
  render_calls(&b);
  render_pipeline(&b);
  render_arms(&b, log->attribution);
  put(&b, "# HELP recd_bundle_info The bundle serving now.\n# TYPE recd_bundle_info gauge\n"
          "recd_bundle_info{version=\"%s\"} 1\n", v);
  put(&b, "# HELP recd_reloads_total Bundle loads, by result.\n# TYPE recd_reloads_total counter\n"
          "recd_reloads_total{result=\"ok\"} %llu\nrecd_reloads_total{result=\"refused\"} %llu\n",
      (unsigned long long)get(&reloads[0]), (unsigned long long)get(&reloads[1]));
  put(&b, "# HELP recd_events_recorded_total Events made durable by Events.Record.\n"
          "# TYPE recd_events_recorded_total counter\nrecd_events_recorded_total %llu\n",
      (unsigned long long)get(&events));
  put(&b, "# HELP recd_decision_log_records_total Recommend calls chosen for the decision log: queued for "
          "its writer, or dropped because its queue was full.\n# TYPE recd_decision_log_records_total counter\n"
          "recd_decision_log_records_total{outcome=\"queued\"} %llu\n"
          "recd_decision_log_records_total{outcome=\"dropped\"} %llu\n",
      (unsigned long long)get(&decisions[0]), (unsigned long long)get(&decisions[1]));
  if (log->enabled)
    put(&b, "# HELP recd_event_log_sequence Last event-log sequence durable on disk.\n"
            "# TYPE recd_event_log_sequence gauge\nrecd_event_log_sequence %llu\n"
            "# HELP recd_event_log_lag_events Durable events not yet applied to the online state.\n"
            "# TYPE recd_event_log_lag_events gauge\nrecd_event_log_lag_events %llu\n",
        (unsigned long long)log->durable,
        (unsigned long long)(log->durable > log->applied ? log->durable - log->applied : 0));
  if (log->enabled)
    put(&b, "# HELP recd_event_log_corrupt_records Damaged event-log records skipped at start (the log names them).\n"
            "# TYPE recd_event_log_corrupt_records gauge\nrecd_event_log_corrupt_records %llu\n"
            "# HELP recd_event_log_syncs_total Group commits: one fdatasync covers every batch waiting.\n"
            "# TYPE recd_event_log_syncs_total counter\nrecd_event_log_syncs_total %llu\n",
        (unsigned long long)log->corrupt, (unsigned long long)log->syncs);
  if (log->catalog_enabled)
    put(&b, "# HELP recd_catalog_generation Last live-catalog batch on disk (rec.v1.Catalog).\n"
            "# TYPE recd_catalog_generation gauge\nrecd_catalog_generation %llu\n"
            "# HELP recd_catalog_overlay_items Items live-catalog batches changed, added or deleted since the log began.\n"
            "# TYPE recd_catalog_overlay_items gauge\nrecd_catalog_overlay_items %llu\n",
        (unsigned long long)log->catalog_generation, (unsigned long long)log->catalog_overlay);
  put(&b, "# HELP recd_serving 1 when health reports SERVING.\n# TYPE recd_serving gauge\nrecd_serving %d\n", serving);
  put(&b, "# HELP recd_inflight_calls RPCs in flight.\n# TYPE recd_inflight_calls gauge\nrecd_inflight_calls %d\n", inflight);
  render_process(&b);
  put(&b, "# HELP recd_uptime_seconds Seconds since start.\n# TYPE recd_uptime_seconds gauge\nrecd_uptime_seconds %lld\n",
      (long long)uptime_s);
  if (b.failed) {
    free(b.s);
    return NULL;
  }
  return b.s;
}
