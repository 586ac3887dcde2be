/* common/arena.c - bump allocator; see arena.h. */
#include "common/arena.h"
#include "common/xmath.h"

#include <stdarg.h>
#include <stdbool.h>
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

/* The cache class of a block of 'cap' bytes, or -1 if it has none (an
 * oversized block made for one big allocation). */
static int size_class(size_t block_size, size_t cap) {
  for (int k = 0; k < ARENA_CACHE_CLASSES; k++)
    if (cap == block_size << k) return k;
  return -1;
}

void arena_cache_init(arena_cache *c, size_t block_size, size_t cap) {
  pthread_mutex_init(&c->mu, NULL);
  for (int k = 0; k < ARENA_CACHE_CLASSES; k++) c->free[k] = NULL;
  c->block_size = block_size ? block_size : 16384;
  c->held = 0;
  c->cap = cap;
}

void arena_cache_destroy(arena_cache *c) {
  for (int k = 0; k < ARENA_CACHE_CLASSES; k++)
    while (c->free[k]) {
      arena_block *b = c->free[k];
      c->free[k] = b->prev;
      free(b);
    }
  c->held = 0;
  pthread_mutex_destroy(&c->mu);
}

/* A kept block of exactly 'cap' bytes, or NULL. */
static arena_block *cache_take(arena_cache *c, size_t cap) {
  int k = size_class(c->block_size, cap);
  if (k < 0) return NULL;
  pthread_mutex_lock(&c->mu);
  arena_block *b = c->free[k];
  if (b) {
    c->free[k] = b->prev;
    c->held -= b->cap;
  }
  pthread_mutex_unlock(&c->mu);
  return b;
}

/* Keeps 'b' if it has a class and fits under the cap; else frees it. */
static void cache_give(arena_cache *c, arena_block *b) {
  int k = c ? size_class(c->block_size, b->cap) : -1;
  if (k >= 0) {
    pthread_mutex_lock(&c->mu);
    bool kept = c->held + b->cap <= c->cap;
    if (kept) {
      b->prev = c->free[k];
      c->free[k] = b;
      c->held += b->cap;
    }
    pthread_mutex_unlock(&c->mu);
    if (kept) return;
  }
  free(b);
}

void arena_init(arena *a, size_t block_size) {
  a->head = NULL;
  a->block_size = block_size ? block_size : 16384;
  a->used_total = 0;
  a->budget = SIZE_MAX;
  a->held = 0;
  a->limit = SIZE_MAX;
  a->grown = 0;
  a->cache = NULL;
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
    cache_give(a->cache, b);
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

void arena_use_cache(arena *a, arena_cache *c) { a->cache = c && c->block_size == a->block_size ? c : NULL; }

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

/* With a cache, a block made for one large allocation is rounded up to the
 * cache's next size (its rest serves later allocations), so that it too is
 * reused rather than mapped and unmapped per call. Only while the call is
 * far from its limit (the rounded block at most an eighth of the room left):
 * the rounding's waste counts against the limit, and near it a call gets
 * the blocks it would get without a cache. */
static size_t rounded_cap(const arena *a, size_t cap) {
  if (!a->cache || a->held > a->limit) return cap;
  for (int k = 0; k < ARENA_CACHE_CLASSES; k++) {
    size_t c = a->block_size << k;
    if (c < cap) continue;
    return a->limit == SIZE_MAX || c <= (a->limit - a->held) / 8 ? c : cap;
  }
  return cap;
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
    size_t cap = rounded_cap(a, next_cap(a, need));
    if (cap > SIZE_MAX - sizeof *b || cap > a->limit - a->held || a->held > a->limit) return NULL;
    b = a->cache ? cache_take(a->cache, cap) : NULL;
    if (!b) b = malloc(sizeof *b + cap);
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
