/* common/log.c - logfmt lines on stderr; see log.h. */
#include "common/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static atomic_int min_level = REC_LOG_INFO;
static const char *const names[] = {"debug", "info", "warn", "error"};

void rec_log_set_level(rec_log_level min) { atomic_store(&min_level, (int)min); }

void rec_log(rec_log_level lvl, const char *msg, const char *kv_fmt, ...) {
  if ((int)lvl < atomic_load(&min_level)) return;
  char line[1024];
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  int n = snprintf(line, sizeof line,
                   "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s msg=\"%s\"",
                   tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                   tm.tm_sec, ts.tv_nsec / 1000000, names[lvl], msg);
  if (n < 0) return;
  if (kv_fmt && kv_fmt[0] && (size_t)n < sizeof line - 2) {
    line[n++] = ' ';
    va_list ap;
    va_start(ap, kv_fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n, kv_fmt, ap);
    va_end(ap);
    if (m > 0) n += m;
  }
  if ((size_t)n > sizeof line - 2) n = (int)sizeof line - 2; /* truncated line */
  line[n++] = '\n';
  ssize_t w = write(STDERR_FILENO, line, (size_t)n);
  (void)w; /* nowhere to report a failing stderr */
}

const char *rec_log_quote(char *buf, size_t cap, const char *s, size_t n) {
  size_t o = 0;
  if (cap < 4) {
    if (cap) buf[0] = '\0';
    return buf;
  }
  for (size_t i = 0; i < n; i++) { /* o <= cap - 4 throughout: room for "..." and the NUL */
    unsigned char c = (unsigned char)s[i];
    char esc[8];
    size_t k = 1;
    if (c == '"' || c == '\\') k = (size_t)snprintf(esc, sizeof esc, "\\%c", c);
    else if (c < 0x20 || c == 0x7f) k = (size_t)snprintf(esc, sizeof esc, "\\x%02x", c);
    else esc[0] = (char)c;
    if (o + k > cap - 4) {
      memcpy(buf + o, "...", 3);
      o += 3;
      break;
    }
    memcpy(buf + o, esc, k);
    o += k;
  }
  buf[o] = '\0';
  return buf;
}
