/* server/handlers.h - the rec.v1 services recd implements, one file each:
 *   svc_ranking.c    Ranking.Recommend, Ranking.SimilarItems
 *   svc_retrieval.c  Retrieval.Retrieve (the candidate tier on its own)
 *   svc_events.c     Events.Record
 *   svc_admin.c      Admin.Status, Admin.Reload
 * Each converts its request (server/convert.h), runs the pipeline and
 * converts the answer back; main.c lists them in its method table. Every
 * handler expects rpc_ctx.app to be a server/app.h 'app'. */
#ifndef REC_HANDLERS_H
#define REC_HANDLERS_H
#include "ranking/config.h"
#include "ranking/experiments.h"
#include "retrieval/bundle.h"
#include "server/rpc.h"

extern const rpc_method h_recommend;     /* /rec.v1.Ranking/Recommend */
extern const rpc_method h_similar_items; /* /rec.v1.Ranking/SimilarItems */
extern const rpc_method h_retrieve;      /* /rec.v1.Retrieval/Retrieve */
extern const rpc_method h_record;        /* /rec.v1.Events/Record */
extern const rpc_method h_status;        /* /rec.v1.Admin/Status */
extern const rpc_method h_reload;        /* /rec.v1.Admin/Reload */
/* The serving port's Admin methods: PERMISSION_DENIED, pointing at the admin listener. */
extern const rpc_method h_reload_denied, h_status_denied;
extern const rpc_method h_catalog_upsert;  /* /rec.v1.Catalog/Upsert (admin listener) */
extern const rpc_method h_catalog_delete;  /* /rec.v1.Catalog/Delete (admin listener) */
extern const rpc_method h_catalog_upsert_denied, h_catalog_delete_denied; /* the serving port's */

extern const rpc_method h_experiments;        /* /rec.v1.Admin/Experiments */
extern const rpc_method h_control_experiment; /* /rec.v1.Admin/ControlExperiment */
extern const rpc_method h_experiments_denied, h_control_experiment_denied; /* the serving port's */

/* ---- shared by the services (svc_common.c) ---- */

/* What a serving call leaves in rpc_ctx.note for the per-call log line and
 * the per-arm metrics (main.c's observe). */
typedef struct call_note {
  const char *request_id;   /* the request's, or the one recd made */
  int slot[EXP_MAX_LAYERS]; /* the call's experiment arms' metric slots */
  size_t n_slots;
  const char *arms;         /* "experiment/arm,..." or NULL */
  bool timed;               /* the stage timings below are set */
  int64_t tower_ns, ann_ns, itemcf_ns, pop_ns, sources_ns, rank_ns, mmr_ns;
} call_note;

struct app_ranking;
/* svc_acquire, with the whole ranking snapshot (settings and experiments). */
int svc_acquire_snapshot(rpc_ctx *ctx, const bundle **b, const struct app_ranking **r);

/* The bundle and ranking settings a call uses, held until the RPC layer has
 * packed the reply (whose ids point into the bundle): a reload swaps both
 * for later calls only. 'cfg' may be NULL. UNAVAILABLE before the first load. */
int svc_acquire(rpc_ctx *ctx, const bundle **b, const rank_config **cfg);
/* The request's request_id, else the caller's x-request-id metadata, else a
 * new "recd-<n>"; it becomes the call's x-request-id reply metadata. NULL
 * when out of memory. */
char *svc_request_id(rpc_ctx *ctx, const char *given);
#endif
