/* common/strmap.c - open addressing with linear probing over XXH3 hashes; the
 * table is kept at most half full so probes stay short. */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS, madvise */
#include "common/strmap.h"
#include "common/err.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <xxhash.h>

typedef struct slot {
  const char *key; /* NULL: empty */
  uint32_t len, value;
  uint64_t hash;
} slot;

struct strmap {
  slot *slots;
  size_t mask, count, capacity;
  size_t mapped; /* bytes mmap'd for slots; 0: calloc'd */
};

/* A table of millions of slots is probed at random, one TLB miss per probe
 * with 4 KiB pages: huge pages where the kernel gives them on request cut a
 * 10M-item catalog's load by seconds. Pages stay untouched (and unbacked)
 * until a slot on them is written. */
#define HUGE_TABLE ((size_t)4 << 20)
static slot *alloc_slots(size_t n, size_t *mapped) {
  size_t bytes = n * sizeof(slot);
  *mapped = 0;
  if (bytes < HUGE_TABLE) return calloc(n, sizeof(slot));
  void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return NULL;
  (void)madvise(p, bytes, MADV_HUGEPAGE); /* advice: without THP, 4 KiB pages */
  *mapped = bytes;
  return p;
}

int strmap_new(size_t capacity, strmap **out) {
  size_t n = 16;
  while (n < capacity * 2) {
    if (n > SIZE_MAX / 4 / sizeof(slot)) return REC_ENOMEM;
    n *= 2;
  }
  strmap *m = malloc(sizeof *m);
  if (!m) return REC_ENOMEM;
  m->slots = alloc_slots(n, &m->mapped);
  if (!m->slots) {
    free(m);
    return REC_ENOMEM;
  }
  m->mask = n - 1;
  m->count = 0;
  m->capacity = capacity;
  *out = m;
  return 0;
}

void strmap_free(strmap *m) {
  if (!m) return;
  if (m->mapped) munmap(m->slots, m->mapped);
  else free(m->slots);
  free(m);
}

static slot *find(const strmap *m, const char *key, size_t len, uint64_t h) {
  for (size_t i = h & m->mask;; i = (i + 1) & m->mask) {
    slot *s = &m->slots[i];
    if (!s->key) return s;
    if (s->hash == h && s->len == len && memcmp(s->key, key, len) == 0) return s;
  }
}

int strmap_put(strmap *m, const char *key, size_t len, uint32_t value) {
  if (len > UINT32_MAX) return REC_EINVAL;
  uint64_t h = XXH3_64bits(key, len);
  slot *s = find(m, key, len, h);
  if (s->key) return REC_EINVAL;
  if (m->count >= m->capacity) return REC_ETOOBIG;
  s->key = key;
  s->len = (uint32_t)len;
  s->value = value;
  s->hash = h;
  m->count++;
  return 0;
}

bool strmap_get(const strmap *m, const char *key, size_t len, uint32_t *value) {
  slot *s = find(m, key, len, XXH3_64bits(key, len));
  if (!s->key) return false;
  *value = s->value;
  return true;
}

size_t strmap_count(const strmap *m) { return m->count; }
