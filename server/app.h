/* server/app.h - the state a recd process serves from: its configuration and
 * the current bundle. Handlers take a reference to the bundle for the length
 * of a call, so a swap never pulls it from under them. Thread-safe. */
#ifndef REC_APP_H
#define REC_APP_H
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include "ranking/config.h"
#include "ranking/experiments.h"
#include "server/attribution.h"
#include "retrieval/bundle.h"
#include "server/config.h"
#include "server/eventlog.h"
#include "server/live_catalog.h"
#include "server/online.h"

/* How a reload ends: rc 0 and the versions before and after ("" when
 * none), or an error code and its message in 'err'. */
typedef void (*app_reload_fn)(void *arg, int rc, const char *old_v, const char *new_v,
                              const rec_error *err);
/* Queues a reload of 'path' to run off the serving threads and returns 0
 * ('done' runs once later, on another thread; not loading at all when the
 * caller's deadline passes first), or fails at once (shutting down, too
 * many queued, out of memory) with 'err' filled and never calls 'done'. */
typedef int (*app_reload_start_fn)(void *owner, const char *path, int64_t deadline_ns, app_reload_fn done,
                                   void *arg, rec_error *err);

typedef struct app {
  const recd_config *cfg;
  app_reload_start_fn reload_start; /* NULL: this process cannot reload on request */
  void *reload_owner;               /* its first argument */
  pthread_mutex_t ranking_mu;  /* guards 'ranking' */
  struct app_ranking *ranking; /* the ranking tier's settings, swapped on reload */
  int64_t started_ns;          /* rec_mono_ns() at start */
  atomic_uint_fast64_t seq;    /* request ids made by the server */
  pthread_mutex_t mu;          /* guards 'current' */
  bundle *current;             /* NULL until the first load */
  pthread_mutex_t reload_mu;   /* one reload at a time */
  eventlog *log;               /* NULL without --event_log */
  online *online;              /* events since the bundle, per user */
  struct fanout *shards;       /* role=ranking: the candidate tier; NULL otherwise */
  atomic_uint_fast64_t events_applied; /* last event-log sequence applied to 'online' */
  struct rpc_server *srv;      /* the serving listener (for Admin.Status); may be NULL */
  live_catalog *live;          /* NULL without --catalog_log */
  atomic_bool listener_stuck;  /* the serving listener stopped accepting (selfprobe.h) */
  char bundle_root[4096];      /* real path Admin.Reload loads under; "" = by name refused */
  attribution *attr;           /* what experiment arms' slates led to; NULL without --experiments
                                  (made before serving, never changed) */
  pthread_mutex_t exp_mu;      /* one experiments change (reload or ControlExperiment) at a time */
  struct declog *decisions;    /* the decision log (declog.h); NULL without --decision_log */
  const struct app_pinned *pinned; /* recctl replay: what a call takes from its record; NULL serving */
} app;

/* What `recctl replay` pins for the next call instead of taking it from the
 * deadline: the logged call's deadline degradations (recommend.h). */
typedef struct app_pinned {
  unsigned degrade;            /* REC_DEGRADE_* flags */
} app_pinned;

/* A bundle an experiment arm serves from, held beside the main one. */
typedef struct app_resident {
  char name[256];              /* as the experiments file names it */
  char real[4096];             /* its real path under the bundle root */
  bundle *b;
} app_resident;

/* A runtime experiment change (ControlExperiment), as the state file keeps it. */
typedef struct exp_change {
  int64_t time_ms;
  char who[272];               /* the credential: "token:NAME", "cert:SUBJECT" */
  char layer[EXP_NAME_MAX + 1];
  char salt[EXP_SALT_MAX + 1]; /* the layer's salt then: a new salt drops the change */
  char action[8];              /* "share", "stop", "resume" */
  char arm[EXP_NAME_MAX + 1];
  uint32_t share;
} exp_change;

/* The ranking settings a request uses, reference-counted like the bundle:
 * the settings file, and the experiments compiled against it with the
 * resident bundles their arms name. */
typedef struct app_ranking {
  rank_config *cfg;
  exp_plan *plan;              /* NULL without --experiments */
  int slot[EXP_MAX_LAYERS][EXP_MAX_ARMS]; /* each arm's metric slot (metrics.h), -1: none */
  app_resident *res;
  size_t n_res;
  uint64_t settings_hash;      /* XXH3-64 of the settings file (0: defaults), for the decision log */
  uint64_t experiments_hash;   /* and of the experiments file (0: none) */
  exp_change *changes;         /* runtime changes in force, oldest first */
  size_t n_changes;
  atomic_int refs;
} app_ranking;

void app_init(app *a, const recd_config *cfg);
void app_destroy(app *a);
/* A reference to the current bundle (release with bundle_unref), or NULL. */
bundle *app_acquire(app *a);
/* A reference to the current ranking settings (release with
 * app_ranking_unref), or NULL before the first load. */
app_ranking *app_acquire_ranking(app *a);
void app_ranking_unref(app_ranking *r);                /* NULL is a no-op */
/* The resident bundle named 'name' in 'r', or NULL. */
const bundle *app_resident_bundle(const app_ranking *r, const char *name);

/* ---- experiments (app_experiments.c) ---- */

/* Reads --experiments into 'r' (whose cfg is set) and loads the bundles its
 * arms name, reusing those 'cur' holds; *e gets the parsed file. No lock. */
int  app_exp_prepare(app *a, app_ranking *r, const app_ranking *cur, experiments **e, rec_error *err);
/* With exp_mu held: applies the state file's changes to 'e' (taking it
 * over) and compiles it into r->plan. */
int  app_exp_finish(app *a, app_ranking *r, experiments *e, rec_error *err);
/* ControlExperiment: rec.v1.ControlAction 'action' (1 share, 2 stop,
 * 3 resume) on layer 'layer' ('arm' and 'share' for a share), made by
 * 'who'. Written to the state file (fsync'd), then served. REC_EPRECOND
 * without experiments, REC_ENOTFOUND, REC_EINVAL, REC_EIO. */
int  app_control_experiment(app *a, const char *layer, int action, const char *arm, uint32_t share,
                            const char *who, rec_error *err);

/* Makes 'b' current, taking over the caller's reference; drops the old one.
 * Requests in flight keep the bundle they started with. */
void app_swap(app *a, bundle *b);

/* Loads the bundle at 'path', checks it (every file against the manifest,
 * every shape, and an index recall of at least 0.9 on smoke queries against
 * exact search), reads the ranking settings file again, and swaps both in;
 * on any failure the current bundle and settings keep serving.
 * One reload at a time; the load runs on the calling thread. Writes the
 * versions before and after (empty when none) into old_v / new_v. */
int app_reload(app *a, const char *path, char old_v[REC_ID_MAX + 1], char new_v[REC_ID_MAX + 1],
               rec_error *err);
#endif
