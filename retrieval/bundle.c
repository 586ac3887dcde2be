/* retrieval/bundle.c - bundle loading and verification. Order matters: the
 * manifest is parsed first, every file it lists is checksummed before any is
 * interpreted, and shapes are cross-checked last, so a refused bundle says the
 * most basic thing that is wrong with it. */
#include "retrieval/bundle.h"
#include "common/fileio.h"
#include "common/npy.h"
#include "retrieval/ann_tune.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>

#define PATHMAX 4096

static int join(char *buf, const char *dir, const char *name, rec_error *err) {
  if (!name || !*name || strchr(name, '/') || strcmp(name, "..") == 0)
    return rec_fail(err, REC_ECORRUPT, "%s/%s: file names must be plain names inside the bundle",
                    dir, BUNDLE_MANIFEST);
  if (snprintf(buf, PATHMAX, "%s/%s", dir, name) >= PATHMAX)
    return rec_fail(err, REC_EINVAL, "%s: path too long", dir);
  return 0;
}

static int verify_files(const char *dir, const cJSON *files, rec_error *err) {
  if (!cJSON_IsObject(files) || !files->child)
    return rec_fail(err, REC_ECORRUPT, "%s/%s: \"files\" must list every file with its bytes and "
                    "xxh3_64", dir, BUNDLE_MANIFEST);
  char path[PATHMAX];
  for (const cJSON *f = files->child; f; f = f->next) {
    int rc = join(path, dir, f->string, err);
    if (rc) return rc;
    const cJSON *bytes = cJSON_GetObjectItemCaseSensitive(f, "bytes");
    const cJSON *sum = cJSON_GetObjectItemCaseSensitive(f, "xxh3_64");
    if (!cJSON_IsNumber(bytes) || !cJSON_IsString(sum))
      return rec_fail(err, REC_ECORRUPT, "%s/%s: files.%s needs \"bytes\" and \"xxh3_64\"", dir,
                      BUNDLE_MANIFEST, f->string);
    uint64_t h, n;
    if ((rc = rec_hash_file(path, &h, &n, err)) != 0) return rc;
    if ((double)n != bytes->valuedouble)
      return rec_fail(err, REC_ECORRUPT, "%s: %" PRIu64 " bytes, manifest says %.0f", path, n,
                      bytes->valuedouble);
    char hex[17];
    snprintf(hex, sizeof hex, "%016" PRIx64, h);
    if (strcmp(hex, sum->valuestring) != 0)
      return rec_fail(err, REC_ECORRUPT, "%s: checksum %s, manifest says %s", path, hex,
                      sum->valuestring);
  }
  return 0;
}

/* A file named by the manifest must also be one it checksums. */
static int listed(const char *dir, const cJSON *m, const char *name, char *path, rec_error *err) {
  int rc = join(path, dir, name, err);
  if (rc) return rc;
  if (!cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(m, "files"), name))
    return rec_fail(err, REC_ECORRUPT, "%s/%s: %s is not listed in \"files\"", dir,
                    BUNDLE_MANIFEST, name);
  return 0;
}

static int get_size(const char *dir, const cJSON *m, const char *key, size_t lo, size_t hi,
                    size_t *out, rec_error *err) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(m, key);
  if (!cJSON_IsNumber(v) || v->valuedouble < (double)lo || v->valuedouble > (double)hi ||
      v->valuedouble != floor(v->valuedouble))
    return rec_fail(err, REC_ECORRUPT, "%s/%s: \"%s\" must be an integer in [%zu, %zu]", dir,
                    BUNDLE_MANIFEST, key, lo, hi);
  *out = (size_t)v->valuedouble;
  return 0;
}

static const char *get_str(const cJSON *m, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(m, key);
  return cJSON_IsString(v) && v->valuestring[0] ? v->valuestring : NULL;
}

static int load_matrix(const char *path, size_t rows, size_t cols, float **out, rec_error *err) {
  npy_f32 a;
  int rc = npy_f32_read(path, &a, err);
  if (rc) return rc;
  if (a.rows != rows || a.cols != cols) {
    npy_f32_destroy(&a);
    return rec_fail(err, REC_EMISMATCH, "%s: shape (%zu, %zu), manifest wants (%zu, %zu)", path,
                    a.rows, a.cols, rows, cols);
  }
  *out = a.data;
  return 0;
}

/* The MLP whose layers 'layers' lists ('what' names it in errors). */
static int load_layers(tower *t, const char *dir, const cJSON *m, const cJSON *layers, const char *what,
                       rec_error *err) {
  int n = cJSON_GetArraySize(layers);
  if (!cJSON_IsArray(layers) || n < 1 || n > 16)
    return rec_fail(err, REC_ECORRUPT, "%s/%s: \"%s\" must list 1 to 16 layers", dir, BUNDLE_MANIFEST, what);
  tower_layer *ls = calloc((size_t)n, sizeof *ls);
  if (!ls) return rec_fail(err, REC_ENOMEM, "out of memory");
  char path[PATHMAX];
  int rc = 0, i = 0;
  for (const cJSON *l = layers->child; l; l = l->next, i++) {
    const char *w = get_str(l, "weights"), *bias = get_str(l, "bias"), *act = get_str(l, "activation");
    int a = act ? tower_act_parse(act) : -1;
    if (!w || !bias || a < 0) {
      rc = rec_fail(err, REC_ECORRUPT, "%s/%s: %s[%d] needs \"weights\", \"bias\" and "
                    "\"activation\" (relu, tanh or linear)", dir, BUNDLE_MANIFEST, what, i);
      goto fail;
    }
    ls[i].act = (tower_act)a;
    npy_f32 wa, ba;
    if ((rc = listed(dir, m, w, path, err)) || (rc = npy_f32_read(path, &wa, err))) goto fail;
    ls[i].w = wa.data;
    ls[i].in = wa.rows;
    ls[i].out = wa.cols;
    if ((rc = listed(dir, m, bias, path, err)) || (rc = npy_f32_read(path, &ba, err))) goto fail;
    ls[i].b = ba.data;
    if (wa.ndim != 2 || ba.rows * ba.cols != wa.cols) {
      rc = rec_fail(err, REC_EMISMATCH, "%s: bias has %zu values, weights %s have %zu columns",
                    path, ba.rows * ba.cols, w, wa.cols);
      goto fail;
    }
  }
  if ((rc = tower_init(t, ls, (size_t)n, err)) != 0) goto fail;
  return 0;
fail:
  for (int j = 0; j < n; j++) {
    free(ls[j].w);
    free(ls[j].b);
  }
  free(ls);
  return rc;
}

static int load_users(bundle *b, const char *path, rec_error *err) {
  size_t len;
  b->user_text = rec_read_file(path, &len, err);
  if (!b->user_text) return err ? err->code : REC_EIO;
  b->user_ids = calloc(b->user_count ? b->user_count : 1, sizeof *b->user_ids);
  if (!b->user_ids || strmap_new(b->user_count, &b->user_map) != 0)
    return rec_fail(err, REC_ENOMEM, "%s: out of memory", path);
  char *line = b->user_text, *nl = strchr(line, '\n');
  if (!nl || (size_t)(nl - line) != 7 || strncmp(line, "user_id", 7) != 0)
    return rec_fail(err, REC_ECORRUPT, "%s:1: header must be 'user_id'", path);
  size_t n = 0;
  for (int lineno = 2; nl && nl[1]; lineno++) {
    line = nl + 1;
    nl = strchr(line, '\n');
    if (nl) *nl = '\0';
    size_t l = strlen(line);
    if (l == 0 || l > REC_ID_MAX || strchr(line, '\t'))
      return rec_fail(err, REC_ECORRUPT, "%s:%d: user_id must be 1 to %d bytes without tabs", path,
                      lineno, REC_ID_MAX);
    if (n == b->user_count)
      return rec_fail(err, REC_EMISMATCH, "%s: more than the manifest's %zu users", path,
                      b->user_count);
    if (strmap_put(b->user_map, line, l, (uint32_t)n) != 0)
      return rec_fail(err, REC_ECORRUPT, "%s:%d: duplicate user_id '%s'", path, lineno, line);
    b->user_ids[n++] = line;
  }
  if (n != b->user_count)
    return rec_fail(err, REC_EMISMATCH, "%s: %zu users, manifest says %zu", path, n, b->user_count);
  return 0;
}

static int check_normalised(const float *emb, size_t rows, size_t dim, const char *path, rec_error *err) {
  for (size_t i = 0; i < rows; i++) {
    const float *v = emb + i * dim;
    double s = 0;
    for (size_t j = 0; j < dim; j++) s += (double)v[j] * v[j];
    if (!(fabs(s - 1.0) < 1e-3))
      return rec_fail(err, REC_ECORRUPT, "%s: row %zu has L2 norm %.4f; item embeddings must be "
                      "L2-normalised", path, i, sqrt(s));
  }
  return 0;
}

/* The item embeddings, read and checked on a thread of their own while the
 * catalog is parsed: the two biggest files of a large bundle, independent of
 * each other (a 10M-item load takes seconds less). */
typedef struct emb_job {
  char path[PATHMAX];
  size_t rows, dim;
  float *data;
  int rc;
  rec_error err;
} emb_job;

static void *load_embeddings(void *arg) {
  emb_job *j = arg;
  j->rc = load_matrix(j->path, j->rows, j->dim, &j->data, &j->err);
  if (!j->rc && (j->rc = check_normalised(j->data, j->rows, j->dim, j->path, &j->err))) {
    free(j->data);
    j->data = NULL;
  }
  return NULL;
}

/* An inverted file written grouped (bundle_write.c): list l is the next
 * list_sizes[l] item rows. recd searches its own view of the embedding
 * matrix with the centroids, and never reads index.faiss (the same index for
 * FAISS tools), so the vectors are in memory once. */
/* index.nprobe, which an inverted file of 'nlist' lists needs. */
static int manifest_nprobe(const char *dir, const cJSON *ix, size_t nlist, size_t *nprobe, rec_error *err) {
  const cJSON *np = cJSON_GetObjectItemCaseSensitive(ix, "nprobe");
  if (!cJSON_IsNumber(np) || np->valuedouble < 1 || np->valuedouble > (double)nlist)
    return rec_fail(err, REC_ECORRUPT, "%s/%s: index.nprobe must be in [1, %zu] (the index's lists) for an "
                    "inverted file", dir, BUNDLE_MANIFEST, nlist);
  *nprobe = (size_t)np->valuedouble;
  return 0;
}

static int load_grouped(bundle *b, const char *dir, const cJSON *m, const cJSON *ix, const char *file,
                        rec_error *err) {
  const cJSON *sizes = cJSON_GetObjectItemCaseSensitive(ix, "list_sizes");
  size_t nlist = (size_t)cJSON_GetArraySize(sizes), nprobe;
  char path[PATHMAX];
  int rc = listed(dir, m, file, path, err); /* listed and checksummed, though recd does not read it */
  if (rc) return rc;
  /* A partition keeps the whole bundle's lists, more than its own items may be. */
  size_t most = b->partition ? (size_t)1 << 24 : b->catalog->count;
  if (!cJSON_IsArray(sizes) || nlist < 1 || nlist > most)
    return rec_fail(err, REC_ECORRUPT, "%s/%s: index.list_sizes must list 1 to %zu lengths", dir, BUNDLE_MANIFEST,
                    most);
  if ((rc = manifest_nprobe(dir, ix, nlist, &nprobe, err))) return rc;
  size_t *len = malloc(nlist * sizeof *len);
  float *centroids = NULL;
  if (!len) return rec_fail(err, REC_ENOMEM, "out of memory");
  size_t l = 0;
  for (const cJSON *v = sizes ? sizes->child : NULL; v; v = v->next, l++) {
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > (double)b->catalog->count ||
        v->valuedouble != (double)(size_t)v->valuedouble) {
      free(len);
      return rec_fail(err, REC_ECORRUPT, "%s/%s: index.list_sizes[%zu] is not a count of items", dir,
                      BUNDLE_MANIFEST, l);
    }
    len[l] = (size_t)v->valuedouble;
  }
  rec_error e2 = {0};
  if (!(rc = listed(dir, m, get_str(ix, "centroids"), path, err)) &&
      !(rc = load_matrix(path, nlist, b->dim, &centroids, err)) &&
      (rc = ann_index_grouped(centroids, nlist, len, b->item_emb, b->catalog->count, b->dim,
                              nprobe, &b->ann, &e2)))
    rec_fail(err, rc, "%s/%s: index: %s", dir, BUNDLE_MANIFEST, e2.msg);
  free(len);
  free(centroids);
  return rc;
}

static int load_index(bundle *b, const char *dir, const cJSON *m, rec_error *err) {
  const cJSON *ix = cJSON_GetObjectItemCaseSensitive(m, "index");
  const char *file = get_str(ix, "file"), *type = get_str(ix, "type");
  const cJSON *ef = cJSON_GetObjectItemCaseSensitive(ix, "ef_search");
  if (!file || !type || strlen(type) >= sizeof b->index_type)
    return rec_fail(err, REC_ECORRUPT, "%s/%s: \"index\" needs \"file\" and \"type\"", dir,
                    BUNDLE_MANIFEST);
  snprintf(b->index_type, sizeof b->index_type, "%s", type);
  b->ef_search = cJSON_IsNumber(ef) ? ef->valueint : 0;
  char path[PATHMAX];
  int rc;
  const char *layout = get_str(ix, "layout");
  if (layout && strcmp(layout, "grouped") == 0) return load_grouped(b, dir, m, ix, file, err);
  if (layout) return rec_fail(err, REC_ECORRUPT, "%s/%s: unknown index.layout \"%s\"", dir, BUNDLE_MANIFEST, layout);
  if ((rc = listed(dir, m, file, path, err)) || (rc = ann_index_open(path, &b->ann, err))) return rc;
  if (ann_count(b->ann) != b->catalog->count || ann_dim(b->ann) != b->dim)
    return rec_fail(err, REC_EMISMATCH, "%s: index holds %zu vectors of dim %zu, bundle has %zu "
                    "items of dim %zu", path, ann_count(b->ann), ann_dim(b->ann),
                    b->catalog->count, b->dim);
  if (strncmp(type, "HNSW", 4) == 0) {
    if (b->ef_search < 1 || b->ef_search > 65536)
      return rec_fail(err, REC_ECORRUPT, "%s/%s: index.ef_search must be in [1, 65536] for HNSW",
                      dir, BUNDLE_MANIFEST);
    return ann_set_ef_search(b->ann, b->ef_search, err);
  }
  size_t nlist = 0, nprobe;
  if (ann_nprobe(b->ann, &nlist) > 0)
    return (rc = manifest_nprobe(dir, ix, nlist, &nprobe, err)) ? rc : ann_set_nprobe(b->ann, nprobe, err);
  return 0;
}

static int load_item_tower(bundle *b, const char *dir, const cJSON *m, rec_error *err);

/* "partition" (recctl shard): which shard of how many this bundle's items
 * are, every one of them hashing there, and every category of the whole
 * bundle, so that filters and items added live name the same categories
 * on every shard. */
static int load_partition(bundle *b, const char *dir, const cJSON *m, rec_error *err) {
  const cJSON *p = cJSON_GetObjectItemCaseSensitive(m, "partition");
  if (!p) return 0;
  size_t shard, shards;
  int rc;
  if ((rc = get_size(dir, p, "shards", 1, 1024, &shards, err)) || (rc = get_size(dir, p, "shard", 0, 1023, &shard, err)))
    return rc;
  if (shard >= shards)
    return rec_fail(err, REC_ECORRUPT, "%s/%s: partition: shard %zu of %zu", dir, BUNDLE_MANIFEST, shard, shards);
  const cJSON *cats = cJSON_GetObjectItemCaseSensitive(p, "categories");
  size_t n = (size_t)cJSON_GetArraySize(cats);
  const char **names = calloc(n + 1, sizeof *names);
  if (!names) return rec_fail(err, REC_ENOMEM, "out of memory");
  size_t k = 0;
  for (const cJSON *c = cats ? cats->child : NULL; c && !rc; c = c->next)
    if (!cJSON_IsString(c)) rc = rec_fail(err, REC_ECORRUPT, "%s/%s: partition.categories: strings only", dir,
                                          BUNDLE_MANIFEST);
    else names[k++] = c->valuestring;
  if (!rc && !cJSON_IsArray(cats))
    rc = rec_fail(err, REC_ECORRUPT, "%s/%s: partition.categories must be an array", dir, BUNDLE_MANIFEST);
  if (!rc && (rc = catalog_add_categories(b->catalog, names, k, err)) && err) {
    char why[sizeof err->msg];
    snprintf(why, sizeof why, "%s", err->msg);
    rec_fail(err, rc, "%s/%s: partition.categories: %s", dir, BUNDLE_MANIFEST, why);
  }
  free(names);
  const catalog *c = b->catalog;
  for (size_t i = 0; !rc && i < c->count; i++)
    if (bundle_shard_of(c->ids[i], (uint32_t)shards) != shard)
      rc = rec_fail(err, REC_ECORRUPT, "%s: item '%.128s' belongs to shard %u of %zu, not to this partition "
                    "(shard %zu)", dir, c->ids[i], bundle_shard_of(c->ids[i], (uint32_t)shards), shards, shard);
  if (rc) return rc;
  b->partition = true;
  b->shard = (uint32_t)shard;
  b->shards = (uint32_t)shards;
  return 0;
}

static int load_parts(bundle *b, const char *dir, const cJSON *m, rec_error *err) {
  char path[PATHMAX];
  size_t items;
  int rc;
  if ((rc = get_size(dir, m, "dim", 1, 4096, &b->dim, err)) ||
      (rc = get_size(dir, m, "item_count", 1, UINT32_MAX - 1, &items, err)) ||
      (rc = get_size(dir, m, "user_count", 0, UINT32_MAX - 1, &b->user_count, err)) ||
      (rc = get_size(dir, m, "user_feature_dim", 1, 65536, &b->feature_dim, err)))
    return rc;
  emb_job job = {.rows = items, .dim = b->dim};
  if ((rc = listed(dir, m, get_str(m, "item_embeddings"), job.path, err))) return rc;
  pthread_t t;
  bool threaded = pthread_create(&t, NULL, load_embeddings, &job) == 0;
  if (!(rc = listed(dir, m, get_str(m, "items"), path, err)) && !(rc = catalog_load(path, &b->catalog, err)) &&
      b->catalog->count != items)
    rc = rec_fail(err, REC_EMISMATCH, "%s: %zu items, manifest says %zu", path, b->catalog->count, items);
  if (threaded) pthread_join(t, NULL);
  else load_embeddings(&job);
  b->item_emb = job.data;
  if (rc) return rc;
  if (job.rc) {
    if (err) *err = job.err;
    return job.rc;
  }
  if ((rc = load_partition(b, dir, m, err))) return rc;
  if ((rc = listed(dir, m, get_str(m, "users"), path, err)) || (rc = load_users(b, path, err)))
    return rc;
  if ((rc = listed(dir, m, get_str(m, "user_features"), path, err)) ||
      (rc = load_matrix(path, b->user_count, b->feature_dim, &b->user_features, err)))
    return rc;
  if ((rc = load_layers(&b->tower, dir, m, cJSON_GetObjectItemCaseSensitive(m, "user_tower"), "user_tower", err)))
    return rc;
  if (b->tower.in_dim != b->feature_dim || b->tower.out_dim != b->dim)
    return rec_fail(err, REC_EMISMATCH, "%s/%s: user tower maps %zu -> %zu, bundle needs %zu -> %zu",
                    dir, BUNDLE_MANIFEST, b->tower.in_dim, b->tower.out_dim, b->feature_dim, b->dim);
  if ((rc = load_item_tower(b, dir, m, err))) return rc;
  if ((rc = load_index(b, dir, m, err))) return rc;
  return signals_load(dir, m, b->catalog, &b->sig, err);
}

static void item_tower_free(bundle_item_tower_rt *it) {
  if (!it) return;
  tower_destroy(&it->t);
  free(it->cat_inputs);
  free(it->has_cat);
  free(it->price_emb);
  free(it->price_edges);
  free(it);
}

/* A listed .npy file of 'rows' x 'cols' (0: any), named by o[key]. */
static int tower_part(const char *dir, const cJSON *m, const cJSON *o, const char *key, size_t rows, size_t cols,
                      npy_f32 *a, rec_error *err) {
  char path[PATHMAX];
  int rc = listed(dir, m, get_str(o, key), path, err);
  if (!rc) rc = npy_f32_read(path, a, err);
  if (!rc && ((rows && a->rows != rows) || (cols && a->cols != cols))) {
    rc = rec_fail(err, REC_EMISMATCH, "%s: item_tower.%s is %zu x %zu, want %zu x %zu", path, key, a->rows,
                  a->cols, rows ? rows : a->rows, cols);
    npy_f32_destroy(a);
  }
  return rc;
}

/* "item_tower" (two-tower bundles): optional; an older or ALS bundle has none. */
static int load_item_tower(bundle *b, const char *dir, const cJSON *m, rec_error *err) {
  const cJSON *o = cJSON_GetObjectItemCaseSensitive(m, "item_tower");
  if (!o) return 0;
  bundle_item_tower_rt *it = calloc(1, sizeof *it);
  if (!it) return rec_fail(err, REC_ENOMEM, "out of memory");
  const catalog *c = b->catalog;
  char path[PATHMAX];
  char *names = NULL;
  npy_f32 ids = {0}, cats = {0}, prices = {0}, edges = {0};
  size_t len;
  int rc = load_layers(&it->t, dir, m, cJSON_GetObjectItemCaseSensitive(o, "layers"), "item_tower.layers", err);
  if (!rc) rc = listed(dir, m, get_str(o, "categories"), path, err);
  if (!rc && !(names = rec_read_file(path, &len, err))) rc = err ? err->code : REC_EIO;
  size_t n_names = 0;
  for (size_t i = 0; !rc && names && i < len; i++) n_names += names[i] == '\n';
  n_names = n_names ? n_names - 1 : 0; /* the header */
  if (!rc && !n_names) rc = rec_fail(err, REC_ECORRUPT, "%s: names no category", path);
  if (!rc) rc = tower_part(dir, m, o, "category_ids", n_names, 0, &ids, err);
  if (!rc) it->id_dim = ids.cols;
  if (!rc) rc = tower_part(dir, m, o, "category_embeddings", n_names, 0, &cats, err);
  if (!rc) it->cat_dim = cats.cols;
  if (!rc) rc = tower_part(dir, m, o, "price_embeddings", 0, 0, &prices, err);
  if (!rc) it->price_dim = prices.cols, it->n_buckets = prices.rows;
  if (!rc && it->n_buckets < 2) rc = rec_fail(err, REC_ECORRUPT, "%s/%s: item_tower needs 2 or more price buckets", dir,
                                             BUNDLE_MANIFEST);
  if (!rc) rc = tower_part(dir, m, o, "price_edges", it->n_buckets - 1, 1, &edges, err);
  if (!rc && (it->t.in_dim != it->id_dim + it->cat_dim + it->price_dim || it->t.out_dim != b->dim))
    rc = rec_fail(err, REC_EMISMATCH, "%s/%s: item tower maps %zu -> %zu, its inputs are %zu wide and the "
                  "bundle's embeddings %zu", dir, BUNDLE_MANIFEST, it->t.in_dim, it->t.out_dim,
                  it->id_dim + it->cat_dim + it->price_dim, b->dim);
  size_t w = it->id_dim + it->cat_dim;
  if (!rc && (!(it->cat_inputs = calloc(c->category_count * w + 1, sizeof *it->cat_inputs)) ||
              !(it->has_cat = calloc(c->category_count + 1, 1))))
    rc = rec_fail(err, REC_ENOMEM, "out of memory");
  /* Rows by name into the catalog's category order; a name the catalog
   * lacks is skipped. */
  char *line = names ? strchr(names, '\n') : NULL;
  for (size_t r = 0; !rc && line && r < n_names; r++) {
    char *name = line + 1, *end = strchr(name, '\n');
    if (!end) break;
    *end = '\0';
    uint32_t k;
    if (catalog_find_category(c, name, strlen(name), &k)) {
      memcpy(it->cat_inputs + k * w, ids.data + r * it->id_dim, it->id_dim * sizeof(float));
      memcpy(it->cat_inputs + k * w + it->id_dim, cats.data + r * it->cat_dim, it->cat_dim * sizeof(float));
      it->has_cat[k] = 1;
    }
    line = end;
  }
  if (!rc) {
    it->price_emb = prices.data, prices.data = NULL;
    it->price_edges = edges.data, edges.data = NULL;
    b->item_tower = it;
    it = NULL;
  }
  free(names);
  npy_f32_destroy(&ids);
  npy_f32_destroy(&cats);
  npy_f32_destroy(&prices);
  npy_f32_destroy(&edges);
  item_tower_free(it);
  return rc;
}

int bundle_embed_item(const bundle *b, uint32_t category, float price, float *out) {
  const bundle_item_tower_rt *it = b->item_tower;
  if (!it || category >= b->catalog->category_count || !it->has_cat[category]) return REC_ENOTFOUND;
  size_t w = it->id_dim + it->cat_dim, in = w + it->price_dim;
  float *x = malloc((in + 2 * it->t.max_width) * sizeof *x);
  if (!x) return REC_ENOMEM;
  uint32_t bucket = 0;
  while (bucket + 1 < it->n_buckets && price > it->price_edges[bucket]) bucket++;
  memcpy(x, it->cat_inputs + (size_t)category * w, w * sizeof *x);
  memcpy(x + w, it->price_emb + (size_t)bucket * it->price_dim, it->price_dim * sizeof *x);
  int rc = tower_forward(&it->t, x, out, x + in);
  free(x);
  return rc;
}

int bundle_load(const char *dir, bundle **out, rec_error *err) {
  char path[PATHMAX];
  size_t len;
  int rc = join(path, dir, BUNDLE_MANIFEST, err);
  if (rc) return rc;
  char *text = rec_read_file(path, &len, err);
  if (!text) return err ? err->code : REC_EIO;
  cJSON *m = cJSON_ParseWithLength(text, len);
  free(text);
  if (!cJSON_IsObject(m)) {
    cJSON_Delete(m);
    return rec_fail(err, REC_ECORRUPT, "%s: not a JSON object", path);
  }
  bundle *b = calloc(1, sizeof *b);
  if (!b) {
    rc = rec_fail(err, REC_ENOMEM, "out of memory");
    goto free_manifest;
  }
  const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(m, "format");
  const char *version = get_str(m, "version");
  if (!cJSON_IsNumber(fmt) || fmt->valueint != BUNDLE_FORMAT) {
    rc = rec_fail(err, REC_ECORRUPT, "%s: \"format\" must be %d", path, BUNDLE_FORMAT);
    goto fail;
  }
  if (!version || !*version || strlen(version) > REC_ID_MAX) {
    rc = rec_fail(err, REC_ECORRUPT, "%s: \"version\" must be 1 to %d bytes", path, REC_ID_MAX);
    goto fail;
  }
  for (const char *p = version; *p; p++) /* it goes into logs, cursors and every answer */
    if (*p <= ' ' || *p > '~' || *p == '"' || *p == '\\') {
      rc = rec_fail(err, REC_ECORRUPT, "%s: \"version\" may hold only printable ASCII without spaces, "
                    "quotes or backslashes", path);
      goto fail;
    }
  b->version = strdup(version);
  b->path = strdup(dir);
  if (!b->version || !b->path) {
    rc = rec_fail(err, REC_ENOMEM, "out of memory");
    goto fail;
  }
  if ((rc = verify_files(dir, cJSON_GetObjectItemCaseSensitive(m, "files"), err)) ||
      (rc = load_parts(b, dir, m, err)))
    goto fail;
  atomic_init(&b->refs, 1);
  *out = b;
  goto free_manifest;
fail:
  atomic_init(&b->refs, 1);
  bundle_unref(b);
free_manifest:
  cJSON_Delete(m);
  return rc;
}

int bundle_check_recall(const bundle *b, size_t queries, size_t k, double floor, double *recall,
                        rec_error *err) {
  size_t n = b->catalog->count, d = b->dim;
  if (k > n) k = n;
  if (queries > n) queries = n;
  float *q = malloc(queries * d * sizeof *q);
  int64_t *e = malloc(queries * k * sizeof *e);
  if (!q || !e) {
    free(q), free(e);
    return rec_fail(err, REC_ENOMEM, "out of memory");
  }
  for (size_t i = 0; i < queries; i++)
    memcpy(q + i * d, bundle_item_embedding(b, (uint32_t)(i * n / queries)), d * sizeof *q);
  int rc = ann_exact_topk(b->item_emb, n, d, q, queries, k, e, err);
  /* A partition keeps the whole bundle's lists and nprobe, tuned for the
   * whole: over its own sparse lists the check probes them all, which still
   * checks that the lists and the rows agree. */
  size_t nlist = 0, nprobe = b->partition ? ann_nprobe(b->ann, &nlist) : 0;
  if (nprobe) ann_set_nprobe((ann_index *)b->ann, nlist, NULL);
  *recall = rc ? 0 : ann_recall(b->ann, q, queries, d, k, e);
  if (nprobe) ann_set_nprobe((ann_index *)b->ann, nprobe, NULL);
  free(q), free(e);
  if (!rc && *recall < floor)
    rc = rec_fail(err, REC_ECORRUPT, "%s: index recall@%zu %.3f on %zu smoke queries is below %.2f", b->path, k,
                  *recall, queries, floor);
  return rc;
}

uint32_t bundle_shard_of(const char *id, uint32_t shards) {
  return shards > 1 ? (uint32_t)(XXH3_64bits(id, strlen(id)) % shards) : 0;
}

int bundle_set_shard(bundle *b, uint32_t shard, uint32_t shards, rec_error *err) {
  unsigned char *keep = NULL;
  if (b->partition && (shard != b->shard || shards != b->shards))
    return rec_fail(err, REC_EMISMATCH, "%s holds shard %u/%u of its bundle's items; this process serves --shard=%u/%u",
                    b->path, b->shard, b->shards, shard, shards);
  if (shards > 1) { /* allocate first: a failure leaves the bundle as it was */
    if (!(keep = malloc(b->catalog->count + 1))) return rec_fail(err, REC_ENOMEM, "out of memory");
    for (size_t i = 0; i < b->catalog->count; i++)
      keep[i] = bundle_shard_of(b->catalog->ids[i], shards) == shard;
  }
  free(b->shard_keep);
  b->shard_keep = keep;
  b->shard = shard;
  b->shards = shards;
  return 0;
}

bundle *bundle_ref(bundle *b) {
  atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
  return b;
}

int bundle_view(bundle *base, catalog *cat, const float *added_emb, bundle **out, rec_error *err) {
  bundle *v = malloc(sizeof *v);
  if (!v) {
    catalog_free(cat);
    return rec_fail(err, REC_ENOMEM, "out of memory");
  }
  /* Shares everything it does not replace below; not the count of
   * references, which other threads change meanwhile. */
  memcpy(v, base, offsetof(bundle, refs));
  atomic_init(&v->refs, 1);
  v->parent = bundle_ref(base);
  v->catalog = cat;
  v->own_emb = v->own_cycle = v->own_keep = false;
  v->added_events = NULL;
  size_t n = cat->count, n0 = base->catalog->count, added = n - n0;
  if (added) {
    v->item_emb = malloc(n * base->dim * sizeof *v->item_emb);
    v->own_emb = v->item_emb != NULL;
    if (base->sig.cycle_days && (v->sig.cycle_days = calloc(n, sizeof *v->sig.cycle_days)))
      v->own_cycle = true, memcpy(v->sig.cycle_days, base->sig.cycle_days, n0 * sizeof *v->sig.cycle_days);
    if (base->shard_keep && (v->shard_keep = malloc(n)))
      v->own_keep = true, memcpy(v->shard_keep, base->shard_keep, n0);
    if (!v->own_emb || (base->sig.cycle_days && !v->own_cycle) || (base->shard_keep && !v->own_keep)) {
      bundle_unref(v);
      return rec_fail(err, REC_ENOMEM, "out of memory for %zu added items", added);
    }
    memcpy(v->item_emb, base->item_emb, n0 * base->dim * sizeof *v->item_emb);
    memcpy(v->item_emb + n0 * base->dim, added_emb, added * base->dim * sizeof *v->item_emb);
    for (size_t i = n0; i < n && v->shard_keep; i++)
      v->shard_keep[i] = bundle_shard_of(cat->ids[i], base->shards) == base->shard;
  }
  *out = v;
  return 0;
}

void bundle_unref(bundle *b) {
  if (!b || atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) != 1)
    return;
  if (b->parent) { /* a view frees only what it owns */
    catalog_free(b->catalog);
    if (b->own_emb) free(b->item_emb);
    if (b->own_cycle) free(b->sig.cycle_days);
    if (b->own_keep) free(b->shard_keep);
    free(b->added_events);
    bundle_unref(b->parent);
    free(b);
    return;
  }
  free(b->version);
  free(b->path);
  catalog_free(b->catalog);
  free(b->item_emb);
  free(b->user_ids);
  free(b->user_features);
  tower_destroy(&b->tower);
  ann_index_free(b->ann);
  item_tower_free(b->item_tower);
  signals_destroy(&b->sig);
  free(b->shard_keep);
  strmap_free(b->user_map);
  free(b->user_text);
  free(b);
}

bool bundle_find_user(const bundle *b, const char *id, size_t len, uint32_t *row) {
  return strmap_get(b->user_map, id, len, row);
}
