/* server/svc_events.c - Events.Record: OK only once every event of the call
 * is on disk. The handler writes the batch to the event log and returns
 * RPC_PENDING; the log's commit thread completes the call when the group
 * commit that covers it is durable, and the events count for the user from
 * then on (online state). No worker waits for an fdatasync. */
#include "server/handlers.h"
#include "common/clock.h"
#include "rec/v1/events.pb-c.h"
#include "server/app.h"
#include "server/attribution.h"
#include "server/convert.h"
#include "server/metrics.h"

#include <string.h>

#define MAX_EVENTS 1000
#define MAX_QUANTITY 1000000
#define EARLIEST_MS 946684800000LL   /* 2000-01-01: older times are a client's bug */
#define AHEAD_MS (24LL * 3600 * 1000) /* clocks may disagree, by a day at most */

typedef struct batch {
  rpc_ctx *ctx;
  ev_record *recs;
  const char **slate;         /* per event: Event.slate_request_id */
  size_t n;
  Rec__V1__RecordResponse *r; /* made before the append: a durable batch always gets its OK */
} batch;

static int check_event(rpc_ctx *ctx, size_t i, const Rec__V1__Event *e, int64_t now_ms, ev_record *r) {
  char field[48];
  int rc;
  snprintf(field, sizeof field, "events[%zu].user_id", i);
  if ((rc = conv_check_id(ctx, field, e->user_id))) return rc;
  snprintf(field, sizeof field, "events[%zu].item_id", i);
  if ((rc = conv_check_id(ctx, field, e->item_id))) return rc;
  if (e->type < REC__V1__EVENT_TYPE__EVENT_TYPE_VIEW || e->type > REC__V1__EVENT_TYPE__EVENT_TYPE_CLICK)
    return rpc_fail(ctx, REC_EINVAL, "events[%zu].type must be VIEW, ADD_TO_CART, PURCHASE or CLICK", i);
  snprintf(field, sizeof field, "events[%zu].slate_request_id", i);
  if ((rc = conv_check_text(ctx, field, e->slate_request_id, REC_ID_MAX))) return rc;
  bool purchase = e->type == REC__V1__EVENT_TYPE__EVENT_TYPE_PURCHASE;
  if (e->quantity < (purchase ? 1 : 0) || e->quantity > MAX_QUANTITY)
    return rpc_fail(ctx, REC_EINVAL, "events[%zu].quantity must be %d to %d, got %d (returns are not events)",
                    i, purchase ? 1 : 0, MAX_QUANTITY, e->quantity);
  if (!(e->price >= 0) || e->price > 1e12)
    return rpc_fail(ctx, REC_EINVAL, "events[%zu].price must be 0 to 1e12, got %g", i, e->price);
  if (e->time_unix_ms != 0 && (e->time_unix_ms < EARLIEST_MS || e->time_unix_ms > now_ms + AHEAD_MS))
    return rpc_fail(ctx, REC_EINVAL, "events[%zu].time_unix_ms must be 0 (now) or from 2000-01-01 to a day "
                    "ahead of the server's clock, got %lld", i, (long long)e->time_unix_ms);
  size_t ul = strlen(e->user_id), il = strlen(e->item_id);
  *r = (ev_record){.time_ms = e->time_unix_ms ? e->time_unix_ms : now_ms, .type = (int32_t)e->type,
                   .quantity = e->quantity ? e->quantity : 1, .price = e->price,
                   .user = e->user_id, .item = e->item_id, .user_len = (uint16_t)ul,
                   .item_len = (uint16_t)il};
  return 0;
}

/* On the log's commit thread, once the batch is durable or refused. */
static void on_durable(void *arg, int rc, uint64_t last) {
  batch *bt = arg;
  rpc_ctx *ctx = bt->ctx;
  app *ap = ctx->app;
  if (rc) {
    rpc_complete(ctx, rpc_fail(ctx, REC_EUNAVAIL, "event log: the disk refused a write; events not recorded"), NULL);
    return;
  }
  for (size_t i = 0; i < bt->n; i++) {
    const ev_record *e = &bt->recs[i];
    online_apply(ap->online, e);
    live_catalog_note_event(ap->live, e->item, e->item_len);
    attribution_event(ap->attr, bt->slate[i], e->user, e->user_len, e->item, e->item_len, e->type, e->quantity,
                      e->price, e->time_ms);
  }
  /* Batches finish in sequence order, but the mark only ever moves forward. */
  uint_fast64_t seen = atomic_load(&ap->events_applied);
  while (seen < last && !atomic_compare_exchange_weak(&ap->events_applied, &seen, last)) {
  }
  metrics_events(bt->n);
  bt->r->accepted = (uint32_t)bt->n;
  bt->r->last_sequence = last;
  rpc_complete(ctx, 0, &bt->r->base);
}

static int record(rpc_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **out) {
  const Rec__V1__RecordRequest *q = (const Rec__V1__RecordRequest *)in;
  app *ap = ctx->app;
  (void)out;
  if (!ap->log)
    return rpc_fail(ctx, REC_EPRECOND, "this recd runs without --event_log; events are not recorded");
  if (q->n_events < 1 || q->n_events > MAX_EVENTS)
    return rpc_fail(ctx, REC_EINVAL, "events must hold 1 to %d events, got %zu", MAX_EVENTS, q->n_events);
  batch *bt = arena_alloc(ctx->arena, sizeof *bt);
  ev_record *recs = arena_calloc(ctx->arena, q->n_events, sizeof *recs);
  const char **slate = arena_calloc(ctx->arena, q->n_events, sizeof *slate);
  Rec__V1__RecordResponse *r = arena_alloc(ctx->arena, sizeof *r);
  if (!bt || !recs || !slate || !r) return REC_ENOMEM;
  rec__v1__record_response__init(r);
  int64_t now = rec_wall_ms();
  int rc;
  for (size_t i = 0; i < q->n_events; i++)
    if ((rc = check_event(ctx, i, q->events[i], now, &recs[i]))) return rc;
  for (size_t i = 0; i < q->n_events; i++) slate[i] = q->events[i]->slate_request_id;
  *bt = (batch){ctx, recs, slate, q->n_events, r};
  if ((rc = eventlog_append_async(ap->log, recs, q->n_events, on_durable, bt, &ctx->err)))
    return ctx->err.code = rc == REC_ENOMEM ? REC_ENOMEM : REC_EUNAVAIL; /* the log's message stays */
  return RPC_PENDING; /* on_durable owns the call from here */
}

const rpc_method h_record = {"/rec.v1.Events/Record", &rec__v1__record_request__descriptor,
                             &rec__v1__record_response__descriptor, record};
