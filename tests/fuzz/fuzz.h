/* tests/fuzz/fuzz.h - what the libFuzzer targets share: a scratch directory
 * removed at exit, whole-file writes, a small synthetic bundle, and quiet
 * logs. A helper that fails aborts: a broken harness must not pass for a
 * sound target. Single-threaded, like libFuzzer's calls into a target. */
#ifndef REC_FUZZ_H
#define REC_FUZZ_H
#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

/* A fresh directory under $TMPDIR (default /tmp) named after 'name',
 * removed with everything in it when the process exits. */
const char *fuzz_tmpdir(const char *name);
/* 'dir'/'name' in a static buffer per call slot (4 slots rotate, so a
 * result lives until the fourth call after it; the helpers below copy a
 * directory they are given before calling it). */
const char *fuzz_path(const char *dir, const char *name);
/* Makes 'dir' an empty directory: creates it, or removes the files in it. */
void fuzz_empty_dir(const char *dir);
/* Writes n bytes to 'path', replacing it. */
void fuzz_write(const char *path, const void *data, size_t n);
/* Writes a synthetic bundle (tools/offline/synth.h: 'items' items, 40 users,
 * dim 8, 3 categories, HNSW32) into 'dir', which must not exist, and adds
 * the five signal tables below (synth writes none), named and checksummed
 * in its manifest, so item-CF, popularity lists, profiles, purchases and
 * repurchase cycles are all there to reach. */
void fuzz_synth_bundle(const char *dir, size_t items);

/* The signal tables of fuzz_synth_bundle: manifest key, file name, content
 * (valid against its catalog, P000000..., and users, U00000...). */
typedef struct fuzz_table {
  const char *key, *name, *text;
} fuzz_table;
enum { FUZZ_TABLES = 5 };
extern const fuzz_table fuzz_tables[FUZZ_TABLES];
/* Sets the entry of 'name' in the manifest's "files" to the size and XXH3-64
 * of 'dir'/'name' as it is now. */
void fuzz_list_file(cJSON *manifest, const char *dir, const char *name);
/* Prints each input's outcome ("what: code message") on stderr when the
 * environment sets FUZZ_VERBOSE, to see what a seed or a crash reached. */
void fuzz_report(const char *what, int rc, const char *msg);
/* Drops every log line: targets log each refused input, and a fuzzer runs
 * thousands of inputs a second. */
void fuzz_quiet(void);
#endif
