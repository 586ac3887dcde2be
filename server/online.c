/* server/online.c - a chained hash table of users, each with a short list
 * of items kept in event-time order; see online.h. */
#include "server/online.h"
#include "common/err.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

typedef struct entry {
  char *item;                /* NUL-terminated */
  uint16_t len;
  int64_t last_time;
  uint32_t count;
  bool purchased;
} entry;

typedef struct user {
  char *id;
  size_t id_len;
  uint64_t hash;
  entry items[ONLINE_ITEMS]; /* latest last_time first */
  size_t n;
  struct user *next;
} user;

struct online {
  pthread_mutex_t mu;
  user **buckets;
  size_t n_buckets, n_users; /* n_buckets: a power of two */
};

enum { PURCHASE = 3 }; /* rec.v1.EventType.EVENT_TYPE_PURCHASE */
enum { FIRST_BUCKETS = 4096 };

int online_new(online **out) {
  online *o = calloc(1, sizeof *o);
  if (!o || !(o->buckets = calloc(o->n_buckets = FIRST_BUCKETS, sizeof *o->buckets))) {
    free(o);
    return REC_ENOMEM;
  }
  pthread_mutex_init(&o->mu, NULL);
  *out = o;
  return 0;
}

void online_free(online *o) {
  if (!o) return;
  for (size_t b = 0; b < o->n_buckets; b++)
    for (user *u = o->buckets[b], *next; u; u = next) {
      next = u->next;
      for (size_t i = 0; i < u->n; i++) free(u->items[i].item);
      free(u->id);
      free(u);
    }
  free(o->buckets);
  pthread_mutex_destroy(&o->mu);
  free(o);
}

/* Doubles the table once it holds two users a bucket, so a lookup stays a
 * short walk; without memory the chains just grow longer. */
static void grow(online *o) {
  size_t n = o->n_buckets * 2;
  user **b = calloc(n, sizeof *b);
  if (!b) return;
  for (size_t i = 0; i < o->n_buckets; i++)
    for (user *u = o->buckets[i], *next; u; u = next) {
      next = u->next;
      u->next = b[u->hash & (n - 1)];
      b[u->hash & (n - 1)] = u;
    }
  free(o->buckets);
  o->buckets = b;
  o->n_buckets = n;
}

static user *find(online *o, const char *id, size_t len, bool create) {
  uint64_t h = XXH3_64bits(id, len);
  for (user *u = o->buckets[h & (o->n_buckets - 1)]; u; u = u->next)
    if (u->hash == h && u->id_len == len && memcmp(u->id, id, len) == 0) return u;
  if (!create) return NULL;
  user *u = calloc(1, sizeof *u);
  if (!u || !(u->id = malloc(len))) {
    free(u);
    return NULL;
  }
  if (o->n_users >= 2 * o->n_buckets) grow(o);
  memcpy(u->id, id, len);
  u->id_len = len;
  u->hash = h;
  u->next = o->buckets[h & (o->n_buckets - 1)];
  o->buckets[h & (o->n_buckets - 1)] = u;
  o->n_users++;
  return u;
}

/* Takes the item's entry out of the list (a fresh one when it has none);
 * false when it is new, older than every kept item of a full list, or
 * memory runs out. */
static bool take_entry(user *u, const ev_record *r, int64_t t, entry *e) {
  size_t at = 0;
  while (at < u->n && !(u->items[at].len == r->item_len && memcmp(u->items[at].item, r->item, r->item_len) == 0))
    at++;
  if (at < u->n) {
    *e = u->items[at];
    memmove(&u->items[at], &u->items[at + 1], (u->n - at - 1) * sizeof *u->items);
    u->n--;
    return true;
  }
  if (u->n == ONLINE_ITEMS && t < u->items[u->n - 1].last_time) return false;
  *e = (entry){.item = malloc((size_t)r->item_len + 1), .len = r->item_len, .last_time = t};
  if (!e->item) return false;
  memcpy(e->item, r->item, r->item_len);
  e->item[r->item_len] = '\0';
  if (u->n == ONLINE_ITEMS) free(u->items[--u->n].item); /* the oldest goes */
  return true;
}

/* Counts the event and puts its item back in time order, ahead of the items
 * with the same time: the list stays sorted by last_time, latest first. */
static void touch(user *u, const ev_record *r) {
  int64_t t = r->time_ms / 1000;
  entry e;
  if (!take_entry(u, r, t, &e)) return;
  if (t > e.last_time) e.last_time = t;
  if (e.count < UINT32_MAX) e.count++;
  e.purchased |= r->type == PURCHASE;
  size_t at = 0;
  while (at < u->n && u->items[at].last_time > e.last_time) at++;
  memmove(&u->items[at + 1], &u->items[at], (u->n - at) * sizeof *u->items);
  u->items[at] = e;
  u->n++;
}

void online_apply(online *o, const ev_record *r) {
  pthread_mutex_lock(&o->mu);
  user *u = find(o, r->user, r->user_len, true);
  if (u) touch(u, r);
  pthread_mutex_unlock(&o->mu);
}

size_t online_get(online *o, const char *id, size_t len, arena *a, online_item **out) {
  pthread_mutex_lock(&o->mu);
  user *u = find(o, id, len, false);
  size_t n = 0;
  online_item *items = u ? arena_calloc(a, u->n + 1, sizeof *items) : NULL;
  for (size_t i = 0; items && i < u->n; i++) {
    char *copy = arena_strndup(a, u->items[i].item, u->items[i].len);
    if (!copy) break;
    items[n++] = (online_item){copy, u->items[i].last_time, u->items[i].count, u->items[i].purchased};
  }
  pthread_mutex_unlock(&o->mu);
  *out = items;
  return n;
}

size_t online_users(online *o) {
  pthread_mutex_lock(&o->mu);
  size_t n = o->n_users;
  pthread_mutex_unlock(&o->mu);
  return n;
}

int online_put(online *o, const char *id, size_t len, const online_item *items, size_t n) {
  int rc = 0;
  pthread_mutex_lock(&o->mu);
  user *u = find(o, id, len, true);
  if (!u) rc = REC_ENOMEM;
  for (size_t i = 0; u && i < u->n; i++) free(u->items[i].item);
  if (u) u->n = 0;
  for (size_t i = 0; u && i < n && i < ONLINE_ITEMS; i++) {
    size_t il = strlen(items[i].item);
    char *copy = il <= UINT16_MAX ? malloc(il + 1) : NULL;
    if (!copy) {
      rc = REC_ENOMEM;
      break;
    }
    memcpy(copy, items[i].item, il + 1);
    u->items[u->n++] = (entry){copy, (uint16_t)il, items[i].last_time, items[i].count, items[i].purchased};
  }
  pthread_mutex_unlock(&o->mu);
  return rc;
}
