/* common/search.h - the one binary search: arrays of records sorted
 * ascending by a uint32_t key (an item row), as the ranking rules and the
 * bundle's signals keep them. Inline: it runs per candidate. */
#ifndef REC_SEARCH_H
#define REC_SEARCH_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* The index of the record of 'base' (n records of 'size' bytes, sorted by
 * the uint32_t at byte 'key_off' of each) whose key is 'key'; n when none. */
static inline size_t rec_search_u32(const void *base, size_t n, size_t size, size_t key_off,
                                    uint32_t key) {
  const unsigned char *p = base;
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    uint32_t k;
    memcpy(&k, p + mid * size + key_off, sizeof k);
    if (k == key) return mid;
    if (k < key) lo = mid + 1;
    else hi = mid;
  }
  return n;
}
#endif
