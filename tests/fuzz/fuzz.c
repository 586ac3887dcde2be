/* tests/fuzz/fuzz.c - see fuzz.h. */
#include "tests/fuzz/fuzz.h"
#include "common/fileio.h"
#include "common/log.h"
#include "tools/offline/synth.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A broken harness stops at once, saying where (before libFuzzer starts,
 * an abort would be silent). */
static void die(const char *what, const char *detail) {
  fprintf(stderr, "fuzz harness: %s: %s\n", what, detail);
  abort();
}

enum { MAX_DIRS = 8 };
static char dirs[MAX_DIRS][512];
static int n_dirs;

static int rm_entry(const char *p, const struct stat *s, int flag, struct FTW *f) {
  (void)s; (void)flag; (void)f;
  return remove(p);
}

static void cleanup(void) {
  for (int i = 0; i < n_dirs; i++) nftw(dirs[i], rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

const char *fuzz_tmpdir(const char *name) {
  if (n_dirs == MAX_DIRS) die("fuzz_tmpdir", "too many directories");
  const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
  char *d = dirs[n_dirs];
  snprintf(d, sizeof dirs[0], "%s/recfuzz-%s.XXXXXX", base, name);
  if (!mkdtemp(d)) {
    perror("mkdtemp");
    abort();
  }
  if (n_dirs++ == 0) atexit(cleanup);
  return d;
}

const char *fuzz_path(const char *dir, const char *name) {
  static char bufs[4][1024];
  static int slot;
  char *b = bufs[slot++ % 4];
  snprintf(b, sizeof bufs[0], "%s/%s", dir, name);
  return b;
}

void fuzz_empty_dir(const char *where) {
  char dir[1024]; /* 'where' may be a fuzz_path slot, which the loop below reuses */
  snprintf(dir, sizeof dir, "%s", where);
  if (mkdir(dir, 0700) == 0) return;
  DIR *d = errno == EEXIST ? opendir(dir) : NULL;
  if (!d) {
    perror(dir);
    abort();
  }
  for (struct dirent *e; (e = readdir(d)) != NULL;)
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) unlink(fuzz_path(dir, e->d_name));
  closedir(d);
}

void fuzz_write(const char *path, const void *data, size_t n) {
  FILE *fp = fopen(path, "wb");
  if (!fp || fwrite(data, 1, n, fp) != n || fclose(fp) != 0) {
    perror(path);
    abort();
  }
}

const fuzz_table fuzz_tables[FUZZ_TABLES] = {
    {"item_cf", "item_cf.tsv",
     "item_id\tneighbour_id\tscore\nP000000\tP000004\t0.9\nP000000\tP000007\t0.5\n"
     "P000003\tP000002\t0.75\nP000002\tP000003\t0.7\nP000011\tP000012\t0.6\n"},
    {"popularity", "popularity.tsv",
     "list\titem_id\tscore\nglobal\tP000003\t415.2\nglobal\tP000000\t47.5\nsegment:high\tP000002\t3\n"
     "segment:small\tP000001\t2\ncategory:books\tP000003\t2.5\ncategory:garden\tP000001\t1\n"},
    {"profiles", "profiles.tsv",
     "user_id\tmean_price\tsegment\trecent_items\nU00000\t12.5\thigh\tP000003\tP000001\n"
     "U00001\t3.2\tsmall\tP000000\nU00002\t8\taverage\tP000002\tP000011\tP000012\n"},
    {"purchases", "purchases.tsv",
     "user_id\titem_id\tlast_time\tcount\nU00000\tP000003\t1700000000\t2\nU00001\tP000000\t1690000000\t1\n"
     "U00002\tP000002\t1699990000\t3\n"},
    {"repurchase", "repurchase.tsv", "item_id\tcycle_days\tsamples\nP000003\t30.5\t4\nP000000\t7\t12\n"},
};

void fuzz_list_file(cJSON *m, const char *dir, const char *name) {
  uint64_t hash, bytes;
  rec_error err = {0};
  if (rec_hash_file(fuzz_path(dir, name), &hash, &bytes, &err) != 0) die("fuzz_list_file", err.msg);
  cJSON *files = cJSON_GetObjectItemCaseSensitive(m, "files");
  cJSON_DeleteItemFromObjectCaseSensitive(files, name);
  cJSON *entry = cJSON_AddObjectToObject(files, name);
  char hex[17];
  snprintf(hex, sizeof hex, "%016" PRIx64, hash);
  if (!entry || !cJSON_AddNumberToObject(entry, "bytes", (double)bytes) ||
      !cJSON_AddStringToObject(entry, "xxh3_64", hex))
    die("fuzz_list_file", "out of memory");
}

void fuzz_synth_bundle(const char *where, size_t items) {
  char dir[1024]; /* 'where' may be a fuzz_path slot, which the calls below reuse */
  snprintf(dir, sizeof dir, "%s", where);
  synth_opts o = {.items = items, .users = 40, .dim = 8, .categories = 3, .seed = 11,
                  .index_type = "HNSW32", .ef_search = 32};
  rec_error err = {0};
  if (synth_bundle(dir, &o, &err) != 0) die("synth_bundle", err.msg);
  size_t len;
  char *text = rec_read_file(fuzz_path(dir, "manifest.json"), &len, &err);
  cJSON *m = text ? cJSON_Parse(text) : NULL;
  if (!m) die("fuzz_synth_bundle", "cannot read its manifest");
  free(text);
  for (int i = 0; i < FUZZ_TABLES; i++) {
    fuzz_write(fuzz_path(dir, fuzz_tables[i].name), fuzz_tables[i].text, strlen(fuzz_tables[i].text));
    if (!cJSON_AddStringToObject(m, fuzz_tables[i].key, fuzz_tables[i].name))
      die("fuzz_synth_bundle", "out of memory");
    fuzz_list_file(m, dir, fuzz_tables[i].name);
  }
  if (!(text = cJSON_Print(m))) die("fuzz_synth_bundle", "out of memory");
  fuzz_write(fuzz_path(dir, "manifest.json"), text, strlen(text));
  free(text);
  cJSON_Delete(m);
}

void fuzz_report(const char *what, int rc, const char *msg) {
  static int verbose = -1;
  if (verbose < 0) verbose = getenv("FUZZ_VERBOSE") != NULL;
  if (verbose) fprintf(stderr, "%s: %d %s\n", what, rc, rc ? msg : "");
}

/* One past the highest level: rec_log drops everything below its minimum. */
void fuzz_quiet(void) { rec_log_set_level((rec_log_level)(REC_LOG_ERROR + 1)); }
