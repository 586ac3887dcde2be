/* common/clock.h - monotonic and wall time in nanoseconds. */
#ifndef REC_CLOCK_H
#define REC_CLOCK_H
#include <stdint.h>
#include <time.h>

static inline int64_t rec_mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline int64_t rec_wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
#endif
