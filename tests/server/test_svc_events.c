/* tests/server/test_svc_events.c - Events.Record in process: an answer only
 * once the batch is durable (the handler goes pending and the log's commit
 * thread completes it), the events then count for the user, bad events are
 * refused whole, and every allocation failure is answered cleanly. */
#include "rec/v1/events.pb-c.h"
#include "server/handlers.h"
#include "tests/server/world.h"
#include "tests/test.h"

#include <string.h>

static Rec__V1__Event event(const char *user, const char *item, Rec__V1__EventType type) {
  Rec__V1__Event e = REC__V1__EVENT__INIT;
  e.user_id = (char *)user;
  e.item_id = (char *)item;
  e.type = type;
  e.time_unix_ms = 1700000000000;
  e.quantity = 1;
  return e;
}

static void durable_then_counted(void) {
  const char *flags[] = {"--event_commit_us=20000", NULL};
  world w;
  world_open(&w, flags, true);
  Rec__V1__Event e[2] = {event("visitor-1", "I00001", REC__V1__EVENT_TYPE__EVENT_TYPE_VIEW),
                         event("visitor-1", "I00002", REC__V1__EVENT_TYPE__EVENT_TYPE_PURCHASE)};
  Rec__V1__Event *ep[2] = {&e[0], &e[1]};
  Rec__V1__RecordRequest q = REC__V1__RECORD_REQUEST__INIT;
  q.events = ep;
  q.n_events = 2;
  const ProtobufCMessage *out;
  CU_ASSERT_EQUAL_FATAL(world_call(&w, &h_record, &q.base, INT64_MAX, &out), 0);
  const Rec__V1__RecordResponse *r = (const Rec__V1__RecordResponse *)out;
  CU_ASSERT_EQUAL(r->accepted, 2);
  CU_ASSERT_EQUAL(r->last_sequence, 2);
  CU_ASSERT_EQUAL(eventlog_last_seq(w.ap.log), 2); /* durable before the answer */
  CU_ASSERT_EQUAL(atomic_load(&w.ap.events_applied), 2);
  online_item *items;
  CU_ASSERT_EQUAL(online_get(w.ap.online, "visitor-1", 9, &w.a, &items), 2);
  CU_ASSERT_EQUAL_FATAL(world_call(&w, &h_record, &q.base, INT64_MAX, &out), 0);
  CU_ASSERT_EQUAL(((const Rec__V1__RecordResponse *)out)->last_sequence, 4);
  world_close(&w);
}

static void bad_events_are_refused_whole(void) {
  world w;
  world_open(&w, NULL, true);
  Rec__V1__Event e[2] = {event("u", "I00001", REC__V1__EVENT_TYPE__EVENT_TYPE_VIEW),
                         event("u", "I00002", (Rec__V1__EventType)42)};
  Rec__V1__Event *ep[2] = {&e[0], &e[1]};
  Rec__V1__RecordRequest q = REC__V1__RECORD_REQUEST__INIT;
  q.events = ep;
  q.n_events = 2;
  const ProtobufCMessage *out;
  CU_ASSERT_EQUAL(world_call(&w, &h_record, &q.base, INT64_MAX, &out), REC_EINVAL);
  CU_ASSERT_PTR_NOT_NULL(strstr(w.ctx.err.msg, "events[1].type"));
  CU_ASSERT_EQUAL(eventlog_last_seq(w.ap.log), 0); /* nothing of the batch was written */
  e[1] = event("u", "", REC__V1__EVENT_TYPE__EVENT_TYPE_VIEW);
  CU_ASSERT_EQUAL(world_call(&w, &h_record, &q.base, INT64_MAX, &out), REC_EINVAL);
  CU_ASSERT_PTR_NOT_NULL(strstr(w.ctx.err.msg, "events[1].item_id is required"));
  e[1] = event("u", "I00002", REC__V1__EVENT_TYPE__EVENT_TYPE_VIEW);
  e[1].price = -1;
  CU_ASSERT_EQUAL(world_call(&w, &h_record, &q.base, INT64_MAX, &out), REC_EINVAL);
  q.n_events = 0;
  CU_ASSERT_EQUAL(world_call(&w, &h_record, &q.base, INT64_MAX, &out), REC_EINVAL);
  CU_ASSERT_PTR_NOT_NULL(strstr(w.ctx.err.msg, "events must hold 1 to 1000 events, got 0"));
  world_close(&w);
}

static void without_a_log_events_are_refused(void) {
  world w;
  world_open(&w, NULL, false);
  Rec__V1__Event e = event("u", "I00001", REC__V1__EVENT_TYPE__EVENT_TYPE_VIEW);
  Rec__V1__Event *ep = &e;
  Rec__V1__RecordRequest q = REC__V1__RECORD_REQUEST__INIT;
  q.events = &ep;
  q.n_events = 1;
  const ProtobufCMessage *out;
  CU_ASSERT_EQUAL(world_call(&w, &h_record, &q.base, INT64_MAX, &out), REC_EPRECOND);
  CU_ASSERT_PTR_NOT_NULL(strstr(w.ctx.err.msg, "--event_log"));
  world_close(&w);
}

static void every_allocation_failure_is_clean(void) {
  world w;
  world_open(&w, NULL, true);
  Rec__V1__Event e[3] = {event("u1", "I00001", REC__V1__EVENT_TYPE__EVENT_TYPE_VIEW),
                         event("u1", "I00002", REC__V1__EVENT_TYPE__EVENT_TYPE_ADD_TO_CART),
                         event("u2", "I00003", REC__V1__EVENT_TYPE__EVENT_TYPE_PURCHASE)};
  Rec__V1__Event *ep[3] = {&e[0], &e[1], &e[2]};
  Rec__V1__RecordRequest q = REC__V1__RECORD_REQUEST__INIT;
  q.events = ep;
  q.n_events = 3;
  size_t runs = world_fail_each_allocation(&w, &h_record, &q.base);
  CU_ASSERT(runs >= 3);
  /* No failed run wrote anything: only the one that succeeded is in the log. */
  CU_ASSERT_EQUAL(eventlog_last_seq(w.ap.log), 3);
  world_close(&w);
}

/* The event log's own allocations on the request path fail in turn too. */
static void log_allocation_failure_is_clean(void) {
  world w;
  world_open(&w, NULL, true);
  Rec__V1__Event e = event("u1", "I00001", REC__V1__EVENT_TYPE__EVENT_TYPE_VIEW);
  Rec__V1__Event *ep = &e;
  Rec__V1__RecordRequest q = REC__V1__RECORD_REQUEST__INIT;
  q.events = &ep;
  q.n_events = 1;
  const ProtobufCMessage *out;
  unsigned long n = 1;
  for (;; n++) {
    eventlog__fail_alloc(n);
    int rc = world_call(&w, &h_record, &q.base, INT64_MAX, &out);
    eventlog__fail_alloc(0);
    if (rc == 0) break;
    CU_ASSERT_EQUAL(rc, REC_ENOMEM);
    CU_ASSERT_EQUAL(eventlog_last_seq(w.ap.log), 0);
    if (n > 1000) break;
  }
  CU_ASSERT(n > 1 && n < 1000);
  CU_ASSERT_EQUAL(((const Rec__V1__RecordResponse *)out)->last_sequence, 1);
  world_close(&w);
}

void suite_svc_events(void) {
  static const test_case cases[] = {
      {"durable, then counted", durable_then_counted},
      {"bad events are refused whole", bad_events_are_refused_whole},
      {"without a log events are refused", without_a_log_events_are_refused},
      {"every allocation failure is clean", every_allocation_failure_is_clean},
      {"log allocation failure is clean", log_allocation_failure_is_clean},
      {NULL, NULL}};
  test_add_suite("svc_events", cases);
}
