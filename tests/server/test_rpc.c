/* tests/server/test_rpc.c - the RPC layer in-process with the real gRPC C
 * core on 127.0.0.1: replies, status mapping, the caller's deadline, health,
 * UNIMPLEMENTED for methods not built or not known, and a clean stop. */
#include "common/clock.h"
#include "grpc/health/v1/health.pb-c.h"
#include "rec/v1/admin.pb-c.h"
#include "rec/v1/events.pb-c.h"
#include "server/rpc.h"
#include "server/rpc_client.h"
#include "server/rpc_internal.h"
#include "tests/test.h"

#include <stdio.h>
#include <string.h>

/* Replies with the time left before the caller's deadline, in ms, as uptime. */
static int echo_deadline(rpc_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **out) {
  (void)in;
  Rec__V1__StatusResponse *r = arena_alloc(ctx->arena, sizeof *r);
  rec__v1__status_response__init(r);
  r->role = "test";
  r->uptime_seconds = (uint64_t)((ctx->deadline_ns - rec_mono_ns()) / 1000000);
  *out = &r->base;
  return 0;
}

static int refuse(rpc_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **out) {
  const Rec__V1__ReloadRequest *q = (const Rec__V1__ReloadRequest *)in;
  (void)out;
  if (strcmp(q->bundle_path, "internal") == 0) return rpc_fail(ctx, REC_EINTERNAL, "boom");
  return rpc_fail(ctx, REC_EINVAL, "bundle_path '%s' is not a directory", q->bundle_path);
}

static const rpc_method m_status = {"/rec.v1.Admin/Status", &rec__v1__status_request__descriptor,
                                    &rec__v1__status_response__descriptor, echo_deadline};
static const rpc_method m_reload = {"/rec.v1.Admin/Reload", &rec__v1__reload_request__descriptor,
                                    &rec__v1__reload_response__descriptor, refuse};
static const rpc_method m_record = {"/rec.v1.Events/Record", &rec__v1__record_request__descriptor,
                                    &rec__v1__record_response__descriptor, NULL};
static const rpc_method *const METHODS[] = {&m_status, &m_reload, &m_record};

static rpc_server *start(char *target) {
  rpc_server_opts o = {.listen = "127.0.0.1:0", .threads = 2, .requests_per_method = 2,
                       .max_message_bytes = 1 << 20, .max_concurrent_streams = 16,
                       .methods = METHODS, .n_methods = 3};
  rpc_server *s = NULL;
  int port = 0;
  rec_error e = {0};
  CU_ASSERT_EQUAL(rpc_server_start(&o, &s, &port, &e), 0);
  CU_ASSERT(port > 0);
  snprintf(target, 64, "127.0.0.1:%d", port);
  return s;
}

static int health(rpc_client *c, const char *svc, arena *a, rpc_status *st) {
  Grpc__Health__V1__HealthCheckRequest q = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
  q.service = (char *)svc;
  ProtobufCMessage *resp;
  if (rpc_client_call(c, "/grpc.health.v1.Health/Check", &q.base,
                      &grpc__health__v1__health_check_response__descriptor, 2000, a, &resp, st))
    return -1;
  return ((Grpc__Health__V1__HealthCheckResponse *)resp)->status;
}

static void replies_and_statuses(void) {
  char target[64];
  rpc_server *s = start(target);
  CU_ASSERT_PTR_NOT_NULL_FATAL(s);
  rpc_client *c;
  rpc_client_new(target, NULL, NULL, &c, NULL);
  arena a;
  arena_init(&a, 0);
  rpc_status st;
  ProtobufCMessage *resp;
  Rec__V1__StatusRequest sq = REC__V1__STATUS_REQUEST__INIT;
  CU_ASSERT_EQUAL_FATAL(rpc_client_call(c, "/rec.v1.Admin/Status", &sq.base,
                                        &rec__v1__status_response__descriptor, 1500, &a, &resp, &st), 0);
  Rec__V1__StatusResponse *r = (Rec__V1__StatusResponse *)resp;
  CU_ASSERT_STRING_EQUAL(r->role, "test");
  /* The handler saw the caller's 1500 ms deadline, minus transit (which a
   * loaded machine can stretch: the first call also connects), plus the
   * few ms gRPC's wire timeout may round up by (1508 and 1509 were seen,
   * about once in 30 runs). */
  CU_ASSERT(r->uptime_seconds > 0 && r->uptime_seconds <= 1550);

  Rec__V1__ReloadRequest rq = REC__V1__RELOAD_REQUEST__INIT;
  rq.bundle_path = "/nope";
  CU_ASSERT_NOT_EQUAL(rpc_client_call(c, "/rec.v1.Admin/Reload", &rq.base,
                                      &rec__v1__reload_response__descriptor, 2000, &a, &resp, &st), 0);
  CU_ASSERT_EQUAL(st.code, GRPC_STATUS_INVALID_ARGUMENT);
  CU_ASSERT_STRING_EQUAL(st.message, "bundle_path '/nope' is not a directory");
  rq.bundle_path = "internal";
  rpc_client_call(c, "/rec.v1.Admin/Reload", &rq.base, &rec__v1__reload_response__descriptor,
                  2000, &a, &resp, &st);
  CU_ASSERT_EQUAL(st.code, GRPC_STATUS_INTERNAL);

  Rec__V1__RecordRequest ev = REC__V1__RECORD_REQUEST__INIT;
  rpc_client_call(c, "/rec.v1.Events/Record", &ev.base, &rec__v1__record_response__descriptor,
                  2000, &a, &resp, &st);
  CU_ASSERT_EQUAL(st.code, GRPC_STATUS_UNIMPLEMENTED);
  rpc_client_call(c, "/no.such.Service/Method", &ev.base, &rec__v1__record_response__descriptor,
                  2000, &a, &resp, &st);
  CU_ASSERT_EQUAL(st.code, GRPC_STATUS_UNIMPLEMENTED);
  CU_ASSERT_PTR_NOT_NULL(strstr(st.message, "/no.such.Service/Method"));

  arena_destroy(&a);
  rpc_client_free(c);
  rpc_server_stop(s, 1000);
}

static void health_follows_serving(void) {
  char target[64];
  rpc_server *s = start(target);
  CU_ASSERT_PTR_NOT_NULL_FATAL(s);
  rpc_client *c;
  rpc_client_new(target, NULL, NULL, &c, NULL);
  arena a;
  arena_init(&a, 0);
  rpc_status st;
  CU_ASSERT_EQUAL(health(c, "", &a, &st), GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING);
  rpc_server_set_serving(s, true);
  CU_ASSERT_EQUAL(health(c, "", &a, &st), GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
  CU_ASSERT_EQUAL(health(c, "rec.v1.Admin", &a, &st), GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
  CU_ASSERT_EQUAL(health(c, "rec.v1.Nope", &a, &st), -1);
  CU_ASSERT_EQUAL(st.code, GRPC_STATUS_NOT_FOUND);
  arena_destroy(&a);
  rpc_client_free(c);
  rpc_server_stop(s, 1000);
}

static void address_in_use_is_refused(void) {
  char target[64];
  rpc_server *s = start(target);
  CU_ASSERT_PTR_NOT_NULL_FATAL(s);
  rpc_server_opts o = {.listen = target, .threads = 1, .requests_per_method = 1,
                       .max_message_bytes = 1024, .max_concurrent_streams = 1,
                       .methods = METHODS, .n_methods = 3};
  rpc_server *s2 = NULL;
  int port;
  rec_error e = {0};
  CU_ASSERT_EQUAL(rpc_server_start(&o, &s2, &port, &e), REC_EINVAL);
  CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "cannot listen on"));
  rpc_server_stop(s, 1000);
}

static void one_status_per_code(void) {
  CU_ASSERT_EQUAL(rpc__status_of(0), GRPC_STATUS_OK);
  CU_ASSERT_EQUAL(rpc__status_of(REC_EINVAL), GRPC_STATUS_INVALID_ARGUMENT);
  CU_ASSERT_EQUAL(rpc__status_of(REC_ETOOBIG), GRPC_STATUS_RESOURCE_EXHAUSTED);
  CU_ASSERT_EQUAL(rpc__status_of(REC_EOVERLOAD), GRPC_STATUS_RESOURCE_EXHAUSTED);
  CU_ASSERT_EQUAL(rpc__status_of(REC_EUNAVAIL), GRPC_STATUS_UNAVAILABLE);
  CU_ASSERT_EQUAL(rpc__status_of(REC_EDEADLINE), GRPC_STATUS_DEADLINE_EXCEEDED);
  CU_ASSERT_EQUAL(rpc__status_of(REC_EUNIMPL), GRPC_STATUS_UNIMPLEMENTED);
  CU_ASSERT_EQUAL(rpc__status_of(-999), GRPC_STATUS_INTERNAL);
}

void suite_rpc(void) {
  static const test_case cases[] = {{"replies_and_statuses", replies_and_statuses},
                                    {"health_follows_serving", health_follows_serving},
                                    {"address_in_use_is_refused", address_in_use_is_refused},
                                    {"one_status_per_code", one_status_per_code},
                                    {NULL, NULL}};
  test_add_suite("rpc", cases);
}
