/* tests/fuzz/fuzz_experiments.c - the experiments file (ranking/experiments.h
 * experiments_parse): the input is the file. A file that parses is
 * compiled against the default ranking settings (every arm's set.KEY
 * applied in every combination) and asked to assign a few units; a refusal
 * must leave nothing allocated. */
#include "ranking/experiments.h"
#include "tests/fuzz/fuzz.h"

#include <stdio.h>
#include <string.h>

static rank_config *base;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc; (void)argv;
  fuzz_quiet();
  return rank_config_load(NULL, &base, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  experiments *e = NULL;
  exp_plan *p = NULL;
  rec_error err = {0};
  int rc = experiments_parse((const char *)data, size, "fuzz.conf", &e, &err);
  if (rc == 0) {
    rc = exp_compile(e, base, &p, &err);
    for (int i = 0; rc == 0 && i < 8; i++) {
      char id[16];
      int n = snprintf(id, sizeof id, "u%d", i);
      exp_assignment as;
      exp_assign(p, id, (size_t)n, i % 2 ? id : NULL, (size_t)n, &as);
      if (!as.cfg) __builtin_trap();
      for (size_t l = 0; l < as.n_layers; l++)
        if (as.arm[l] >= (int)e->layers[l].n_arms) __builtin_trap();
    }
    exp_plan_free(p);
    experiments_free(e);
  }
  fuzz_report("experiments_parse", rc, err.msg);
  return 0;
}
