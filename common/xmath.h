/* common/xmath.h - checked size arithmetic and small numeric helpers. */
#ifndef REC_XMATH_H
#define REC_XMATH_H
#include <stdbool.h>
#include <stddef.h>

/* *out = a * b; returns true (and leaves *out unspecified) on overflow. */
static inline bool rec_mul_overflow(size_t a, size_t b, size_t *out) {
  return __builtin_mul_overflow(a, b, out);
}
#endif
