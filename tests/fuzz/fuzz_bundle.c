/* tests/fuzz/fuzz_bundle.c - bundle_load (retrieval/bundle.c) on a small
 * synthetic bundle with all five signal tables (fuzz.h), one file replaced
 * by the input.
 *
 * Input: byte 0 picks the file, the rest is its content. File 0 is
 * manifest.json itself, as is: the manifest is parsed before any checksum
 * is checked, and it decides which file each parser reads. For every other
 * file the harness writes the content and then the manifest with that
 * file's true size and XXH3-64, so the input gets past the checksums to
 * the parser behind them (items.tsv: the catalog; users.tsv; the signal
 * tables, which refer to each other and to the catalog; the .npy reader and
 * the user tower's shapes). A bundle that loads goes through app_reload's
 * recall smoke test, then is unreferenced again. The FAISS index file is
 * not fuzzed: its reader is FAISS's. */
#include "common/fileio.h"
#include "retrieval/bundle.h"
#include "tests/fuzz/fuzz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What byte 0 picks: the manifest, items, users, then the five signal
 * tables in fuzz_tables order, then the .npy files. */
static const char *const FILES[] = {
    BUNDLE_MANIFEST,    "items.tsv",      "users.tsv",      "item_cf.tsv",         "popularity.tsv",
    "profiles.tsv",     "purchases.tsv",  "repurchase.tsv", "item_embeddings.npy", "user_features.npy",
    "tower_0_w.npy",    "tower_1_b.npy",
};
enum { N_FILES = sizeof FILES / sizeof FILES[0] };

static char dir[1024];
static cJSON *manifest;           /* the base bundle's */
static char *originals[N_FILES];  /* each file's bytes in the base bundle */
static size_t original_len[N_FILES];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc; (void)argv;
  fuzz_quiet();
  snprintf(dir, sizeof dir, "%s", fuzz_path(fuzz_tmpdir("bundle"), "b"));
  fuzz_synth_bundle(dir, 60);
  rec_error err = {0};
  for (int f = 0; f < N_FILES; f++)
    if (!(originals[f] = rec_read_file(fuzz_path(dir, FILES[f]), &original_len[f], &err))) abort();
  if (!(manifest = cJSON_Parse(originals[0]))) abort();
  if (getenv("FUZZ_PRINT_MANIFEST")) /* corpus/bundle/seed-manifest-signals is this */
    fputs(originals[0], stdout);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  int f = data[0] % N_FILES;
  fuzz_write(fuzz_path(dir, FILES[f]), data + 1, size - 1);
  if (f != 0) {
    cJSON *m = cJSON_Duplicate(manifest, 1);
    char *text = NULL;
    if (!m) abort();
    fuzz_list_file(m, dir, FILES[f]);
    if (!(text = cJSON_Print(m))) abort();
    fuzz_write(fuzz_path(dir, BUNDLE_MANIFEST), text, strlen(text));
    free(text);
    cJSON_Delete(m);
  }
  bundle *b = NULL;
  rec_error err = {0};
  int rc = bundle_load(dir, &b, &err);
  if (rc == 0) {
    double recall;
    rc = bundle_check_recall(b, 8, 5, 0.0, &recall, &err);
    bundle_unref(b);
  }
  fuzz_report(FILES[f], rc, err.msg);
  /* The base bundle again, for the next input. */
  fuzz_write(fuzz_path(dir, FILES[f]), originals[f], original_len[f]);
  if (f != 0) fuzz_write(fuzz_path(dir, BUNDLE_MANIFEST), originals[0], original_len[0]);
  return 0;
}
