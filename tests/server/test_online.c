/* tests/server/test_online.c - the per-user state built from events: items
 * with their latest time, count and purchase flag, newest first (by event
 * time, even when events arrive out of order), at most ONLINE_ITEMS per
 * user, users apart, a table that grows, and concurrent writers. */
#include "server/online.h"
#include "tests/test.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

enum { VIEW = 1, CART = 2, PURCHASE = 3 };

static void apply(online *o, const char *user, const char *item, int type, int64_t time_s) {
  ev_record r = {.time_ms = time_s * 1000 + 999, .type = type, .quantity = 1, .user = user, .item = item,
                 .user_len = (uint16_t)strlen(user), .item_len = (uint16_t)strlen(item)};
  online_apply(o, &r);
}

static size_t get(online *o, const char *user, arena *a, online_item **items) {
  return online_get(o, user, strlen(user), a, items);
}

static void items_counts_and_purchases(void) {
  online *o;
  CU_ASSERT_EQUAL_FATAL(online_new(&o), 0);
  arena a;
  arena_init(&a, 0);
  apply(o, "alice", "x", VIEW, 100);
  apply(o, "alice", "y", CART, 200);
  apply(o, "alice", "x", PURCHASE, 300);
  apply(o, "alice", "x", VIEW, 400); /* a view after the purchase keeps the flag */
  online_item *it;
  CU_ASSERT_EQUAL_FATAL(get(o, "alice", &a, &it), 2);
  CU_ASSERT_STRING_EQUAL(it[0].item, "x");
  CU_ASSERT_EQUAL(it[0].last_time, 400); /* seconds: milliseconds rounded down */
  CU_ASSERT_EQUAL(it[0].count, 3);
  CU_ASSERT(it[0].purchased);
  CU_ASSERT_STRING_EQUAL(it[1].item, "y");
  CU_ASSERT_EQUAL(it[1].last_time, 200);
  CU_ASSERT_EQUAL(it[1].count, 1);
  CU_ASSERT(!it[1].purchased); /* add-to-cart is not a purchase */

  /* Users are apart, matched on the whole id (not a prefix). */
  apply(o, "alicia", "z", VIEW, 50);
  CU_ASSERT_EQUAL(get(o, "alice", &a, &it), 2);
  CU_ASSERT_EQUAL_FATAL(get(o, "alicia", &a, &it), 1);
  CU_ASSERT_STRING_EQUAL(it[0].item, "z");
  CU_ASSERT_EQUAL(online_get(o, "ali", 3, &a, &it), 0);
  CU_ASSERT_EQUAL(get(o, "nobody", &a, &it), 0);
  CU_ASSERT_EQUAL(online_users(o), 2);

  /* Items are matched on the whole id too; the copies are the caller's. */
  apply(o, "alicia", "zz", VIEW, 60);
  CU_ASSERT_EQUAL_FATAL(get(o, "alicia", &a, &it), 2);
  CU_ASSERT_STRING_EQUAL(it[0].item, "zz");
  CU_ASSERT_STRING_EQUAL(it[1].item, "z");
  apply(o, "alicia", "z", VIEW, 70);
  CU_ASSERT_STRING_EQUAL(it[0].item, "zz"); /* an earlier answer does not change */
  arena_destroy(&a);
  online_free(o);
  online_free(NULL);
}

static void newest_first_by_event_time(void) {
  online *o;
  CU_ASSERT_EQUAL_FATAL(online_new(&o), 0);
  arena a;
  arena_init(&a, 0);
  online_item *it;
  /* An older event recorded later goes behind the newer items. */
  apply(o, "u", "new", VIEW, 300);
  apply(o, "u", "old", VIEW, 100);
  CU_ASSERT_EQUAL_FATAL(get(o, "u", &a, &it), 2);
  CU_ASSERT_STRING_EQUAL(it[0].item, "new");
  CU_ASSERT_STRING_EQUAL(it[1].item, "old");
  /* An item's time never goes back, and it keeps its place by that time. */
  apply(o, "u", "new", VIEW, 50);
  CU_ASSERT_EQUAL_FATAL(get(o, "u", &a, &it), 2);
  CU_ASSERT_STRING_EQUAL(it[0].item, "new");
  CU_ASSERT_EQUAL(it[0].last_time, 300);
  CU_ASSERT_EQUAL(it[0].count, 2);
  /* A later event moves an item to the front. */
  apply(o, "u", "old", VIEW, 500);
  CU_ASSERT_EQUAL_FATAL(get(o, "u", &a, &it), 2);
  CU_ASSERT_STRING_EQUAL(it[0].item, "old");
  CU_ASSERT_EQUAL(it[0].last_time, 500);
  /* At equal times, the item applied last comes first. */
  apply(o, "v", "a", VIEW, 10);
  apply(o, "v", "b", VIEW, 10);
  CU_ASSERT_EQUAL_FATAL(get(o, "v", &a, &it), 2);
  CU_ASSERT_STRING_EQUAL(it[0].item, "b");
  apply(o, "v", "a", VIEW, 10);
  get(o, "v", &a, &it);
  CU_ASSERT_STRING_EQUAL(it[0].item, "a");
  arena_destroy(&a);
  online_free(o);
}

static void at_most_online_items_per_user(void) {
  online *o;
  CU_ASSERT_EQUAL_FATAL(online_new(&o), 0);
  arena a;
  arena_init(&a, 0);
  char item[16];
  for (int i = 0; i < ONLINE_ITEMS + 10; i++) {
    snprintf(item, sizeof item, "i%d", i);
    apply(o, "u", item, i == 15 ? PURCHASE : VIEW, 1000 + i);
  }
  online_item *it;
  CU_ASSERT_EQUAL_FATAL(get(o, "u", &a, &it), ONLINE_ITEMS);
  bool order = true;
  for (int k = 0; k < ONLINE_ITEMS; k++) {
    snprintf(item, sizeof item, "i%d", ONLINE_ITEMS + 9 - k);
    order &= strcmp(it[k].item, item) == 0 && it[k].last_time == 1000 + ONLINE_ITEMS + 9 - k && it[k].count == 1;
  }
  CU_ASSERT(order); /* i59 .. i10: the ten oldest went */
  CU_ASSERT(it[ONLINE_ITEMS - 6].purchased && !it[ONLINE_ITEMS - 5].purchased); /* i15 */
  /* An item older than every kept one is not kept. */
  apply(o, "u", "ancient", PURCHASE, 5);
  CU_ASSERT_EQUAL_FATAL(get(o, "u", &a, &it), ONLINE_ITEMS);
  CU_ASSERT_STRING_EQUAL(it[ONLINE_ITEMS - 1].item, "i10");
  /* A kept item seen again stays one entry; a new one evicts the oldest. */
  apply(o, "u", "i10", VIEW, 5000);
  apply(o, "u", "fresh", VIEW, 6000);
  CU_ASSERT_EQUAL_FATAL(get(o, "u", &a, &it), ONLINE_ITEMS);
  CU_ASSERT_STRING_EQUAL(it[0].item, "fresh");
  CU_ASSERT_STRING_EQUAL(it[1].item, "i10");
  CU_ASSERT_EQUAL(it[1].count, 2);
  CU_ASSERT_STRING_EQUAL(it[ONLINE_ITEMS - 1].item, "i12"); /* i11 went */
  arena_destroy(&a);
  online_free(o);
}

static void many_users_grow_the_table(void) {
  online *o;
  CU_ASSERT_EQUAL_FATAL(online_new(&o), 0);
  enum { USERS = 40000 };
  char user[16], item[16];
  for (int u = 0; u < USERS; u++) {
    snprintf(user, sizeof user, "user%d", u);
    snprintf(item, sizeof item, "item%d", u % 97);
    apply(o, user, item, VIEW, u);
  }
  CU_ASSERT_EQUAL(online_users(o), USERS);
  arena a;
  arena_init(&a, 0);
  size_t right = 0;
  for (int u = 0; u < USERS; u++) {
    snprintf(user, sizeof user, "user%d", u);
    snprintf(item, sizeof item, "item%d", u % 97);
    online_item *it;
    right += get(o, user, &a, &it) == 1 && strcmp(it[0].item, item) == 0 && it[0].last_time == u;
    if (u % 1000 == 0) arena_reset(&a);
  }
  CU_ASSERT_EQUAL(right, USERS);
  arena_destroy(&a);
  online_free(o);
}

typedef struct writer {
  online *o;
  int id;
} writer;

static void *write_events(void *arg) {
  writer *w = arg;
  char user[16], item[16];
  arena a;
  arena_init(&a, 0);
  for (int i = 0; i < 5000; i++) {
    snprintf(user, sizeof user, "w%d-%d", w->id, i % 100);
    snprintf(item, sizeof item, "it%d", i % 7);
    apply(w->o, user, item, i % 11 == 0 ? PURCHASE : VIEW, i);
    online_item *it;
    online_get(w->o, user, strlen(user), &a, &it); /* readers alongside */
    if (i % 500 == 0) arena_reset(&a);
  }
  arena_destroy(&a);
  return NULL;
}

static void concurrent_writers_and_readers(void) {
  online *o;
  CU_ASSERT_EQUAL_FATAL(online_new(&o), 0);
  enum { THREADS = 4 };
  writer w[THREADS];
  pthread_t th[THREADS];
  for (int i = 0; i < THREADS; i++) {
    w[i] = (writer){o, i};
    pthread_create(&th[i], NULL, write_events, &w[i]);
  }
  for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
  CU_ASSERT_EQUAL(online_users(o), THREADS * 100);
  arena a;
  arena_init(&a, 0);
  online_item *it;
  uint32_t total = 0;
  CU_ASSERT_EQUAL_FATAL(get(o, "w2-3", &a, &it), 7);
  for (int k = 0; k < 7; k++) total += it[k].count;
  CU_ASSERT_EQUAL(total, 50); /* 5000 events over 100 users */
  arena_destroy(&a);
  online_free(o);
}

static void put_replaces_a_users_items(void) {
  online *o;
  CU_ASSERT_EQUAL_FATAL(online_new(&o), 0);
  arena a;
  arena_init(&a, 0);
  online_item *it;
  for (int i = 0; i < 3; i++) {
    char item[8];
    snprintf(item, sizeof item, "old%d", i);
    ev_record r = {.user = "u", .user_len = 1, .item = item, .item_len = 4, .time_ms = 1000, .type = 1};
    online_apply(o, &r);
  }
  online_item want[] = {{"b", 50, 3, true}, {"a", 40, 1, false}};
  CU_ASSERT_EQUAL(online_put(o, "u", 1, want, 2), 0);
  CU_ASSERT_EQUAL_FATAL(online_get(o, "u", 1, &a, &it), 2);
  CU_ASSERT_STRING_EQUAL(it[0].item, "b");
  CU_ASSERT_EQUAL(it[0].last_time, 50);
  CU_ASSERT_EQUAL(it[0].count, 3);
  CU_ASSERT_TRUE(it[0].purchased);
  CU_ASSERT_STRING_EQUAL(it[1].item, "a");
  CU_ASSERT_EQUAL(online_put(o, "new", 3, want, 0), 0);
  CU_ASSERT_EQUAL(online_get(o, "new", 3, &a, &it), 0);
  arena_destroy(&a);
  online_free(o);
}

void suite_online(void) {
  static const test_case cases[] = {
      {"items, counts and purchases", items_counts_and_purchases},
      {"newest first by event time", newest_first_by_event_time},
      {"at most ONLINE_ITEMS per user", at_most_online_items_per_user},
      {"many users grow the table", many_users_grow_the_table},
      {"concurrent writers and readers", concurrent_writers_and_readers},
      {"put replaces a user's items", put_replaces_a_users_items},
      {NULL, NULL}};
  test_add_suite("online", cases);
}
