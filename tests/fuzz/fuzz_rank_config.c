/* tests/fuzz/fuzz_rank_config.c - the ranking tier's settings file
 * (ranking/config.h rank_config_load): the input is the file. A file that
 * loads is freed again; every refusal must leave nothing allocated. */
#include "ranking/config.h"
#include "tests/fuzz/fuzz.h"

#include <stdio.h>

static char path[1024];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc; (void)argv;
  fuzz_quiet();
  snprintf(path, sizeof path, "%s", fuzz_path(fuzz_tmpdir("rank_config"), "ranking.conf"));
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_write(path, data, size);
  rank_config *c = NULL;
  rec_error err = {0};
  int rc = rank_config_load(path, &c, &err);
  if (rc == 0) rank_config_free(c);
  fuzz_report("rank_config_load", rc, err.msg);
  return 0;
}
