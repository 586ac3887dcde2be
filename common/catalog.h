/* common/catalog.h - the item table both tiers share: id, category, price,
 * stock and popularity of every item, addressed by a dense row number
 * ("item index") that is also the item's row in the embedding matrix and its
 * label in the FAISS index. Loaded once from a bundle's items.tsv (optional
 * sixth column: margin), then
 * immutable: any number of threads may read it. */
#ifndef REC_CATALOG_H
#define REC_CATALOG_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "common/err.h"
#include "common/strmap.h"

#define REC_ID_MAX 128 /* longest item, user or category id, in bytes */

typedef struct catalog {
  size_t count;            /* items */
  const char **ids;        /* [count] NUL-terminated ids */
  uint32_t *category;      /* [count] index into categories */
  float *price;            /* [count] unit price, >= 0 */
  bool *in_stock;          /* [count] */
  float *popularity;       /* [count] popularity score, >= 0, higher is more popular */
  float *margin;           /* [count] margin ratio (profit / revenue); 0 when not given */
  bool has_margin;
  uint32_t *by_popularity; /* [count] item indexes, most popular first */
  size_t category_count;
  const char **categories; /* [category_count] category names */
  size_t *category_start;  /* [category_count + 1]: category k's rows are [category_start[k],
                            * category_start[k + 1]) of both lists below, deleted rows included: */
  uint32_t *by_category;   /* [count] in row order (scans read the embedding matrix forwards) */
  uint32_t *by_category_popularity; /* [count] most popular first (by_popularity's order) */
  uint8_t *deleted;        /* [count] 1: removed by a live update; NULL: none is */
  size_t base_count;       /* rows of the bundle's own file; rows past it were added live */
  uint64_t generation;     /* live catalog generation this table reflects (0: the file) */
  /* private */
  strmap *id_map, *category_map;
  char *text;              /* the file's bytes (or the added ids), which ids and names point into */
  char *more_names;        /* catalog_add_categories: the names it added */
  const struct catalog *base; /* catalog_derive: whose text, names and category map this borrows */
} catalog;

/* One item's change in a live update (catalog_derive): a field whose has_
 * flag is false keeps its value; an item the base lacks becomes a new row
 * and must have category and price. */
typedef struct catalog_change {
  const char *id;          /* 1..REC_ID_MAX bytes; need not be NUL-terminated */
  size_t id_len;
  bool deleted;            /* the item is gone; the other fields are ignored */
  bool has_category, has_price, has_stock, has_margin;
  uint32_t category;       /* index into the base's categories */
  float price, margin;
  bool in_stock;
} catalog_change;

/* Parses an items.tsv file (header: item_id category price in_stock
 * popularity [margin]). Returns 0, or REC_EIO / REC_ECORRUPT with 'err' naming
 * file:line and the problem. */
int  catalog_load(const char *path, catalog **out, rec_error *err);
void catalog_free(catalog *c);                        /* NULL is a no-op */

/* A new catalog: 'base' with 'changes' applied in order (an id may come
 * more than once; the last change of a field wins). Changed rows keep their
 * row number; ids the base lacks are added after its last row, popularity
 * 0, last in by_popularity; deleted rows stay (their number is an index
 * elsewhere) but are marked, and catalog_find no longer finds them. The
 * result borrows from 'base', which must outlive it and is not changed.
 * REC_EINVAL (a new item without category or price, or a category out of
 * range) with 'err' naming the change's index; REC_ENOMEM. */
int  catalog_derive(const catalog *base, const catalog_change *changes, size_t n, uint64_t generation,
                    catalog **out, rec_error *err);

/* Makes the categories in 'names' known (those not yet known are added
 * after the others, in the given order) although no row has them: a
 * shard's partition of a bundle knows every category of the whole. Call
 * once, before the catalog is shared or derived from. Returns 0, REC_EINVAL (a
 * name of 0 or more than REC_ID_MAX bytes, or with a tab or newline) or
 * REC_ENOMEM; on failure the catalog is as it was. */
int  catalog_add_categories(catalog *c, const char *const *names, size_t n, rec_error *err);

/* True and *item set when 'id' (len bytes) is in the catalog (and not deleted). */
bool catalog_find(const catalog *c, const char *id, size_t len, uint32_t *item);
/* True and *category set when the category name is known. */
bool catalog_find_category(const catalog *c, const char *name, size_t len, uint32_t *category);
#endif
