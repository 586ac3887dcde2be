/* tests/server/test_svc_retrieval.c - Retrieval.Retrieve in process:
 * candidates with their sources, known users, limits, and every allocation
 * failure answered cleanly. */
#include "rec/v1/retrieval.pb-c.h"
#include "server/handlers.h"
#include "tests/server/world.h"
#include "tests/test.h"

#include <stdlib.h>
#include <string.h>

static void candidates_for_a_known_user(void) {
  world w;
  world_open(&w, NULL, false);
  Rec__V1__RetrieveRequest q = REC__V1__RETRIEVE_REQUEST__INIT;
  q.user_id = "U00005";
  q.num_candidates = 40;
  q.segment = -1;
  const ProtobufCMessage *out;
  CU_ASSERT_EQUAL_FATAL(world_call(&w, &h_retrieve, &q.base, INT64_MAX, &out), 0);
  const Rec__V1__RetrieveResponse *r = (const Rec__V1__RetrieveResponse *)out;
  CU_ASSERT_TRUE(r->known_user);
  CU_ASSERT(r->n_candidates >= 40);
  CU_ASSERT_EQUAL(r->shard_count, 1);
  size_t ann = 0;
  for (size_t i = 0; i < r->n_candidates; i++) {
    CU_ASSERT(r->candidates[i]->n_scores >= 1);
    ann += r->candidates[i]->scores[0]->source == REC__V1__SOURCE__SOURCE_ANN;
  }
  CU_ASSERT(ann >= 40);
  q.user_id = "never-seen";
  CU_ASSERT_EQUAL_FATAL(world_call(&w, &h_retrieve, &q.base, INT64_MAX, &out), 0);
  CU_ASSERT_FALSE(((const Rec__V1__RetrieveResponse *)out)->known_user);
  world_close(&w);
}

static void limits_are_enforced(void) {
  world w;
  world_open(&w, NULL, false);
  Rec__V1__RetrieveRequest q = REC__V1__RETRIEVE_REQUEST__INIT;
  q.user_id = "U00005";
  const ProtobufCMessage *out;
  q.num_candidates = 0;
  CU_ASSERT_EQUAL(world_call(&w, &h_retrieve, &q.base, INT64_MAX, &out), REC_EINVAL);
  CU_ASSERT_PTR_NOT_NULL(strstr(w.ctx.err.msg, "num_candidates must be between 1 and 10000"));
  q.num_candidates = 10001;
  CU_ASSERT_EQUAL(world_call(&w, &h_retrieve, &q.base, INT64_MAX, &out), REC_EINVAL);
  q.num_candidates = 10;
  q.user_id = "";
  CU_ASSERT_EQUAL(world_call(&w, &h_retrieve, &q.base, INT64_MAX, &out), REC_EINVAL);
  CU_ASSERT_PTR_NOT_NULL(strstr(w.ctx.err.msg, "user_id"));
  world_close(&w);
}

static void every_allocation_failure_is_clean(void) {
  world w;
  world_open(&w, NULL, false);
  const bundle *b = app_acquire(&w.ap);
  char *recent = strdup(b->catalog->ids[4]);
  bundle_unref((bundle *)b);
  Rec__V1__RetrieveRequest q = REC__V1__RETRIEVE_REQUEST__INIT;
  q.user_id = "U00005";
  q.num_candidates = 30;
  q.recent_item_ids = &recent;
  q.n_recent_item_ids = 1;
  CU_ASSERT(world_fail_each_allocation(&w, &h_retrieve, &q.base) > 5);
  free(recent);
  world_close(&w);
}

void suite_svc_retrieval(void) {
  static const test_case cases[] = {
      {"candidates for a known user", candidates_for_a_known_user},
      {"limits are enforced", limits_are_enforced},
      {"every allocation failure is clean", every_allocation_failure_is_clean},
      {NULL, NULL}};
  test_add_suite("svc_retrieval", cases);
}
