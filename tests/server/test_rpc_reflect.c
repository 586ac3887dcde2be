/* tests/server/test_rpc_reflect.c - server reflection's answers: which
 * services a listener lists, which file (and imports) a symbol or a file
 * name yields from the embedded descriptor set, what a question about
 * nothing gets, and every allocation failure of an answer. */
#include "grpc/reflection/v1/reflection.pb-c.h"
#include "internal/descriptor_subset.pb-c.h"
#include "rec/v1/ranking.pb-c.h"
#include "server/handlers.h"
#include "server/rpc_internal.h"
#include "tests/test.h"

#include <string.h>

typedef Grpc__Reflection__V1__ServerReflectionRequest refl_req;
typedef Grpc__Reflection__V1__ServerReflectionResponse refl_resp;

static const char *const SERVICES[] = {"rec.v1.Ranking", "grpc.health.v1.Health"};

static refl_resp *ask(refl_req *q, arena *a) {
  refl_resp *r = NULL;
  CU_ASSERT_EQUAL_FATAL(rpc__reflect_answer(SERVICES, 2, q, a, &r), 0);
  CU_ASSERT_EQUAL(r->original_request->message_request_case, q->message_request_case);
  CU_ASSERT_PTR_EQUAL(r->original_request->host, q->host);
  return r;
}

/* The names of the files an answer carries, space-separated, in order. */
static const char *file_names(const refl_resp *r, char *buf, size_t cap) {
  buf[0] = '\0';
  if (r->message_response_case != GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE)
    return buf;
  const Grpc__Reflection__V1__FileDescriptorResponse *f = r->file_descriptor_response;
  for (size_t i = 0; i < f->n_file_descriptor_proto; i++) {
    Recd__Internal__FileDescriptorProto *fd = recd__internal__file_descriptor_proto__unpack(
        NULL, f->file_descriptor_proto[i].len, f->file_descriptor_proto[i].data);
    CU_ASSERT_PTR_NOT_NULL_FATAL(fd);
    size_t n = strlen(buf);
    snprintf(buf + n, cap - n, "%s%s", n ? " " : "", fd->name);
    recd__internal__file_descriptor_proto__free_unpacked(fd, NULL);
  }
  return buf;
}

static void listed_services_skip_stubs(void) {
  static const rpc_method *const methods[] = {&h_recommend, &h_similar_items, &h_record, &h_status_denied,
                                              &h_reload_denied};
  static const rpc_method *const stubs[] = {&h_status_denied, &h_reload_denied};
  rpc_server_opts o = {.methods = methods, .n_methods = 5, .unlisted = stubs, .n_unlisted = 2};
  arena a;
  arena_init(&a, 0);
  const char **names;
  size_t n;
  CU_ASSERT_EQUAL_FATAL(rpc__reflect_services(&o, &a, &names, &n), 0);
  CU_ASSERT_EQUAL_FATAL(n, 5);
  CU_ASSERT_STRING_EQUAL(names[0], "rec.v1.Ranking");
  CU_ASSERT_STRING_EQUAL(names[1], "rec.v1.Events");
  CU_ASSERT_STRING_EQUAL(names[2], "grpc.health.v1.Health");
  CU_ASSERT_STRING_EQUAL(names[3], "grpc.reflection.v1.ServerReflection");
  CU_ASSERT_STRING_EQUAL(names[4], "grpc.reflection.v1alpha.ServerReflection");
  arena_destroy(&a);
}

static void list_services_answers_the_list(void) {
  arena a;
  arena_init(&a, 0);
  refl_req q = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
  q.host = "h";
  q.message_request_case = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES;
  q.list_services = "*";
  refl_resp *r = ask(&q, &a);
  CU_ASSERT_STRING_EQUAL(r->valid_host, "h");
  CU_ASSERT_EQUAL_FATAL(r->message_response_case,
                        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE);
  CU_ASSERT_EQUAL_FATAL(r->list_services_response->n_service, 2);
  CU_ASSERT_STRING_EQUAL(r->list_services_response->service[0]->name, "rec.v1.Ranking");
  CU_ASSERT_STRING_EQUAL(r->list_services_response->service[1]->name, "grpc.health.v1.Health");
  arena_destroy(&a);
}

static void symbols_of_every_kind_find_their_file(void) {
  static const struct {
    const char *symbol, *files;
  } cases[] = {
      {"rec.v1.Ranking", "rec/v1/ranking.proto rec/v1/common.proto"},             /* service */
      {"rec.v1.Ranking.SimilarItems", "rec/v1/ranking.proto rec/v1/common.proto"}, /* method */
      {"rec.v1.Filters", "rec/v1/common.proto"},                                   /* message */
      {"rec.v1.Filters.in_stock_only", "rec/v1/common.proto"},                     /* field */
      {"rec.v1.EventType", "rec/v1/events.proto"},                                 /* enum */
      {"rec.v1.EVENT_TYPE_VIEW", "rec/v1/events.proto"},                           /* enum value */
      {"grpc.health.v1.HealthCheckResponse.ServingStatus", "grpc/health/v1/health.proto"}, /* nested enum */
      {"grpc.health.v1.HealthCheckResponse.SERVICE_UNKNOWN", "grpc/health/v1/health.proto"},
      {"grpc.reflection.v1.ServerReflectionRequest.message_request", "grpc/reflection/v1/reflection.proto"},
      {"grpc.reflection.v1alpha.ServerReflection", "grpc/reflection/v1alpha/reflection.proto"},
      {"grpc.health.v1", "grpc/health/v1/health.proto"},                           /* package */
  };
  arena a;
  arena_init(&a, 0);
  char buf[512];
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    refl_req q = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
    q.message_request_case = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL;
    q.file_containing_symbol = (char *)cases[i].symbol;
    CU_ASSERT_STRING_EQUAL(file_names(ask(&q, &a), buf, sizeof buf), cases[i].files);
  }
  refl_req q = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
  q.message_request_case = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME;
  q.file_by_filename = "rec/v1/retrieval.proto";
  CU_ASSERT_STRING_EQUAL(file_names(ask(&q, &a), buf, sizeof buf), "rec/v1/retrieval.proto rec/v1/common.proto");
  arena_destroy(&a);
}

static void questions_about_nothing_are_error_responses(void) {
  arena a;
  arena_init(&a, 0);
  Grpc__Reflection__V1__ExtensionRequest ext = GRPC__REFLECTION__V1__EXTENSION_REQUEST__INIT;
  ext.containing_type = "rec.v1.Event";
  ext.extension_number = 100;
  struct {
    int which;
    const char *arg;
    int code;
    const char *says;
  } cases[] = {
      {GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL, "rec.v1.Nope",
       GRPC_STATUS_NOT_FOUND, "no symbol 'rec.v1.Nope'"},
      {GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL, "rec.v1.",
       GRPC_STATUS_NOT_FOUND, "fully qualified"},
      {GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME, "ranking.proto",
       GRPC_STATUS_NOT_FOUND, "no file named 'ranking.proto'"},
      {GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION, NULL,
       GRPC_STATUS_NOT_FOUND, "no extensions"},
      {GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE, "rec.v1.Event",
       GRPC_STATUS_NOT_FOUND, "no extensions of 'rec.v1.Event'"},
      {GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST__NOT_SET, NULL, GRPC_STATUS_INVALID_ARGUMENT,
       "names no question"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    refl_req q = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
    q.message_request_case = cases[i].which;
    q.file_containing_symbol = (char *)cases[i].arg; /* a union: the same pointer for every string case */
    if (cases[i].which == GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION)
      q.file_containing_extension = &ext;
    refl_resp *r = ask(&q, &a);
    CU_ASSERT_EQUAL_FATAL(r->message_response_case,
                          GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE);
    CU_ASSERT_EQUAL(r->error_response->error_code, cases[i].code);
    CU_ASSERT_PTR_NOT_NULL(strstr(r->error_response->error_message, cases[i].says));
  }
  /* The client's text is cut: an answer stays small whatever was asked. */
  char huge[4000];
  memset(huge, 'x', sizeof huge - 1);
  huge[sizeof huge - 1] = '\0';
  refl_req q = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
  q.message_request_case = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL;
  q.file_containing_symbol = huge;
  CU_ASSERT(strlen(ask(&q, &a)->error_response->error_message) < 300);
  arena_destroy(&a);
}

/* The answer echoes the request's known fields, never bytes the server
 * does not understand (found by fuzz_rpc: they went back to the client). */
static void echo_drops_unknown_fields(void) {
  static const uint8_t bytes[] = {0x3a, 0x00, 0xa2, 0x06, 0x03, 'x', 'y', 'z'}; /* list_services, field 100 */
  arena a;
  arena_init(&a, 0);
  rec_error err = {0};
  refl_req *q = (refl_req *)rpc_decode(bytes, sizeof bytes, &grpc__reflection__v1__server_reflection_request__descriptor,
                                       NULL, &a, &err);
  CU_ASSERT_PTR_NOT_NULL_FATAL(q);
  CU_ASSERT_EQUAL(q->base.n_unknown_fields, 1);
  refl_resp *r = ask(q, &a);
  CU_ASSERT_EQUAL(r->original_request->base.n_unknown_fields, 0);
  uint8_t out[4096];
  size_t n = protobuf_c_message_get_packed_size(&r->base);
  CU_ASSERT_FATAL(n < sizeof out);
  protobuf_c_message_pack(&r->base, out);
  rpc_limits strict = {.max_repeated = SIZE_MAX, .max_unknown = 0, .max_depth = 8};
  CU_ASSERT_PTR_NOT_NULL(rpc_decode(out, n, &grpc__reflection__v1__server_reflection_response__descriptor, &strict,
                                    &a, &err));
  arena_destroy(&a);
}

/* Every allocation an answer makes may fail: REC_ENOMEM, never a crash or
 * a half-built answer. */
static void every_allocation_failure_is_enomem(void) {
  arena a;
  arena_init(&a, 0);
  refl_req q = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
  q.message_request_case = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL;
  q.file_containing_symbol = "rec.v1.Ranking";
  int rc = REC_ENOMEM;
  size_t n;
  for (n = 0; n < 100 && rc == REC_ENOMEM; n++) {
    refl_resp *r = NULL;
    arena_reset(&a);
    arena_fail_after(&a, n);
    rc = rpc__reflect_answer(SERVICES, 2, &q, &a, &r);
    CU_ASSERT(rc == 0 ? r != NULL : r == NULL);
  }
  CU_ASSERT_EQUAL(rc, 0);
  CU_ASSERT(n > 2); /* the walk did fail some allocations first */
  arena_fail_after(&a, SIZE_MAX);
  arena_destroy(&a);
}

void suite_rpc_reflect(void) {
  static const test_case cases[] = {
      {"listed services skip stubs", listed_services_skip_stubs},
      {"list_services answers the list", list_services_answers_the_list},
      {"symbols of every kind find their file", symbols_of_every_kind_find_their_file},
      {"questions about nothing are error responses", questions_about_nothing_are_error_responses},
      {"the echo drops unknown fields", echo_drops_unknown_fields},
      {"every allocation failure is ENOMEM", every_allocation_failure_is_enomem},
      {NULL, NULL}};
  test_add_suite("rpc_reflect", cases);
}
