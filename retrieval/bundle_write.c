/* retrieval/bundle_write.c - see bundle_write.h. The manifest is written last,
 * after every other file has been hashed from disk, so its checksums describe
 * exactly the bytes a loader will read. */
#include "retrieval/bundle_write.h"
#include "common/catalog.h"
#include "common/fileio.h"
#include "common/npy.h"
#include "retrieval/ann.h"
#include "retrieval/bundle.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#define PATHMAX 4096

/* buf = dir/name; bundle_write has checked that every name fits. */
static void path_of(char *buf, const char *dir, const char *name) {
  if (snprintf(buf, PATHMAX, "%s/%s", dir, name) >= PATHMAX) buf[0] = '\0';
}

static bool valid_id(const char *s) {
  size_t n = s ? strlen(s) : 0;
  return n > 0 && n <= REC_ID_MAX && !strpbrk(s, "\t\r\n");
}

static int check_spec(const bundle_spec *s, rec_error *err) {
  if (s->version && !valid_id(s->version))
    return rec_fail(err, REC_EINVAL, "version must be 1 to %d bytes", REC_ID_MAX);
  if (s->item_count == 0 || s->dim == 0) return rec_fail(err, REC_EINVAL, "bundle needs items and dim > 0");
  if (s->ef_search < 0 || s->ef_search > 65536 || s->ef_construction < 0 || s->ef_construction > 65536)
    return rec_fail(err, REC_EINVAL, "ef_search and ef_construction must be in [0, 65536] (0: from "
                    "the catalog size)");
  for (size_t i = 0; i < s->item_count; i++) {
    if (!valid_id(s->item_ids[i]) || !valid_id(s->item_categories[i]))
      return rec_fail(err, REC_EINVAL, "item %zu: id and category must be 1 to %d bytes without "
                      "tabs or newlines", i, REC_ID_MAX);
  }
  for (size_t i = 0; i < s->user_count; i++)
    if (!valid_id(s->user_ids[i]))
      return rec_fail(err, REC_EINVAL, "user %zu: id must be 1 to %d bytes without tabs or "
                      "newlines", i, REC_ID_MAX);
  return 0;
}

static int write_items(const char *path, const bundle_spec *s, rec_error *err) {
  FILE *fp = fopen(path, "w");
  if (!fp) return rec_fail(err, REC_EIO, "%s: %s", path, strerror(errno));
  fputs(s->item_margin ? "item_id\tcategory\tprice\tin_stock\tpopularity\tmargin\n"
                       : "item_id\tcategory\tprice\tin_stock\tpopularity\n", fp);
  for (size_t i = 0; i < s->item_count; i++) {
    fprintf(fp, "%s\t%s\t%.9g\t%d\t%.9g", s->item_ids[i], s->item_categories[i],
            (double)s->item_price[i], s->item_in_stock[i] ? 1 : 0, (double)s->item_popularity[i]);
    if (s->item_margin) fprintf(fp, "\t%.6g", (double)s->item_margin[i]);
    fputc('\n', fp);
  }
  if (fclose(fp) != 0) return rec_fail(err, REC_EIO, "%s: write failed", path);
  return 0;
}

static int write_users(const char *path, const bundle_spec *s, rec_error *err) {
  FILE *fp = fopen(path, "w");
  if (!fp) return rec_fail(err, REC_EIO, "%s: %s", path, strerror(errno));
  fputs("user_id\n", fp);
  for (size_t i = 0; i < s->user_count; i++) fprintf(fp, "%s\n", s->user_ids[i]);
  if (fclose(fp) != 0) return rec_fail(err, REC_EIO, "%s: write failed", path);
  return 0;
}

/* Records 'name' with its size and XXH3-64 in the manifest's "files". */
static int add_file(cJSON *files, const char *dir, const char *name, rec_error *err) {
  char path[PATHMAX], hex[17];
  uint64_t hash, bytes;
  path_of(path, dir, name);
  int rc = rec_hash_file(path, &hash, &bytes, err);
  if (rc) return rc;
  snprintf(hex, sizeof hex, "%016" PRIx64, hash);
  cJSON *f = cJSON_AddObjectToObject(files, name);
  cJSON_AddNumberToObject(f, "bytes", (double)bytes);
  cJSON_AddStringToObject(f, "xxh3_64", hex);
  return 0;
}

static int write_tower(const char *dir, const bundle_spec *s, cJSON *m, cJSON *files,
                       rec_error *err) {
  cJSON *layers = cJSON_AddArrayToObject(m, "user_tower");
  char name[64], path[PATHMAX];
  for (size_t i = 0; i < s->n_layers; i++) {
    const tower_layer *l = &s->layers[i];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToArray(layers, o);
    int rc;
    snprintf(name, sizeof name, "tower_%zu_w.npy", i);
    path_of(path, dir, name);
    if ((rc = npy_f32_write(path, l->w, l->in, l->out, 2, err)) ||
        (rc = add_file(files, dir, name, err)))
      return rc;
    cJSON_AddStringToObject(o, "weights", name);
    snprintf(name, sizeof name, "tower_%zu_b.npy", i);
    path_of(path, dir, name);
    if ((rc = npy_f32_write(path, l->b, l->out, 1, 1, err)) ||
        (rc = add_file(files, dir, name, err)))
      return rc;
    cJSON_AddStringToObject(o, "bias", name);
    cJSON_AddStringToObject(o, "activation", tower_act_name(l->act));
  }
  return 0;
}

/* A matrix as .npy, listed in the manifest's files and named under 'o'. */
static int write_npy(const char *dir, cJSON *files, cJSON *o, const char *key, const char *name, const float *data,
                     size_t rows, size_t cols, int ndim, rec_error *err) {
  char path[PATHMAX];
  path_of(path, dir, name);
  int rc = npy_f32_write(path, data, rows, cols, ndim, err);
  if (!rc) rc = add_file(files, dir, name, err);
  if (!rc) cJSON_AddStringToObject(o, key, name);
  return rc;
}

/* "item_tower": its inputs per category and price bucket, and its layers. */
static int write_item_tower(const char *dir, const bundle_spec *s, cJSON *m, cJSON *files, rec_error *err) {
  const bundle_item_tower *t = s->item_tower;
  if (!t) return 0;
  cJSON *o = cJSON_AddObjectToObject(m, "item_tower");
  char path[PATHMAX], name[64];
  path_of(path, dir, "item_tower_categories.tsv");
  FILE *f = fopen(path, "we");
  if (!f) return rec_fail(err, REC_EIO, "%s: cannot create", path);
  fputs("category\n", f);
  for (size_t c = 0; c < t->n_categories; c++) fprintf(f, "%s\n", t->categories[c]);
  if (fclose(f) != 0) return rec_fail(err, REC_EIO, "%s: write failed", path);
  int rc = add_file(files, dir, "item_tower_categories.tsv", err);
  if (!rc) cJSON_AddStringToObject(o, "categories", "item_tower_categories.tsv");
  if (!rc) rc = write_npy(dir, files, o, "category_ids", "item_tower_category_ids.npy", t->cat_id, t->n_categories,
                          t->id_dim, 2, err);
  if (!rc) rc = write_npy(dir, files, o, "category_embeddings", "item_tower_categories.npy", t->cat_emb,
                          t->n_categories, t->cat_dim, 2, err);
  if (!rc) rc = write_npy(dir, files, o, "price_embeddings", "item_tower_prices.npy", t->price_emb, t->n_buckets,
                          t->price_dim, 2, err);
  if (!rc) rc = write_npy(dir, files, o, "price_edges", "item_tower_price_edges.npy", t->price_edges,
                          t->n_buckets - 1, 1, 1, err);
  cJSON *layers = cJSON_AddArrayToObject(o, "layers");
  for (size_t i = 0; !rc && i < t->n_layers; i++) {
    const tower_layer *l = &t->layers[i];
    cJSON *lo = cJSON_CreateObject();
    cJSON_AddItemToArray(layers, lo);
    snprintf(name, sizeof name, "item_tower_%zu_w.npy", i);
    rc = write_npy(dir, files, lo, "weights", name, l->w, l->in, l->out, 2, err);
    snprintf(name, sizeof name, "item_tower_%zu_b.npy", i);
    if (!rc) rc = write_npy(dir, files, lo, "bias", name, l->b, l->out, 1, 1, err);
    cJSON_AddStringToObject(lo, "activation", tower_act_name(l->act));
  }
  return rc;
}

/* ann.c's: HNSW's efConstruction for the adds that follow (the C API has
 * no setter); REC_EINVAL for an index that is not HNSW. */
int ann__set_ef_construction(ann_index *idx, int ef, rec_error *err);

/* FAISS's own efConstruction, 40, builds graphs that cannot reach whole
 * clusters of a clustered catalog (items of a category close together, far
 * from the rest): the greedy descent through the upper layers lands in
 * another cluster and no efSearch finds the way back, so recall stops
 * rising at 0.73 to 0.97 however wide the search. Candidate lists longer than
 * a cluster's share of a layer keep links between clusters; the share grows
 * with the catalog, and so does the breadth. Measured in docs/bundle.md. */
int bundle_hnsw_ef_construction(size_t items) { return items <= 100000 ? 128 : 200; }

/* With a graph built as above, efSearch 128 gives recall@10 >= 0.99 up to
 * 200,000 items; beyond the measured sizes, twice that. */
int bundle_hnsw_ef_search(size_t items) { return items <= 500000 ? 128 : 256; }

static bool is_hnsw(const char *type) { return strncmp(type, "HNSW", 4) == 0; }

static int new_index(const bundle_spec *s, int ef_construction, ann_index **out, rec_error *err) {
  ann_index *idx;
  int rc = ann_index_new(s->dim, s->index_type, &idx, err);
  if (!rc && is_hnsw(s->index_type) && (rc = ann__set_ef_construction(idx, ef_construction, err)))
    ann_index_free(idx);
  if (!rc) *out = idx;
  return rc;
}

static int write_index(const char *dir, const bundle_spec *s, cJSON *m, cJSON *files,
                       rec_error *err) {
  char path[PATHMAX];
  ann_index *idx;
  bool hnsw = is_hnsw(s->index_type);
  int ef_search = s->ef_search || !hnsw ? s->ef_search : bundle_hnsw_ef_search(s->item_count);
  int ef_construction = s->ef_construction ? s->ef_construction
                                           : bundle_hnsw_ef_construction(s->item_count);
  int rc = new_index(s, ef_construction, &idx, err);
  if (rc) return rc;
  /* In chunks, so a long HNSW build can report progress. */
  for (size_t at = 0; at < s->item_count && !rc; at += 10000) {
    size_t n = s->item_count - at < 10000 ? s->item_count - at : 10000;
    rc = ann_index_add(idx, s->item_emb + at * s->dim, n, err);
    if (!rc && s->progress) s->progress(s->progress_arg, at + n, s->item_count);
  }
  if (rc) {
    ann_index_free(idx);
    return rc;
  }
  path_of(path, dir, "index.faiss");
  rc = ann_index_write(idx, path, err);
  ann_index_free(idx);
  if (rc || (rc = add_file(files, dir, "index.faiss", err))) return rc;
  cJSON *ix = cJSON_AddObjectToObject(m, "index");
  cJSON_AddStringToObject(ix, "file", "index.faiss");
  cJSON_AddStringToObject(ix, "type", s->index_type);
  cJSON_AddNumberToObject(ix, "ef_search", ef_search);
  if (hnsw) cJSON_AddNumberToObject(ix, "ef_construction", ef_construction);
  return 0;
}

static int write_data(const char *dir, const bundle_spec *s, cJSON *m, cJSON *files,
                      rec_error *err) {
  char path[PATHMAX];
  int rc;
  path_of(path, dir, "items.tsv");
  if ((rc = write_items(path, s, err)) || (rc = add_file(files, dir, "items.tsv", err))) return rc;
  path_of(path, dir, "item_embeddings.npy");
  if ((rc = npy_f32_write(path, s->item_emb, s->item_count, s->dim, 2, err)) ||
      (rc = add_file(files, dir, "item_embeddings.npy", err)))
    return rc;
  path_of(path, dir, "users.tsv");
  if ((rc = write_users(path, s, err)) || (rc = add_file(files, dir, "users.tsv", err))) return rc;
  path_of(path, dir, "user_features.npy");
  if ((rc = npy_f32_write(path, s->user_features, s->user_count, s->feature_dim, 2, err)) ||
      (rc = add_file(files, dir, "user_features.npy", err)))
    return rc;
  cJSON_AddStringToObject(m, "items", "items.tsv");
  cJSON_AddStringToObject(m, "item_embeddings", "item_embeddings.npy");
  cJSON_AddStringToObject(m, "users", "users.tsv");
  cJSON_AddStringToObject(m, "user_features", "user_features.npy");
  if ((rc = write_tower(dir, s, m, files, err))) return rc;
  if ((rc = write_item_tower(dir, s, m, files, err))) return rc;
  if ((rc = write_index(dir, s, m, files, err))) return rc;
  for (size_t i = 0; i < s->n_extras; i++) {
    const bundle_extra *x = &s->extras[i];
    path_of(path, dir, x->name);
    if ((rc = x->write(path, x->arg, err)) || (rc = add_file(files, dir, x->name, err))) return rc;
    if (x->manifest_key) cJSON_AddStringToObject(m, x->manifest_key, x->name);
  }
  return 0;
}

/* "<prefix>-<16 hex>": a hash over every file's checksum, in name order, so
 * equal contents give equal versions and any change gives a new one. */
static void content_version(const bundle_spec *s, const cJSON *files, char *out, size_t len) {
  XXH3_state_t *st = XXH3_createState();
  XXH3_64bits_reset(st);
  for (const cJSON *f = files->child; f; f = f->next) {
    const cJSON *sum = cJSON_GetObjectItemCaseSensitive(f, "xxh3_64");
    XXH3_64bits_update(st, f->string, strlen(f->string));
    XXH3_64bits_update(st, sum->valuestring, strlen(sum->valuestring));
  }
  snprintf(out, len, "%s-%016" PRIx64, s->version_prefix ? s->version_prefix : "bundle",
           XXH3_64bits_digest(st));
  XXH3_freeState(st);
}

/* Adds the caller's extra manifest keys (training configuration, metrics). */
static int merge_json(cJSON *m, const char *json, rec_error *err) {
  if (!json) return 0;
  cJSON *x = cJSON_Parse(json);
  if (!cJSON_IsObject(x)) {
    cJSON_Delete(x);
    return rec_fail(err, REC_EINVAL, "manifest_json is not a JSON object");
  }
  while (x->child) {
    cJSON *item = cJSON_DetachItemViaPointer(x, x->child);
    cJSON_AddItemToObject(m, item->string, item);
  }
  cJSON_Delete(x);
  return 0;
}

static int write_manifest(const char *dir, cJSON *m, rec_error *err) {
  char path[PATHMAX];
  path_of(path, dir, BUNDLE_MANIFEST);
  char *text = cJSON_Print(m);
  if (!text) return rec_fail(err, REC_ENOMEM, "out of memory");
  FILE *fp = fopen(path, "w");
  int ok = fp && fputs(text, fp) >= 0 && fputc('\n', fp) != EOF;
  if (fp && fclose(fp) != 0) ok = 0;
  free(text);
  return ok ? 0 : rec_fail(err, REC_EIO, "%s: write failed", path);
}

static void remove_tree(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  char path[PATHMAX];
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.' && (!e->d_name[1] || (e->d_name[1] == '.' && !e->d_name[2]))) continue;
    path_of(path, dir, e->d_name);
    unlink(path);
  }
  closedir(d);
  rmdir(dir);
}

int bundle_write(const char *dir, const bundle_spec *s, rec_error *err) {
  int rc = check_spec(s, err);
  if (rc) return rc;
  struct stat st;
  if (stat(dir, &st) == 0) return rec_fail(err, REC_EINVAL, "%s: already exists; bundles are "
                                           "immutable, write a new directory", dir);
  char tmp[PATHMAX];
  if (strlen(dir) > PATHMAX - 128) return rec_fail(err, REC_EINVAL, "%s: path too long", dir);
  snprintf(tmp, sizeof tmp, "%s.tmp-%ld", dir, (long)getpid());
  remove_tree(tmp);
  if (mkdir(tmp, 0755) != 0) return rec_fail(err, REC_EIO, "%s: %s", tmp, strerror(errno));
  cJSON *m = cJSON_CreateObject();
  cJSON_AddNumberToObject(m, "format", BUNDLE_FORMAT);
  cJSON *version = cJSON_AddStringToObject(m, "version", s->version ? s->version : "");
  cJSON_AddNumberToObject(m, "dim", (double)s->dim);
  cJSON_AddNumberToObject(m, "item_count", (double)s->item_count);
  cJSON_AddNumberToObject(m, "user_count", (double)s->user_count);
  cJSON_AddNumberToObject(m, "user_feature_dim", (double)s->feature_dim);
  cJSON *files = cJSON_CreateObject();
  if ((rc = write_data(tmp, s, m, files, err)) != 0 || (rc = merge_json(m, s->manifest_json, err)))
    goto fail;
  if (!s->version) {
    char v[REC_ID_MAX + 1];
    content_version(s, files, v, sizeof v);
    cJSON_SetValuestring(version, v);
  }
  cJSON_AddItemToObject(m, "files", files);
  files = NULL;
  if ((rc = write_manifest(tmp, m, err)) != 0) goto fail;
  if (rename(tmp, dir) != 0) {
    rc = rec_fail(err, REC_EIO, "rename %s -> %s: %s", tmp, dir, strerror(errno));
    goto fail;
  }
  cJSON_Delete(m);
  return 0;
fail:
  cJSON_Delete(files);
  cJSON_Delete(m);
  remove_tree(tmp);
  return rc;
}
