/* common/strmap.h - a fixed-capacity hash map from byte-string keys to uint32
 * values (typically row numbers of a table). Keys are not copied: they must
 * outlive the map. Built once, then read-only: concurrent lookups are safe,
 * concurrent puts are not. */
#ifndef REC_STRMAP_H
#define REC_STRMAP_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct strmap strmap;

/* A map with room for 'capacity' keys. Returns 0, or REC_ENOMEM. */
int  strmap_new(size_t capacity, strmap **out);
void strmap_free(strmap *m);                       /* NULL is a no-op */

/* Adds key -> value. Returns 0, REC_EINVAL if the key is already present, or
 * REC_ETOOBIG if the map already holds 'capacity' keys. */
int  strmap_put(strmap *m, const char *key, size_t len, uint32_t value);
/* True and *value set when 'key' is present; false and *value untouched otherwise. */
bool strmap_get(const strmap *m, const char *key, size_t len, uint32_t *value);
size_t strmap_count(const strmap *m);
#endif
