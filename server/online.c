/* server/online.c - a chained hash table of users, each with a short
 * move-to-front list of items; see online.h. */
#include "server/online.h"
#include "common/err.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

typedef struct entry {
  char *item;
  int64_t last_time;
  uint32_t count;
  bool purchased;
} entry;

typedef struct user {
  char *id;
  size_t id_len;
  entry items[ONLINE_ITEMS];
  size_t n;
  struct user *next;
} user;

struct online {
  pthread_mutex_t mu;
  user **buckets;
  size_t n_buckets, n_users;
};

enum { PURCHASE = 3 }; /* rec.v1.EventType.EVENT_TYPE_PURCHASE */

int online_new(online **out) {
  online *o = calloc(1, sizeof *o);
  if (!o || !(o->buckets = calloc(o->n_buckets = 4096, sizeof *o->buckets))) {
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

static user *find(online *o, const char *id, size_t len, bool create) {
  size_t b = XXH3_64bits(id, len) % o->n_buckets;
  for (user *u = o->buckets[b]; u; u = u->next)
    if (u->id_len == len && memcmp(u->id, id, len) == 0) return u;
  if (!create) return NULL;
  user *u = calloc(1, sizeof *u);
  if (!u || !(u->id = malloc(len))) {
    free(u);
    return NULL;
  }
  memcpy(u->id, id, len);
  u->id_len = len;
  u->next = o->buckets[b];
  o->buckets[b] = u;
  o->n_users++;
  return u;
}

/* Moves (or inserts) the item to the front, dropping the oldest when full. */
static void touch(user *u, const ev_record *r) {
  size_t at = 0;
  while (at < u->n && !(strlen(u->items[at].item) == r->item_len &&
                        memcmp(u->items[at].item, r->item, r->item_len) == 0))
    at++;
  entry e;
  if (at < u->n) {
    e = u->items[at];
  } else {
    e = (entry){.item = malloc((size_t)r->item_len + 1)};
    if (!e.item) return;
    memcpy(e.item, r->item, r->item_len);
    e.item[r->item_len] = '\0';
    if (u->n == ONLINE_ITEMS) free(u->items[--u->n].item);
    at = u->n++;
  }
  memmove(&u->items[1], &u->items[0], at * sizeof *u->items);
  int64_t t = r->time_ms / 1000;
  e.last_time = t > e.last_time ? t : e.last_time;
  e.count++;
  e.purchased |= r->type == PURCHASE;
  u->items[0] = e;
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
    char *copy = arena_strndup(a, u->items[i].item, strlen(u->items[i].item));
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
