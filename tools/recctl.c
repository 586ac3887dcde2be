/* tools/recctl.c - recd's command-line tool: make a bundle (synth), ask a
 * server for recommendations, its health or its status. Talks to recd over
 * the same gRPC C core client the project uses everywhere. Exit codes: 0 ok,
 * 1 the call or the work failed, 2 bad usage, 3 health is not SERVING. */
#include "common/arena.h"
#include "common/clock.h"
#include "grpc/health/v1/health.pb-c.h"
#include "rec/v1/admin.pb-c.h"
#include "rec/v1/ranking.pb-c.h"
#include "server/eventlog.h"
#include "server/auth.h"
#include "server/rpc_client.h"
#include "tools/cmd_build.h"
#include "tools/cmd_catalog.h"
#include "tools/cmd_experiments.h"
#include "tools/cmd_replay.h"
#include "tools/offline/synth.h"
#include "retrieval/bundle_shard.h"

#include <cjson/cJSON.h>
#include <csv.h>
#include <errno.h>
#include <sys/stat.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_LIST 1000

typedef struct opts {
  const char *addr, *user, *out, *index, *version, *bundle, *log;
  const char *tls_ca, *tls_cert, *tls_key, *tls_name, *token_file;
  long k, timeout_ms, items, users, dim, categories, seed, ef, ef_construction, wait_s, shards, shard;
  bool json, explain, shard_given;
  const char *exclude[MAX_LIST], *include_cats[MAX_LIST], *explain_ids[MAX_LIST];
  size_t n_exclude, n_include_cats, n_explain_ids;
} opts;

static void usage(FILE *f) {
  fputs("usage: recctl COMMAND [options]\n\n"
        "commands:\n"
        "  recommend --user U [-k N] [--exclude ID]... [--category C]... [--explain]\n"
        "            [--why ID]... [--json]        ask for a ranked slate\n"
        "  health [--wait SECONDS]                 print the serving status (exit 3 unless SERVING)\n"
        "  status                                  what the server has loaded\n"
        "  events-csv --log DIR                    the event log as an interactions CSV (for recctl build)\n"
        "  reload [--bundle DIR]                   load, check and swap in a bundle (default: the\n"
        "                                          path recd was started with, e.g. a `current` link)\n"
        "  catalog upsert --csv F | catalog delete --id ID...\n"
        "                                          live catalog changes (recctl catalog for options)\n"
        "  experiments [--json] | experiments share EXP ARM BP | experiments stop|resume EXP\n"
        "                                          A/B report with 95% intervals; runtime controls\n"
        "  synth --out DIR [--items N] [--users N] [--dim N] [--categories N] [--seed N]\n"
        "        [--index FAISS_SPEC] [--ef N] [--ef-construction N] [--version V]\n"
        "                                          write a deterministic synthetic bundle (HNSW\n"
        "                                          breadths default from the catalog size)\n"
        "  shard --bundle DIR --shards N --out DIR [--shard I]\n"
        "                                          split a bundle for N retrieval shards: writes\n"
        "                                          OUT/shard-I-of-N, each with only its items\n"
        "                                          (--shard: that one only)\n"
        "  build --interactions CSV --catalog CSV --out DIR [options]\n"
        "                                          train a bundle from data (recctl build --help)\n"
        "  eval --interactions CSV --catalog CSV [--json F] [--chart F.svg]\n"
        "                                          compare models offline (recctl build --help)\n"
        "  import --catalog CSV --item-embeddings F --users F --user-features F --layer W:B:ACT --out DIR\n"
        "                                          bundle a model trained elsewhere (recctl build --help)\n\n"
        "common options: --addr HOST:PORT (default 127.0.0.1:50051; status and reload: the admin\n"
        "                listener, 127.0.0.1:50052), --timeout-ms N (default 2000)\n"
        "  --token-file F  admin bearer token: the first token in F (recd's --admin_token_file format)\n"
        "  --tls-ca F      talk TLS, trusting this PEM CA; --tls-cert F --tls-key F add a client\n"
        "                  certificate (mTLS); --tls-name N checks the server's certificate for N\n",
        f);
}

static int bad(const char *fmt, const char *arg) {
  fprintf(stderr, "recctl: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, " (see recctl --help)\n");
  return 2;
}

static int push(const char **list, size_t *n, const char *v, const char *flag) {
  if (*n == MAX_LIST) return bad("too many %s values", flag);
  list[(*n)++] = v;
  return 0;
}

/* Parses argv[2..] into o. Returns 0 or an exit code. */
static int parse(int argc, char **argv, opts *o) {
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    bool has = i + 1 < argc;
    const char *v = has ? argv[i + 1] : NULL;
    int rc = 0;
    if (strcmp(a, "--json") == 0) { o->json = true; continue; }
    if (strcmp(a, "--explain") == 0) { o->explain = true; continue; }
    if (!has) return bad("%s needs a value", a);
    i++;
    if (strcmp(a, "--addr") == 0) o->addr = v;
    else if (strcmp(a, "--user") == 0) o->user = v;
    else if (strcmp(a, "--tls-ca") == 0) o->tls_ca = v;
    else if (strcmp(a, "--tls-cert") == 0) o->tls_cert = v;
    else if (strcmp(a, "--tls-key") == 0) o->tls_key = v;
    else if (strcmp(a, "--tls-name") == 0) o->tls_name = v;
    else if (strcmp(a, "--token-file") == 0) o->token_file = v;
    else if (strcmp(a, "--out") == 0) o->out = v;
    else if (strcmp(a, "--bundle") == 0) o->bundle = v;
    else if (strcmp(a, "--log") == 0) o->log = v;
    else if (strcmp(a, "--index") == 0) o->index = v;
    else if (strcmp(a, "--version") == 0) o->version = v;
    else if (strcmp(a, "-k") == 0 || strcmp(a, "--k") == 0) rc = flag_long("-k", v, -1000000, 1000000, &o->k);
    else if (strcmp(a, "--timeout-ms") == 0) rc = flag_long(a, v, 1, 3600000, &o->timeout_ms);
    else if (strcmp(a, "--wait") == 0) rc = flag_long(a, v, 0, 3600, &o->wait_s);
    else if (strcmp(a, "--items") == 0) rc = flag_long(a, v, 1, 10000000, &o->items);
    else if (strcmp(a, "--users") == 0) rc = flag_long(a, v, 0, 10000000, &o->users);
    else if (strcmp(a, "--dim") == 0) rc = flag_long(a, v, 2, 1024, &o->dim);
    else if (strcmp(a, "--categories") == 0) rc = flag_long(a, v, 1, 100000, &o->categories);
    else if (strcmp(a, "--seed") == 0) rc = flag_long(a, v, 0, 2147483647, &o->seed);
    else if (strcmp(a, "--ef") == 0) rc = flag_long(a, v, 1, 65536, &o->ef);
    else if (strcmp(a, "--shards") == 0) rc = flag_long(a, v, 2, 1024, &o->shards);
    else if (strcmp(a, "--shard") == 0) rc = flag_long(a, v, 0, 1023, &o->shard), o->shard_given = true;
    else if (strcmp(a, "--ef-construction") == 0) rc = flag_long(a, v, 1, 65536, &o->ef_construction);
    else if (strcmp(a, "--exclude") == 0) rc = push(o->exclude, &o->n_exclude, v, a);
    else if (strcmp(a, "--category") == 0) rc = push(o->include_cats, &o->n_include_cats, v, a);
    else if (strcmp(a, "--why") == 0) rc = push(o->explain_ids, &o->n_explain_ids, v, a);
    else return bad("unknown option %s", a);
    if (rc) return rc;
  }
  return 0;
}

static int call_failed(const opts *o, const rpc_status *st) {
  fprintf(stderr, "recctl: %s: %s: %s\n", o->addr, rpc_status_name(st->code), st->message);
  return 1;
}

static const char *source_name(Rec__V1__Source s) {
  return s == REC__V1__SOURCE__SOURCE_ANN ? "ann" : s == REC__V1__SOURCE__SOURCE_ITEM_CF ? "item_cf"
       : s == REC__V1__SOURCE__SOURCE_POPULARITY ? "popularity" : s == REC__V1__SOURCE__SOURCE_EASE ? "ease" : "?";
}

static const char *strategy_name(Rec__V1__Strategy s) {
  return s == REC__V1__STRATEGY__STRATEGY_PERSONALIZED ? "personalized"
       : s == REC__V1__STRATEGY__STRATEGY_POPULARITY_FALLBACK ? "popularity_fallback" : "unspecified";
}

static void print_json(const Rec__V1__RecommendResponse *r) {
  cJSON *j = cJSON_CreateObject();
  cJSON_AddStringToObject(j, "bundle_version", r->bundle_version);
  cJSON_AddStringToObject(j, "strategy", strategy_name(r->strategy));
  cJSON_AddStringToObject(j, "request_id", r->request_id);
  cJSON_AddStringToObject(j, "next_cursor", r->next_cursor);
  cJSON *deg = cJSON_AddArrayToObject(j, "degraded_reasons");
  for (size_t i = 0; i < r->n_degraded_reasons; i++)
    cJSON_AddItemToArray(deg, cJSON_CreateString(r->degraded_reasons[i]));
  cJSON *items = cJSON_AddArrayToObject(j, "items");
  for (size_t i = 0; i < r->n_items; i++) {
    const Rec__V1__ScoredItem *it = r->items[i];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "item_id", it->item_id);
    cJSON_AddNumberToObject(o, "score", it->score);
    cJSON_AddStringToObject(o, "category", it->category);
    cJSON_AddNumberToObject(o, "price", it->price);
    cJSON *src = cJSON_AddArrayToObject(o, "sources");
    for (size_t s = 0; s < it->n_sources; s++) {
      cJSON *so = cJSON_CreateObject();
      cJSON_AddStringToObject(so, "source", source_name(it->sources[s]->source));
      cJSON_AddNumberToObject(so, "raw", it->sources[s]->raw);
      cJSON_AddNumberToObject(so, "normalized", it->sources[s]->normalized);
      cJSON_AddItemToArray(src, so);
    }
    if (it->explanation) {
      cJSON *ex = cJSON_AddObjectToObject(o, "explanation");
      cJSON_AddNumberToObject(ex, "blended", it->explanation->blended);
      cJSON *adj = cJSON_AddArrayToObject(ex, "adjustments");
      for (size_t a = 0; a < it->explanation->n_adjustments; a++) {
        cJSON *ao = cJSON_CreateObject();
        cJSON_AddStringToObject(ao, "rule", it->explanation->adjustments[a]->rule);
        cJSON_AddNumberToObject(ao, "factor", it->explanation->adjustments[a]->factor);
        cJSON_AddItemToArray(adj, ao);
      }
      cJSON_AddNumberToObject(ex, "final", it->explanation->final_score);
    }
    cJSON_AddItemToArray(items, o);
  }
  cJSON *ver = cJSON_AddArrayToObject(j, "verdicts");
  for (size_t i = 0; i < r->n_verdicts; i++) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "item_id", r->verdicts[i]->item_id);
    cJSON_AddStringToObject(o, "stage", r->verdicts[i]->stage);
    cJSON_AddStringToObject(o, "reason", r->verdicts[i]->reason);
    cJSON_AddItemToArray(ver, o);
  }
  char *s = cJSON_Print(j);
  puts(s);
  free(s);
  cJSON_Delete(j);
}

static void print_table(const opts *o, const Rec__V1__RecommendResponse *r) {
  printf("user %s  bundle %s  strategy %s  request %s\n", o->user, r->bundle_version,
         strategy_name(r->strategy), r->request_id);
  for (size_t i = 0; i < r->n_degraded_reasons; i++) printf("degraded: %s\n", r->degraded_reasons[i]);
  printf("%4s  %-20s %8s  %-16s %10s  %s\n", "rank", "item_id", "score", "category", "price", "sources");
  for (size_t i = 0; i < r->n_items; i++) {
    const Rec__V1__ScoredItem *it = r->items[i];
    printf("%4zu  %-20s %8.4f  %-16s %10.2f  ", i + 1, it->item_id, (double)it->score,
           it->category, it->price);
    for (size_t s = 0; s < it->n_sources; s++)
      printf("%s%s", s ? "," : "", source_name(it->sources[s]->source));
    for (size_t a = 0; it->explanation && a < it->explanation->n_adjustments; a++)
      printf("%s%s x%.3f", a ? ", " : "  [", it->explanation->adjustments[a]->rule,
             (double)it->explanation->adjustments[a]->factor);
    printf("%s\n", it->explanation && it->explanation->n_adjustments ? "]" : "");
  }
  for (size_t i = 0; i < r->n_verdicts; i++)
    printf("not shown: %s  stage=%s  %s\n", r->verdicts[i]->item_id, r->verdicts[i]->stage,
           r->verdicts[i]->reason);
  if (r->timings)
    printf("timings: tower %u us, ann %u us, ranking %u us, total %u us\n", r->timings->user_tower_us,
           r->timings->ann_us, r->timings->ranking_us, r->timings->total_us);
}

static int cmd_recommend(rpc_client *c, const opts *o, arena *a) {
  if (!o->user) return bad("%s", "recommend needs --user");
  Rec__V1__RecommendRequest q = REC__V1__RECOMMEND_REQUEST__INIT;
  Rec__V1__Filters f = REC__V1__FILTERS__INIT;
  q.user_id = (char *)o->user;
  q.k = (int32_t)o->k;
  q.explain = o->explain;
  q.exclude_item_ids = (char **)o->exclude;
  q.n_exclude_item_ids = o->n_exclude;
  q.explain_item_ids = (char **)o->explain_ids;
  q.n_explain_item_ids = o->n_explain_ids;
  if (o->n_include_cats) {
    f.include_categories = (char **)o->include_cats;
    f.n_include_categories = o->n_include_cats;
    q.filters = &f;
  }
  ProtobufCMessage *resp;
  rpc_status st;
  if (rpc_client_call(c, "/rec.v1.Ranking/Recommend", &q.base,
                      &rec__v1__recommend_response__descriptor, o->timeout_ms, a, &resp, &st))
    return call_failed(o, &st);
  if (o->json) print_json((Rec__V1__RecommendResponse *)resp);
  else print_table(o, (Rec__V1__RecommendResponse *)resp);
  return 0;
}

static int cmd_health(rpc_client *c, const opts *o, arena *a) {
  Grpc__Health__V1__HealthCheckRequest q = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
  int64_t until = rec_mono_ns() + o->wait_s * 1000000000LL;
  for (;;) {
    ProtobufCMessage *resp;
    rpc_status st;
    int rc = rpc_client_call(c, "/grpc.health.v1.Health/Check", &q.base,
                             &grpc__health__v1__health_check_response__descriptor, o->timeout_ms,
                             a, &resp, &st);
    int status = rc ? -1 : (int)((Grpc__Health__V1__HealthCheckResponse *)resp)->status;
    if (status == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING || rec_mono_ns() >= until) {
      if (rc) return call_failed(o, &st);
      const char *name = protobuf_c_enum_descriptor_get_value(
          &grpc__health__v1__health_check_response__serving_status__descriptor, status)->name;
      printf("%s\n", name);
      return status == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING ? 0 : 3;
    }
    arena_reset(a);
    nanosleep(&(struct timespec){0, 100000000}, NULL);
  }
}

static int cmd_status(rpc_client *c, const opts *o, arena *a) {
  Rec__V1__StatusRequest q = REC__V1__STATUS_REQUEST__INIT;
  ProtobufCMessage *resp;
  rpc_status st;
  if (rpc_client_call(c, "/rec.v1.Admin/Status", &q.base, &rec__v1__status_response__descriptor,
                      o->timeout_ms, a, &resp, &st))
    return call_failed(o, &st);
  const Rec__V1__StatusResponse *r = (const Rec__V1__StatusResponse *)resp;
  printf("recd %s  role %s  serving %s  threads %u  uptime %llus\n", r->recd_version, r->role,
         r->serving ? "yes" : "no", r->threads, (unsigned long long)r->uptime_seconds);
  printf("bundle %s  path %s  items %llu  users %llu  dim %u\n", r->bundle_version, r->bundle_path,
         (unsigned long long)r->item_count, (unsigned long long)r->user_count, r->dim);
  return 0;
}

static int cmd_reload(rpc_client *c, const opts *o, arena *a) {
  Rec__V1__ReloadRequest q = REC__V1__RELOAD_REQUEST__INIT;
  q.bundle_path = (char *)(o->bundle ? o->bundle : "");
  ProtobufCMessage *resp;
  rpc_status st;
  if (rpc_client_call(c, "/rec.v1.Admin/Reload", &q.base, &rec__v1__reload_response__descriptor,
                      o->timeout_ms, a, &resp, &st))
    return call_failed(o, &st);
  const Rec__V1__ReloadResponse *r = (const Rec__V1__ReloadResponse *)resp;
  printf("reloaded: %s -> %s\n", r->previous_version[0] ? r->previous_version : "(none)", r->version);
  return 0;
}

/* One CSV row per logged event, in the interactions format of recctl build.
 * Ids are whatever clients sent (commas, quotes, any UTF-8): libcsv encloses
 * them in quotes and doubles the quotes inside (RFC 4180), so a CSV reader
 * gets back exactly the bytes that were recorded. */
static void event_row(void *arg, uint64_t seq, const ev_record *r) {
  FILE *fp = arg;
  (void)seq;
  static const char *const TYPES[] = {"unspecified", "view", "add_to_cart", "purchase", "click"};
  const char *type = r->type >= 0 && r->type <= 4 ? TYPES[r->type] : "unknown";
  csv_fwrite(fp, r->user, r->user_len);
  fputc(',', fp);
  csv_fwrite(fp, r->item, r->item_len);
  fprintf(fp, ",%lld,%d,%.4f,%s,\n", (long long)(r->time_ms / 1000), r->quantity, r->price, type);
}

static int cmd_events_csv(const opts *o) {
  if (!o->log) return bad("%s", "events-csv needs --log DIR");
  printf("user_id,item_id,timestamp,quantity,price,event_type,rating\n");
  size_t n;
  rec_error err = {0};
  if (eventlog_scan(o->log, event_row, stdout, &n, &err) != 0) {
    fprintf(stderr, "recctl: %s\n", err.msg);
    return 1;
  }
  if (fflush(stdout) != 0 || ferror(stdout)) {
    fprintf(stderr, "recctl: events-csv: writing the CSV failed\n");
    return 1;
  }
  fprintf(stderr, "%zu events\n", n);
  return 0;
}

static int cmd_synth(const opts *o) {
  if (!o->out) return bad("%s", "synth needs --out DIR");
  synth_opts s = {.items = (size_t)o->items, .users = (size_t)o->users, .dim = (size_t)o->dim,
                  .categories = (size_t)o->categories, .seed = (uint64_t)o->seed,
                  .index_type = o->index, .ef_search = (int)o->ef,
                  .ef_construction = (int)o->ef_construction, .version = o->version};
  rec_error err = {0};
  int64_t t0 = rec_mono_ns();
  if (synth_bundle(o->out, &s, &err) != 0) {
    fprintf(stderr, "recctl: %s\n", err.msg);
    return 1;
  }
  printf("wrote %s: %zu items, %zu users, dim %zu, %zu categories, in %.1f s\n", o->out, s.items,
         s.users, s.dim, s.categories, (double)(rec_mono_ns() - t0) / 1e9);
  return 0;
}

/* recctl shard: the whole bundle loaded once, then each shard's partition
 * written beside the others. */
static int cmd_shard(const opts *o) {
  if (!o->bundle || !o->out || !o->shards)
    return bad("%s", "shard needs --bundle DIR --shards N --out DIR");
  if (o->shard >= o->shards) return bad("%s", "--shard must be below --shards");
  rec_error err = {0};
  bundle *b;
  int64_t t0 = rec_mono_ns();
  if (bundle_load(o->bundle, &b, &err) != 0) {
    fprintf(stderr, "recctl: %s\n", err.msg);
    return 1;
  }
  /* Every shard must hold an item: checked before anything is written. */
  size_t *count = calloc((size_t)o->shards, sizeof *count);
  for (size_t i = 0; count && i < b->catalog->count; i++) count[bundle_shard_of(b->catalog->ids[i], (uint32_t)o->shards)]++;
  for (long i = 0; count && i < o->shards; i++)
    if (!count[i]) {
      fprintf(stderr, "recctl: %s: shard %ld of %ld would hold none of its %zu items: use fewer shards\n", o->bundle,
              i, o->shards, b->catalog->count);
      free(count);
      bundle_unref(b);
      return 1;
    }
  free(count);
  if (mkdir(o->out, 0755) != 0 && errno != EEXIST) {
    fprintf(stderr, "recctl: %s: %s\n", o->out, strerror(errno));
    bundle_unref(b);
    return 1;
  }
  int rc = 0;
  for (long i = o->shard_given ? o->shard : 0; i < (o->shard_given ? o->shard + 1 : o->shards) && !rc; i++) {
    char dir[4096];
    size_t items = 0;
    snprintf(dir, sizeof dir, "%s/shard-%ld-of-%ld", o->out, i, o->shards);
    bundle *p = NULL;
    double recall = 0;
    /* Written, then loaded and checked as recd will: what recd would refuse is no partition. */
    if ((rc = bundle_write_partition(b, (uint32_t)i, (uint32_t)o->shards, dir, &items, &err)) != 0 ||
        (rc = bundle_load(dir, &p, &err)) != 0 || (rc = bundle_check_recall(p, 32, 10, 0.9, &recall, &err)) != 0)
      fprintf(stderr, "recctl: %s\n", err.msg);
    else printf("wrote %s: %zu of %zu items (loads; smoke recall %.3f)\n", dir, items, b->catalog->count, recall);
    bundle_unref(p);
  }
  if (!rc) printf("%s: %ld shard%s of %ld in %.1f s\n", o->bundle, o->shard_given ? 1L : o->shards,
                  o->shard_given || o->shards == 1 ? "" : "s", o->shards, (double)(rec_mono_ns() - t0) / 1e9);
  bundle_unref(b);
  return rc ? 1 : 0;
}

/* The first token in 'path' ("NAME TOKEN" or "TOKEN" lines, '#' comments),
 * checked as recd checks tokens, for an admin call to 'addr': malloc'd, or
 * NULL with a message printed. Refuses to send it in clear off loopback. */
char *recctl_admin_token(const char *path, const char *addr, const char *tls_ca) {
  if (!auth_addr_is_loopback(addr) && !(tls_ca && *tls_ca)) {
    fprintf(stderr, "recctl: refusing to send the admin token in clear to %s: use --tls-ca, or a loopback "
                    "address (an SSH tunnel)\n", addr);
    return NULL;
  }
  FILE *f = fopen(path, "re");
  if (!f) {
    fprintf(stderr, "recctl: %s: cannot read the token file\n", path);
    return NULL;
  }
  char line[1024], *tok = NULL;
  while (!tok && fgets(line, sizeof line, f)) {
    char *p = line + strspn(line, " \t");
    if (*p == '#') continue;
    char *save = NULL, *a = strtok_r(p, " \t\r\n", &save), *b = a ? strtok_r(NULL, " \t\r\n", &save) : NULL;
    if (a) tok = strdup(b ? b : a);
  }
  memset(line, 0, sizeof line);
  fclose(f);
  size_t n = tok ? strlen(tok) : 0;
  bool ok = n >= 16 && n <= 256;
  for (size_t i = 0; ok && i < n; i++) ok = tok[i] > ' ' && tok[i] < 127;
  if (!ok) {
    fprintf(stderr, "recctl: %s: %s\n", path, tok ? "the token is not 16 to 256 printable ASCII characters"
                                                   : "holds no token");
    if (tok) memset(tok, 0, n);
    free(tok);
    return NULL;
  }
  return tok;
}

int main(int argc, char **argv) {
  if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  if (strcmp(argv[1], "build") == 0) return cmd_build(argc, argv);
  if (strcmp(argv[1], "eval") == 0) return cmd_eval(argc, argv);
  if (strcmp(argv[1], "import") == 0) return cmd_import(argc, argv);
  if (strcmp(argv[1], "catalog") == 0) return cmd_catalog(argc, argv);
  if (strcmp(argv[1], "experiments") == 0) return cmd_experiments(argc, argv);
  if (strcmp(argv[1], "replay") == 0) return cmd_replay(argc, argv);
  opts o = {.addr = NULL, .k = 10, .timeout_ms = 2000, .items = 2000, .users = 500,
            .dim = 32, .categories = 8, .seed = 42};
  int rc = parse(argc, argv, &o);
  if (rc) return rc;
  const char *cmd = argv[1];
  if (strcmp(cmd, "synth") == 0) return cmd_synth(&o);
  if (strcmp(cmd, "shard") == 0) return cmd_shard(&o);
  if (strcmp(cmd, "events-csv") == 0) return cmd_events_csv(&o);
  if (strcmp(cmd, "recommend") && strcmp(cmd, "health") && strcmp(cmd, "status") &&
      strcmp(cmd, "reload"))
    return bad("unknown command '%s'", cmd);
  bool admin = strcmp(cmd, "status") == 0 || strcmp(cmd, "reload") == 0;
  if (!o.addr) o.addr = admin ? "127.0.0.1:50052" : "127.0.0.1:50051";
  if (o.token_file && !admin) return bad("%s", "--token-file is for the admin commands (status, reload, catalog): "
                                               "the serving port never needs the admin token");
  char *token = NULL;
  if (o.token_file && !(token = recctl_admin_token(o.token_file, o.addr, o.tls_ca))) return 2;
  rpc_client_tls tls = {o.tls_ca, o.tls_cert, o.tls_key, o.tls_name};
  rpc_client *c;
  rec_error err = {0};
  rc = rpc_client_new(o.addr, &tls, token, &c, &err);
  if (token) {
    memset(token, 0, strlen(token));
    free(token);
  }
  if (rc != 0) {
    fprintf(stderr, "recctl: %s\n", err.msg);
    return 2;
  }
  arena a;
  arena_init(&a, 0);
  rc = strcmp(cmd, "recommend") == 0 ? cmd_recommend(c, &o, &a)
     : strcmp(cmd, "health") == 0    ? cmd_health(c, &o, &a)
     : strcmp(cmd, "reload") == 0    ? cmd_reload(c, &o, &a)
                                     : cmd_status(c, &o, &a);
  arena_destroy(&a);
  rpc_client_free(c);
  return rc;
}
