/* common/arena.c - bump allocator; see arena.h. */
#include "common/arena.h"
#include "common/xmath.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct arena_block {
  arena_block *prev;
  size_t cap, used;
  _Alignas(16) unsigned char data[];
};

#define ALIGN 16u

static void *pb_alloc(void *data, size_t n) { return arena_alloc(data, n); }
static void pb_free(void *data, void *p) { (void)data; (void)p; }

void arena_init(arena *a, size_t block_size) {
  a->head = NULL;
  a->block_size = block_size ? block_size : 16384;
  a->used_total = 0;
  a->budget = SIZE_MAX;
  a->held = 0;
  a->limit = SIZE_MAX;
  a->grown = 0;
  a->pb.alloc = pb_alloc;
  a->pb.free = pb_free;
  a->pb.allocator_data = a;
}

void arena_destroy(arena *a) {
  arena_block *b = a->head;
  while (b) {
    arena_block *prev = b->prev;
    free(b);
    b = prev;
  }
  a->head = NULL;
  a->used_total = 0;
  a->held = 0;
  a->grown = 0;
}

void arena_reset(arena *a) {
  if (!a->head) return;
  /* Keep the newest block only if it is an ordinary one; an oversized block
   * made for one big allocation should not pin its memory forever. */
  arena_block *keep = a->head->cap == a->block_size ? a->head : NULL;
  arena_block *b = keep ? keep->prev : a->head;
  while (b) {
    arena_block *prev = b->prev;
    free(b);
    b = prev;
  }
  if (keep) {
    keep->prev = NULL;
    keep->used = 0;
  }
  a->head = keep;
  a->used_total = 0;
  a->held = keep ? keep->cap : 0;
  a->grown = 0;
}

void arena_fail_after(arena *a, size_t n) { a->budget = n; }

void arena_set_limit(arena *a, size_t bytes) { a->limit = bytes; }

enum { GROW_AFTER = 4, MAX_GROWN = 1 << 20 };

/* The next block's size: ordinary for the first few, then doubling up to
 * 1 MiB, and never less than 'need'. */
static size_t next_cap(const arena *a, size_t need) {
  size_t cap = a->block_size;
  for (unsigned i = GROW_AFTER; i < a->grown && cap < MAX_GROWN; i++) cap *= 2;
  return need > cap ? need : cap;
}

void *arena_alloc(arena *a, size_t n) {
  size_t need = (n + (ALIGN - 1)) & ~(size_t)(ALIGN - 1);
  if (need < n) return NULL;
  if (a->budget != SIZE_MAX && a->budget-- == 0) {
    a->budget = 0;
    return NULL;
  }
  arena_block *b = a->head;
  if (!b || b->cap - b->used < need) {
    size_t cap = next_cap(a, need);
    if (cap > SIZE_MAX - sizeof *b || cap > a->limit - a->held || a->held > a->limit) return NULL;
    b = malloc(sizeof *b + cap);
    if (!b) return NULL;
    b->cap = cap;
    b->used = 0;
    b->prev = a->head;
    a->head = b;
    a->held += cap;
    a->grown++;
  }
  void *p = b->data + b->used;
  b->used += need;
  a->used_total += need;
  return p;
}

void *arena_calloc(arena *a, size_t count, size_t size) {
  size_t n;
  if (rec_mul_overflow(count, size, &n)) return NULL;
  void *p = arena_alloc(a, n);
  if (p) memset(p, 0, n);
  return p;
}

char *arena_strndup(arena *a, const char *s, size_t n) {
  char *p = arena_alloc(a, n + 1);
  if (!p) return NULL;
  memcpy(p, s, n);
  p[n] = '\0';
  return p;
}

char *arena_printf(arena *a, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0) return NULL;
  char *p = arena_alloc(a, (size_t)n + 1);
  if (!p) return NULL;
  va_start(ap, fmt);
  vsnprintf(p, (size_t)n + 1, fmt, ap);
  va_end(ap);
  return p;
}
