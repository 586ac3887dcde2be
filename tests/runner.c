/* tests/runner.c - runs one CUnit suite by name (one ctest entry each, so a
 * crash is isolated), or all of them. Exits non-zero on any failure. */
#include "tests/test.h"
#include "tools/offline/synth.h"

#include <CUnit/Basic.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const struct {
  const char *name;
  void (*add)(void);
} SUITES[] = {
    {"arena", suite_arena},       {"strmap", suite_strmap},   {"npy", suite_npy},
    {"catalog", suite_catalog},   {"tower", suite_tower},     {"ann", suite_ann},
    {"bundle", suite_bundle},     {"retrieve", suite_retrieve}, {"rank", suite_rank},
    {"signals", suite_signals},
    {"config", suite_config},     {"recommend", suite_recommend}, {"rpc", suite_rpc},
    {"synth", suite_synth},       {"rankmetrics", suite_rankmetrics}, {"chart", suite_chart},
    {"als", suite_als},           {"cfgtable", suite_cfgtable}, {"rank_config", suite_rank_config},
    {"experiments", suite_experiments},
    {"dataset", suite_dataset},   {"features", suite_features}, {"twotower", suite_twotower},
    {"pipeline", suite_pipeline},     {"ease", suite_ease},
    {"svc_ranking", suite_svc_ranking}, {"svc_retrieval", suite_svc_retrieval},
    {"svc_events", suite_svc_events},   {"svc_admin", suite_svc_admin},
    {"metrics", suite_metrics},         {"rpc_wire", suite_rpc_wire}, {"rpc_reflect", suite_rpc_reflect},
    {"eventlog", suite_eventlog},       {"online", suite_online},
    {"admin_http", suite_admin_http},   {"auth", suite_auth}, {"catlog", suite_catlog},
    {"declog", suite_declog}, {"trace", suite_trace},
};
enum { NSUITES = sizeof SUITES / sizeof SUITES[0] };

static char tmpdir[256];

void test_add_suite(const char *name, const test_case *cases) {
  CU_pSuite s = CU_add_suite(name, NULL, NULL);
  for (const test_case *c = cases; c->name; c++) CU_add_test(s, c->name, c->fn);
}

const char *test_tmpdir(void) {
  if (!tmpdir[0]) {
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(tmpdir, sizeof tmpdir, "%s/rec_tests.XXXXXX", base);
    if (!mkdtemp(tmpdir)) {
      perror("mkdtemp");
      exit(2);
    }
  }
  return tmpdir;
}

const char *test_path(const char *name) {
  static char bufs[4][512];
  static int slot;
  char *b = bufs[slot++ % 4];
  snprintf(b, 512, "%s/%s", test_tmpdir(), name);
  return b;
}

void test_write_file(const char *path, const char *text) {
  FILE *fp = fopen(path, "w");
  CU_ASSERT_PTR_NOT_NULL_FATAL(fp);
  fputs(text, fp);
  fclose(fp);
}

const char *test_synth_bundle(const char *name, size_t items, const char *index_type) {
  const char *dir = test_path(name);
  struct stat st;
  if (stat(dir, &st) == 0) return dir;
  synth_opts o = {.items = items, .users = 200, .dim = 16, .categories = 4, .seed = 7,
                  .index_type = index_type, .ef_search = 64};
  rec_error err = {0};
  int rc = synth_bundle(dir, &o, &err);
  if (rc) fprintf(stderr, "synth_bundle: %s\n", err.msg);
  CU_ASSERT_EQUAL_FATAL(rc, 0);
  return dir;
}

static int rm_entry(const char *p, const struct stat *s, int flag, struct FTW *f) {
  (void)s; (void)flag; (void)f;
  return remove(p);
}

static void cleanup(void) {
  if (tmpdir[0]) nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int main(int argc, char **argv) {
  if (CU_initialize_registry() != CUE_SUCCESS) return 2;
  int added = 0;
  for (int i = 0; i < NSUITES; i++) {
    if (argc > 1 && strcmp(argv[1], SUITES[i].name) != 0) continue;
    SUITES[i].add();
    added++;
  }
  if (!added) {
    fprintf(stderr, "no suite named '%s'\n", argv[1]);
    return 2;
  }
  atexit(cleanup);
  CU_basic_set_mode(CU_BRM_VERBOSE);
  CU_basic_run_tests();
  unsigned fails = CU_get_number_of_failures();
  unsigned tests_failed = CU_get_number_of_tests_failed();
  CU_cleanup_registry();
  return fails > 0 || tests_failed > 0 ? 1 : 0;
}
