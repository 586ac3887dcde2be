/* common/trace.c - see trace.h. */
#include "common/trace.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

static bool lower_hex(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return false;
  return true;
}

static bool all_zero(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (s[i] != '0') return false;
  return true;
}

/* splitmix64 over a per-thread state seeded once from the kernel: ids need
 * to be unique, not secret. */
static uint64_t next_random(void) {
  static _Thread_local uint64_t state;
  static _Thread_local bool seeded;
  if (!seeded) {
    if (getrandom(&state, sizeof state, GRND_NONBLOCK) != (ssize_t)sizeof state) {
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      state = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ (uint64_t)(uintptr_t)&state;
    }
    seeded = true;
  }
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* 16 hex digits, never all zero (the specification's invalid id). */
static void random_hex16(char out[17]) {
  uint64_t v;
  while ((v = next_random()) == 0) continue;
  snprintf(out, 17, "%016llx", (unsigned long long)v);
}

bool trace_parse(const char *v, size_t n, trace_ctx *t) {
  /* version "-" trace-id "-" parent-id "-" flags, at fixed offsets. */
  if (n < TRACEPARENT_LEN || v[2] != '-' || v[35] != '-' || v[52] != '-') return false;
  if (!lower_hex(v, 2) || !lower_hex(v + 3, 32) || !lower_hex(v + 36, 16) || !lower_hex(v + 53, 2)) return false;
  bool v00 = v[0] == '0' && v[1] == '0';
  if ((v[0] == 'f' && v[1] == 'f') || (v00 && n != TRACEPARENT_LEN) || (!v00 && n > TRACEPARENT_LEN && v[55] != '-'))
    return false;
  if (all_zero(v + 3, 32) || all_zero(v + 36, 16)) return false;
  memcpy(t->trace_id, v + 3, 32);
  t->trace_id[32] = '\0';
  memcpy(t->parent_id, v + 36, 16);
  t->parent_id[16] = '\0';
  unsigned flags = (unsigned)((v[53] <= '9' ? v[53] - '0' : v[53] - 'a' + 10) << 4 |
                              (v[54] <= '9' ? v[54] - '0' : v[54] - 'a' + 10));
  t->sampled = flags & 1;
  random_hex16(t->span_id);
  return true;
}

void trace_start(trace_ctx *t) {
  random_hex16(t->trace_id);
  random_hex16(t->trace_id + 16);
  random_hex16(t->span_id);
  t->parent_id[0] = '\0';
  t->sampled = false;
}

void trace_child(const trace_ctx *t, char out[TRACEPARENT_LEN + 1]) {
  char span[17];
  random_hex16(span);
  snprintf(out, TRACEPARENT_LEN + 1, "00-%.32s-%.16s-%s", t->trace_id, span, t->sampled ? "01" : "00");
}
