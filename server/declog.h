/* server/declog.h - the decision log: one record per logged Recommend (what
 * it saw and what it answered, proto/rec/v1/decision.proto), written off
 * the serving threads, read back by `recctl replay`.
 *
 * A file is a run of records
 *   magic "RDL1" | u32 payload length | payload | u64 XXH3-64
 * (little-endian; the checksum covers magic, length and payload). When the
 * next record would take the file past max_bytes, the file is rotated:
 * PATH.1 .. PATH.keep hold the older ones (PATH.1 the newest), and the
 * oldest past 'keep' is deleted.
 *
 * Writing: serving threads hand finished records to declog_submit, which
 * only queues them (a bounded queue under a mutex); one writer thread
 * appends and rotates. When the queue is full the record is dropped and
 * counted, never waited for: the log must not slow serving. Records are
 * written with write(2), not synced one by one: a crash can lose the last
 * ones, and the reader then reports a truncated record at its offset.
 *
 * Reading: declog_reader walks one file record by record; any damage
 * (a bad magic, a length past DECLOG_MAX_PAYLOAD, a checksum that does not
 * match, a record cut short) stops it with an error naming the file and the
 * byte offset of the record. Reading is safe on untrusted files. */
#ifndef REC_DECLOG_H
#define REC_DECLOG_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "common/err.h"

enum { DECLOG_MAX_PAYLOAD = 64 << 20, DECLOG_OVERHEAD = 4 + 4 + 8 };

typedef struct declog declog;

typedef struct declog_opts {
  const char *path;          /* the file written now; rotated files add .1, .2, ... */
  int64_t max_bytes;         /* rotate before a record would take the file past this */
  int keep;                  /* rotated files kept (0: the full file is deleted) */
  size_t queue;              /* records waiting for the writer before new ones are dropped */
} declog_opts;

/* Opens (appending to) o->path and starts the writer. Returns 0, or
 * REC_EIO / REC_ENOMEM / REC_EINVAL with 'err' filled. */
int  declog_open(const declog_opts *o, declog **out, rec_error *err);
/* Writes every record queued so far, stops the writer, closes the file and
 * frees the log. NULL is a no-op. */
void declog_close(declog *l);
/* Queues the record 'payload' (malloc'd; the log takes it over, and frees
 * it whether or not it is written). Returns 0, or REC_EOVERLOAD when the
 * queue was full (the record is dropped and counted). Any thread. */
int  declog_submit(declog *l, uint8_t *payload, size_t len);
/* Waits until every record queued before the call is written. */
void declog_flush(declog *l);
uint64_t declog_written(declog *l);   /* records written */
uint64_t declog_dropped(declog *l);   /* records dropped: queue full */
uint64_t declog_failed(declog *l);    /* records the disk refused */

/* Whether the request 'id' is in a sample of 'rate' (0..1): the same id is
 * always in or always out, whichever process asks. */
bool declog_sampled(double rate, const char *id, size_t len);

typedef struct declog_reader declog_reader;
/* Opens 'path' for reading. REC_EIO / REC_ENOMEM with 'err'. */
int  declog_reader_open(const char *path, declog_reader **out, rec_error *err);
/* The next record: returns 1 with its payload in *p, *n (valid until the
 * next call) and its byte offset in *offset; 0 at the end of the file; or
 * REC_ECORRUPT / REC_EIO / REC_ENOMEM with 'err' holding
 * "PATH: offset N: what is wrong". After an error every call fails again. */
int  declog_next(declog_reader *r, const uint8_t **p, size_t *n, uint64_t *offset, rec_error *err);
void declog_reader_free(declog_reader *r);  /* NULL is a no-op */
#endif
