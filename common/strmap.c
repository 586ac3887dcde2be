/* common/strmap.c - open addressing with linear probing over XXH3 hashes; the
 * table is kept at most half full so probes stay short. */
#include "common/strmap.h"
#include "common/err.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

typedef struct slot {
  const char *key; /* NULL: empty */
  uint32_t len, value;
  uint64_t hash;
} slot;

struct strmap {
  slot *slots;
  size_t mask, count, capacity;
};

int strmap_new(size_t capacity, strmap **out) {
  size_t n = 16;
  while (n < capacity * 2) {
    if (n > SIZE_MAX / 4 / sizeof(slot)) return REC_ENOMEM;
    n *= 2;
  }
  strmap *m = malloc(sizeof *m);
  if (!m) return REC_ENOMEM;
  m->slots = calloc(n, sizeof *m->slots);
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
  free(m->slots);
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
