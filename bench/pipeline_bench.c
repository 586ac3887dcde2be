/* bench/pipeline_bench.c - recd-pipeline-bench: what a Recommend costs with
 * no RPC underneath. Loads a bundle the way recd does (checks included),
 * then runs calls through the very handler the server runs, on one thread:
 * the request decoded from its wire bytes as the server decodes it
 * (rpc_decode), the handler (rpc_local_call), the reply packed. Prints CPU
 * microseconds per call (mean, median, p99) and the mean per pipeline stage
 * (from recd's own stage histograms); divide recd's server CPU per call
 * under recd-loadgen by the mean here for the serving tax. Users cycle
 * U00000.. with every tenth unknown (cold-N), as recd-loadgen's do. The
 * first --warmup calls (default 1000: the first requests of the measured
 * sequence) are run and not counted, stages included: a server measured
 * under load has faulted in its bundle's pages and filled its arena cache
 * long before, and cold first calls (at 1M items a few at 1 ms) would
 * otherwise be charged to the pipeline. A program that prints numbers, not
 * a test.
 *
 * usage: recd-pipeline-bench --bundle DIR [--calls N] [--warmup N] [--users N | --users-file F]
 *                            [-k N] [--ranking_config F] [--json] */
#include "common/clock.h"
#include "common/fileio.h"
#include "rec/v1/ranking.pb-c.h"
#include "retrieval/retrieve.h"
#include "server/app.h"
#include "server/handlers.h"
#include "server/metrics.h"
#include "server/rpc.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int64_t thread_cpu_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int by_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

/* recd_stage_duration_seconds{stage="NAME"}'s sample 'what' ("sum" or
 * "count") in 'text', 0 if absent. */
static double stage_sample(const char *text, const char *name, const char *what) {
  char key[128];
  snprintf(key, sizeof key, "recd_stage_duration_seconds_%s{stage=\"%s\"} ", what, name);
  const char *p = text ? strstr(text, key) : NULL;
  return p ? strtod(p + strlen(key), NULL) : 0;
}

/* The mean of stage NAME over the calls between metrics texts 'before' and
 * 'after', in µs. */
static double stage_mean_us(const char *before, const char *after, const char *name) {
  double sum = stage_sample(after, name, "sum") - stage_sample(before, name, "sum");
  double count = stage_sample(after, name, "count") - stage_sample(before, name, "count");
  return count > 0 ? sum / count * 1e6 : 0;
}

int main(int argc, char **argv) {
  const char *bundle_dir = NULL, *ranking = NULL;
  long calls = 3000, warmup = 1000, users = 1000, k = 10;
  const char *users_file = NULL;
  bool json = false;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--json")) json = true;
    else if (v && !strcmp(a, "--bundle")) bundle_dir = argv[++i];
    else if (v && !strcmp(a, "--ranking_config")) ranking = argv[++i];
    else if (v && !strcmp(a, "--calls")) calls = strtol(argv[++i], NULL, 10);
    else if (v && !strcmp(a, "--warmup")) warmup = strtol(argv[++i], NULL, 10);
    else if (v && !strcmp(a, "--users")) users = strtol(argv[++i], NULL, 10);
    else if (v && !strcmp(a, "--users-file")) users_file = argv[++i];
    else if (v && !strcmp(a, "-k")) k = strtol(argv[++i], NULL, 10);
    else {
      fprintf(stderr, "usage: recd-pipeline-bench --bundle DIR [--calls N] [--warmup N] "
                      "[--users N | --users-file F] [-k N] [--ranking_config F] [--json]\n");
      return 2;
    }
  }
  if (!bundle_dir || calls < 1 || calls > 100000000 || warmup < 0 || warmup > 100000000 || users < 1 || k < 1 ||
      k > 200) {
    fprintf(stderr, "recd-pipeline-bench: --bundle is required; calls 1..1e8, warmup 0..1e8, users >= 1; "
                    "k 1..200\n");
    return 2;
  }
  char flag_b[4200], flag_r[4200];
  snprintf(flag_b, sizeof flag_b, "--bundle=%s", bundle_dir);
  snprintf(flag_r, sizeof flag_r, "--ranking_config=%s", ranking ? ranking : "");
  char *cargv[] = {"recd", flag_b, flag_r, "--call_log=off", NULL};
  recd_config cfg;
  rec_error err = {0};
  if (config_parse(4, cargv, &cfg, stderr, &err) != 0) {
    fprintf(stderr, "recd-pipeline-bench: %s\n", err.msg);
    return 2;
  }
  retrieve_thread_init();
  app ap;
  app_init(&ap, &cfg);
  char old_v[REC_ID_MAX + 1], new_v[REC_ID_MAX + 1];
  int64_t t0 = rec_mono_ns();
  if (online_new(&ap.online) != 0 || app_reload(&ap, cfg.bundle, old_v, new_v, &err) != 0) {
    fprintf(stderr, "recd-pipeline-bench: %s\n", err.msg);
    return 1;
  }
  double load_s = (double)(rec_mono_ns() - t0) / 1e9;
  static const char *const names[] = {"/rec.v1.Ranking/Recommend"};
  metrics_set_methods(names, 1);
  /* Real user ids (one per line, as recd-loadgen --users-file reads them):
   * known users take the whole pipeline, U00000... exist only in synthetic
   * bundles. */
  char *text_ids = NULL, **ids = NULL;
  size_t n_ids = 0;
  if (users_file) {
    size_t len;
    text_ids = rec_read_file(users_file, &len, &err);
    for (char *p = text_ids; p && *p; n_ids++) {
      char *nl = strchr(p, '\n');
      if (!nl) { n_ids++; break; }
      p = nl + 1;
    }
    ids = text_ids ? calloc(n_ids + 1, sizeof *ids) : NULL;
    size_t got = 0;
    for (char *p = text_ids, *save = NULL, *t; ids && (t = strtok_r(p, "\r\n", &save)); p = NULL)
      if (*t && strlen(t) < 40) ids[got++] = t;
    n_ids = got;
    if (!n_ids) {
      fprintf(stderr, "recd-pipeline-bench: %s: no user ids (one per line, under 40 bytes)%s%s\n", users_file,
              text_ids ? "" : ": ", text_ids ? "" : err.msg);
      return 2;
    }
  }
  int64_t *cost = malloc((size_t)calls * sizeof *cost);
  uint8_t *wire = malloc(4096);
  /* The server's calls draw their arena blocks from a per-worker cache
   * (server/rpc_server.c); so do these, or the two would not compare. */
  arena_cache blocks;
  arena_cache_init(&blocks, 0, RPC_ARENA_CACHE_BYTES);
  arena a;
  arena_init(&a, 0);
  arena_use_cache(&a, &blocks);
  long failed = 0;
  int64_t decode_ns = 0, encode_ns = 0;
  metrics_log ml = {0};
  char *before = NULL;
  /* j counts every call; i is the request's place in the sequence, the
   * warm-up's first so that the measured calls start again from 0. */
  for (long j = -warmup; cost && wire && j < calls; j++) {
    long i = j < 0 ? j + warmup : j;
    if (j == 0) before = metrics_render(new_v, 1, 0, 0, &ml);
    char user[48];
    if (i % 10 == 9) snprintf(user, sizeof user, "cold-%ld", i);
    else if (ids) snprintf(user, sizeof user, "%s", ids[i % n_ids]);
    else snprintf(user, sizeof user, "U%05ld", i % users);
    Rec__V1__RecommendRequest q = REC__V1__RECOMMEND_REQUEST__INIT;
    q.user_id = user;
    q.k = (int32_t)k;
    size_t n = rec__v1__recommend_request__pack(&q, wire);
    int64_t c0 = thread_cpu_ns();
    rpc_ctx ctx;
    rpc_local_begin(&ctx, &a, &ap, INT64_MAX);
    const ProtobufCMessage *in = rpc_decode(wire, n, h_recommend.in, NULL, &a, &ctx.err), *out = NULL;
    int64_t c1 = thread_cpu_ns();
    int rc = in ? rpc_local_call(&ctx, &h_recommend, in, &out) : REC_EINVAL;
    int64_t c2 = thread_cpu_ns();
    if (rc == 0) { /* the reply's encoding, as the server packs it */
      size_t len = protobuf_c_message_get_packed_size(out);
      uint8_t *buf = arena_alloc(&a, len + 1);
      if (buf) protobuf_c_message_pack(out, buf);
    }
    rpc_local_end(&ctx);
    int64_t c3 = thread_cpu_ns();
    arena_reset(&a);
    if (j < 0) continue;
    cost[i] = c3 - c0;
    decode_ns += c1 - c0;
    encode_ns += c3 - c2;
    failed += rc != 0;
  }
  if (!cost || !wire) {
    fprintf(stderr, "recd-pipeline-bench: out of memory\n");
    return 1;
  }
  double mean = 0;
  for (long i = 0; i < calls; i++) mean += (double)cost[i];
  mean /= (double)calls * 1e3;
  qsort(cost, (size_t)calls, sizeof *cost, by_i64);
  double median = (double)cost[calls / 2] / 1e3, p99 = (double)cost[(calls * 99) / 100] / 1e3;
  char *text = metrics_render(new_v, 1, 0, 0, &ml);
  /* recd's own stage histograms, then what only this loop sees. */
  enum { TOWER, ANN, ITEMCF, POP, RANKING, MMR, RESPONSE, TOTAL, NST };
  static const char *const STAGES[NST] = {"user_tower", "ann", "item_cf", "popularity",
                                          "ranking", "mmr", "response", "total"};
  double st[NST];
  for (int s = 0; s < NST; s++) st[s] = stage_mean_us(before, text, STAGES[s]);
  double rules = st[RANKING] - st[MMR], dec = (double)decode_ns / 1e3 / (double)calls,
         enc = (double)encode_ns / 1e3 / (double)calls;
  if (json) {
    printf("{\"bundle\":\"%s\",\"version\":\"%s\",\"calls\":%ld,\"warmup\":%ld,\"failed\":%ld,\"k\":%ld,"
           "\"load_s\":%.2f,"
           "\"cpu_us\":{\"mean\":%.1f,\"median\":%.1f,\"p99\":%.1f},\"stage_mean_us\":{\"decode\":%.1f,"
           "\"user_tower\":%.1f,\"ann\":%.1f,\"item_cf\":%.1f,\"popularity\":%.1f,\"rules_and_blend\":%.1f,"
           "\"mmr\":%.1f,\"response\":%.1f,\"encode\":%.1f,\"handler\":%.1f}}\n",
           bundle_dir, new_v, calls, warmup, failed, k, load_s, mean, median, p99, dec, st[TOWER], st[ANN], st[ITEMCF],
           st[POP], rules, st[MMR], st[RESPONSE], enc, st[TOTAL]);
  } else {
    printf("recd-pipeline-bench: bundle %s (%s, loaded and checked in %.2f s), %ld Recommend calls after %ld "
           "warm-up calls, k %ld, one thread, no RPC\n", bundle_dir, new_v, load_s, calls, warmup, k);
    printf("cpu per call    mean %.1f us, median %.1f us, p99 %.1f us (decode + handler + encode)%s\n", mean,
           median, p99, failed ? " -- some calls failed" : "");
    printf("stages (mean)   decode %.1f, user tower %.1f, ANN %.1f, item-CF %.1f, popularity %.1f, rules and "
           "blend %.1f, MMR and cap %.1f, response %.1f, encode %.1f us; handler total %.1f us\n",
           dec, st[TOWER], st[ANN], st[ITEMCF], st[POP], rules, st[MMR], st[RESPONSE], enc, st[TOTAL]);
  }
  free(text);
  free(before);
  free(ids);
  free(text_ids);
  free(cost);
  free(wire);
  arena_destroy(&a);
  arena_cache_destroy(&blocks);
  online_free(ap.online);
  app_destroy(&ap);
  return failed ? 1 : 0;
}
