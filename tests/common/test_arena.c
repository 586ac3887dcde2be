/* tests/common/test_arena.c - the per-call allocator. */
#include "common/arena.h"
#include "tests/test.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

static void aligned_and_distinct(void) {
  arena a;
  arena_init(&a, 256);
  char *p = arena_alloc(&a, 3), *q = arena_alloc(&a, 5);
  CU_ASSERT_PTR_NOT_NULL(p);
  CU_ASSERT_EQUAL((uintptr_t)p % 16, 0);
  CU_ASSERT_EQUAL((uintptr_t)q % 16, 0);
  CU_ASSERT(q >= p + 3);
  arena_destroy(&a);
}

static void grows_past_a_block(void) {
  arena a;
  arena_init(&a, 64);
  char *big = arena_alloc(&a, 10000); /* larger than a block */
  CU_ASSERT_PTR_NOT_NULL_FATAL(big);
  memset(big, 0xab, 10000);
  for (int i = 0; i < 100; i++) CU_ASSERT_PTR_NOT_NULL(arena_alloc(&a, 40));
  CU_ASSERT((unsigned char)big[9999] == 0xab); /* earlier memory untouched */
  arena_destroy(&a);
}

static void reset_reuses_memory(void) {
  arena a;
  arena_init(&a, 1024);
  void *p = arena_alloc(&a, 100);
  arena_reset(&a);
  CU_ASSERT_EQUAL(a.used_total, 0);
  CU_ASSERT_PTR_EQUAL(arena_alloc(&a, 100), p);
  arena_destroy(&a);
}

static void calloc_checks_overflow(void) {
  arena a;
  arena_init(&a, 0);
  CU_ASSERT_PTR_NULL(arena_calloc(&a, SIZE_MAX / 2, 4));
  int *z = arena_calloc(&a, 10, sizeof(int));
  CU_ASSERT_PTR_NOT_NULL_FATAL(z);
  for (int i = 0; i < 10; i++) CU_ASSERT_EQUAL(z[i], 0);
  arena_destroy(&a);
}

static void strings(void) {
  arena a;
  arena_init(&a, 0);
  CU_ASSERT_STRING_EQUAL(arena_strndup(&a, "abcdef", 3), "abc");
  CU_ASSERT_STRING_EQUAL(arena_printf(&a, "%d-%s", 42, "x"), "42-x");
  arena_destroy(&a);
}

static void serves_as_protobuf_allocator(void) {
  arena a;
  arena_init(&a, 0);
  void *p = a.pb.alloc(a.pb.allocator_data, 32);
  CU_ASSERT_PTR_NOT_NULL(p);
  a.pb.free(a.pb.allocator_data, p); /* a no-op, must not crash */
  arena_destroy(&a);
}

/* A call's blocks go back to the cache on reset and the next call of the
 * same shape runs on them: the same addresses, no malloc. */
static void cache_keeps_blocks_between_uses(void) {
  arena_cache c;
  arena_cache_init(&c, 1024, 1 << 20);
  arena a;
  arena_init(&a, 1024);
  arena_use_cache(&a, &c);
  void *first[8];
  for (int i = 0; i < 8; i++) first[i] = arena_alloc(&a, 1000); /* 8 blocks, growing after the 4th */
  arena_reset(&a);
  CU_ASSERT(c.held > 0);
  size_t held = c.held + a.held;
  for (int i = 0; i < 8; i++) CU_ASSERT_PTR_NOT_NULL(arena_alloc(&a, 1000));
  CU_ASSERT_EQUAL(c.held + a.held, held); /* every block came from the cache or the arena itself */
  arena_reset(&a);
  /* A second arena on the same cache (the next call) draws the same blocks. */
  arena b;
  arena_init(&b, 1024);
  arena_use_cache(&b, &c);
  void *p = arena_alloc(&b, 1000);
  CU_ASSERT_PTR_NOT_NULL(p);
  bool reused = false;
  for (int i = 0; i < 8; i++) reused |= p == first[i];
  CU_ASSERT(reused);
  arena_destroy(&b);
  arena_destroy(&a);
  arena_cache_destroy(&c);
}

/* The cache never keeps more than its cap, nor blocks made for one
 * oversized allocation; what it does not keep is freed (ASan and memcheck
 * see a leak otherwise). */
static void cache_is_bounded(void) {
  arena_cache c;
  arena_cache_init(&c, 1024, 6 * 1024);
  arena a;
  arena_init(&a, 1024);
  arena_use_cache(&a, &c);
  for (int i = 0; i < 12; i++) CU_ASSERT_PTR_NOT_NULL(arena_alloc(&a, 1000));
  CU_ASSERT_PTR_NOT_NULL(arena_alloc(&a, 100000)); /* a block of its own size */
  arena_reset(&a);
  CU_ASSERT(c.held <= 6 * 1024);
  CU_ASSERT(c.held > 0);
  arena_destroy(&a);
  arena_cache_destroy(&c);
}

/* An allocation larger than the block being filled gets a block of a size
 * the cache keeps, so a call's big arrays are reused too (past 256 KiB each
 * would otherwise be an mmap and a munmap per call). */
static void cache_reuses_large_allocations(void) {
  arena_cache c;
  arena_cache_init(&c, 1024, 1 << 20);
  arena a;
  arena_init(&a, 1024);
  arena_use_cache(&a, &c);
  void *p = arena_alloc(&a, 3000);
  CU_ASSERT_PTR_NOT_NULL_FATAL(p);
  CU_ASSERT_PTR_NOT_NULL(arena_alloc(&a, 1000)); /* the rounded block's rest serves later allocations */
  CU_ASSERT_EQUAL(a.held, 4096);
  arena_reset(&a);
  CU_ASSERT_EQUAL(c.held, 4096);
  CU_ASSERT_PTR_EQUAL(arena_alloc(&a, 3000), p);
  CU_ASSERT_EQUAL(c.held, 0);
  arena_destroy(&a);
  arena_cache_destroy(&c);
}

/* The largest cached size (block_size << 7: 2 MiB for the server's 16 KiB
 * blocks) is cached too: the biggest blocks are the costliest to map. */
static void cache_keeps_the_largest_class(void) {
  arena_cache c;
  arena_cache_init(&c, 1024, 1 << 20);
  arena a;
  arena_init(&a, 1024);
  arena_use_cache(&a, &c);
  void *p = arena_alloc(&a, 100000); /* 97.7 KiB: rounds to 128 KiB, class 7 */
  CU_ASSERT_PTR_NOT_NULL_FATAL(p);
  CU_ASSERT_EQUAL(a.held, 1024u << 7);
  arena_reset(&a);
  CU_ASSERT_EQUAL(c.held, 1024u << 7);
  CU_ASSERT_PTR_EQUAL(arena_alloc(&a, 100000), p);
  arena_reset(&a);
  /* Past the largest size a block is the allocation's own and not kept. */
  CU_ASSERT_PTR_NOT_NULL(arena_alloc(&a, 200000));
  CU_ASSERT_EQUAL(a.held, 200000);
  arena_destroy(&a);
  arena_cache_destroy(&c);
}

/* Near its limit a call gets the blocks it would get without a cache, so
 * rounding does not make it fail: 3000 + 2500 bytes under a 6000-byte limit
 * fit either way. */
static void rounding_stays_clear_of_the_limit(void) {
  arena_cache c;
  arena_cache_init(&c, 1024, 1 << 20);
  for (int cached = 0; cached < 2; cached++) {
    arena a;
    arena_init(&a, 1024);
    if (cached) arena_use_cache(&a, &c);
    arena_set_limit(&a, 6000);
    CU_ASSERT_PTR_NOT_NULL(arena_alloc(&a, 3000));
    CU_ASSERT_PTR_NOT_NULL(arena_alloc(&a, 2500));
    CU_ASSERT(a.held <= 6000);
    arena_destroy(&a);
  }
  arena_cache_destroy(&c);
}

/* Without a cache nothing changes: blocks grow as they always did (five
 * ordinary ones, then doubling), however close the limit. */
static void no_cache_blocks_grow_as_before(void) {
  arena a;
  arena_init(&a, 1024);
  arena_set_limit(&a, 10240);
  int ok = 0;
  while (ok < 10000 && arena_alloc(&a, 16)) ok++;
  /* 1024 x 5 + 2048 = 7168 bytes in 6 blocks; the next would be 4096, past the limit. */
  CU_ASSERT_EQUAL(ok, 7168 / 16);
  CU_ASSERT_EQUAL(a.grown, 6);
  CU_ASSERT_EQUAL(a.held, 7168);
  arena_destroy(&a);
  arena_init(&a, 1024); /* no limit either */
  CU_ASSERT_PTR_NOT_NULL(arena_alloc(&a, 3000)); /* a block of its own size: no rounding */
  CU_ASSERT_EQUAL(a.held, 3008);
  arena_destroy(&a);
}

/* Two threads, each with its own arena, drawing on one cache at once (what
 * a call completed off its worker does): run under ThreadSanitizer by the
 * concurrency label. */
enum { STRESS_ROUNDS = 2000 };
static void *stress(void *arg) {
  arena_cache *c = arg;
  arena a;
  arena_init(&a, 1024);
  arena_use_cache(&a, c);
  long bad = 0;
  for (int r = 0; r < STRESS_ROUNDS; r++) {
    for (int i = 0; i < 12; i++) {
      unsigned char *p = arena_alloc(&a, 700 + (size_t)(r % 7) * 300);
      if (!p) {
        bad++;
        continue;
      }
      memset(p, r & 0xff, 700);
      bad += p[699] != (unsigned char)(r & 0xff);
    }
    arena_reset(&a);
  }
  arena_destroy(&a);
  return (void *)bad;
}

static void cache_shared_by_two_threads(void) {
  arena_cache c;
  arena_cache_init(&c, 1024, 64 * 1024);
  pthread_t t[2];
  for (int i = 0; i < 2; i++) CU_ASSERT_EQUAL_FATAL(pthread_create(&t[i], NULL, stress, &c), 0);
  for (int i = 0; i < 2; i++) {
    void *bad;
    pthread_join(t[i], &bad);
    CU_ASSERT_PTR_NULL(bad);
  }
  CU_ASSERT(c.held <= 64 * 1024);
  arena_cache_destroy(&c);
}

/* A cached block still counts against the arena's limit: one call's memory
 * bound holds whether its blocks are new or reused. */
static void cache_respects_the_call_limit(void) {
  arena_cache c;
  arena_cache_init(&c, 1024, 1 << 20);
  arena a;
  arena_init(&a, 1024);
  arena_use_cache(&a, &c);
  for (int i = 0; i < 16; i++) CU_ASSERT_PTR_NOT_NULL(arena_alloc(&a, 1000));
  arena_reset(&a);
  arena_set_limit(&a, 4 * 1024);
  int ok = 0;
  for (int i = 0; i < 16; i++) ok += arena_alloc(&a, 1000) != NULL;
  CU_ASSERT(ok >= 4 && ok < 16);
  CU_ASSERT(a.held <= 4 * 1024);
  arena_destroy(&a);
  arena_cache_destroy(&c);
}

/* An arena of another block size cannot use the cache: its blocks would
 * land in the wrong class. */
static void cache_ignored_for_other_block_sizes(void) {
  arena_cache c;
  arena_cache_init(&c, 1024, 1 << 20);
  arena a;
  arena_init(&a, 4096);
  arena_use_cache(&a, &c);
  CU_ASSERT_PTR_NULL(a.cache);
  CU_ASSERT_PTR_NOT_NULL(arena_alloc(&a, 10));
  arena_destroy(&a);
  arena_cache_destroy(&c);
}

void suite_arena(void) {
  static const test_case cases[] = {
      {"aligned_and_distinct", aligned_and_distinct},
      {"grows_past_a_block", grows_past_a_block},
      {"reset_reuses_memory", reset_reuses_memory},
      {"calloc_checks_overflow", calloc_checks_overflow},
      {"strings", strings},
      {"serves_as_protobuf_allocator", serves_as_protobuf_allocator},
      {"cache_keeps_blocks_between_uses", cache_keeps_blocks_between_uses},
      {"cache_is_bounded", cache_is_bounded},
      {"cache_reuses_large_allocations", cache_reuses_large_allocations},
      {"cache_keeps_the_largest_class", cache_keeps_the_largest_class},
      {"rounding_stays_clear_of_the_limit", rounding_stays_clear_of_the_limit},
      {"no_cache_blocks_grow_as_before", no_cache_blocks_grow_as_before},
      {"cache_shared_by_two_threads", cache_shared_by_two_threads},
      {"cache_respects_the_call_limit", cache_respects_the_call_limit},
      {"cache_ignored_for_other_block_sizes", cache_ignored_for_other_block_sizes},
      {NULL, NULL}};
  test_add_suite("arena", cases);
}
