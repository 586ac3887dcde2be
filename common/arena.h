/* common/arena.h - a bump allocator for memory that dies together, such as
 * everything one RPC decodes, computes and encodes. Allocation is a pointer
 * bump; nothing is freed one by one; arena_reset keeps the first block so a
 * reused arena usually never calls malloc. Not thread-safe: one owner at a time.
 * Arenas that take turns (one worker's calls) can share an arena_cache, which
 * keeps their blocks between uses instead of giving them back to malloc. */
#ifndef REC_ARENA_H
#define REC_ARENA_H
#include <pthread.h>
#include <stddef.h>
#include <protobuf-c/protobuf-c.h>

typedef struct arena_block arena_block;

/* Blocks kept for reuse, by size (block_size << class), up to 'cap' bytes in
 * all. A call that needs 160 KiB is seven blocks; without a cache each is a
 * malloc and a free per call, and every block of 256 KiB or more an mmap, a
 * munmap (a TLB shootdown on every core the process runs on) and a page
 * fault per 4 KiB touched. Thread-safe: an arena drawing on it may be
 * used from any thread. */
enum { ARENA_CACHE_CLASSES = 8 };
typedef struct arena_cache {
  pthread_mutex_t mu;
  arena_block *free[ARENA_CACHE_CLASSES];
  size_t block_size;      /* the block size of the arenas it serves */
  size_t held, cap;       /* bytes of blocks kept now, and at most */
} arena_cache;

void arena_cache_init(arena_cache *c, size_t block_size, size_t cap);
/* Frees the blocks kept. No arena may use 'c' afterwards. */
void arena_cache_destroy(arena_cache *c);

typedef struct arena {
  arena_block *head;      /* block being filled; older blocks chain behind */
  size_t block_size;      /* size of ordinary blocks */
  size_t used_total;      /* bytes handed out since the last reset */
  size_t budget;          /* allocations left before they fail; SIZE_MAX: no limit */
  size_t held;            /* bytes of blocks held now */
  size_t limit;           /* most bytes of blocks it may hold; SIZE_MAX: no limit */
  unsigned grown;         /* blocks added since the last reset */
  arena_cache *cache;     /* where blocks come from and go back to; NULL: malloc */
  ProtobufCAllocator pb;  /* protobuf-c allocator drawing from this arena */
} arena;

/* Prepares 'a' with blocks of 'block_size' bytes (0 means 16 KiB). Allocates
 * nothing until first use. Blocks after the first few grow (to 1 MiB), so a
 * large arena is a few large blocks, which malloc serves from mmap and
 * returns to the system when the arena is reset. */
void  arena_init(arena *a, size_t block_size);
/* Frees every block (to malloc, not to a cache, so it is safe after the
 * cache is gone). 'a' may be initialised again afterwards. */
void  arena_destroy(arena *a);
/* Forgets every allocation but keeps the newest block for reuse when it is
 * an ordinary one. The others go to the arena's cache while it has room,
 * else back to malloc (a large block to the system). */
void  arena_reset(arena *a);
/* New blocks come from 'c' when it has one of the size wanted, and reset
 * gives them back. A block for one large allocation (up to the largest
 * cached size) is rounded up to a cached size while the call is far from
 * its limit; the rounding's waste counts against the limit. 'c' must serve
 * 'a's block size and outlive its use. */
void  arena_use_cache(arena *a, arena_cache *c);

/* 'n' bytes aligned to 16, or NULL when out of memory. Never returns NULL for n == 0. */
void *arena_alloc(arena *a, size_t n);
/* Zeroed space for 'count' elements of 'size' bytes; NULL on overflow or OOM. */
void *arena_calloc(arena *a, size_t count, size_t size);
/* A NUL-terminated copy of the first 'n' bytes of 's'; NULL on OOM. */
char *arena_strndup(arena *a, const char *s, size_t n);
/* printf into the arena; NULL on OOM or a format error. */
char *arena_printf(arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Caps the bytes of blocks the arena may hold: past 'bytes', allocations
 * fail as if memory ran out (SIZE_MAX: no cap). One call's memory bound. */
void  arena_set_limit(arena *a, size_t bytes);

/* Fault injection, SQLite-style: the next 'n' allocations succeed, every
 * later one fails as if memory ran out, until arena_init or a call with
 * SIZE_MAX. Tests walk every failure path of a request with it. */
void  arena_fail_after(arena *a, size_t n);

#endif
