/* server/metrics.h - what recd counts, rendered as Prometheus text for the
 * admin port's /metrics. Every recorder is a handful of relaxed atomic adds,
 * safe from any thread; rendering reads the same atomics. */
#ifndef REC_METRICS_H
#define REC_METRICS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "common/candidate.h"
#include "server/recommend.h"

enum { METRICS_MAX_METHODS = 16, METRICS_STATUSES = 17 };
/* Experiment arms with their own series in a process's life. */
enum { METRICS_MAX_ARMS = 256 };

typedef enum {
  STAGE_USER_TOWER, STAGE_ANN, STAGE_SOURCES, STAGE_RANKING, STAGE_TOTAL,
  /* finer: sources = item-CF + popularity; ranking = rules and blend + MMR
   * (ordering the slate); response = building the reply message */
  STAGE_ITEMCF, STAGE_POPULARITY, STAGE_MMR, STAGE_RESPONSE, STAGE_COUNT
} metrics_stage;

/* Names the RPC methods (index = the RPC layer's method index). Call once,
 * before or while serving (calls that finish before it are not counted);
 * 'names' must outlive the metrics. */
void metrics_set_methods(const char *const *names, size_t n);
/* Method 'method''s name once metrics_set_methods ran, else NULL; any thread. */
const char *metrics_method_name(size_t method);
/* How many methods metrics_set_methods named (0 before). */
size_t metrics_method_count(void);

/* One finished call of method 'method' with gRPC status 'status', taking 'ns'. */
void metrics_call(size_t method, int status, int64_t ns);
void metrics_observe_stage(metrics_stage s, int64_t ns);
void metrics_candidates(const size_t per_source[REC_SRC_COUNT]);
/* A response that was degraded for 'reason'. */
void metrics_degraded(rec_degraded reason);
/* A Recommend response served with 'strategy'. */
void metrics_strategy(rec_strategy s);
void metrics_reload(int ok);

/* The slot of an experiment arm (experiment, its salt, arm): the same
 * names always get the same slot, for the life of the process, so the
 * label set stays bounded across experiment reloads, and a new salt (a new
 * experiment) starts from zero. -1 once METRICS_MAX_ARMS exist. The names
 * are [A-Za-z0-9_-] and the salt [A-Za-z0-9_.:-] (ranking/experiments.h):
 * label values as they are. */
int  metrics_arm_slot(const char *experiment, const char *salt, const char *arm);
/* A Recommend call assigned to the arm in 'slot' ended with gRPC 'status'. */
void metrics_arm_call(int slot, int status, int64_t ns);
/* A Recommend response for the arm in 'slot' was degraded for 'reason'. */
void metrics_arm_degraded(int slot, rec_degraded reason);
/* A Recommend chosen for the decision log was queued for its writer
 * (dropped false) or dropped because the writer's queue was full. */
void metrics_decision(bool dropped);
/* n events made durable and applied. */
void metrics_events(size_t n);

/* Renders every metric. 'version' is the bundle serving now ("" if none);
 * 'inflight' the calls in flight. Returns a malloc'd string (caller frees),
 * or NULL when memory ran out (never a text cut short). */
typedef struct metrics_log {
  int enabled;                  /* recd runs with an event log */
  uint64_t durable, applied;    /* last sequence on disk / in the online state */
  uint64_t corrupt;             /* damaged records skipped when the log was opened */
  uint64_t syncs;               /* group commits (fdatasync rounds) so far */
  int catalog_enabled;          /* recd runs with a catalog log (rec.v1.Catalog) */
  uint64_t catalog_generation;  /* last catalog batch on disk */
  uint64_t catalog_overlay;     /* items the catalog batches changed, added or deleted */
  struct attribution *attribution; /* per-arm outcomes (attribution.h); may be NULL */
} metrics_log;
char *metrics_render(const char *version, int serving, int64_t uptime_s, int inflight,
                     const metrics_log *log);
#endif
