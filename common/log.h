/* common/log.h - one structured (logfmt) line per notable event, on stderr:
 *   ts=2026-11-22T13:53:14.123Z level=info msg="bundle loaded" version=v1 items=1000
 * The caller writes the key=value pairs after msg. Lines are written with one
 * write(2) each, so threads never interleave within a line. */
#ifndef REC_LOG_H
#define REC_LOG_H
#include <stddef.h>

typedef enum { REC_LOG_DEBUG, REC_LOG_INFO, REC_LOG_WARN, REC_LOG_ERROR } rec_log_level;

/* Lines below 'min' are dropped. Default: REC_LOG_INFO. */
void rec_log_set_level(rec_log_level min);
void rec_log(rec_log_level lvl, const char *msg, const char *kv_fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Copies the first 'n' bytes of 's' into 'buf' (at most cap-1 bytes, cut
 * short with "...") so that it can stand between quotes in a line: '"'
 * and '\\' escaped, control bytes as \\xNN. Returns 'buf'. For anything a
 * caller sent. */
const char *rec_log_quote(char *buf, size_t cap, const char *s, size_t n);

#define LOG_INFO(msg, ...)  rec_log(REC_LOG_INFO, msg, __VA_ARGS__)
#define LOG_WARN(msg, ...)  rec_log(REC_LOG_WARN, msg, __VA_ARGS__)
#define LOG_ERROR(msg, ...) rec_log(REC_LOG_ERROR, msg, __VA_ARGS__)
#endif
