/* tests/common/test_arena.c - the per-call allocator. */
#include "common/arena.h"
#include "tests/test.h"

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

void suite_arena(void) {
  static const test_case cases[] = {
      {"aligned_and_distinct", aligned_and_distinct},
      {"grows_past_a_block", grows_past_a_block},
      {"reset_reuses_memory", reset_reuses_memory},
      {"calloc_checks_overflow", calloc_checks_overflow},
      {"strings", strings},
      {"serves_as_protobuf_allocator", serves_as_protobuf_allocator},
      {NULL, NULL}};
  test_add_suite("arena", cases);
}
