/* common/arena.h - a bump allocator for memory that dies together, such as
 * everything one RPC decodes, computes and encodes. Allocation is a pointer
 * bump; nothing is freed one by one; arena_reset keeps the first block so a
 * reused arena usually never calls malloc. Not thread-safe: one owner at a time. */
#ifndef REC_ARENA_H
#define REC_ARENA_H
#include <stddef.h>
#include <protobuf-c/protobuf-c.h>

typedef struct arena_block arena_block;
typedef struct arena {
  arena_block *head;      /* block being filled; older blocks chain behind */
  size_t block_size;      /* size of ordinary blocks */
  size_t used_total;      /* bytes handed out since the last reset */
  size_t budget;          /* allocations left before they fail; SIZE_MAX: no limit */
  ProtobufCAllocator pb;  /* protobuf-c allocator drawing from this arena */
} arena;

/* Prepares 'a' with blocks of 'block_size' bytes (0 means 16 KiB). Allocates
 * nothing until first use. */
void  arena_init(arena *a, size_t block_size);
/* Frees every block. 'a' may be initialised again afterwards. */
void  arena_destroy(arena *a);
/* Forgets every allocation but keeps the newest block for reuse. */
void  arena_reset(arena *a);

/* 'n' bytes aligned to 16, or NULL when out of memory. Never returns NULL for n == 0. */
void *arena_alloc(arena *a, size_t n);
/* Zeroed space for 'count' elements of 'size' bytes; NULL on overflow or OOM. */
void *arena_calloc(arena *a, size_t count, size_t size);
/* A NUL-terminated copy of the first 'n' bytes of 's'; NULL on OOM. */
char *arena_strndup(arena *a, const char *s, size_t n);
/* printf into the arena; NULL on OOM or a format error. */
char *arena_printf(arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Fault injection, SQLite-style: the next 'n' allocations succeed, every
 * later one fails as if memory ran out, until arena_init or a call with
 * SIZE_MAX. Tests walk every failure path of a request with it. */
void  arena_fail_after(arena *a, size_t n);

#endif
