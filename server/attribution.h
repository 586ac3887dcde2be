/* server/attribution.h - what a served slate led to, per experiment arm.
 *
 * Every Recommend answer assigned to an experiment arm is remembered here
 * for a while: a hash of its request id and of its user, the arms (metric
 * slots, metrics.h), the time, and a hash of each item shown. An event from
 * Events.Record that names the slate's request id (Event.slate_request_id),
 * or a purchase without one that follows the user's last slate within the
 * window, is attributed to that slate's arms when the item was on it and
 * the user is the slate's. Per arm it counts slates, items shown, clicks
 * (once per item and slate), add-to-carts, purchases and revenue, with the
 * slates that had a click or a purchase and the sum of squared per-slate
 * revenue, so a report can put an interval on each rate.
 *
 * Bounded: at most 'max_slates' slates and 'max_bytes' of them; the oldest
 * are forgotten first (their later events then count for nobody). Ids are
 * kept only as 64-bit hashes. Counters start at zero with the process, like
 * every Prometheus counter. Thread-safe (one mutex, held for a lookup or an
 * insert). */
#ifndef REC_ATTRIBUTION_H
#define REC_ATTRIBUTION_H
#include <stddef.h>
#include <stdint.h>

typedef struct attribution attribution;

typedef struct arm_outcomes {
  uint64_t slates, items, clicks, clicked_slates, carts, purchases, purchased_slates;
  double revenue, revenue_sq;
} arm_outcomes;

enum { ATTR_MAX_ARMS = 8 }; /* arms a slate carries: one per layer */

int  attribution_new(size_t max_slates, size_t max_bytes, int64_t window_ms, attribution **out);
void attribution_free(attribution *t);                  /* NULL is a no-op */

/* The hash items and ids are kept as. */
uint64_t attribution_hash(const char *s, size_t len);

/* A slate was served: 'slots' are its arms' metric slots (n_slots >= 1),
 * 'items' the hashes of the ids shown. Counts the slate for each arm. */
void attribution_served(attribution *t, const char *request_id, const char *user, size_t user_len,
                        const int *slots, size_t n_slots, const uint64_t *items, size_t n_items, int64_t now_ms);

/* An event was made durable. 'type' is rec.v1.EventType (view: ignored);
 * 'slate_request_id' may be "". */
void attribution_event(attribution *t, const char *slate_request_id, const char *user, size_t user_len,
                       const char *item, size_t item_len, int type, int quantity, double price, int64_t time_ms);

/* The counters of metric slot 'slot' (zeros when it never served). */
void attribution_outcomes(attribution *t, int slot, arm_outcomes *out);
#endif
