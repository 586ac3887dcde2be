/* tests/test.h - what every suite shares: registration and fixtures. */
#ifndef REC_TEST_H
#define REC_TEST_H
#include <CUnit/CUnit.h>
#include <stddef.h>

typedef struct test_case {
  const char *name;
  void (*fn)(void);
} test_case;

/* Adds a CUnit suite named 'name' with the NULL-terminated 'cases'. */
void test_add_suite(const char *name, const test_case *cases);

/* A fresh empty directory under $TMPDIR, removed by test_cleanup at exit. */
const char *test_tmpdir(void);
/* test_tmpdir()/name, in a static buffer per call slot (4 slots rotate). */
const char *test_path(const char *name);
/* Writes 'text' to 'path'; fails the test on error. */
void test_write_file(const char *path, const char *text);
/* A synthetic bundle (tools/offline/synth.h) made once per process: 'items' items,
 * 200 users, dim 16, 4 categories, seed 7, with the given FAISS index type. */
const char *test_synth_bundle(const char *name, size_t items, const char *index_type);

/* Each suite's registration function. */
void suite_arena(void);
void suite_experiments(void);
void suite_auth(void);
void suite_catlog(void);
void suite_declog(void);
void suite_trace(void);
void suite_strmap(void);
void suite_npy(void);
void suite_catalog(void);
void suite_tower(void);
void suite_ann(void);
void suite_bundle(void);
void suite_signals(void);
void suite_retrieve(void);
void suite_rank(void);
void suite_config(void);
void suite_recommend(void);
void suite_rpc(void);
void suite_synth(void);
void suite_rankmetrics(void);
void suite_chart(void);
void suite_als(void);
void suite_ease(void);
void suite_cfgtable(void);
void suite_rank_config(void);
void suite_dataset(void);
void suite_features(void);
void suite_twotower(void);
void suite_pipeline(void);
void suite_svc_ranking(void);
void suite_svc_retrieval(void);
void suite_svc_events(void);
void suite_svc_admin(void);
void suite_metrics(void);
void suite_rpc_wire(void);
void suite_rpc_reflect(void);
void suite_eventlog(void);
void suite_online(void);
void suite_admin_http(void);
#endif
