/* server/catlog.h - the live catalog's durable log: one file
 * <dir>/catalog.log of records
 *   magic "RECC" | u32 payload length | u64 generation | payload | u64 XXH3-64
 * (little-endian; the checksum covers everything before it). Generations
 * run 1, 2, 3, ... with no gap. One record is one batch, so a batch is
 * replayed whole or not at all.
 *
 * On open every record is checked and replayed in order. Bytes after the
 * last good record among which no good record starts are a torn tail (a
 * crash mid-append, never acknowledged): they are cut off. A bad record
 * with good ones after it, or a generation out of sequence, is damage recd
 * cannot repair without guessing which catalog changes to drop: the open
 * fails naming the file and the byte offset, and the file is left as it is.
 *
 * Appends are synchronous (write, then fdatasync) and made by one thread at
 * a time (the live catalog's writer); they never run on a serving thread.
 * Once the disk refuses a write or a sync, the log refuses every later
 * append: what is on disk past the last acknowledged record is unknown. */
#ifndef REC_CATLOG_H
#define REC_CATLOG_H
#include <stddef.h>
#include <stdint.h>
#include "common/err.h"

typedef struct catlog catlog;

enum { CATLOG_MAX_PAYLOAD = 64 << 20 };

typedef int (*catlog_replay_fn)(void *arg, uint64_t generation, const uint8_t *payload, size_t len,
                                rec_error *err);

/* Opens (creating) the log in directory 'dir' (created if missing) and
 * replays every record through 'fn' (which may fail the open by returning
 * non-zero). Returns 0, or REC_EIO / REC_ECORRUPT / REC_ENOMEM with 'err'
 * naming the file. */
int  catlog_open(const char *dir, catlog_replay_fn fn, void *arg, catlog **out, rec_error *err);
/* The last generation on disk (0 for an empty log). */
uint64_t catlog_generation(const catlog *l);
/* Appends one record with generation catlog_generation() + 1 and returns
 * once it is on disk. REC_EIO (the disk refused, now or before),
 * REC_EINVAL (payload too large). */
int  catlog_append(catlog *l, const uint8_t *payload, size_t len, rec_error *err);
void catlog_close(catlog *l);                        /* NULL is a no-op */
/* Writes the records of the log in 'dir' up to and including 'generation'
 * as the log of 'out_dir' (created; an existing log there is replaced):
 * the catalog as it was at that generation, for `recctl replay`. 'dir' is
 * only read. REC_ENOTFOUND when the log never reached 'generation';
 * REC_EIO, REC_ECORRUPT (naming the byte offset), REC_ENOMEM. */
int  catlog_copy_prefix(const char *dir, uint64_t generation, const char *out_dir, rec_error *err);
#endif
