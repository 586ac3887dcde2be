/* tests/server/test_metrics.c - the Prometheus text recd serves: every
 * sample belongs to a family with HELP and TYPE, histograms are cumulative
 * and their +Inf bucket equals their count, every degraded reason, strategy
 * and source has its line, label values are escaped, and the methods may be
 * named while workers count calls. (promtool checks
 * the same text from a live recd in e2e.recd.) */
#include "server/metrics.h"
#include "tests/test.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const METHODS[] = {"/rec.v1.Ranking/Recommend", "/rec.v1.Events/Record"};

static char *render(const char *version, const metrics_log *log) {
  char *s = metrics_render(version, 1, 42, 3, log);
  CU_ASSERT_PTR_NOT_NULL_FATAL(s);
  return s;
}

/* The value of the sample line starting with 'line' (name and labels), or -1. */
static double value(const char *text, const char *line) {
  char want[512];
  snprintf(want, sizeof want, "\n%s ", line);
  const char *p = strstr(text, want);
  return p ? strtod(p + strlen(want), NULL) : -1;
}

static void calls_and_stages_are_counted(void) {
  metrics_set_methods(METHODS, 2);
  metrics_log log = {0};
  char *t0 = render("v1", &log);
  const char *ok = "recd_requests_total{method=\"/rec.v1.Ranking/Recommend\",status=\"OK\"}";
  const char *bad = "recd_requests_total{method=\"/rec.v1.Events/Record\",status=\"INVALID_ARGUMENT\"}";
  double ok0 = value(t0, ok), bad0 = value(t0, bad);
  metrics_call(0, 0, 700000);      /* 0.7 ms */
  metrics_call(0, 0, 3000000000);  /* 3 s: only +Inf */
  metrics_call(1, 3, 1000);
  metrics_call(7, 0, 1000);        /* no such method: ignored */
  metrics_call(0, 99, 1000);       /* no such status: ignored */
  char *t = render("v1", &log);
  CU_ASSERT_EQUAL(value(t, ok), ok0 + 2);
  CU_ASSERT_EQUAL(value(t, bad), (bad0 < 0 ? 0 : bad0) + 1);
  CU_ASSERT(value(t, "recd_request_duration_seconds_bucket{method=\"/rec.v1.Ranking/Recommend\",le=\"0.001\"}") >= 1);
  CU_ASSERT_EQUAL(value(t, "recd_request_duration_seconds_bucket{method=\"/rec.v1.Ranking/Recommend\",le=\"+Inf\"}"),
                  value(t, "recd_request_duration_seconds_count{method=\"/rec.v1.Ranking/Recommend\"}"));
  CU_ASSERT(value(t, "recd_request_duration_seconds_sum{method=\"/rec.v1.Ranking/Recommend\"}") >= 3.0007);
  free(t0);
  free(t);
}

/* Every sample line's family was announced with HELP and TYPE before it, and
 * every histogram's buckets never decrease. */
static void every_sample_has_help_and_type(void) {
  metrics_set_methods(METHODS, 2);
  metrics_observe_stage(STAGE_ANN, 2000000);
  metrics_log log = {.enabled = 1, .durable = 10, .applied = 7, .corrupt = 1, .syncs = 4};
  char *t = render("v1", &log);
  char family[128] = "", last_bucket_series[256] = "";
  double last_bucket = -1;
  size_t samples = 0;
  for (char *line = strtok(t, "\n"); line; line = strtok(NULL, "\n")) {
    if (strncmp(line, "# HELP ", 7) == 0) {
      char *typed = strtok(NULL, "\n");
      CU_ASSERT_PTR_NOT_NULL_FATAL(typed);
      CU_ASSERT_EQUAL(strncmp(typed, "# TYPE ", 7), 0);
      sscanf(line + 7, "%127s", family);
      CU_ASSERT_EQUAL(strncmp(typed + 7, family, strlen(family)), 0);
      continue;
    }
    samples++;
    CU_ASSERT(family[0] && strncmp(line, family, strlen(family)) == 0);
    const char *sp = strrchr(line, ' ');
    CU_ASSERT_PTR_NOT_NULL_FATAL(sp);
    char *end;
    double v = strtod(sp + 1, &end);
    CU_ASSERT(*end == '\0' && v >= 0);
    const char *le = strstr(line, ",le=\"");
    if (strstr(line, "_bucket{") && le) {
      char series[256];
      snprintf(series, sizeof series, "%.*s", (int)(le - line), line);
      if (strcmp(series, last_bucket_series) == 0) CU_ASSERT(v >= last_bucket);
      snprintf(last_bucket_series, sizeof last_bucket_series, "%s", series);
      last_bucket = v;
    }
  }
  CU_ASSERT(samples > 50);
  free(t);
}

static void every_name_has_a_line(void) {
  metrics_log log = {0};
  char *t0 = render("v1", &log);
  metrics_degraded(REC_DEG_SHARD_UNAVAILABLE);
  metrics_degraded(REC_DEG_COUNT); /* out of range: ignored */
  metrics_strategy(REC_STRATEGY_POPULARITY_FALLBACK);
  size_t per_source[REC_SRC_COUNT] = {3, 2, 1};
  metrics_candidates(per_source);
  char *t = render("v1", &log);
  char line[256];
  for (int d = 0; d < REC_DEG_COUNT; d++) {
    snprintf(line, sizeof line, "recd_degraded_total{reason=\"%s\"}", rec_degraded_name(d));
    CU_ASSERT(value(t, line) >= 0);
    CU_ASSERT_EQUAL(value(t, line), value(t0, line) + (d == REC_DEG_SHARD_UNAVAILABLE));
  }
  for (int s = 0; s < REC_STRATEGY_COUNT; s++) {
    snprintf(line, sizeof line, "recd_recommend_strategy_total{strategy=\"%s\"}", rec_strategy_name(s));
    CU_ASSERT_EQUAL(value(t, line), value(t0, line) + (s == REC_STRATEGY_POPULARITY_FALLBACK));
  }
  for (int s = 0; s < REC_SRC_COUNT; s++) {
    snprintf(line, sizeof line, "recd_candidates_total{source=\"%s\"}", rec_source_name(s));
    CU_ASSERT_EQUAL(value(t, line), value(t0, line) + (double)per_source[s]);
  }
  free(t0);
  free(t);
}

static void labels_are_escaped_and_the_log_is_optional(void) {
  metrics_log off = {0}, on = {.enabled = 1, .durable = 10, .applied = 7, .corrupt = 2, .syncs = 5};
  char *t = render("a\"b\\c\nd", &off);
  CU_ASSERT_PTR_NOT_NULL(strstr(t, "recd_bundle_info{version=\"a\\\"b\\\\c\\nd\"} 1\n"));
  CU_ASSERT_PTR_NULL(strstr(t, "recd_event_log_sequence"));
  CU_ASSERT_EQUAL(value(t, "recd_uptime_seconds"), 42);
  CU_ASSERT_EQUAL(value(t, "recd_inflight_calls"), 3);
  free(t);
  t = render("v", &on);
  CU_ASSERT_EQUAL(value(t, "recd_event_log_sequence"), 10);
  CU_ASSERT_EQUAL(value(t, "recd_event_log_lag_events"), 3);
  CU_ASSERT_EQUAL(value(t, "recd_event_log_corrupt_records"), 2);
  CU_ASSERT_EQUAL(value(t, "recd_event_log_syncs_total"), 5);
  free(t);
}

/* recd names the methods only after its workers started counting calls (the
 * names come from the running server): naming them must not race with the
 * count (the TSan build runs this suite; a plain global raced here). */
static atomic_bool counting;

static void *count_calls(void *arg) {
  (void)arg;
  atomic_store(&counting, true);
  for (int i = 0; i < 20000; i++) metrics_call(1, 0, 1000);
  return NULL;
}

static void methods_may_be_named_while_calls_are_counted(void) {
  metrics_log log = {0};
  char *t0 = render("v", &log);
  const char *line = "recd_requests_total{method=\"/rec.v1.Events/Record\",status=\"OK\"}";
  pthread_t t;
  CU_ASSERT_EQUAL_FATAL(pthread_create(&t, NULL, count_calls, NULL), 0);
  while (!atomic_load(&counting)) sched_yield();
  metrics_set_methods(METHODS, 2);
  pthread_join(t, NULL);
  for (int i = 0; i < 10; i++) metrics_call(1, 0, 1000);
  char *t1 = render("v", &log);
  double before = value(t0, line) < 0 ? 0 : value(t0, line), after = value(t1, line);
  CU_ASSERT(after >= before + 10); /* named: counted from then on */
  CU_ASSERT(after <= before + 20010);
  free(t0);
  free(t1);
}

void suite_metrics(void) {
  static const test_case cases[] = {
      {"calls and stages are counted", calls_and_stages_are_counted},
      {"every sample has HELP and TYPE", every_sample_has_help_and_type},
      {"every name has a line", every_name_has_a_line},
      {"labels are escaped and the log is optional", labels_are_escaped_and_the_log_is_optional},
      {"methods may be named while calls are counted", methods_may_be_named_while_calls_are_counted},
      {NULL, NULL}};
  test_add_suite("metrics", cases);
}
