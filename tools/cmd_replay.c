/* tools/cmd_replay.c - recctl replay (see cmd_replay.h).
 *   recctl replay --log FILE (--request-id ID | --all) --bundle DIR
 *                 [--settings FILE] [--experiments FILE] [--experiments-state FILE]
 *                 [--catalog-log DIR] [--quiet]
 * The settings and experiments default to the files the log names. The
 * call runs through h_recommend on an app set up the way recd sets one up
 * (tools/offline/served.c does the same for `recctl eval`), so a replay
 * differs from the log only where the inputs the log cannot carry differ:
 * the bundle, the settings, the experiments, or code. */
#include "tools/cmd_replay.h"
#include "common/fileio.h"
#include "common/log.h"
#include "rec/v1/decision.pb-c.h"
#include "rec/v1/ranking.pb-c.h"
#include "retrieval/retrieve.h"
#include "server/app.h"
#include "server/catlog.h"
#include "server/config.h"
#include "server/declog.h"
#include "server/handlers.h"
#include "server/live_catalog.h"
#include "server/online.h"
#include "server/recommend.h"
#include "server/rpc.h"

#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct replay_opts {
  const char *log, *request_id, *bundle, *settings, *experiments, *state, *catalog_log;
  bool all, quiet;
} replay_opts;

/* The replaying process: recd's app, and the catalog generation it shows. */
typedef struct replayer {
  const replay_opts *o;
  app ap;
  recd_config cfg;
  bool opened;
  app_pinned pin;
  bundle *base;              /* the bundle without live changes, for new catalog generations */
  uint64_t generation;       /* the catalog generation the app shows */
  char tmp[64];              /* where catalog log prefixes are written; "" until made */
  uint64_t settings_hash, experiments_hash;
} replayer;

typedef struct tally {
  size_t records, identical, different, failed, settings_changed;
} tally;

static void usage(FILE *f) {
  fputs("usage: recctl replay --log FILE (--request-id ID | --all) --bundle DIR [--settings FILE]\n"
        "                     [--experiments FILE] [--experiments-state FILE] [--catalog-log DIR] [--quiet]\n"
        "Runs logged Recommend calls again in process (recd's handler, the logged online state,\n"
        "catalog generation, deadline steps and time) and prints every difference in the slate.\n"
        "--settings and --experiments default to the files the log names; --catalog-log is recd's\n"
        "--catalog_log directory (read only), needed when the log holds catalog generations.\n"
        "Exit: 0 all identical, 1 a difference or a record not replayed, 2 bad usage.\n", f);
}

static int parse(int argc, char **argv, replay_opts *o) {
  static const struct { const char *name; size_t off; } VALUES[] = {
      {"--log", offsetof(replay_opts, log)},
      {"--request-id", offsetof(replay_opts, request_id)},
      {"--bundle", offsetof(replay_opts, bundle)},
      {"--settings", offsetof(replay_opts, settings)},
      {"--experiments", offsetof(replay_opts, experiments)},
      {"--experiments-state", offsetof(replay_opts, state)},
      {"--catalog-log", offsetof(replay_opts, catalog_log)}};
  for (int i = 2; i < argc; i++) {
    if (strcmp(argv[i], "--all") == 0) { o->all = true; continue; }
    if (strcmp(argv[i], "--quiet") == 0) { o->quiet = true; continue; }
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) return 1;
    size_t k = 0;
    while (k < sizeof VALUES / sizeof VALUES[0] && strcmp(argv[i], VALUES[k].name) != 0) k++;
    if (k == sizeof VALUES / sizeof VALUES[0] || i + 1 == argc) {
      fprintf(stderr, "recctl replay: %s '%s'\n", i + 1 == argc ? "missing value for" : "unknown flag", argv[i]);
      return 2;
    }
    *(const char **)((char *)o + VALUES[k].off) = argv[++i];
  }
  if (!o->log || !o->bundle || (!o->all == !o->request_id)) {
    fputs("recctl replay: needs --log, --bundle and one of --request-id or --all\n", stderr);
    return 2;
  }
  return 0;
}

/* ---- the app ---- */

static void publish_view(void *arg, bundle *view) { app_swap(arg, view); }

/* recd's app on the bundle and settings, as recd sets it up. The
 * experiment state defaults to a file that does not exist: a replay uses
 * the experiments file's shares unless told which changes were in force. */
static int open_app(replayer *r, const char *settings, const char *exps, rec_error *err) {
  static char fb[4200], fs[4200], fe[4200], fst[4200];
  snprintf(fb, sizeof fb, "--bundle=%s", r->o->bundle);
  snprintf(fs, sizeof fs, "--ranking_config=%s", settings ? settings : "");
  snprintf(fe, sizeof fe, "--experiments=%s", exps ? exps : "");
  snprintf(fst, sizeof fst, "--experiments_state=%s", r->o->state ? r->o->state : "/nonexistent/recctl-replay.state");
  char *argv[] = {"recd", fb, fs, fe, fst, "--call_log=off", NULL};
  FILE *devnull = fopen("/dev/null", "w");
  int rc = config_parse(6, argv, &r->cfg, devnull ? devnull : stderr, err);
  if (devnull) fclose(devnull);
  if (rc) return rc;
  retrieve_thread_init();
  rec_log_set_level(REC_LOG_WARN);
  app_init(&r->ap, &r->cfg);
  r->ap.pinned = &r->pin;
  if (online_new(&r->ap.online) != 0) {
    app_destroy(&r->ap);
    return rec_fail(err, REC_ENOMEM, "out of memory");
  }
  char old_v[REC_ID_MAX + 1], new_v[REC_ID_MAX + 1];
  if ((rc = app_reload(&r->ap, r->cfg.bundle, old_v, new_v, err))) {
    online_free(r->ap.online);
    app_destroy(&r->ap);
    return rc;
  }
  if (settings) rec_hash_file(settings, &r->settings_hash, &(uint64_t){0}, NULL);
  if (exps) rec_hash_file(exps, &r->experiments_hash, &(uint64_t){0}, NULL);
  bundle *b = app_acquire(&r->ap);
  r->generation = b->catalog->generation;
  bundle_unref(b);
  r->opened = true;
  return 0;
}

static void close_app(replayer *r) {
  if (!r->opened) return;
  live_catalog_close(r->ap.live);
  r->ap.live = NULL;
  online_free(r->ap.online);
  app_destroy(&r->ap);
  bundle_unref(r->base);
  if (r->tmp[0]) {
    char p[128];
    snprintf(p, sizeof p, "%s/catalog.log", r->tmp);
    unlink(p);
    rmdir(r->tmp);
  }
}

/* Shows the catalog as it was at 'gen': the bundle with the first 'gen'
 * batches of the catalog log applied (a copy of that prefix, so recd's own
 * log is only read). */
static int at_generation(replayer *r, uint64_t gen, rec_error *err) {
  if (gen == r->generation) return 0;
  if (!r->o->catalog_log)
    return rec_fail(err, REC_EPRECOND, "the call saw catalog generation %" PRIu64 " (this bundle alone is %" PRIu64
                    "): give recd's catalog log with --catalog-log DIR", gen, r->generation);
  if (!r->tmp[0]) {
    snprintf(r->tmp, sizeof r->tmp, "/tmp/recctl-replay.XXXXXX");
    if (!mkdtemp(r->tmp)) {
      r->tmp[0] = '\0';
      return rec_fail(err, REC_EIO, "cannot make a temporary directory");
    }
  }
  if (!r->base && bundle_load(r->cfg.bundle, &r->base, err)) return err->code;
  live_catalog_close(r->ap.live);
  r->ap.live = NULL;
  int rc = catlog_copy_prefix(r->o->catalog_log, gen, r->tmp, err);
  if (!rc) rc = live_catalog_open(r->tmp, publish_view, &r->ap, &r->ap.live, err);
  if (!rc) rc = live_catalog_set_base(r->ap.live, r->base, err);
  if (!rc) r->generation = gen;
  return rc;
}

/* ---- one record ---- */

static bool same_str(const char *a, const char *b) { return strcmp(a ? a : "", b ? b : "") == 0; }

static bool same_list(char **a, size_t na, char **b, size_t nb) {
  if (na != nb) return false;
  for (size_t i = 0; i < na; i++)
    if (!same_str(a[i], b[i])) return false;
  return true;
}

static void arms_text(const Rec__V1__RecommendResponse *r, char *out, size_t cap) {
  out[0] = '\0';
  for (size_t i = 0, w = 0; i < r->n_arms && w < cap; i++)
    w += (size_t)snprintf(out + w, cap - w, "%s%s/%s", i ? "," : "", r->arms[i]->experiment, r->arms[i]->arm);
}

/* Prints each difference between the logged and the replayed response;
 * returns how many there were. */
static size_t compare(const char *id, const Rec__V1__RecommendResponse *x, const Rec__V1__RecommendResponse *y,
                      bool quiet) {
  size_t diffs = 0, n = x->n_items > y->n_items ? x->n_items : y->n_items;
  for (size_t i = 0; i < n; i++) {
    const Rec__V1__ScoredItem *a = i < x->n_items ? x->items[i] : NULL, *b = i < y->n_items ? y->items[i] : NULL;
    if (a && b && strcmp(a->item_id, b->item_id) == 0 && a->score == b->score) continue;
    diffs++;
    if (quiet) continue;
    if (a && b && strcmp(a->item_id, b->item_id) == 0)
      printf("  %s #%zu %s score %.9g -> %.9g (delta %+.3g)\n", id, i + 1, a->item_id, a->score, b->score,
             (double)b->score - a->score);
    else
      printf("  %s #%zu logged %s %.9g, replayed %s %.9g\n", id, i + 1, a ? a->item_id : "(none)", a ? a->score : 0,
             b ? b->item_id : "(none)", b ? b->score : 0);
  }
  char ax[1024], ay[1024];
  arms_text(x, ax, sizeof ax);
  arms_text(y, ay, sizeof ay);
  struct { const char *what; bool same; const char *a, *b; } more[] = {
      {"arms", strcmp(ax, ay) == 0, ax, ay},
      {"bundle_version", same_str(x->bundle_version, y->bundle_version), x->bundle_version, y->bundle_version},
      {"next_cursor", same_str(x->next_cursor, y->next_cursor), "", ""},
      {"degraded_reasons", same_list(x->degraded_reasons, x->n_degraded_reasons, y->degraded_reasons,
                                     y->n_degraded_reasons), "", ""}};
  for (size_t i = 0; i < sizeof more / sizeof more[0]; i++) {
    if (more[i].same) continue;
    diffs++;
    if (!quiet) printf("  %s %s differ: logged '%s', replayed '%s'\n", id, more[i].what, more[i].a, more[i].b);
  }
  return diffs;
}

/* Puts back what the call read that changes while recd serves. */
static int restore(replayer *r, const Rec__V1__DecisionRecord *d, const Rec__V1__RecommendRequest *q,
                   arena *a, rec_error *err) {
  int rc = at_generation(r, d->catalog_generation, err);
  if (rc) return rc;
  online_item *on = arena_calloc(a, d->n_online + 1, sizeof *on);
  if (!on) return rec_fail(err, REC_ENOMEM, "out of memory");
  for (size_t i = 0; i < d->n_online; i++)
    on[i] = (online_item){d->online[i]->item_id, d->online[i]->last_time, d->online[i]->count,
                          d->online[i]->purchased};
  if (online_put(r->ap.online, q->user_id, strlen(q->user_id), on, d->n_online))
    return rec_fail(err, REC_ENOMEM, "out of memory");
  bundle *b = app_acquire(&r->ap);
  size_t added = b ? bundle_added(b) : 0;
  if (d->n_added_events && (!b->added_events || added != d->n_added_events))
    rc = rec_fail(err, REC_EMISMATCH, "the log counts events for %zu items added live, this catalog has %zu",
                  d->n_added_events, added);
  for (size_t i = 0; !rc && i < d->n_added_events; i++) atomic_store(b->added_events[i], d->added_events[i]);
  bundle_unref(b);
  r->pin.degrade = (d->deadline_ef ? REC_DEGRADE_EF : 0u) | (d->deadline_mmr ? REC_DEGRADE_MMR : 0u) |
                   (d->deadline_popularity ? REC_DEGRADE_POPULARITY : 0u);
  return rc;
}

/* Replays one record: 0 identical, 1 different, -1 not replayed. */
static int replay_one(replayer *r, const Rec__V1__DecisionRecord *d, arena *a) {
  rec_error err = {0};
  Rec__V1__RecommendRequest *q =
      rec__v1__recommend_request__unpack(NULL, d->request.len, d->request.data);
  Rec__V1__RecommendResponse *logged =
      rec__v1__recommend_response__unpack(NULL, d->response.len, d->response.data);
  int result = -1;
  if (!q || !logged || !q->user_id) {
    printf("%s: not replayed: the logged request or response does not parse\n", d->request_id);
    goto free_msgs;
  }
  /* The call's own id and time, whatever the request said. */
  Rec__V1__Context ctx_msg = REC__V1__CONTEXT__INIT;
  if (!q->context) q->context = &ctx_msg;
  Rec__V1__Context *qc = q->context;
  int64_t was_time = qc->time_unix_ms;
  char *was_id = q->request_id;
  qc->time_unix_ms = d->time_unix_ms;
  q->request_id = d->request_id;
  if (restore(r, d, q, a, &err)) {
    printf("%s: not replayed: %s\n", d->request_id, err.msg);
  } else {
    rpc_ctx ctx;
    rpc_local_begin(&ctx, a, &r->ap, INT64_MAX);
    const ProtobufCMessage *out = NULL;
    int rc = rpc_local_call(&ctx, &h_recommend, &q->base, &out);
    if (rc) {
      printf("%s: not replayed: Recommend failed: %s\n", d->request_id, ctx.err.msg);
    } else {
      size_t diffs = compare(d->request_id, logged, (const Rec__V1__RecommendResponse *)out, r->o->quiet);
      result = diffs > 0;
      if (diffs || !r->o->all)
        printf("%s: %s (%zu items%s)\n", d->request_id, diffs ? "DIFFERENT" : "identical", logged->n_items,
               diffs ? arena_printf(a, ", %zu differences", diffs) : "");
    }
    rpc_local_end(&ctx);
  }
  qc->time_unix_ms = was_time;
  q->request_id = was_id;
  if (q->context == &ctx_msg) q->context = NULL;
free_msgs:
  if (q) rec__v1__recommend_request__free_unpacked(q, NULL);
  if (logged) rec__v1__recommend_response__free_unpacked(logged, NULL);
  return result;
}

/* The settings and experiments files: the flags, else those the log names. */
static int first_open(replayer *r, const Rec__V1__DecisionRecord *d, rec_error *err) {
  const char *s = r->o->settings ? r->o->settings : d->settings_path[0] ? d->settings_path : NULL;
  const char *e = r->o->experiments ? r->o->experiments : d->experiments_path[0] ? d->experiments_path : NULL;
  return open_app(r, s, e, err);
}

static void note_settings(replayer *r, const Rec__V1__DecisionRecord *d, tally *t) {
  if (d->settings_hash == r->settings_hash && d->experiments_hash == r->experiments_hash) return;
  if (t->settings_changed++ == 0)
    printf("note: the settings or experiments differ from those logged (settings %016" PRIx64 " logged, %016" PRIx64
           " now; experiments %016" PRIx64 " logged, %016" PRIx64 " now)\n", d->settings_hash, r->settings_hash,
           d->experiments_hash, r->experiments_hash);
}

static int walk(replayer *r, tally *t) {
  declog_reader *rd;
  rec_error err = {0};
  if (declog_reader_open(r->o->log, &rd, &err)) {
    fprintf(stderr, "recctl replay: %s\n", err.msg);
    return -1;
  }
  arena a;
  arena_init(&a, 0);
  const uint8_t *p;
  size_t n;
  uint64_t off;
  int rc;
  while ((rc = declog_next(rd, &p, &n, &off, &err)) == 1) {
    Rec__V1__DecisionRecord *d = rec__v1__decision_record__unpack(NULL, n, p);
    if (!d) {
      printf("%s: offset %" PRIu64 ": a record whose checksum holds does not parse\n", r->o->log, off);
      t->failed++;
      continue;
    }
    if (r->o->all || strcmp(d->request_id, r->o->request_id) == 0) {
      t->records++;
      if (!r->opened && first_open(r, d, &err)) {
        fprintf(stderr, "recctl replay: %s\n", err.msg);
        rec__v1__decision_record__free_unpacked(d, NULL);
        break;
      }
      note_settings(r, d, t);
      int res = replay_one(r, d, &a);
      t->identical += res == 0, t->different += res == 1, t->failed += res < 0;
      arena_reset(&a);
    }
    rec__v1__decision_record__free_unpacked(d, NULL);
  }
  if (rc < 0) {
    printf("recctl replay: %s\n", err.msg);
    t->failed++;
  }
  arena_destroy(&a);
  declog_reader_free(rd);
  return r->opened || !t->records ? 0 : -1;
}

int cmd_replay(int argc, char **argv) {
  replay_opts o = {0};
  int rc = parse(argc, argv, &o);
  if (rc) {
    usage(rc == 1 ? stdout : stderr);
    return rc == 1 ? 0 : 2;
  }
  replayer r = {.o = &o};
  tally t = {0};
  if (walk(&r, &t) != 0) {
    close_app(&r);
    return 1;
  }
  close_app(&r);
  if (!t.records) {
    fprintf(stderr, "recctl replay: %s: %s\n", o.log, o.all ? "no records" : "no record with that request id");
    return 1;
  }
  if (o.all)
    printf("replayed %zu records: %zu identical, %zu different, %zu not replayed\n", t.records, t.identical,
           t.different, t.failed);
  return t.identical == t.records && !t.failed ? 0 : 1;
}
