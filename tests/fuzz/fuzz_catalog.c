/* tests/fuzz/fuzz_catalog.c - the live catalog's log (server/catlog.h,
 * server/live_catalog.h): the input is a catalog.log, replayed into the
 * overlay by live_catalog_open (a torn tail cut, damage refused), then
 * applied over a synthetic bundle by live_catalog_set_base. Every view it
 * publishes must keep the catalog's promises: each row findable by its id
 * unless deleted, ids 1 to 128 bytes, prices finite and >= 0, categories in
 * range, embeddings finite. */
#include "retrieval/bundle.h"
#include "server/live_catalog.h"
#include "tests/fuzz/fuzz.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char dir[1024], log_file[1100];
static bundle *base;

static void check_view(void *arg, bundle *v) {
  (void)arg;
  const catalog *c = v->catalog;
  for (size_t i = 0; i < c->count; i++) {
    size_t len = strlen(c->ids[i]);
    uint32_t row;
    bool found = catalog_find(c, c->ids[i], len, &row);
    bool deleted = c->deleted && c->deleted[i];
    if (len < 1 || len > REC_ID_MAX || found == deleted || (found && row != i) || !(c->price[i] >= 0) ||
        !isfinite(c->price[i]) || c->category[i] >= c->category_count) {
      fprintf(stderr, "fuzz_catalog: row %zu breaks the catalog's contract\n", i);
      abort();
    }
    const float *e = bundle_item_embedding(v, (uint32_t)i);
    for (size_t d = 0; d < v->dim; d++)
      if (!isfinite(e[d])) abort();
  }
  bundle_unref(v);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc; (void)argv;
  fuzz_quiet();
  const char *tmp = fuzz_tmpdir("catalog");
  char bdir[1100];
  snprintf(bdir, sizeof bdir, "%s", fuzz_path(tmp, "bundle"));
  snprintf(dir, sizeof dir, "%s", fuzz_path(tmp, "log"));
  snprintf(log_file, sizeof log_file, "%s/catalog.log", dir);
  fuzz_synth_bundle(bdir, 60);
  rec_error err = {0};
  if (bundle_load(bdir, &base, &err) != 0) {
    fprintf(stderr, "fuzz_catalog: %s\n", err.msg);
    abort();
  }
  fuzz_empty_dir(dir);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_empty_dir(dir);
  fuzz_write(log_file, data, size);
  live_catalog *lc = NULL;
  rec_error err = {0};
  int rc = live_catalog_open(dir, check_view, NULL, &lc, &err);
  fuzz_report("live_catalog_open", rc, err.msg);
  if (rc == 0) {
    rc = live_catalog_set_base(lc, base, &err);
    fuzz_report("live_catalog_set_base", rc, err.msg);
    live_catalog_close(lc);
  }
  return 0;
}
