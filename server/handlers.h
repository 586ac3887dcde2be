/* server/handlers.h - the rec.v1 methods recd implements. Each converts the
 * protobuf request to plain C, validates it, runs the pipeline, and converts
 * the result back; main.c lists them in its method table. */
#ifndef REC_HANDLERS_H
#define REC_HANDLERS_H
#include "server/rpc.h"

extern const rpc_method h_recommend;   /* /rec.v1.Ranking/Recommend */
extern const rpc_method h_similar_items; /* /rec.v1.Ranking/SimilarItems */
extern const rpc_method h_status;      /* /rec.v1.Admin/Status */
extern const rpc_method h_reload;      /* /rec.v1.Admin/Reload */
extern const rpc_method h_record;      /* /rec.v1.Events/Record */
extern const rpc_method h_retrieve;    /* /rec.v1.Retrieval/Retrieve */
#endif
