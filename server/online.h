/* server/online.h - what users did since the bundle was built: per user,
 * the most recent distinct items with their last event time, count and
 * whether they were bought. Fed by Events.Record and by the event log's
 * replay at start; read by Recommend for item-CF seeds (a cold visitor's
 * session) and the repurchase rules. Thread-safe (one mutex). */
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
  uint32_t count;
  bool purchased;
} online_item;

int  online_new(online **out);
void online_free(online *o);                       /* NULL is a no-op */
void online_apply(online *o, const ev_record *r);
/* The user's items, most recent first, copied into 'a'; returns how many. */
size_t online_get(online *o, const char *user, size_t len, arena *a, online_item **out);
size_t online_users(online *o);
#endif
