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
  /* private */
  strmap *id_map, *category_map;
  char *text;              /* the file's bytes, which ids and names point into */
} catalog;

/* Parses an items.tsv file (header: item_id category price in_stock
 * popularity [margin]). Returns 0, or REC_EIO / REC_ECORRUPT with 'err' naming
 * file:line and the problem. */
int  catalog_load(const char *path, catalog **out, rec_error *err);
void catalog_free(catalog *c);                        /* NULL is a no-op */

/* True and *item set when 'id' (len bytes) is in the catalog. */
bool catalog_find(const catalog *c, const char *id, size_t len, uint32_t *item);
/* True and *category set when the category name is known. */
bool catalog_find_category(const catalog *c, const char *name, size_t len, uint32_t *category);
#endif
