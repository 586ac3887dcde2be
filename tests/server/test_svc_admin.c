/* tests/server/test_svc_admin.c - Admin.Status and Admin.Reload in process:
 * a reload goes pending, loads off the calling thread and answers with the
 * versions; a refused bundle keeps the current one serving. */
#include "rec/v1/admin.pb-c.h"
#include "server/handlers.h"
#include "tests/server/world.h"
#include "tests/test.h"

#include <stdlib.h>
#include <string.h>

static void status_describes_the_bundle(void) {
  world w;
  world_open(&w, NULL, false);
  Rec__V1__StatusRequest q = REC__V1__STATUS_REQUEST__INIT;
  const ProtobufCMessage *out;
  CU_ASSERT_EQUAL_FATAL(world_call(&w, &h_status, &q.base, INT64_MAX, &out), 0);
  const Rec__V1__StatusResponse *r = (const Rec__V1__StatusResponse *)out;
  CU_ASSERT_EQUAL(r->item_count, 300);
  CU_ASSERT_EQUAL(r->user_count, 200);
  CU_ASSERT_EQUAL(r->dim, 16);
  CU_ASSERT_STRING_EQUAL(r->role, "all");
  CU_ASSERT(r->bundle_version[0] != '\0');
  CU_ASSERT(world_fail_each_allocation(&w, &h_status, &q.base) >= 1);
  world_close(&w);
}

static void reload_answers_with_versions(void) {
  world w;
  world_open(&w, NULL, false);
  bundle *b = app_acquire(&w.ap);
  char *version = strdup(b->version);
  bundle_unref(b);
  Rec__V1__ReloadRequest q = REC__V1__RELOAD_REQUEST__INIT;
  q.bundle_path = "";
  const ProtobufCMessage *out;
  CU_ASSERT_EQUAL_FATAL(world_call(&w, &h_reload, &q.base, INT64_MAX, &out), 0);
  const Rec__V1__ReloadResponse *r = (const Rec__V1__ReloadResponse *)out;
  CU_ASSERT_STRING_EQUAL(r->previous_version, version);
  CU_ASSERT_STRING_EQUAL(r->version, version);
  q.bundle_path = "no-such-bundle";
  CU_ASSERT_EQUAL(world_call(&w, &h_reload, &q.base, INT64_MAX, &out), REC_EDENIED); /* no root: no names */
  snprintf(w.ap.bundle_root, sizeof w.ap.bundle_root, "%s", test_tmpdir());
  CU_ASSERT_EQUAL(world_call(&w, &h_reload, &q.base, INT64_MAX, &out), REC_ENOTFOUND);
  CU_ASSERT_PTR_NOT_NULL(strstr(w.ctx.err.msg, "no bundle 'no-such-bundle' under the bundle root"));
  q.bundle_path = "/etc";
  CU_ASSERT_EQUAL(world_call(&w, &h_reload, &q.base, INT64_MAX, &out), REC_EDENIED);
  CU_ASSERT_PTR_NOT_NULL(strstr(w.ctx.err.msg, "not under the bundle root"));
  test_write_file(test_path("not-a-bundle"), "x");
  q.bundle_path = "not-a-bundle"; /* under the root, but no bundle: the loader says so */
  CU_ASSERT_EQUAL(world_call(&w, &h_reload, &q.base, INT64_MAX, &out), REC_EINVAL);
  CU_ASSERT(w.ctx.err.msg[0] != '\0');
  b = app_acquire(&w.ap);
  CU_ASSERT_STRING_EQUAL(b->version, version); /* the current bundle serves on */
  bundle_unref(b);
  q.bundle_path = "";
  CU_ASSERT(world_fail_each_allocation(&w, &h_reload, &q.base) >= 1);
  free(version);
  world_close(&w);
}

static void reload_needs_a_loader(void) {
  world w;
  world_open(&w, NULL, false);
  w.ap.reload_start = NULL;
  Rec__V1__ReloadRequest q = REC__V1__RELOAD_REQUEST__INIT;
  q.bundle_path = "";
  const ProtobufCMessage *out;
  CU_ASSERT_EQUAL(world_call(&w, &h_reload, &q.base, INT64_MAX, &out), REC_EUNAVAIL);
  world_close(&w);
}

void suite_svc_admin(void) {
  static const test_case cases[] = {
      {"status describes the bundle", status_describes_the_bundle},
      {"reload answers with versions", reload_answers_with_versions},
      {"reload needs a loader", reload_needs_a_loader},
      {NULL, NULL}};
  test_add_suite("svc_admin", cases);
}
