/* server/attribution.c - see attribution.h. Slates live in a ring, oldest
 * overwritten first; two chained hash tables over the ring find a slate by
 * (request id, user) and a user's newest slate. Chains are doubly linked,
 * newest first, so forgetting a slate is O(1) however many slates share a
 * chain (one busy user id, a client that sends one request id for all). */
#include "server/attribution.h"
#include "server/metrics.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

enum { CLICKED = 1, CARTED = 2 }; /* per item of a slate */
enum { EV_CART = 2, EV_PURCHASE = 3, EV_CLICK = 4 }; /* rec.v1.EventType */

typedef struct slate {
  uint64_t rid, user;         /* hashes: rid of (request id, user), user of the user id */
  int64_t time_ms;
  uint64_t *items;            /* hashes; NULL when the slot is free */
  uint8_t *flags;             /* per item */
  uint32_t n_items;
  uint8_t n_slots;
  bool clicked, purchased;
  int16_t slots[ATTR_MAX_ARMS];
  double revenue;
  int32_t next_rid, prev_rid, next_user, prev_user; /* chains; -1 ends */
} slate;

struct attribution {
  pthread_mutex_t mu;
  slate *ring;
  size_t cap, head, count;    /* head: the next slot written */
  size_t bytes, max_bytes;
  int64_t window_ms;
  int32_t *by_rid, *by_user;  /* bucket heads */
  size_t mask;
  arm_outcomes arm[METRICS_MAX_ARMS];
};

uint64_t attribution_hash(const char *s, size_t len) { return XXH3_64bits(s, len); }

int attribution_new(size_t max_slates, size_t max_bytes, int64_t window_ms, attribution **out) {
  attribution *t = calloc(1, sizeof *t);
  if (!t) return -1;
  size_t nb = 2;
  while (nb < 2 * max_slates) nb *= 2;
  t->cap = max_slates ? max_slates : 1;
  t->max_bytes = max_bytes;
  t->window_ms = window_ms;
  t->mask = nb - 1;
  t->ring = calloc(t->cap, sizeof *t->ring);
  t->by_rid = malloc(nb * sizeof *t->by_rid);
  t->by_user = malloc(nb * sizeof *t->by_user);
  if (!t->ring || !t->by_rid || !t->by_user) {
    attribution_free(t);
    return -1;
  }
  memset(t->by_rid, 0xff, nb * sizeof *t->by_rid); /* -1 */
  memset(t->by_user, 0xff, nb * sizeof *t->by_user);
  pthread_mutex_init(&t->mu, NULL);
  *out = t;
  return 0;
}

void attribution_free(attribution *t) {
  if (!t) return;
  for (size_t i = 0; t->ring && i < t->cap; i++) free(t->ring[i].items);
  free(t->ring);
  free(t->by_rid);
  free(t->by_user);
  if (t->by_rid) pthread_mutex_destroy(&t->mu);
  free(t);
}

static size_t slate_bytes(uint32_t n) { return (size_t)n * (sizeof(uint64_t) + 1); }

/* The key of a slate: its request id seeded with its user, so two users'
 * slates under one request id are two keys. */
static uint64_t rid_key(const char *rid, uint64_t user) { return XXH3_64bits_withSeed(rid, strlen(rid), user); }

static void unlink_rid(attribution *t, int32_t i) {
  slate *s = &t->ring[i];
  if (s->prev_rid >= 0) t->ring[s->prev_rid].next_rid = s->next_rid;
  else t->by_rid[s->rid & t->mask] = s->next_rid;
  if (s->next_rid >= 0) t->ring[s->next_rid].prev_rid = s->prev_rid;
}

static void unlink_user(attribution *t, int32_t i) {
  slate *s = &t->ring[i];
  if (s->prev_user >= 0) t->ring[s->prev_user].next_user = s->next_user;
  else t->by_user[s->user & t->mask] = s->next_user;
  if (s->next_user >= 0) t->ring[s->next_user].prev_user = s->prev_user;
}

/* Forgets the oldest slate. */
static void evict_oldest(attribution *t) {
  size_t i = (t->head + t->cap - t->count) % t->cap;
  slate *s = &t->ring[i];
  if (s->items) {
    unlink_rid(t, (int32_t)i);
    unlink_user(t, (int32_t)i);
    t->bytes -= slate_bytes(s->n_items);
    free(s->items);
    s->items = NULL;
  }
  t->count--;
}

void attribution_served(attribution *t, const char *request_id, const char *user, size_t user_len,
                        const int *slots, size_t n_slots, const uint64_t *items, size_t n_items, int64_t now_ms) {
  if (!t || !n_slots) return;
  if (n_slots > ATTR_MAX_ARMS) n_slots = ATTR_MAX_ARMS;
  size_t need = slate_bytes((uint32_t)n_items);
  uint64_t *copy = need <= t->max_bytes ? malloc(need ? need : 1) : NULL;
  if (copy) memcpy(copy, items, n_items * sizeof *items), memset(copy + n_items, 0, n_items);
  pthread_mutex_lock(&t->mu);
  for (size_t i = 0; i < n_slots; i++) {
    if (slots[i] < 0 || slots[i] >= METRICS_MAX_ARMS) continue;
    t->arm[slots[i]].slates++;
    t->arm[slots[i]].items += n_items;
  }
  if (copy) {
    while (t->count && (t->count == t->cap || t->bytes + need > t->max_bytes)) evict_oldest(t);
    int32_t i = (int32_t)t->head;
    slate *s = &t->ring[i];
    uint64_t uh = attribution_hash(user, user_len);
    *s = (slate){.rid = rid_key(request_id, uh), .user = uh, .time_ms = now_ms, .items = copy,
                 .flags = (uint8_t *)(copy + n_items), .n_items = (uint32_t)n_items, .n_slots = (uint8_t)n_slots,
                 .prev_rid = -1, .prev_user = -1};
    for (size_t k = 0; k < n_slots; k++) s->slots[k] = (int16_t)slots[k];
    int32_t *hr = &t->by_rid[s->rid & t->mask], *hu = &t->by_user[s->user & t->mask]; /* newest first */
    s->next_rid = *hr;
    if (*hr >= 0) t->ring[*hr].prev_rid = i;
    *hr = i;
    s->next_user = *hu;
    if (*hu >= 0) t->ring[*hu].prev_user = i;
    *hu = i;
    t->bytes += need;
    t->head = (t->head + 1) % t->cap;
    t->count++;
  }
  pthread_mutex_unlock(&t->mu);
}

/* The slate an event belongs to, or NULL. */
static slate *find(attribution *t, const char *rid, uint64_t user, int type, int64_t time_ms) {
  if (rid[0]) {
    uint64_t h = rid_key(rid, user);
    for (int32_t i = t->by_rid[h & t->mask]; i >= 0; i = t->ring[i].next_rid)
      if (t->ring[i].rid == h && t->ring[i].user == user) return &t->ring[i];
    return NULL;
  }
  if (type != EV_PURCHASE) return NULL; /* only purchases follow the last slate */
  for (int32_t i = t->by_user[user & t->mask]; i >= 0; i = t->ring[i].next_user)
    if (t->ring[i].user == user)
      return time_ms >= t->ring[i].time_ms - 1000 && time_ms - t->ring[i].time_ms <= t->window_ms ? &t->ring[i] : NULL;
  return NULL;
}

void attribution_event(attribution *t, const char *slate_request_id, const char *user, size_t user_len,
                       const char *item, size_t item_len, int type, int quantity, double price, int64_t time_ms) {
  if (!t || (type != EV_CLICK && type != EV_CART && type != EV_PURCHASE)) return;
  uint64_t u = attribution_hash(user, user_len), it = attribution_hash(item, item_len);
  pthread_mutex_lock(&t->mu);
  slate *s = find(t, slate_request_id, u, type, time_ms);
  size_t at = 0;
  while (s && at < s->n_items && s->items[at] != it) at++;
  if (s && at < s->n_items) {
    double add = type == EV_PURCHASE ? price * (quantity > 0 ? quantity : 1) : 0;
    bool first_click = type == EV_CLICK && !(s->flags[at] & CLICKED);
    bool first_cart = type == EV_CART && !(s->flags[at] & CARTED);
    for (size_t k = 0; k < s->n_slots; k++) {
      arm_outcomes *o = &t->arm[s->slots[k]];
      if (first_click) o->clicks++, o->clicked_slates += !s->clicked;
      if (first_cart) o->carts++;
      if (type == EV_PURCHASE) {
        o->purchases++;
        o->purchased_slates += !s->purchased;
        o->revenue += add;
        o->revenue_sq += (s->revenue + add) * (s->revenue + add) - s->revenue * s->revenue;
      }
    }
    if (first_click) s->flags[at] |= CLICKED, s->clicked = true;
    if (first_cart) s->flags[at] |= CARTED;
    if (type == EV_PURCHASE) s->purchased = true, s->revenue += add;
  }
  pthread_mutex_unlock(&t->mu);
}

void attribution_outcomes(attribution *t, int slot, arm_outcomes *out) {
  memset(out, 0, sizeof *out);
  if (!t || slot < 0 || slot >= METRICS_MAX_ARMS) return;
  pthread_mutex_lock(&t->mu);
  *out = t->arm[slot];
  pthread_mutex_unlock(&t->mu);
}
