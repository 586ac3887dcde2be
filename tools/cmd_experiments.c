/* tools/cmd_experiments.c - recctl experiments: the A/B report and the
 * runtime controls, over recd's admin listener (rec.v1.Admin).
 *   recctl experiments [--json]                 each arm against its layer's control
 *   recctl experiments share EXPERIMENT ARM BP  set an arm's share (basis points)
 *   recctl experiments stop|resume EXPERIMENT
 * The report compares rates per slate (a slate is one Recommend answer):
 * click-through (slates with a click), conversion (slates with a purchase
 * of a shown item) and revenue per slate, each arm minus control with a 95%
 * interval (Newcombe's hybrid score interval for the two rates, Welch's
 * normal interval for revenue), and calls a difference significant when
 * the interval leaves 0 out; below 30 slates in an arm it gives no verdict.
 * Slates of one user are not independent, so with heavy users the
 * intervals are optimistic: docs/operations.md says how to read them. */
#include "tools/cmd_experiments.h"
#include "rec/v1/admin.pb-c.h"
#include "server/rpc_client.h"
#include "tools/cmd_catalog.h"
#include "tools/recctl.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* On stdout with exit 0 when asked for (--help), else on stderr with 2. */
static int usage(bool asked) {
  fputs("usage: recctl experiments [--json] [options]        each arm against control, with 95% intervals\n"
        "       recctl experiments share EXPERIMENT ARM BP [options]\n"
        "                                                     set ARM's share to BP basis points (10000 = all)\n"
        "       recctl experiments stop EXPERIMENT | resume EXPERIMENT [options]\n"
        "options: --addr HOST:PORT (recd's admin listener, default 127.0.0.1:50052), --token-file F\n"
        "         (default: $RECCTL_TOKEN_FILE), --tls-ca F [--tls-cert F --tls-key F] [--tls-name N],\n"
        "         --timeout-ms N (default 10000)\n",
        asked ? stdout : stderr);
  return asked ? 0 : 2;
}

/* An arm minus control: the difference, its 95% interval, and whether the
 * interval leaves 0 out; 'ok' false when the data cannot say (too few
 * slates). */
typedef struct diff {
  double d, lo, hi;
  bool ok, significant;
} diff;

enum { MIN_SLATES = 30 }; /* fewer per arm: no verdict */
static const double Z = 1.959964;

/* Wilson's score interval for x successes in n. */
static void wilson(double x, double n, double *lo, double *hi) {
  double p = x / n, z2 = Z * Z, c = (p + z2 / (2 * n)) / (1 + z2 / n);
  double h = Z * sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n);
  *lo = c - h < 0 ? 0 : c - h;
  *hi = c + h > 1 ? 1 : c + h;
}

/* p1 - p0 with Newcombe's hybrid score interval (from the two Wilson
 * intervals): inside [-1, 1], and sound at rates of 0 or 1, where the
 * plain normal interval collapses. */
static diff proportions(double x1, double n1, double x0, double n0) {
  diff r = {0};
  if (n1 < MIN_SLATES || n0 < MIN_SLATES) return r;
  double p1 = x1 / n1, p0 = x0 / n0, l1, u1, l0, u0;
  wilson(x1, n1, &l1, &u1);
  wilson(x0, n0, &l0, &u0);
  r.d = p1 - p0;
  r.lo = r.d - sqrt((p1 - l1) * (p1 - l1) + (u0 - p0) * (u0 - p0));
  r.hi = r.d + sqrt((u1 - p1) * (u1 - p1) + (p0 - l0) * (p0 - l0));
  r.ok = true;
  r.significant = r.lo > 0 || r.hi < 0;
  return r;
}

/* Sample variance from the sum and the sum of squares. */
static double variance(double sum, double sq, double n) {
  double m = sum / n, v = (sq - n * m * m) / (n - 1);
  return v > 0 ? v : 0;
}

/* Revenue per slate, arm minus control, with Welch's normal interval. */
static diff means(const Rec__V1__ArmReport *a, const Rec__V1__ArmReport *c) {
  diff r = {0};
  double n1 = (double)a->slates, n0 = (double)c->slates;
  if (n1 < MIN_SLATES || n0 < MIN_SLATES) return r;
  double se = sqrt(variance(a->revenue, a->revenue_sq, n1) / n1 + variance(c->revenue, c->revenue_sq, n0) / n0);
  r.d = a->revenue / n1 - c->revenue / n0;
  r.lo = r.d - Z * se;
  r.hi = r.d + Z * se;
  r.ok = true;
  r.significant = se > 0 && (r.lo > 0 || r.hi < 0);
  return r;
}

/* The three comparisons of arm 'a' with 'control', in the report's order. */
enum { CMP_CTR, CMP_CONVERSION, CMP_REVENUE, N_CMP };
static const char *const CMP_TEXT[N_CMP] = {"click-through", "conversion", "revenue/slate"};
static const char *const CMP_JSON[N_CMP] = {"click_through", "conversion", "revenue_per_slate"};

static void compare(const Rec__V1__ArmReport *a, const Rec__V1__ArmReport *control, diff out[N_CMP]) {
  out[CMP_CTR] = proportions((double)a->clicked_slates, (double)a->slates, (double)control->clicked_slates,
                             (double)control->slates);
  out[CMP_CONVERSION] = proportions((double)a->purchased_slates, (double)a->slates,
                                    (double)control->purchased_slates, (double)control->slates);
  out[CMP_REVENUE] = means(a, control);
}

static double rate(uint64_t x, uint64_t n) { return n ? (double)x / (double)n : 0; }

static void print_diff(const char *what, diff d, double scale, const char *unit) {
  if (!d.ok) {
    printf("      %-14s n/a: fewer than %d slates in an arm\n", what, MIN_SLATES);
    return;
  }
  printf("      %-14s %+9.3f%s  95%% CI [%+.3f, %+.3f]  %s\n", what, d.d * scale, unit, d.lo * scale, d.hi * scale,
         d.significant ? "SIGNIFICANT" : "not significant");
}

static cJSON *json_diff(diff d) {
  cJSON *o = cJSON_CreateObject();
  if (!d.ok) {
    cJSON_AddNullToObject(o, "difference");
    cJSON_AddBoolToObject(o, "significant", false);
    return o;
  }
  cJSON_AddNumberToObject(o, "difference", d.d);
  cJSON_AddNumberToObject(o, "ci_low", d.lo);
  cJSON_AddNumberToObject(o, "ci_high", d.hi);
  cJSON_AddBoolToObject(o, "significant", d.significant);
  return o;
}

static void report_text(const Rec__V1__ExperimentsResponse *r) {
  if (!r->file[0]) {
    printf("no experiments: recd runs without --experiments\n");
    return;
  }
  printf("experiments file %s\n", r->file);
  for (size_t l = 0; l < r->n_layers; l++) {
    const Rec__V1__LayerReport *ly = r->layers[l];
    const Rec__V1__ArmReport *control = NULL;
    for (size_t k = 0; k < ly->n_arms; k++)
      if (ly->arms[k]->control) control = ly->arms[k];
    printf("\nexperiment %s  unit %s  salt %s  %s\n", ly->experiment, ly->unit, ly->salt,
           ly->stopped ? "STOPPED (nobody is assigned)" : "running");
    printf("  %-16s %7s %9s %9s %7s %8s %8s %10s  %s\n", "arm", "share", "slates", "items", "clicks", "ctr%",
           "conv%", "rev/slate", "serves");
    for (size_t k = 0; k < ly->n_arms; k++) {
      const Rec__V1__ArmReport *a = ly->arms[k];
      char serves[512] = "";
      size_t at = 0;
      if (a->holdout) at += (size_t)snprintf(serves + at, sizeof serves - at, "holdout: popularity only");
      if (a->bundle[0]) at += (size_t)snprintf(serves + at, sizeof serves - at, "bundle %s; ", a->bundle);
      for (size_t i = 0; i < a->n_settings && at < sizeof serves; i++)
        at += (size_t)snprintf(serves + at, sizeof serves - at, "%s%s", i ? "; " : "", a->settings[i]);
      char name[64];
      snprintf(name, sizeof name, "%s%s", a->arm, a->control ? " *" : "");
      printf("  %-16s %6.2f%% %9llu %9llu %7llu %8.3f %8.3f %10.3f  %s\n", name,
             a->share_bp / 100.0, (unsigned long long)a->slates, (unsigned long long)a->items_shown,
             (unsigned long long)a->clicks, 100 * rate(a->clicked_slates, a->slates),
             100 * rate(a->purchased_slates, a->slates), a->slates ? a->revenue / (double)a->slates : 0,
             serves[0] ? serves : "defaults");
    }
    if (!control) continue;
    printf("  each arm minus the control (%s, marked *), per slate:\n", control->arm);
    for (size_t k = 0; k < ly->n_arms; k++) {
      const Rec__V1__ArmReport *a = ly->arms[k];
      if (a == control) continue;
      printf("    %s\n", a->arm);
      diff d[N_CMP];
      compare(a, control, d);
      for (int m = 0; m < N_CMP; m++)
        print_diff(CMP_TEXT[m], d[m], m == CMP_REVENUE ? 1 : 100, m == CMP_REVENUE ? "    " : " pts");
    }
  }
  if (r->n_changes) printf("\nruntime changes in force (oldest first):\n");
  for (size_t i = 0; i < r->n_changes; i++) {
    const Rec__V1__ExperimentChange *c = r->changes[i];
    time_t t = (time_t)(c->time_unix_ms / 1000);
    struct tm tm;
    char when[32];
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
    if (strcmp(c->action, "share") == 0)
      printf("  %s  %s  %s: %s share -> %.2f%%\n", when, c->who, c->experiment, c->arm, c->share_bp / 100.0);
    else
      printf("  %s  %s  %s: %s\n", when, c->who, c->experiment, c->action);
  }
}

static void report_json(const Rec__V1__ExperimentsResponse *r) {
  cJSON *j = cJSON_CreateObject(), *layers = cJSON_AddArrayToObject(j, "experiments");
  cJSON_AddStringToObject(j, "file", r->file);
  for (size_t l = 0; l < r->n_layers; l++) {
    const Rec__V1__LayerReport *ly = r->layers[l];
    const Rec__V1__ArmReport *control = NULL;
    for (size_t k = 0; k < ly->n_arms; k++)
      if (ly->arms[k]->control) control = ly->arms[k];
    cJSON *lo = cJSON_CreateObject(), *arms = cJSON_AddArrayToObject(lo, "arms");
    cJSON_AddStringToObject(lo, "experiment", ly->experiment);
    cJSON_AddStringToObject(lo, "unit", ly->unit);
    cJSON_AddStringToObject(lo, "salt", ly->salt);
    cJSON_AddBoolToObject(lo, "stopped", ly->stopped);
    for (size_t k = 0; k < ly->n_arms; k++) {
      const Rec__V1__ArmReport *a = ly->arms[k];
      cJSON *ao = cJSON_CreateObject();
      cJSON_AddStringToObject(ao, "arm", a->arm);
      cJSON_AddNumberToObject(ao, "share_bp", a->share_bp);
      cJSON_AddBoolToObject(ao, "control", a->control);
      cJSON_AddBoolToObject(ao, "holdout", a->holdout);
      cJSON_AddStringToObject(ao, "bundle", a->bundle);
      cJSON_AddNumberToObject(ao, "slates", (double)a->slates);
      cJSON_AddNumberToObject(ao, "items_shown", (double)a->items_shown);
      cJSON_AddNumberToObject(ao, "clicks", (double)a->clicks);
      cJSON_AddNumberToObject(ao, "clicked_slates", (double)a->clicked_slates);
      cJSON_AddNumberToObject(ao, "add_to_carts", (double)a->add_to_carts);
      cJSON_AddNumberToObject(ao, "purchases", (double)a->purchases);
      cJSON_AddNumberToObject(ao, "purchased_slates", (double)a->purchased_slates);
      cJSON_AddNumberToObject(ao, "revenue", a->revenue);
      if (control && a != control) {
        cJSON *vs = cJSON_AddObjectToObject(ao, "vs_control");
        diff d[N_CMP];
        compare(a, control, d);
        for (int m = 0; m < N_CMP; m++) cJSON_AddItemToObject(vs, CMP_JSON[m], json_diff(d[m]));
      }
      cJSON_AddItemToArray(arms, ao);
    }
    cJSON_AddItemToArray(layers, lo);
  }
  cJSON *ch = cJSON_AddArrayToObject(j, "changes");
  for (size_t i = 0; i < r->n_changes; i++) {
    const Rec__V1__ExperimentChange *c = r->changes[i];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "time_unix_ms", (double)c->time_unix_ms);
    cJSON_AddStringToObject(o, "who", c->who);
    cJSON_AddStringToObject(o, "experiment", c->experiment);
    cJSON_AddStringToObject(o, "action", c->action);
    cJSON_AddStringToObject(o, "arm", c->arm);
    cJSON_AddNumberToObject(o, "share_bp", c->share_bp);
    cJSON_AddItemToArray(ch, o);
  }
  char *s = cJSON_Print(j);
  puts(s);
  free(s);
  cJSON_Delete(j);
}

int cmd_experiments(int argc, char **argv) {
  const char *addr = "127.0.0.1:50052", *token_file = NULL, *pos[3] = {NULL};
  const char *action = argc > 2 && argv[2][0] != '-' ? argv[2] : "report";
  rpc_client_tls tls = {0};
  long timeout_ms = 10000, share = -1;
  bool json = false;
  size_t n_pos = 0;
  int code = 0;
  if (strcmp(action, "report") && strcmp(action, "share") && strcmp(action, "stop") && strcmp(action, "resume")) {
    fprintf(stderr, "recctl experiments: '%s' is not share, stop or resume\n", action);
    return usage(false);
  }
  for (int i = argv[2] && argv[2][0] != '-' ? 3 : 2; i < argc && !code; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) return usage(true);
    if (strcmp(a, "--json") == 0) {
      json = true;
      continue;
    }
    if (a[0] != '-') {
      if (n_pos == 3) return usage(false);
      pos[n_pos++] = a;
      continue;
    }
    if (!v) {
      fprintf(stderr, "recctl experiments: %s needs a value (see recctl experiments --help)\n", a);
      return 2;
    }
    i++;
    if (strcmp(a, "--addr") == 0) addr = v;
    else if (strcmp(a, "--token-file") == 0) token_file = v;
    else if (strcmp(a, "--tls-ca") == 0) tls.ca_file = v;
    else if (strcmp(a, "--tls-cert") == 0) tls.cert_file = v;
    else if (strcmp(a, "--tls-key") == 0) tls.key_file = v;
    else if (strcmp(a, "--tls-name") == 0) tls.server_name = v;
    else if (strcmp(a, "--timeout-ms") == 0) code = flag_long(a, v, 1, 3600000, &timeout_ms);
    else {
      fprintf(stderr, "recctl experiments: unknown option %s (see recctl experiments --help)\n", a);
      return 2;
    }
  }
  if (code) return code;
  bool report = strcmp(action, "report") == 0, set = strcmp(action, "share") == 0;
  if ((report && n_pos) || (set && n_pos != 3) || (!report && !set && n_pos != 1)) return usage(false);
  if (set && (code = flag_long("BP", pos[2], 0, 10000, &share))) return code;
  char *token = NULL;
  token_file = recctl_token_file(token_file);
  if (token_file && !(token = recctl_admin_token(token_file, addr, tls.ca_file))) return 2;
  rpc_client *c = NULL;
  rec_error err = {0};
  code = rpc_client_new(addr, &tls, token, &c, &err) ? 2 : 0;
  if (token) {
    memset(token, 0, strlen(token));
    free(token);
  }
  if (code) {
    fprintf(stderr, "recctl experiments: %s\n", err.msg);
    return code;
  }
  arena a;
  arena_init(&a, 0);
  ProtobufCMessage *resp = NULL;
  rpc_status st;
  if (report) {
    Rec__V1__ExperimentsRequest q = REC__V1__EXPERIMENTS_REQUEST__INIT;
    if (rpc_client_call(c, "/rec.v1.Admin/Experiments", &q.base, &rec__v1__experiments_response__descriptor,
                        timeout_ms, &a, &resp, &st))
      code = 1;
    else if (json) report_json((const Rec__V1__ExperimentsResponse *)resp);
    else report_text((const Rec__V1__ExperimentsResponse *)resp);
  } else {
    Rec__V1__ControlExperimentRequest q = REC__V1__CONTROL_EXPERIMENT_REQUEST__INIT;
    q.experiment = (char *)pos[0];
    q.action = set ? REC__V1__CONTROL_ACTION__CONTROL_ACTION_SET_SHARE
             : strcmp(action, "stop") == 0 ? REC__V1__CONTROL_ACTION__CONTROL_ACTION_STOP
                                           : REC__V1__CONTROL_ACTION__CONTROL_ACTION_RESUME;
    q.arm = (char *)(set ? pos[1] : "");
    q.share_bp = set ? (uint32_t)share : 0;
    if (rpc_client_call(c, "/rec.v1.Admin/ControlExperiment", &q.base,
                        &rec__v1__control_experiment_response__descriptor, timeout_ms, &a, &resp, &st)) {
      code = 1;
    } else {
      const Rec__V1__LayerReport *ly = ((const Rec__V1__ControlExperimentResponse *)resp)->layer;
      printf("experiment %s: %s\n", pos[0], ly && ly->stopped ? "stopped" : "running");
      for (size_t k = 0; ly && k < ly->n_arms; k++)
        printf("  %-16s %6.2f%%%s\n", ly->arms[k]->arm, ly->arms[k]->share_bp / 100.0,
               ly->arms[k]->control ? "  (control)" : "");
    }
  }
  if (code == 1) recctl_call_failed("experiments", addr, true, token_file, &st);
  arena_destroy(&a);
  rpc_client_free(c);
  return code;
}
