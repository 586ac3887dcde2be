/* server/online.h - what users did since the bundle was built: per user,
 * the ONLINE_ITEMS distinct items with the latest events, each with its last
 * event time, its event count and whether it was bought. Fed by
 * Events.Record and by the event log's replay at start; read by Recommend
 * for item-CF seeds (a cold visitor's session) and the repurchase rules.
 * Thread-safe (one mutex; the user table doubles as it fills, once per
 * doubling a pause of one pass over the users). */
#ifndef REC_ONLINE_H
#define REC_ONLINE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "common/arena.h"
#include "server/eventlog.h"

enum { ONLINE_ITEMS = 50 };  /* recent items kept per user */

typedef struct online online;

typedef struct online_item {
  const char *item;          /* NUL-terminated, arena copy */
  int64_t last_time;         /* Unix seconds */
  uint32_t count;            /* events of any type (stops at UINT32_MAX) */
  bool purchased;            /* at least one was a purchase */
} online_item;

/* Returns 0, or REC_ENOMEM with *out untouched. */
int  online_new(online **out);
void online_free(online *o);                       /* NULL is a no-op */
/* Counts the event for its user and item. Events may come out of time
 * order: an item's time only moves forward, and once the user has
 * ONLINE_ITEMS items, an item whose event is older than all of them is not
 * kept (nor is anything when memory runs out). */
void online_apply(online *o, const ev_record *r);
/* The user's items, latest event time first (at equal times, the item
 * applied last first), copied into 'a'; returns how many (0 for an unknown
 * user, *out then NULL or empty). */
size_t online_get(online *o, const char *user, size_t len, arena *a, online_item **out);
size_t online_users(online *o);
/* Makes the user's items exactly 'items' (latest first, as online_get gives
 * them; past ONLINE_ITEMS the rest are ignored): how `recctl replay` puts
 * back what a logged call read. Returns 0, or REC_ENOMEM (the user then has
 * the items copied so far). */
int  online_put(online *o, const char *user, size_t len, const online_item *items, size_t n);
#endif
