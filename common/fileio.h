/* common/fileio.h - whole-file reads and content hashes, with errors that name
 * the file. */
#ifndef REC_FILEIO_H
#define REC_FILEIO_H
#include <stddef.h>
#include <stdint.h>
#include "common/err.h"

/* Reads 'path' whole into a malloc'd, NUL-terminated buffer (caller frees);
 * stores its length in *len. NULL with 'err' filled on failure. */
char *rec_read_file(const char *path, size_t *len, rec_error *err);

/* XXH3-64 of the file's bytes and its size. Returns 0, REC_EIO or REC_ENOMEM. */
int rec_hash_file(const char *path, uint64_t *hash, uint64_t *bytes, rec_error *err);
#endif
