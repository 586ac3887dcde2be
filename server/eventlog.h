/* server/eventlog.h - a durable, append-only log of user events.
 *
 * Segment files <dir>/events-<first sequence, 20 digits>.log hold records
 *   magic "RECE" | u32 payload length | u64 sequence | payload | u32 XXH32
 * (little-endian; the checksum covers everything before it).
 *
 * Appends never wait for the disk on the caller's thread. An appender only
 * writes its batch (under the log's mutex, which also hands out sequences)
 * and queues it. One commit thread per log waits for queued batches, lets
 * more join for the commit delay, runs one fdatasync for all of them and
 * then calls each batch's 'done', in sequence order. A batch is reported
 * durable only after that fdatasync returned. Once the disk refuses a write
 * or a sync, every batch not yet durable and every later append fail with
 * REC_EIO: nothing is half-acknowledged.
 * Segments roll over past 'segment_bytes': the appender only creates the new
 * file; the commit thread fdatasyncs and closes the old one and fsyncs the
 * directory (so the new name survives a crash) before it reports anything
 * written to the new file.
 *
 * On open every record is checked and replayed in sequence order:
 *  - a torn tail, bytes after the last good record of the last segment among
 *    which no valid record starts (a crash mid-write), is truncated;
 *  - any other bad record (flipped bytes anywhere, a damaged first record) is
 *    skipped: replay resumes at the next valid record (magic, length,
 *    checksum) whose sequence jumps by as many records as the skipped bytes
 *    can hold (50 to 304 bytes each) and which is followed by the next
 *    sequence, the end of the file or nothing valid. Logged at error level
 *    (file, byte offset, missing sequences) and counted;
 *  - valid records after a bad spot that no such resync accounts for (a
 *    sequence that does not fit) are not trusted: the rest of that file is
 *    skipped, logged and counted (each valid record there);
 *  - a gap between segments (a missing file; or a segment's unsynced tail
 *    that a crash right after its rotation cut short, never acknowledged) is
 *    logged with the missing range and counted; replay goes on.
 * A damaged file is never changed, not even its torn tail: it stays as
 * evidence, and appends go on in a new segment after the highest sequence
 * replayed.
 * The first segment's name is where the log starts. */
#ifndef REC_EVENTLOG_H
#define REC_EVENTLOG_H
#include <stddef.h>
#include <stdint.h>
#include "common/err.h"

typedef struct eventlog eventlog;

typedef struct ev_record {
  int64_t time_ms;           /* Unix milliseconds */
  int32_t type;              /* rec.v1.EventType */
  int32_t quantity;
  double price;
  const char *user, *item;   /* 1..128 bytes each, not NUL-terminated in replay */
  uint16_t user_len, item_len;
} ev_record;

typedef void (*ev_replay_fn)(void *arg, uint64_t seq, const ev_record *r);

/* Called exactly once per accepted batch, on the log's commit thread, when
 * the batch is durable (rc 0, last_seq = its last sequence) or the disk
 * refused it (rc REC_EIO). It may append again but must not close the log
 * or wait for another batch; it delays every later batch, so keep it short. */
typedef void (*ev_done_fn)(void *arg, int rc, uint64_t last_seq);

/* Opens (creating) the log in 'dir', replaying every record through 'fn'
 * (may be NULL) on the calling thread, and starts its commit thread. Segments roll over past
 * 'segment_bytes'. Returns 0, or REC_EIO / REC_ENOMEM / REC_ECORRUPT with
 * 'err' naming the file. */
int  eventlog_open(const char *dir, size_t segment_bytes, ev_replay_fn fn, void *arg,
                   eventlog **out, size_t *replayed, rec_error *err);
/* Group commit: the commit thread waits this long (0 to 3600 s; clamped)
 * after the first pending batch for others to join its fdatasync. Fewer
 * syncs, later acknowledgements. A new value applies at once. */
void eventlog_set_commit_delay(eventlog *l, int64_t us);
/* Writes n records (copies them; the caller's buffers may go away on return)
 * and returns 0 at once; 'done' runs later from the commit thread. On failure
 * returns a negative code with err filled and never calls 'done': REC_EINVAL
 * (n is 0, or a user or item is not 1..128 bytes), REC_ENOMEM, REC_EIO (the
 * disk refused, now or earlier), REC_EUNAVAIL (the log is closing). Never
 * calls fdatasync on the caller's thread. Thread-safe. */
int  eventlog_append_async(eventlog *l, const ev_record *recs, size_t n, ev_done_fn done, void *arg,
                           rec_error *err);
/* eventlog_append_async, then waits for 'done': returns once the records are
 * durable, with *last_seq the sequence of the last one (for tools and tests;
 * never from a 'done' callback). */
int  eventlog_append(eventlog *l, const ev_record *recs, size_t n, uint64_t *last_seq, rec_error *err);
uint64_t eventlog_last_seq(eventlog *l);          /* the last durable sequence */
/* Records skipped when the log was opened (see above); 0 for a sound log. */
uint64_t eventlog_corrupt_records(eventlog *l);
/* fdatasync rounds run so far: events per round shows how well the commit
 * delay groups them. */
uint64_t eventlog_syncs(eventlog *l);
/* Reads every record of the log in 'dir' as eventlog_open would replay it,
 * without changing anything (a torn tail is skipped, not truncated; damage is
 * logged the same way): for exports while recd runs. */
int  eventlog_scan(const char *dir, ev_replay_fn fn, void *arg, size_t *count, rec_error *err);
/* Completes every batch accepted before it (calling its 'done'), stops the
 * commit thread and frees the log. No append may start once it has been
 * called. NULL is a no-op. */
void eventlog_close(eventlog *l);

/* Tests only: the nth allocation from now on fails (0: none). */
void eventlog__fail_alloc(unsigned long nth);
#endif
