/* server/live_catalog.h - the catalog as it changes while recd serves
 * (rec.v1.Catalog; docs/catalog.md).
 *
 * Every change ever accepted is kept in an overlay, one entry per item id
 * (the fields it set, or deleted), and in the catalog log (catlog.h),
 * replayed into the overlay at start. What requests see is a bundle view
 * (bundle_view): the loaded bundle's catalog with the whole overlay
 * applied, swapped in atomically after each batch and after each reload, so
 * a reload keeps every update made since the bundle was built.
 *
 * Batches are applied one at a time, in arrival order, by one writer
 * thread: check against the catalog (categories, known ids), append to the
 * log and fdatasync, apply to the overlay, build and publish the new view,
 * answer. Serving threads only queue batches. Thread-safe. */
#ifndef REC_LIVE_CATALOG_H
#define REC_LIVE_CATALOG_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "common/err.h"
#include "retrieval/bundle.h"

typedef struct live_catalog live_catalog;

/* One item of a batch: its id and the fields set (has_*); the strings are
 * NUL-terminated and checked by the caller (lengths, no tab or newline). */
typedef struct lc_item {
  const char *id;
  bool deleted;                        /* a Delete; the fields are ignored */
  bool has_stock, has_price, has_margin;
  bool in_stock;
  double price, margin;
  const char *category, *subcategory, *brand, *name; /* NULL: not set */
} lc_item;

/* How a batch ended: rc 0 with the generation it made, the items it
 * applied and how many were new; or an error (REC_EINVAL naming the row,
 * REC_EIO, REC_EUNAVAIL, REC_EDEADLINE) in 'err'. Runs on the writer. */
typedef void (*lc_done_fn)(void *arg, int rc, uint64_t generation, size_t applied, size_t added,
                           const rec_error *err);
/* Makes 'view' the bundle requests see (taking over the reference). Runs
 * under the live catalog's lock, so views are published in order. */
typedef void (*lc_publish_fn)(void *arg, bundle *view);

/* Opens the log in 'dir', replays it into the overlay and starts the
 * writer. Nothing is published until live_catalog_set_base. */
int  live_catalog_open(const char *dir, lc_publish_fn publish, void *arg, live_catalog **out, rec_error *err);
/* Finishes the batches queued (later ones fail REC_EUNAVAIL), stops the
 * writer and frees everything. NULL is a no-op. */
void live_catalog_close(live_catalog *lc);

/* A bundle was loaded: makes it the base every later batch applies to and
 * publishes it with the overlay applied. REC_ENOMEM leaves the old base. */
int  live_catalog_set_base(live_catalog *lc, bundle *base, rec_error *err);

/* Queues a batch (the items must stay valid until 'done' runs). Returns 0,
 * or fails at once without calling 'done': REC_EUNAVAIL (closing),
 * REC_ENOMEM. 'row_name' ("items" or "item_ids") names rows in errors. */
int  live_catalog_submit(live_catalog *lc, const lc_item *items, size_t n, const char *row_name,
                         int64_t deadline_ns, lc_done_fn done, void *arg, rec_error *err);

/* An event for 'id' was recorded: counts toward an added item's
 * exploration fading. Cheap for ids the overlay does not add. */
void live_catalog_note_event(live_catalog *lc, const char *id, size_t len);

uint64_t live_catalog_generation(live_catalog *lc);
size_t   live_catalog_size(live_catalog *lc);   /* items in the overlay */
#endif
