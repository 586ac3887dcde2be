/* retrieval/bundle_write.c - see bundle_write.h. The manifest is written last,
 * after every other file has been hashed from disk, so its checksums describe
 * exactly the bytes a loader will read. */
#include "retrieval/bundle_write.h"
#include "common/catalog.h"
#include "common/fileio.h"
#include "common/npy.h"
#include "retrieval/ann.h"
#include "retrieval/ann_tune.h"
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
int bundle__list_file(cJSON *files, const char *dir, const char *name, rec_error *err) {
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
        (rc = bundle__list_file(files, dir, name, err)))
      return rc;
    cJSON_AddStringToObject(o, "weights", name);
    snprintf(name, sizeof name, "tower_%zu_b.npy", i);
    path_of(path, dir, name);
    if ((rc = npy_f32_write(path, l->b, l->out, 1, 1, err)) ||
        (rc = bundle__list_file(files, dir, name, err)))
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
  if (!rc) rc = bundle__list_file(files, dir, name, err);
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
  int rc = bundle__list_file(files, dir, "item_tower_categories.tsv", err);
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

/* An inverted file's lists: about sqrt(items), which keeps both the k-means
 * (50 samples a list) and the coarse pass of each search small. */
size_t bundle_ivf_lists(size_t items) {
  size_t l = 1;
  while (l * l < items) l++;
  return l < 16 ? 16 : l;
}

const char *bundle_default_index(size_t items, char *buf, size_t len) {
  if (items <= BUNDLE_FLAT_MAX) snprintf(buf, len, "Flat");
  else snprintf(buf, len, "IVF%zu,Flat", bundle_ivf_lists(items));
  return buf;
}

/* Queries like the ones recd will serve, to tune against: the user tower's
 * answers for up to TUNE_QUERIES users spread over the table, or, with no
 * users, items spread over the catalog. */
#define TUNE_QUERIES 512
static float *tuning_queries(const bundle_spec *s, size_t *nq) {
  size_t d = s->dim, users = s->n_layers ? s->user_count : 0;
  size_t n = users ? users : s->item_count;
  if (n > TUNE_QUERIES) n = TUNE_QUERIES;
  float *q = malloc(n * d * sizeof *q);
  if (!q) return NULL;
  size_t width = s->layers ? s->layers[0].in : 0;
  for (size_t l = 0; l < s->n_layers; l++)
    if (s->layers[l].out > width) width = s->layers[l].out;
  float *scratch = users ? malloc(2 * width * sizeof *scratch) : NULL;
  if (users && !scratch) {
    free(q);
    return NULL;
  }
  tower t = {s->n_layers, (tower_layer *)s->layers, users ? s->layers[0].in : 0, d, width};
  size_t m = 0;
  for (size_t i = 0; i < n; i++) {
    if (users) {
      const float *x = s->user_features + (i * s->user_count / n) * s->feature_dim;
      if (tower_forward(&t, x, q + m * d, scratch) == 0) m++;
    } else {
      memcpy(q + m * d, s->item_emb + (i * s->item_count / n) * d, d * sizeof *q);
      m++;
    }
  }
  free(scratch);
  *nq = m;
  return q;
}

/* k-means on every (items / samples)-th item, then the add, then the
 * fewest lists per search that find BUNDLE_IVF_RECALL of the exact top 100. */
static int build_ivf(ann_index *idx, const bundle_spec *s, size_t *nprobe, double *recall, rec_error *err) {
  size_t nlist = 0, d = s->dim, n = s->item_count;
  ann_nprobe(idx, &nlist);
  size_t ns = 50 * nlist < n ? 50 * nlist : n;
  float *sample = malloc(ns * d * sizeof *sample);
  if (!sample) return rec_fail(err, REC_ENOMEM, "out of memory");
  for (size_t i = 0; i < ns; i++) memcpy(sample + i * d, s->item_emb + (i * n / ns) * d, d * sizeof *sample);
  int rc = ann_index_train(idx, sample, ns, err);
  free(sample);
  for (size_t at = 0; at < n && !rc; at += 100000) {
    size_t m = n - at < 100000 ? n - at : 100000;
    rc = ann_index_add(idx, s->item_emb + at * d, m, err);
    if (!rc && s->progress) s->progress(s->progress_arg, at + m, n);
  }
  if (rc) return rc;
  size_t nq = 0;
  float *q = tuning_queries(s, &nq);
  if (!q) return rec_fail(err, REC_ENOMEM, "out of memory");
  rc = nq ? ann_tune_nprobe(idx, s->item_emb, n, d, q, nq, 100, BUNDLE_IVF_RECALL, nprobe, recall, err)
          : rec_fail(err, REC_EINVAL, "no query to tune the index's nprobe with");
  free(q);
  return rc;
}

static int new_index(const bundle_spec *s, int ef_construction, ann_index **out, rec_error *err) {
  ann_index *idx;
  int rc = ann_index_new(s->dim, s->index_type, &idx, err);
  if (!rc && is_hnsw(s->index_type) && (rc = ann__set_ef_construction(idx, ef_construction, err)))
    ann_index_free(idx);
  if (!rc) *out = idx;
  return rc;
}

/* An inverted file's rows as bundle_write stores them: grouped by list
 * (ann_ivf_group), so that recd serves it from the embedding matrix alone. */
typedef struct grouping {
  int64_t *order;   /* [items]: row r of the bundle is the spec's item order[r] */
  size_t *sizes;    /* [nlist] */
  float *centroids; /* [nlist x dim] */
  size_t nlist;
} grouping;

static void grouping_free(grouping *g) {
  free(g->order);
  free(g->sizes);
  free(g->centroids);
}

static int write_index(const char *dir, const bundle_spec *s, cJSON *m, cJSON *files, grouping *g,
                       rec_error *err) {
  char path[PATHMAX];
  ann_index *idx;
  bool hnsw = is_hnsw(s->index_type);
  int ef_search = s->ef_search || !hnsw ? s->ef_search : bundle_hnsw_ef_search(s->item_count);
  int ef_construction = s->ef_construction ? s->ef_construction
                                           : bundle_hnsw_ef_construction(s->item_count);
  int rc = new_index(s, ef_construction, &idx, err);
  if (rc) return rc;
  size_t nprobe = 0, nlist = 0;
  double recall = 0;
  bool ivf = ann_nprobe(idx, &nlist) > 0;
  if (ivf) rc = build_ivf(idx, s, &nprobe, &recall, err);
  else if (ann_needs_training(idx))
    rc = rec_fail(err, REC_EINVAL, "index '%s' needs training recd does not do (use Flat, HNSW<M> or "
                  "IVF<lists>,Flat)", s->index_type);
  /* In chunks, so a long HNSW build can report progress. */
  for (size_t at = 0; at < s->item_count && !rc && !ivf; at += 10000) {
    size_t n = s->item_count - at < 10000 ? s->item_count - at : 10000;
    rc = ann_index_add(idx, s->item_emb + at * s->dim, n, err);
    if (!rc && s->progress) s->progress(s->progress_arg, at + n, s->item_count);
  }
  if (!rc && ivf) {
    g->nlist = nlist;
    g->order = malloc(s->item_count * sizeof *g->order);
    g->sizes = malloc(nlist * sizeof *g->sizes);
    g->centroids = malloc(nlist * s->dim * sizeof *g->centroids);
    rc = !g->order || !g->sizes || !g->centroids ? rec_fail(err, REC_ENOMEM, "out of memory")
                                                 : ann_ivf_group(idx, g->order, g->sizes, g->centroids, err);
  }
  if (rc) {
    ann_index_free(idx);
    return rc;
  }
  path_of(path, dir, "index.faiss");
  rc = ann_index_write(idx, path, err);
  ann_index_free(idx);
  if (rc || (rc = bundle__list_file(files, dir, "index.faiss", err))) return rc;
  cJSON *ix = cJSON_AddObjectToObject(m, "index");
  cJSON_AddStringToObject(ix, "file", "index.faiss");
  cJSON_AddStringToObject(ix, "type", s->index_type);
  cJSON_AddNumberToObject(ix, "ef_search", ef_search);
  if (hnsw) cJSON_AddNumberToObject(ix, "ef_construction", ef_construction);
  if (ivf) {
    cJSON_AddNumberToObject(ix, "nlist", (double)nlist);
    cJSON_AddNumberToObject(ix, "nprobe", (double)nprobe);
    char r[16];
    snprintf(r, sizeof r, "%.4f", recall);
    cJSON_AddRawToObject(ix, "tuned_recall_at_100", r);
    /* The grouped layout: the centroids, and the lists' lengths in row order. */
    path_of(path, dir, "ivf_centroids.npy");
    if ((rc = npy_f32_write(path, g->centroids, nlist, s->dim, 2, err)) ||
        (rc = bundle__list_file(files, dir, "ivf_centroids.npy", err)))
      return rc;
    cJSON_AddStringToObject(ix, "layout", "grouped");
    cJSON_AddStringToObject(ix, "centroids", "ivf_centroids.npy");
    cJSON *sizes = cJSON_AddArrayToObject(ix, "list_sizes");
    for (size_t l = 0; l < nlist && sizes; l++) cJSON_AddItemToArray(sizes, cJSON_CreateNumber((double)g->sizes[l]));
    if (!sizes) return rec_fail(err, REC_ENOMEM, "out of memory");
  }
  return 0;
}

/* The spec with its item rows in 'order' (arrays in *own, freed by the
 * caller with free_permuted). */
typedef struct permuted {
  const char **ids, **cats;
  float *price, *pop, *margin, *emb;
  bool *stock;
} permuted;

static void free_permuted(permuted *p) {
  free(p->ids), free(p->cats), free(p->price), free(p->pop), free(p->margin), free(p->emb), free(p->stock);
}

static int permute(bundle_spec *s, const int64_t *order, permuted *p, rec_error *err) {
  size_t n = s->item_count, d = s->dim;
  p->ids = malloc(n * sizeof *p->ids);
  p->cats = malloc(n * sizeof *p->cats);
  p->price = malloc(n * sizeof *p->price);
  p->pop = malloc(n * sizeof *p->pop);
  p->margin = s->item_margin ? malloc(n * sizeof *p->margin) : NULL;
  p->emb = malloc(n * d * sizeof *p->emb);
  p->stock = malloc(n * sizeof *p->stock);
  if (!p->ids || !p->cats || !p->price || !p->pop || (s->item_margin && !p->margin) || !p->emb || !p->stock)
    return rec_fail(err, REC_ENOMEM, "out of memory");
  for (size_t r = 0; r < n; r++) {
    size_t i = (size_t)order[r];
    p->ids[r] = s->item_ids[i];
    p->cats[r] = s->item_categories[i];
    p->price[r] = s->item_price[i];
    p->pop[r] = s->item_popularity[i];
    if (p->margin) p->margin[r] = s->item_margin[i];
    p->stock[r] = s->item_in_stock[i];
    memcpy(p->emb + r * d, s->item_emb + i * d, d * sizeof *p->emb);
  }
  s->item_ids = p->ids;
  s->item_categories = p->cats;
  s->item_price = p->price;
  s->item_popularity = p->pop;
  s->item_margin = p->margin;
  s->item_in_stock = p->stock;
  s->item_emb = p->emb;
  return 0;
}

static int write_rows(const char *dir, const bundle_spec *s, cJSON *m, cJSON *files, rec_error *err);

/* The index first: an inverted file decides the order of the item rows. */
static int write_data(const char *dir, const bundle_spec *s, cJSON *m, cJSON *files, rec_error *err) {
  grouping g = {0};
  permuted p = {0};
  bundle_spec rows = *s;
  int rc = write_index(dir, s, m, files, &g, err);
  if (!rc && g.order) rc = permute(&rows, g.order, &p, err);
  grouping_free(&g);
  if (!rc) rc = write_rows(dir, &rows, m, files, err);
  free_permuted(&p);
  return rc;
}

static int write_rows(const char *dir, const bundle_spec *s, cJSON *m, cJSON *files, rec_error *err) {
  char path[PATHMAX];
  int rc;
  path_of(path, dir, "items.tsv");
  if ((rc = write_items(path, s, err)) || (rc = bundle__list_file(files, dir, "items.tsv", err))) return rc;
  path_of(path, dir, "item_embeddings.npy");
  if ((rc = npy_f32_write(path, s->item_emb, s->item_count, s->dim, 2, err)) ||
      (rc = bundle__list_file(files, dir, "item_embeddings.npy", err)))
    return rc;
  path_of(path, dir, "users.tsv");
  if ((rc = write_users(path, s, err)) || (rc = bundle__list_file(files, dir, "users.tsv", err))) return rc;
  path_of(path, dir, "user_features.npy");
  if ((rc = npy_f32_write(path, s->user_features, s->user_count, s->feature_dim, 2, err)) ||
      (rc = bundle__list_file(files, dir, "user_features.npy", err)))
    return rc;
  cJSON_AddStringToObject(m, "items", "items.tsv");
  cJSON_AddStringToObject(m, "item_embeddings", "item_embeddings.npy");
  cJSON_AddStringToObject(m, "users", "users.tsv");
  cJSON_AddStringToObject(m, "user_features", "user_features.npy");
  if ((rc = write_tower(dir, s, m, files, err))) return rc;
  if ((rc = write_item_tower(dir, s, m, files, err))) return rc;
  for (size_t i = 0; i < s->n_extras; i++) {
    const bundle_extra *x = &s->extras[i];
    path_of(path, dir, x->name);
    if ((rc = x->write(path, x->arg, err)) || (rc = bundle__list_file(files, dir, x->name, err))) return rc;
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

int bundle__write_manifest(const char *dir, cJSON *m, rec_error *err) {
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

void bundle__remove_tree(const char *dir) {
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
  bundle__remove_tree(tmp);
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
  if ((rc = bundle__write_manifest(tmp, m, err)) != 0) goto fail;
  if (rename(tmp, dir) != 0) {
    rc = rec_fail(err, REC_EIO, "rename %s -> %s: %s", tmp, dir, strerror(errno));
    goto fail;
  }
  cJSON_Delete(m);
  return 0;
fail:
  cJSON_Delete(files);
  cJSON_Delete(m);
  bundle__remove_tree(tmp);
  return rc;
}
