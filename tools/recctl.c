/* tools/recctl.c - recd's command-line tool: one table of commands (each
 * with its synopsis, the options it takes and its --help), the calls to a
 * running recd (recommend, similar, record, health, status, reload), the
 * local ones (synth, shard, events-csv), and what to say when a call fails.
 * Talks to recd over the same gRPC C core client the project uses
 * everywhere. Exit codes: tools/recctl.h. */
#include "common/arena.h"
#include "common/clock.h"
#include "grpc/health/v1/health.pb-c.h"
#include "rec/v1/admin.pb-c.h"
#include "rec/v1/events.pb-c.h"
#include "rec/v1/ranking.pb-c.h"
#include "server/eventlog.h"
#include "server/auth.h"
#include "server/rpc_client.h"
#include "tools/cmd_build.h"
#include "tools/cmd_catalog.h"
#include "tools/cmd_experiments.h"
#include "tools/cmd_replay.h"
#include "tools/recctl.h"
#include "tools/offline/synth.h"
#include "retrieval/bundle.h"
#include "retrieval/bundle_shard.h"

#include <cjson/cJSON.h>
#include <csv.h>
#include <errno.h>
#include <sys/stat.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

extern const char recctl_git_describe[]; /* git_version.c, made at build time; "" outside git */

#define MAX_LIST 1000

typedef struct opts {
  const char *addr, *user, *out, *index, *version, *bundle, *log, *type, *slate;
  const char *tls_ca, *tls_cert, *tls_key, *tls_name, *token_file;
  long k, timeout_ms, items, users, dim, categories, seed, ef, ef_construction, wait_s, shards, shard, quantity;
  long time_ms;             /* 64 bits on every platform recd builds on */
  double price;
  bool json, explain, shard_given;
  const char *cmd;          /* the command's name, for messages */
  bool admin;               /* it talks to the admin listener */
  const char *exclude[MAX_LIST], *include_cats[MAX_LIST], *explain_ids[MAX_LIST], *item_ids[MAX_LIST];
  size_t n_exclude, n_include_cats, n_explain_ids, n_item_ids;
} opts;

/* Every option of the commands recctl.c parses, in one table: its name,
 * what it holds and where, its range and its help line. A command takes
 * the options its mask names; --help lists exactly those. */
typedef enum { OPT_FLAG, OPT_STR, OPT_LONG, OPT_DOUBLE, OPT_LIST } opt_type;
enum {
  O_USER, O_ITEM, O_K, O_EXCLUDE, O_CATEGORY, O_EXPLAIN, O_WHY, O_JSON, O_TYPE, O_QUANTITY, O_PRICE, O_TIME,
  O_SLATE, O_WAIT, O_BUNDLE, O_LOG, O_OUT, O_ITEMS, O_USERS, O_DIM, O_CATEGORIES, O_SEED, O_INDEX, O_EF, O_EFC,
  O_VERSION, O_SHARDS, O_SHARD, O_ADDR, O_TIMEOUT, O_TLS_CA, O_TLS_CERT, O_TLS_KEY, O_TLS_NAME, O_TOKEN, N_OPTIONS
};
#define OPT(x) (1ull << (x))
#define CONN_OPTIONS (OPT(O_ADDR) | OPT(O_TIMEOUT) | OPT(O_TLS_CA) | OPT(O_TLS_CERT) | OPT(O_TLS_KEY) | OPT(O_TLS_NAME))

typedef struct option {
  const char *name, *alias;  /* "-k", "--k" */
  const char *value;         /* what --help calls the value; NULL for a flag */
  opt_type type;
  size_t off, count_off;     /* where it goes in opts; OPT_LIST: and its count */
  long lo, hi;               /* OPT_LONG, OPT_DOUBLE */
  const char *help;
} option;

#define F(field) offsetof(opts, field)
static const option OPTIONS[N_OPTIONS] = {
    [O_USER] = {"--user", NULL, "U", OPT_STR, F(user), 0, 0, 0, "the user (one recd has never seen gets popularity)"},
    [O_ITEM] = {"--item", NULL, "ID", OPT_LIST, F(item_ids), F(n_item_ids), 0, 0,
                "the item; similar: repeat it for a cart (1 to 100)"},
    [O_K] = {"-k", "--k", "N", OPT_LONG, F(k), 0, -1000000, 1000000, "items wanted (default 10)"},
    [O_EXCLUDE] = {"--exclude", NULL, "ID", OPT_LIST, F(exclude), F(n_exclude), 0, 0, "never show this item (repeatable)"},
    [O_CATEGORY] = {"--category", NULL, "C", OPT_LIST, F(include_cats), F(n_include_cats), 0, 0,
                    "only items of these categories (repeatable)"},
    [O_EXPLAIN] = {"--explain", NULL, NULL, OPT_FLAG, F(explain), 0, 0, 0, "each item's sources and rule adjustments"},
    [O_WHY] = {"--why", NULL, "ID", OPT_LIST, F(explain_ids), F(n_explain_ids), 0, 0, "why ID is not shown (repeatable)"},
    [O_JSON] = {"--json", NULL, NULL, OPT_FLAG, F(json), 0, 0, 0, "the answer as JSON"},
    [O_TYPE] = {"--type", NULL, "T", OPT_STR, F(type), 0, 0, 0, "view, add_to_cart, purchase or click"},
    [O_QUANTITY] = {"--quantity", NULL, "N", OPT_LONG, F(quantity), 0, 0, 1000000, "units (at least 1 for a purchase)"},
    [O_PRICE] = {"--price", NULL, "X", OPT_DOUBLE, F(price), 0, 0, 1000000000, "unit price paid"},
    [O_TIME] = {"--time-ms", NULL, "T", OPT_LONG, F(time_ms), 0, 0, 253402300799999L,
                "when, in ms since the Unix epoch (default: recd's clock)"},
    [O_SLATE] = {"--slate", NULL, "ID", OPT_STR, F(slate), 0, 0, 0,
                 "the request_id of the slate that showed the item (attribution)"},
    [O_WAIT] = {"--wait", NULL, "SECONDS", OPT_LONG, F(wait_s), 0, 0, 3600,
                "keep asking until SERVING or this long has passed"},
    [O_BUNDLE] = {"--bundle", NULL, "DIR", OPT_STR, F(bundle), 0, 0, 0, "the bundle (reload: a name or path under "
                  "recd's --bundle_root)"},
    [O_LOG] = {"--log", NULL, "DIR", OPT_STR, F(log), 0, 0, 0, "recd's --event_log directory"},
    [O_OUT] = {"--out", NULL, "DIR", OPT_STR, F(out), 0, 0, 0, "where to write"},
    [O_ITEMS] = {"--items", NULL, "N", OPT_LONG, F(items), 0, 1, 10000000, "items (default 2000)"},
    [O_USERS] = {"--users", NULL, "N", OPT_LONG, F(users), 0, 0, 10000000, "users (default 500)"},
    [O_DIM] = {"--dim", NULL, "N", OPT_LONG, F(dim), 0, 2, 1024, "embedding dimension (default 32)"},
    [O_CATEGORIES] = {"--categories", NULL, "N", OPT_LONG, F(categories), 0, 1, 100000, "categories (default 8)"},
    [O_SEED] = {"--seed", NULL, "N", OPT_LONG, F(seed), 0, 0, 2147483647, "random seed (default 42)"},
    [O_INDEX] = {"--index", NULL, "SPEC", OPT_STR, F(index), 0, 0, 0, "FAISS index factory string"},
    [O_EF] = {"--ef", NULL, "N", OPT_LONG, F(ef), 0, 1, 65536, "HNSW efSearch"},
    [O_EFC] = {"--ef-construction", NULL, "N", OPT_LONG, F(ef_construction), 0, 1, 65536, "HNSW build breadth"},
    [O_VERSION] = {"--version", NULL, "V", OPT_STR, F(version), 0, 0, 0, "the bundle's version"},
    [O_SHARDS] = {"--shards", NULL, "N", OPT_LONG, F(shards), 0, 2, 1024, "shards (2 to 1024)"},
    [O_SHARD] = {"--shard", NULL, "I", OPT_LONG, F(shard), 0, 0, 1023, "write shard I only"},
    [O_ADDR] = {"--addr", NULL, "HOST:PORT", OPT_STR, F(addr), 0, 0, 0, "where recd listens (default: below)"},
    [O_TIMEOUT] = {"--timeout-ms", NULL, "N", OPT_LONG, F(timeout_ms), 0, 1, 3600000, "the call's deadline (default 2000)"},
    [O_TLS_CA] = {"--tls-ca", NULL, "F", OPT_STR, F(tls_ca), 0, 0, 0, "talk TLS, trusting this PEM CA"},
    [O_TLS_CERT] = {"--tls-cert", NULL, "F", OPT_STR, F(tls_cert), 0, 0, 0, "a client certificate (mTLS), with --tls-key"},
    [O_TLS_KEY] = {"--tls-key", NULL, "F", OPT_STR, F(tls_key), 0, 0, 0, "its private key"},
    [O_TLS_NAME] = {"--tls-name", NULL, "N", OPT_STR, F(tls_name), 0, 0, 0,
                    "check the server's certificate for N, not the host"},
    [O_TOKEN] = {"--token-file", NULL, "F", OPT_STR, F(token_file), 0, 0, 0,
                 "the admin token, the first in F (recd's --admin_token_file format);\n"
                 "                       default: $RECCTL_TOKEN_FILE"},
};
#undef F

/* Where a command runs: here, against the serving port, against the admin
 * listener, or with a parser of its own (in its own file). */
typedef enum { LOCAL, SERVING, ADMIN, OWN } cmd_kind;

typedef struct command {
  const char *name;
  cmd_kind kind;
  const char *synopsis;    /* what follows "recctl NAME" */
  const char *summary;     /* one line or two, for the list of commands */
  uint64_t options;        /* OPT() of those it takes; SERVING and ADMIN add CONN_OPTIONS, ADMIN O_TOKEN */
  int (*remote)(rpc_client *c, const opts *o, arena *a);
  int (*local)(const opts *o);
  int (*own)(int argc, char **argv);
} command;

static int bad(const char *cmd, const char *fmt, const char *arg) {
  fprintf(stderr, "recctl%s%s: ", cmd ? " " : "", cmd ? cmd : "");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, " (see recctl %s%s--help)\n", cmd ? cmd : "", cmd ? " " : "");
  return 2;
}

static uint64_t options_of(const command *c) {
  return c->options | (c->kind == SERVING || c->kind == ADMIN ? CONN_OPTIONS : 0) |
         (c->kind == ADMIN ? OPT(O_TOKEN) : 0);
}

static int option_named(const char *a) {
  for (int i = 0; i < N_OPTIONS; i++)
    if (strcmp(a, OPTIONS[i].name) == 0 || (OPTIONS[i].alias && strcmp(a, OPTIONS[i].alias) == 0)) return i;
  return -1;
}

/* Stores 'v' (NULL for a flag) as option 'id' of command 'c'. */
static int set_option(const command *c, int id, const char *v, opts *o) {
  const option *op = &OPTIONS[id];
  char *at = (char *)o + op->off;
  switch (op->type) {
  case OPT_FLAG: *(bool *)at = true; return 0;
  case OPT_STR: *(const char **)at = v; return 0;
  case OPT_LONG: return flag_long(op->name, v, op->lo, op->hi, (long *)at);
  case OPT_LIST: {
    size_t *n = (size_t *)((char *)o + op->count_off);
    if (*n == MAX_LIST) return bad(c->name, "too many %s values", op->name);
    ((const char **)at)[(*n)++] = v;
    return 0;
  }
  case OPT_DOUBLE: {
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (end == v || *end || errno || !(d >= (double)op->lo && d <= (double)op->hi)) {
      fprintf(stderr, "recctl %s: %s '%s' must be a number from %ld to %ld\n", c->name, op->name, v, op->lo, op->hi);
      return 2;
    }
    *(double *)at = d;
    return 0;
  }
  }
  return 0;
}

/* Parses argv[2..] into o, refusing an option the command does not take
 * (named, with the command's --help). Returns 0 or an exit code. */
static int parse(const command *c, int argc, char **argv, opts *o) {
  uint64_t takes = options_of(c);
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    if (a[0] != '-') return bad(c->name, "unexpected argument '%s': every value follows its option", a);
    int id = option_named(a);
    if (id == O_TOKEN && !(takes & OPT(id)))
      return bad(c->name, "%s is for the admin commands (status, reload, catalog, experiments): the serving "
                          "port never needs the admin token", a);
    if (id < 0 || !(takes & OPT(id))) return bad(c->name, "unknown option %s", a);
    if (OPTIONS[id].type != OPT_FLAG && i + 1 >= argc) return bad(c->name, "%s needs a value", a);
    int rc = set_option(c, id, OPTIONS[id].type == OPT_FLAG ? NULL : argv[++i], o);
    if (rc) return rc;
    if (id == O_SHARD) o->shard_given = true;
  }
  return 0;
}

/* ---- what recctl says when a call fails ---- */

const char *recctl_token_file(const char *flag) {
  const char *env = getenv("RECCTL_TOKEN_FILE");
  return flag ? flag : env && *env ? env : NULL;
}

/* Why gRPC could not reach 'addr', in a few words, from its own text. */
static const char *unreached_why(const rpc_status *st) {
  static const struct {
    const char *says, *why;
  } WHY[] = {
      {"Connection refused", "connection refused"},
      {"DNS", "the host name does not resolve"},
      {"resolve", "the host name does not resolve"},
      {"handshake", "the TLS handshake failed"},
      {"SSL", "the TLS handshake failed"},
      {"Socket closed", "the connection closed at once: TLS on one side only?"},
      {"Connection reset", "the connection closed at once: TLS on one side only?"},
  };
  for (size_t i = 0; i < sizeof WHY / sizeof WHY[0]; i++)
    if (strstr(st->message, WHY[i].says)) return WHY[i].why;
  return st->code == 4 /* DEADLINE_EXCEEDED */ ? "no connection within --timeout-ms" : "no connection";
}

int recctl_call_failed(const char *cmd, const char *addr, bool admin, const char *token_file,
                       const rpc_status *st) {
  if (st->unreached) {
    fprintf(stderr, "recctl %s: cannot reach recd at %s (%s: %s). Is recd running, and is %s its %s? Give the "
                    "right one with --addr HOST:PORT (default %s)%s\n", cmd, addr, rpc_status_name(st->code),
            unreached_why(st), addr, admin ? "admin listener (recd --admin_grpc_listen)" : "serving port (recd --listen)",
            admin ? RECCTL_ADMIN_ADDR : RECCTL_SERVING_ADDR,
            "; a recd serving TLS needs --tls-ca, a plaintext one none");
  } else if (st->code == 16 /* UNAUTHENTICATED */ && !token_file) {
    fprintf(stderr, "recctl %s: %s refused the call (UNAUTHENTICATED): no admin token was sent. Give --token-file "
                    "FILE, or set RECCTL_TOKEN_FILE=FILE, with a token from recd's --admin_token_file (or a client "
                    "certificate recd's --admin_allow names: --tls-cert, --tls-key)\n", cmd, addr);
  } else if (st->code == 16) {
    fprintf(stderr, "recctl %s: %s refused the call (UNAUTHENTICATED): the token in %s is not one recd accepts; "
                    "use a token from the file recd's --admin_token_file names (recd: %s)\n", cmd, addr, token_file,
            st->message);
  } else {
    fprintf(stderr, "recctl %s: %s: %s: %s\n", cmd, addr, rpc_status_name(st->code), st->message);
  }
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

/* A slate's items as a JSON array named "items" in 'j'. */
static void items_json(cJSON *j, Rec__V1__ScoredItem *const *its, size_t n) {
  cJSON *items = cJSON_AddArrayToObject(j, "items");
  for (size_t i = 0; i < n; i++) {
    const Rec__V1__ScoredItem *it = its[i];
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
  items_json(j, r->items, r->n_items);
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

/* A slate's items as a table, one row each. */
static void items_table(Rec__V1__ScoredItem *const *its, size_t n) {
  printf("%4s  %-20s %8s  %-16s %10s  %s\n", "rank", "item_id", "score", "category", "price", "sources");
  for (size_t i = 0; i < n; i++) {
    const Rec__V1__ScoredItem *it = its[i];
    printf("%4zu  %-20s %8.4f  %-16s %10.2f  ", i + 1, it->item_id, (double)it->score,
           it->category, it->price);
    for (size_t s = 0; s < it->n_sources; s++)
      printf("%s%s", s ? "," : "", source_name(it->sources[s]->source));
    for (size_t a = 0; it->explanation && a < it->explanation->n_adjustments; a++)
      printf("%s%s x%.3f", a ? ", " : "  [", it->explanation->adjustments[a]->rule,
             (double)it->explanation->adjustments[a]->factor);
    printf("%s\n", it->explanation && it->explanation->n_adjustments ? "]" : "");
  }
}

static void print_table(const opts *o, const Rec__V1__RecommendResponse *r) {
  printf("user %s  bundle %s  strategy %s  request %s\n", o->user, r->bundle_version,
         strategy_name(r->strategy), r->request_id);
  for (size_t i = 0; i < r->n_degraded_reasons; i++) printf("degraded: %s\n", r->degraded_reasons[i]);
  items_table(r->items, r->n_items);
  for (size_t i = 0; i < r->n_verdicts; i++)
    printf("not shown: %s  stage=%s  %s\n", r->verdicts[i]->item_id, r->verdicts[i]->stage,
           r->verdicts[i]->reason);
  if (r->timings)
    printf("timings: tower %u us, ann %u us, ranking %u us, total %u us\n", r->timings->user_tower_us,
           r->timings->ann_us, r->timings->ranking_us, r->timings->total_us);
}

/* The --category filter in *f, or NULL without one. */
static Rec__V1__Filters *category_filter(const opts *o, Rec__V1__Filters *f) {
  if (!o->n_include_cats) return NULL;
  f->include_categories = (char **)o->include_cats;
  f->n_include_categories = o->n_include_cats;
  return f;
}

static int cmd_recommend(rpc_client *c, const opts *o, arena *a) {
  if (!o->user) return bad(o->cmd, "%s", "needs --user U");
  Rec__V1__RecommendRequest q = REC__V1__RECOMMEND_REQUEST__INIT;
  Rec__V1__Filters f = REC__V1__FILTERS__INIT;
  q.user_id = (char *)o->user;
  q.k = (int32_t)o->k;
  q.explain = o->explain;
  q.exclude_item_ids = (char **)o->exclude;
  q.n_exclude_item_ids = o->n_exclude;
  q.explain_item_ids = (char **)o->explain_ids;
  q.n_explain_item_ids = o->n_explain_ids;
  q.filters = category_filter(o, &f);
  ProtobufCMessage *resp;
  rpc_status st;
  if (rpc_client_call(c, "/rec.v1.Ranking/Recommend", &q.base,
                      &rec__v1__recommend_response__descriptor, o->timeout_ms, a, &resp, &st))
    return recctl_call_failed(o->cmd, o->addr, o->admin, o->token_file, &st);
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
      if (rc) return recctl_call_failed(o->cmd, o->addr, o->admin, o->token_file, &st);
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
    return recctl_call_failed(o->cmd, o->addr, o->admin, o->token_file, &st);
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
    return recctl_call_failed(o->cmd, o->addr, o->admin, o->token_file, &st);
  const Rec__V1__ReloadResponse *r = (const Rec__V1__ReloadResponse *)resp;
  printf("reloaded: %s -> %s\n", r->previous_version[0] ? r->previous_version : "(none)", r->version);
  return 0;
}

static int cmd_similar(rpc_client *c, const opts *o, arena *a) {
  if (!o->n_item_ids) return bad(o->cmd, "%s", "needs --item ID (one, or several for a cart)");
  Rec__V1__SimilarItemsRequest q = REC__V1__SIMILAR_ITEMS_REQUEST__INIT;
  Rec__V1__Filters f = REC__V1__FILTERS__INIT;
  q.item_ids = (char **)o->item_ids;
  q.n_item_ids = o->n_item_ids;
  q.k = (int32_t)o->k;
  q.exclude_item_ids = (char **)o->exclude;
  q.n_exclude_item_ids = o->n_exclude;
  q.filters = category_filter(o, &f);
  ProtobufCMessage *resp;
  rpc_status st;
  if (rpc_client_call(c, "/rec.v1.Ranking/SimilarItems", &q.base, &rec__v1__similar_items_response__descriptor,
                      o->timeout_ms, a, &resp, &st))
    return recctl_call_failed(o->cmd, o->addr, o->admin, o->token_file, &st);
  const Rec__V1__SimilarItemsResponse *r = (const Rec__V1__SimilarItemsResponse *)resp;
  if (o->json) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "bundle_version", r->bundle_version);
    cJSON_AddStringToObject(j, "request_id", r->request_id);
    items_json(j, r->items, r->n_items);
    char *text = cJSON_Print(j);
    puts(text);
    free(text);
    cJSON_Delete(j);
    return 0;
  }
  printf("similar to");
  for (size_t i = 0; i < o->n_item_ids; i++) printf("%s%s", i ? "," : " ", o->item_ids[i]);
  printf("  bundle %s  request %s\n", r->bundle_version, r->request_id);
  items_table(r->items, r->n_items);
  return 0;
}

/* The event types by their names on the command line (EventType's, lower case). */
static const struct {
  const char *name;
  Rec__V1__EventType type;
} EVENT_TYPES[] = {{"view", REC__V1__EVENT_TYPE__EVENT_TYPE_VIEW},
                   {"add_to_cart", REC__V1__EVENT_TYPE__EVENT_TYPE_ADD_TO_CART},
                   {"purchase", REC__V1__EVENT_TYPE__EVENT_TYPE_PURCHASE},
                   {"click", REC__V1__EVENT_TYPE__EVENT_TYPE_CLICK}};

static int cmd_record(rpc_client *c, const opts *o, arena *a) {
  if (!o->user || o->n_item_ids != 1 || !o->type)
    return bad(o->cmd, "%s", "needs --user U, one --item ID and --type view|add_to_cart|purchase|click");
  Rec__V1__Event ev = REC__V1__EVENT__INIT;
  ev.type = REC__V1__EVENT_TYPE__EVENT_TYPE_UNSPECIFIED;
  for (size_t i = 0; i < sizeof EVENT_TYPES / sizeof EVENT_TYPES[0]; i++)
    if (strcmp(o->type, EVENT_TYPES[i].name) == 0) ev.type = EVENT_TYPES[i].type;
  if (ev.type == REC__V1__EVENT_TYPE__EVENT_TYPE_UNSPECIFIED)
    return bad(o->cmd, "--type '%s' is not one of view, add_to_cart, purchase, click", o->type);
  ev.user_id = (char *)o->user;
  ev.item_id = (char *)o->item_ids[0];
  ev.quantity = (int32_t)o->quantity;
  ev.price = o->price;
  ev.time_unix_ms = o->time_ms;
  ev.slate_request_id = (char *)(o->slate ? o->slate : "");
  Rec__V1__Event *evs[1] = {&ev};
  Rec__V1__RecordRequest q = REC__V1__RECORD_REQUEST__INIT;
  q.events = evs;
  q.n_events = 1;
  ProtobufCMessage *resp;
  rpc_status st;
  if (rpc_client_call(c, "/rec.v1.Events/Record", &q.base, &rec__v1__record_response__descriptor, o->timeout_ms, a,
                      &resp, &st))
    return recctl_call_failed(o->cmd, o->addr, o->admin, o->token_file, &st);
  const Rec__V1__RecordResponse *r = (const Rec__V1__RecordResponse *)resp;
  printf("recorded %u event (durable), sequence %llu\n", r->accepted, (unsigned long long)r->last_sequence);
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
  if (!o->log) return bad(o->cmd, "%s", "needs --log DIR");
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
  if (!o->out) return bad(o->cmd, "%s", "needs --out DIR");
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
    return bad(o->cmd, "%s", "needs --bundle DIR --shards N --out DIR");
  if (o->shard >= o->shards) return bad(o->cmd, "%s", "--shard must be below --shards");
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

static int cmd_version(int argc, char **argv) {
  (void)argc; (void)argv;
  printf("recctl %s%s%s%s\nbundle format %d\n", RECD_VERSION, recctl_git_describe[0] ? " (" : "", recctl_git_describe,
         recctl_git_describe[0] ? ")" : "", BUNDLE_FORMAT);
  return 0;
}

static const command COMMANDS[] = {
    {"recommend", SERVING, "--user U [-k N] [--exclude ID]... [--category C]... [--explain] [--why ID]... [--json]",
     "ask for a ranked slate (Ranking.Recommend)",
     OPT(O_USER) | OPT(O_K) | OPT(O_EXCLUDE) | OPT(O_CATEGORY) | OPT(O_EXPLAIN) | OPT(O_WHY) | OPT(O_JSON),
     cmd_recommend, NULL, NULL},
    {"similar", SERVING, "--item ID [--item ID]... [-k N] [--exclude ID]... [--category C]... [--json]",
     "items to show beside one item, or a cart (Ranking.SimilarItems)",
     OPT(O_ITEM) | OPT(O_K) | OPT(O_EXCLUDE) | OPT(O_CATEGORY) | OPT(O_JSON), cmd_similar, NULL, NULL},
    {"record", SERVING, "--user U --item ID --type view|add_to_cart|purchase|click [--quantity N] [--price X]\n"
     "         [--time-ms T] [--slate REQUEST_ID]",
     "record what a user did (Events.Record); OK once it is on disk",
     OPT(O_USER) | OPT(O_ITEM) | OPT(O_TYPE) | OPT(O_QUANTITY) | OPT(O_PRICE) | OPT(O_TIME) | OPT(O_SLATE), cmd_record,
     NULL, NULL},
    {"health", SERVING, "[--wait SECONDS]", "print the serving status (exit 3 unless SERVING)", OPT(O_WAIT), cmd_health,
     NULL, NULL},
    {"status", ADMIN, "", "what the server has loaded (admin listener)", 0, cmd_status, NULL, NULL},
    {"reload", ADMIN, "[--bundle DIR]",
     "load, check and swap in a bundle (default: the path recd was started with, e.g. a `current` link)",
     OPT(O_BUNDLE), cmd_reload, NULL, NULL},
    {"catalog", OWN, "upsert --csv F | catalog delete --id ID... | --csv F",
     "live catalog changes (Catalog.Upsert, Catalog.Delete; admin listener)", 0, NULL, NULL, cmd_catalog},
    {"experiments", OWN, "[--json] | experiments share EXP ARM BP | experiments stop|resume EXP",
     "A/B report with 95% intervals; runtime controls (admin listener)", 0, NULL, NULL, cmd_experiments},
    {"events-csv", LOCAL, "--log DIR", "the event log as an interactions CSV (for recctl build)", OPT(O_LOG), NULL,
     cmd_events_csv, NULL},
    {"synth", LOCAL,
     "--out DIR [--items N] [--users N] [--dim N] [--categories N] [--seed N]\n"
     "         [--index FAISS_SPEC] [--ef N] [--ef-construction N] [--version V]",
     "write a deterministic synthetic bundle (HNSW breadths default from the catalog size)",
     OPT(O_OUT) | OPT(O_ITEMS) | OPT(O_USERS) | OPT(O_DIM) | OPT(O_CATEGORIES) | OPT(O_SEED) | OPT(O_INDEX) |
         OPT(O_EF) | OPT(O_EFC) | OPT(O_VERSION),
     NULL, cmd_synth, NULL},
    {"shard", LOCAL, "--bundle DIR --shards N --out DIR [--shard I]",
     "split a bundle for N retrieval shards: OUT/shard-I-of-N, each with only its items (--shard: that one only)",
     OPT(O_BUNDLE) | OPT(O_SHARDS) | OPT(O_OUT) | OPT(O_SHARD), NULL, cmd_shard, NULL},
    {"build", OWN, "--interactions CSV --catalog CSV --out DIR [options]", "train a bundle from data", 0, NULL, NULL,
     cmd_build},
    {"eval", OWN, "--interactions CSV --catalog CSV [--json F] [--chart F.svg]", "compare models offline", 0, NULL,
     NULL, cmd_eval},
    {"import", OWN, "--catalog CSV --item-embeddings F --users F --user-features F --layer W:B:ACT --out DIR",
     "bundle a model trained elsewhere", 0, NULL, NULL, cmd_import},
    {"replay", OWN, "--log F --bundle DIR (--request-id ID | --all) [--settings F] [--experiments F] ...",
     "re-run logged decisions (recd --decision_log) in process and print every difference", 0, NULL, NULL,
     cmd_replay},
};
enum { N_COMMANDS = sizeof COMMANDS / sizeof COMMANDS[0] };

static void usage(FILE *f) {
  fputs("usage: recctl COMMAND [options]     recctl COMMAND --help: its options\n"
        "       recctl --version\n\ncommands:\n", f);
  for (size_t i = 0; i < N_COMMANDS; i++)
    fprintf(f, "  %s %s\n      %s\n", COMMANDS[i].name, COMMANDS[i].synopsis, COMMANDS[i].summary);
  fputs("\nrecommend, similar, record and health talk to recd's serving port (default " RECCTL_SERVING_ADDR "),\n"
        "status, reload, catalog and experiments to its admin listener (default " RECCTL_ADMIN_ADDR ",\n"
        "with --token-file F or $RECCTL_TOKEN_FILE).\n", f);
}

static void command_help(const command *c) {
  printf("usage: recctl %s%s%s\n\n%s\n", c->name, *c->synopsis ? " " : "", c->synopsis, c->summary);
  uint64_t takes = options_of(c);
  if (takes) printf("\noptions:\n");
  for (int i = 0; i < N_OPTIONS; i++) {
    if (!(takes & OPT(i))) continue;
    char left[64];
    snprintf(left, sizeof left, "%s%s%s", OPTIONS[i].name, OPTIONS[i].value ? " " : "",
             OPTIONS[i].value ? OPTIONS[i].value : "");
    printf("  %-20s %s\n", left, OPTIONS[i].help);
  }
  if (c->kind == SERVING || c->kind == ADMIN)
    printf("\n--addr defaults to %s, the %s.\n", c->kind == ADMIN ? RECCTL_ADMIN_ADDR : RECCTL_SERVING_ADDR,
           c->kind == ADMIN ? "admin listener (recd --admin_grpc_listen)" : "serving port (recd --listen)");
}

static bool is_help(const char *a) { return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0; }

/* A command against recd: the client (with the admin token for the admin
 * listener), the call, the exit code. */
static int run_remote(const command *cmd, opts *o) {
  o->admin = cmd->kind == ADMIN;
  if (!o->addr) o->addr = o->admin ? RECCTL_ADMIN_ADDR : RECCTL_SERVING_ADDR;
  if (o->admin) o->token_file = recctl_token_file(o->token_file);
  char *token = NULL;
  if (o->token_file && !(token = recctl_admin_token(o->token_file, o->addr, o->tls_ca))) return 2;
  rpc_client_tls tls = {o->tls_ca, o->tls_cert, o->tls_key, o->tls_name};
  rpc_client *c;
  rec_error err = {0};
  int rc = rpc_client_new(o->addr, &tls, token, &c, &err);
  if (token) {
    memset(token, 0, strlen(token));
    free(token);
  }
  if (rc != 0) {
    fprintf(stderr, "recctl %s: %s\n", cmd->name, err.msg);
    return 2;
  }
  arena a;
  arena_init(&a, 0);
  rc = cmd->remote(c, o, &a);
  arena_destroy(&a);
  rpc_client_free(c);
  return rc;
}

int main(int argc, char **argv) {
  if (argc < 2 || is_help(argv[1])) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  if (strcmp(argv[1], "--version") == 0) return cmd_version(argc, argv);
  const command *cmd = NULL;
  for (size_t i = 0; i < N_COMMANDS && !cmd; i++)
    if (strcmp(argv[1], COMMANDS[i].name) == 0) cmd = &COMMANDS[i];
  if (!cmd) return bad(NULL, "unknown command '%s'", argv[1]);
  if (cmd->kind == OWN) return cmd->own(argc, argv);
  for (int i = 2; i < argc; i++)
    if (is_help(argv[i])) {
      command_help(cmd);
      return 0;
    }
  opts o = {.cmd = cmd->name, .k = 10, .timeout_ms = 2000, .items = 2000, .users = 500, .dim = 32, .categories = 8,
            .seed = 42};
  int rc = parse(cmd, argc, argv, &o);
  if (rc) return rc;
  return cmd->kind == LOCAL ? cmd->local(&o) : run_remote(cmd, &o);
}
