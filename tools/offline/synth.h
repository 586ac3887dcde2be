/* tools/offline/synth.h - a small deterministic bundle generator for tests, demos and
 * benchmarks (the real trainer is `recctl build`). Items fall in categories
 * whose embeddings cluster; each user is drawn to one category, so a correct
 * server recommends a user mostly items of that category. Same options, same
 * bytes in every file of the bundle. No shared state. */
#ifndef REC_SYNTH_H
#define REC_SYNTH_H
#include <stddef.h>
#include <stdint.h>
#include "common/err.h"

typedef struct synth_opts {
  size_t items, users, dim, categories;
  uint64_t seed;
  const char *index_type;   /* FAISS factory string; NULL: "HNSW32" */
  int ef_search;            /* HNSW breadths; 0: from the catalog size */
  int ef_construction;      /* (bundle_write.h) */
  const char *version;      /* NULL: "synth-<seed>-<items>" */
} synth_opts;

/* Writes a bundle to 'dir' (which must not exist). Returns 0 or a negative
 * code with 'err' filled. */
int synth_bundle(const char *dir, const synth_opts *o, rec_error *err);

/* The category user 'u' of a bundle made with these options is drawn to... */
size_t synth_user_category(const synth_opts *o, size_t u);
/* ...and its name, written to buf. */
void synth_category_name(size_t c, char *buf, size_t len);
#endif
