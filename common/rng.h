/* common/rng.h - splitmix64: a small, fast, seedable generator for
 * everything that must be reproducible from a seed (training, synthetic
 * data, bootstrap resampling). Not for secrets. */
#ifndef REC_RNG_H
#define REC_RNG_H
#include <math.h>
#include <stdint.h>

typedef struct rec_rng {
  uint64_t s;
} rec_rng;

static inline uint64_t rec_rng_next(rec_rng *r) {
  uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* Uniform in [0, 1) with 53 random bits. */
static inline double rec_rng_uniform(rec_rng *r) { return (double)(rec_rng_next(r) >> 11) * 0x1.0p-53; }

/* Standard normal by Box-Muller; the +1e-300 keeps log() finite at 0. */
static inline double rec_rng_normal(rec_rng *r) {
  double u = rec_rng_uniform(r), v = rec_rng_uniform(r);
  return sqrt(-2.0 * log(u + 1e-300)) * cos(6.283185307179586 * v);
}
#endif
