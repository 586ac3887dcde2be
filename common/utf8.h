/* common/utf8.h - text checks for anything a client sends: well-formed
 * UTF-8 (no overlong forms, no surrogates, nothing past U+10FFFF). */
#ifndef REC_UTF8_H
#define REC_UTF8_H
#include <stdbool.h>
#include <stddef.h>

/* True when the n bytes at s are well-formed UTF-8 (NUL bytes included). */
bool rec_utf8_valid(const char *s, size_t n);
#endif
