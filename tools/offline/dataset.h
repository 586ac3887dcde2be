/* tools/offline/dataset.h - the offline pipeline's input: an interactions CSV and a
 * catalog CSV, their columns mapped by a schema (flags or a small file) so a
 * new dataset loads without code changes, validated row by row (errors name
 * file:line), cleaned by the product's rules, with an implicit strength per
 * interaction. Single-threaded; the result is read-only afterwards.
 *
 * Cleaning: rows with a negative quantity or price are returns and are
 * dropped; zero-price rows are kept (promotions carry co-purchase signal);
 * exact duplicate rows are dropped; every count is reported.
 *
 * Strength (purchases): s = 0.5 * price / (the user's mean item price)
 *                         + 0.5 * quantity / (the item's mean quantity),
 * strength = clip(log2(1 + s), 0.1, 5.0), so an average line scores 1.
 * Ratings (rows whose rating field is set): strength = clip(rating / 2.5, 0.1, 5.0),
 * so 2.5 of 5 stars scores 1 and 5 stars scores 2. */
#ifndef REC_DATASET_H
#define REC_DATASET_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "common/arena.h"
#include "common/err.h"
#include "common/strmap.h"

/* Column names in the two files. NULL or "" for an optional column that is absent. */
typedef struct ds_schema {
  const char *user, *item, *time;                    /* required */
  const char *quantity, *price, *event, *rating;     /* optional */
  const char *c_item, *c_category;                   /* catalog, required */
  const char *c_subcategory, *c_brand, *c_price, *c_margin, *c_in_stock, *c_name;
} ds_schema;

/* The canonical columns tools/data/fetch.sh writes. */
extern const ds_schema DS_SCHEMA_DEFAULT;

/* Overrides schema fields from a file of 'field = column name' lines (fields
 * named as in ds_schema: user, item, time, quantity, ..., c_item, c_category,
 * ...). Strings are kept in 'storage' (freed by the caller with free()).
 * Returns 0 or REC_EINVAL naming file:line. */
int ds_schema_load(const char *path, ds_schema *s, char **storage, rec_error *err);
/* Sets one field by name; REC_EINVAL for an unknown field. */
int ds_schema_set(ds_schema *s, const char *field, const char *column);

typedef struct ds_item {
  const char *id, *category, *subcategory, *brand, *name;
  uint32_t category_idx;
  float price;               /* catalog price; 0 when absent */
  float margin;              /* margin or profit ratio; 0 when absent */
  bool in_stock;
} ds_item;

typedef struct ds_event {
  uint32_t user, item;
  int64_t time;              /* Unix seconds */
  float quantity, price, strength;
  float rating;              /* NaN when the row has none */
  bool priced;               /* the row gave a price (0 is a real, promotional price) */
} ds_event;

typedef struct ds_report {
  size_t rows, kept, returns, duplicates, zero_price;
} ds_report;

typedef struct dataset {
  size_t n_users, n_items, n_events, n_categories;
  char **user_ids;           /* [n_users] */
  ds_item *items;            /* [n_items], catalog order */
  const char **categories;   /* [n_categories] */
  ds_event *events;          /* [n_events], sorted by user, then time, then item */
  size_t *user_start;        /* [n_users + 1]: user u's events are [user_start[u], user_start[u+1]) */
  bool has_rating;           /* some row has a rating */
  bool has_price;            /* the price column is mapped */
  bool has_time;             /* the time column is mapped; without it every event's time is 0
                              * (recctl eval then splits each user at random) */
  ds_report report;
  /* private */
  strmap *user_map, *item_map, *category_map;
  arena strings;             /* every id and name */
} dataset;

/* Loads both files ('interactions' may be NULL: the catalog alone, no users).
 * Returns 0, or a negative code with 'err' naming file:line (or file and
 * column) and the problem; nothing allocated on failure. */
int  dataset_load(const char *interactions, const char *catalog, const ds_schema *s,
                  dataset **out, rec_error *err);
void dataset_free(dataset *d);                      /* NULL is a no-op */
bool dataset_find_item(const dataset *d, const char *id, uint32_t *item);
bool dataset_find_user(const dataset *d, const char *id, uint32_t *user);

/* Parses "1478563200", "2016-11-08" or "2016-11-08T10:20:30[Z]" as Unix
 * seconds (UTC); false for anything else. */
bool ds_parse_time(const char *s, int64_t *out);
/* The strength formulas above, exposed for tests and the event log. */
float ds_strength_purchase(float price, float user_mean_price, float quantity, float item_mean_qty);
float ds_strength_rating(float rating);
#endif
