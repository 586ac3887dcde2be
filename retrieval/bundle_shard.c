/* retrieval/bundle_shard.c - see bundle_shard.h. Tables are filtered as
 * text, so every column of the kept rows reaches the partition byte for
 * byte; the embedding rows and the index are rebuilt from the loaded
 * bundle; the user-side files are copied. */
#include "retrieval/bundle_shard.h"
#include "common/fileio.h"
#include "common/npy.h"
#include "retrieval/ann.h"
#include "retrieval/bundle_write.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PATHMAX 4096

int ann__set_ef_construction(ann_index *idx, int ef, rec_error *err);

/* The rows of a table file the shard keeps: the header, then every line
 * whose field 'col' (0-based, tab-separated) is an item id of the shard;
 * an empty line is dropped. */
static int filter_table(const char *src, const char *dst, int col, uint32_t shard, uint32_t shards, rec_error *err) {
  size_t len;
  char *text = rec_read_file(src, &len, err);
  if (!text) return err ? err->code : REC_EIO;
  FILE *f = fopen(dst, "w");
  if (!f) {
    free(text);
    return rec_fail(err, REC_EIO, "%s: %s", dst, strerror(errno));
  }
  int rc = 0, lineno = 0;
  char id[REC_ID_MAX + 1];
  for (char *line = text; line && *line && !rc; lineno++) {
    char *nl = strchr(line, '\n');
    size_t n = nl ? (size_t)(nl - line) + 1 : strlen(line);
    bool keep = lineno == 0;
    if (!keep && n > 1) {
      const char *p = line;
      for (int k = 0; k < col && p; k++) {
        p = memchr(p, '\t', (size_t)(line + n - p));
        if (p) p++;
      }
      size_t m = p ? strcspn(p, "\t\r\n") : 0;
      if (!p || !m || m > REC_ID_MAX) rc = rec_fail(err, REC_ECORRUPT, "%s:%d: no item id in field %d", src, lineno + 1, col + 1);
      else {
        memcpy(id, p, m);
        id[m] = '\0';
        keep = bundle_shard_of(id, shards) == shard;
      }
    }
    if (!rc && keep && fwrite(line, 1, n, f) != n) rc = rec_fail(err, REC_EIO, "%s: write failed", dst);
    line = nl ? nl + 1 : NULL;
  }
  if (fclose(f) != 0 && !rc) rc = rec_fail(err, REC_EIO, "%s: write failed", dst);
  free(text);
  return rc;
}

static int copy_file(const char *src, const char *dst, rec_error *err) {
  size_t len;
  char *text = rec_read_file(src, &len, err);
  if (!text) return err ? err->code : REC_EIO;
  FILE *f = fopen(dst, "w");
  bool ok = f && fwrite(text, 1, len, f) == len;
  if (f && fclose(f) != 0) ok = false;
  free(text);
  return ok ? 0 : rec_fail(err, REC_EIO, "%s: write failed", dst);
}

/* The shard's index over its rows 'emb' [n x dim]: a grouped inverted file
 * keeps the whole bundle's lists (their centroids and nprobe), each with
 * only the shard's rows, so that merging the shards' answers gives what the
 * whole index gives; any other index is built again, same type. */
static int write_index(const bundle *b, const char *src, const char *dir, cJSON *ix, const uint32_t *rows, size_t n,
                       const float *emb, rec_error *err) {
  char path[PATHMAX];
  const cJSON *sizes = cJSON_GetObjectItemCaseSensitive(ix, "list_sizes");
  const cJSON *layout = cJSON_GetObjectItemCaseSensitive(ix, "layout");
  ann_index *idx = NULL;
  int rc = 0;
  if (cJSON_IsString(layout) && strcmp(layout->valuestring, "grouped") == 0) {
    size_t nlist = (size_t)cJSON_GetArraySize(sizes);
    size_t *src_off = calloc(nlist + 1, sizeof *src_off), *local = calloc(nlist + 1, sizeof *local);
    npy_f32 cent = {0};
    const cJSON *cf = cJSON_GetObjectItemCaseSensitive(ix, "centroids");
    if (!src_off || !local) rc = rec_fail(err, REC_ENOMEM, "out of memory");
    size_t l = 0;
    for (const cJSON *s = sizes->child; s && !rc; s = s->next, l++) src_off[l + 1] = src_off[l] + (size_t)s->valuedouble;
    for (size_t i = 0, at = 0; !rc && i < n; i++) { /* rows ascend: walk the lists once */
      while (at < nlist && rows[i] >= src_off[at + 1]) at++;
      if (at < nlist) local[at]++;
    }
    if (!rc && snprintf(path, sizeof path, "%s/%s", src, cJSON_IsString(cf) ? cf->valuestring : "") < PATHMAX)
      rc = npy_f32_read(path, &cent, err);
    if (!rc && (cent.rows != nlist || cent.cols != b->dim))
      rc = rec_fail(err, REC_EMISMATCH, "%s: %zu x %zu centroids for %zu lists of dim %zu", path, cent.rows, cent.cols,
                    nlist, b->dim);
    if (!rc) rc = ann_ivf_from_lists(cent.data, nlist, b->dim, local, emb, n, &idx, err);
    cJSON *ls = cJSON_CreateArray();
    for (size_t k = 0; !rc && k < nlist; k++) cJSON_AddItemToArray(ls, cJSON_CreateNumber((double)local[k]));
    cJSON_ReplaceItemInObjectCaseSensitive(ix, "list_sizes", ls);
    npy_f32_destroy(&cent);
    free(src_off);
    free(local);
  } else {
    const char *type = b->index_type;
    const cJSON *efc = cJSON_GetObjectItemCaseSensitive(ix, "ef_construction");
    rc = ann_index_new(b->dim, type, &idx, err);
    if (!rc && cJSON_IsNumber(efc)) rc = ann__set_ef_construction(idx, efc->valueint, err);
    if (!rc && ann_needs_training(idx)) rc = ann_index_train(idx, emb, n, err);
    if (!rc) rc = ann_index_add(idx, emb, n, err);
  }
  if (!rc && snprintf(path, sizeof path, "%s/index.faiss", dir) < PATHMAX) rc = ann_index_write(idx, path, err);
  cJSON_ReplaceItemInObjectCaseSensitive(ix, "file", cJSON_CreateString("index.faiss"));
  ann_index_free(idx);
  return rc;
}

/* Files the retrieval tier does not read and that name other shards' items
 * in every row: the ranking tier holds them, with the whole bundle. */
/* Whether the file 'name' is one the retrieval tier does not read and
 * whose every row names other shards' items (profiles, purchases,
 * repurchase): the ranking tier holds them, with the whole bundle. */
static bool ranking_file(const cJSON *m, const char *name) {
  static const char *const KEYS[] = {"profiles", "purchases", "repurchase"};
  for (size_t k = 0; k < sizeof KEYS / sizeof *KEYS; k++) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(m, KEYS[k]);
    if (cJSON_IsString(v) && strcmp(v->valuestring, name) == 0) return true;
  }
  return false;
}

static const char *str_of(const cJSON *m, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(m, key);
  return cJSON_IsString(v) ? v->valuestring : "";
}

/* Every file of the partition into 'dir', listed in 'files'; 'm' (a copy
 * of the source's manifest 'src_m') gets the index's new list sizes. */
static int write_files(const bundle *b, const cJSON *src_m, cJSON *m, cJSON *files, const char *dir, uint32_t shard,
                       uint32_t shards, size_t *kept, rec_error *err) {
  const catalog *c = b->catalog;
  const char *src = b->path;
  char from[PATHMAX], to[PATHMAX];
  uint32_t *rows = malloc((c->count + 1) * sizeof *rows);
  if (!rows) return rec_fail(err, REC_ENOMEM, "out of memory");
  size_t n = 0;
  for (size_t i = 0; i < c->count; i++)
    if (bundle_shard_of(c->ids[i], shards) == shard) rows[n++] = (uint32_t)i;
  float *emb = malloc((n + 1) * b->dim * sizeof *emb);
  int rc = emb ? 0 : rec_fail(err, REC_ENOMEM, "out of memory");
  for (size_t i = 0; !rc && i < n; i++) memcpy(emb + i * b->dim, bundle_item_embedding(b, rows[i]), b->dim * sizeof *emb);
  const char *items = str_of(src_m, "items"), *embf = str_of(src_m, "item_embeddings");
  const char *cf = str_of(src_m, "item_cf"), *pop = str_of(src_m, "popularity"), *ease = str_of(src_m, "ease");
  if (!rc && !n) rc = rec_fail(err, REC_EINVAL, "shard %u of %u would hold no item: use fewer shards", shard, shards);
  if (!rc && snprintf(to, sizeof to, "%s/%s", dir, embf) < PATHMAX &&
      !(rc = npy_f32_write(to, emb, n, b->dim, 2, err)))
    rc = bundle__list_file(files, dir, embf, err);
  if (!rc && !(rc = write_index(b, src, dir, cJSON_GetObjectItemCaseSensitive(m, "index"), rows, n, emb, err)))
    rc = bundle__list_file(files, dir, "index.faiss", err);
  /* The rest: items, item-CF, EASE and popularity rows of the shard's items
   * (an item-CF or EASE row by its neighbour: its seed may be any item), the
   * ranking tier's own files left out, everything else copied. */
  const cJSON *src_files = cJSON_GetObjectItemCaseSensitive(src_m, "files");
  for (const cJSON *f = src_files ? src_files->child : NULL; f && !rc; f = f->next) {
    const char *name = f->string;
    if (ranking_file(src_m, name) || strcmp(name, embf) == 0 || strcmp(name, "index.faiss") == 0) continue;
    if (snprintf(from, sizeof from, "%s/%s", src, name) >= PATHMAX ||
        snprintf(to, sizeof to, "%s/%s", dir, name) >= PATHMAX) {
      rc = rec_fail(err, REC_EINVAL, "%s: path too long", name);
      break;
    }
    if (strcmp(name, items) == 0) rc = filter_table(from, to, 0, shard, shards, err);
    else if (strcmp(name, cf) == 0 || strcmp(name, pop) == 0 || strcmp(name, ease) == 0)
      rc = filter_table(from, to, 1, shard, shards, err);
    else rc = copy_file(from, to, err);
    if (!rc) rc = bundle__list_file(files, dir, name, err);
  }
  free(rows);
  free(emb);
  *kept = n;
  return rc;
}

/* The manifest's "partition": which shard, of what, and every category. */
static cJSON *partition_of(const bundle *b, uint32_t shard, uint32_t shards) {
  cJSON *p = cJSON_CreateObject();
  cJSON_AddNumberToObject(p, "shard", shard);
  cJSON_AddNumberToObject(p, "shards", shards);
  cJSON_AddStringToObject(p, "hash", "xxh3_64(item_id) % shards");
  cJSON_AddStringToObject(p, "source_version", b->version);
  cJSON_AddNumberToObject(p, "source_item_count", (double)b->catalog->count);
  cJSON *cats = cJSON_AddArrayToObject(p, "categories");
  for (size_t i = 0; cats && i < b->catalog->category_count; i++)
    cJSON_AddItemToArray(cats, cJSON_CreateString(b->catalog->categories[i]));
  return p;
}

int bundle_write_partition(const bundle *b, uint32_t shard, uint32_t shards, const char *dir, size_t *items,
                           rec_error *err) {
  char path[PATHMAX], tmp[PATHMAX], version[REC_ID_MAX + 64];
  struct stat st;
  if (b->partition || b->parent)
    return rec_fail(err, REC_EINVAL, "%s: a partition is made from a whole bundle as loaded", b->path);
  if (shards < 2 || shards > 1024 || shard >= shards)
    return rec_fail(err, REC_EINVAL, "shard %u of %u: want 0 <= shard < shards, 2 <= shards <= 1024", shard, shards);
  if (stat(dir, &st) == 0)
    return rec_fail(err, REC_EINVAL, "%s: already exists; bundles are immutable, write a new directory", dir);
  if (strlen(dir) > PATHMAX - 128) return rec_fail(err, REC_EINVAL, "%s: path too long", dir);
  snprintf(version, sizeof version, "%s-shard%uof%u", b->version, shard, shards);
  if (strlen(version) > REC_ID_MAX)
    return rec_fail(err, REC_EINVAL, "%s: version '%s' is too long to name its shards", b->path, b->version);
  snprintf(path, sizeof path, "%s/%s", b->path, BUNDLE_MANIFEST);
  size_t len;
  char *text = rec_read_file(path, &len, err);
  if (!text) return err ? err->code : REC_EIO;
  cJSON *src_m = cJSON_ParseWithLength(text, len);
  free(text);
  if (!cJSON_IsObject(src_m)) {
    cJSON_Delete(src_m);
    return rec_fail(err, REC_ECORRUPT, "%s: not a JSON object", path);
  }
  cJSON *m = cJSON_Duplicate(src_m, true), *files = cJSON_CreateObject();
  snprintf(tmp, sizeof tmp, "%s.tmp-%ld", dir, (long)getpid());
  bundle__remove_tree(tmp);
  int rc = !m || !files ? rec_fail(err, REC_ENOMEM, "out of memory") : 0;
  if (!rc && mkdir(tmp, 0755) != 0) rc = rec_fail(err, REC_EIO, "%s: %s", tmp, strerror(errno));
  size_t kept = 0;
  if (!rc) rc = write_files(b, src_m, m, files, tmp, shard, shards, &kept, err);
  if (!rc) {
    static const char *const DROP[] = {"profiles", "purchases", "repurchase", "files", "partition"};
    for (size_t k = 0; k < sizeof DROP / sizeof *DROP; k++) cJSON_DeleteItemFromObjectCaseSensitive(m, DROP[k]);
    cJSON_ReplaceItemInObjectCaseSensitive(m, "version", cJSON_CreateString(version));
    cJSON_ReplaceItemInObjectCaseSensitive(m, "item_count", cJSON_CreateNumber((double)kept));
    cJSON_AddItemToObject(m, "partition", partition_of(b, shard, shards));
    cJSON_AddItemToObject(m, "files", files);
    files = NULL;
    rc = bundle__write_manifest(tmp, m, err);
  }
  if (!rc && rename(tmp, dir) != 0) rc = rec_fail(err, REC_EIO, "rename %s -> %s: %s", tmp, dir, strerror(errno));
  if (rc) bundle__remove_tree(tmp);
  cJSON_Delete(files);
  cJSON_Delete(m);
  cJSON_Delete(src_m);
  if (!rc && items) *items = kept;
  return rc;
}
