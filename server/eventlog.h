/* server/eventlog.h - a durable, append-only log of user events.
 *
 * Segment files <dir>/events-<first sequence, 20 digits>.log hold records
 *   magic "RECE" | u32 payload length | u64 sequence | payload | u32 XXH32
 * (little-endian; the checksum covers everything before it). Appends from
 * any thread are group-committed: each appender writes its batch and waits
 * until an fdatasync covers it; whoever finds no sync running runs one for
 * everybody waiting. eventlog_append returns only once its records are on
 * disk. On open every record is checked and replayed in order; an invalid
 * record in the last segment is a torn tail (a crash mid-write) and the
 * file is truncated there; one in an earlier segment is corruption and
 * refuses the open. */
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

/* Opens (creating) the log in 'dir', replaying every record through 'fn'.
 * Segments roll over past 'segment_bytes'. Returns 0, or REC_EIO /
 * REC_ECORRUPT with 'err' naming the file and offset. */
int  eventlog_open(const char *dir, size_t segment_bytes, ev_replay_fn fn, void *arg,
                   eventlog **out, size_t *replayed, rec_error *err);
/* Group commit: the syncing appender first waits this long for others to
 * join its fdatasync (0: sync at once). Fewer syncs, longer calls. */
void eventlog_set_commit_delay(eventlog *l, int64_t us);
/* Appends n records and returns once they are durable; *last_seq is the
 * sequence of the last one. Thread-safe. REC_EIO when the disk refuses (the
 * log then refuses every later append too: nothing half-acknowledged). */
int  eventlog_append(eventlog *l, const ev_record *recs, size_t n, uint64_t *last_seq, rec_error *err);
uint64_t eventlog_last_seq(eventlog *l);
/* Reads every valid record of the log in 'dir' without changing it (a torn
 * tail is skipped, not truncated): for exports while recd runs. */
int  eventlog_scan(const char *dir, ev_replay_fn fn, void *arg, size_t *count, rec_error *err);
void eventlog_close(eventlog *l);               /* NULL is a no-op */
#endif
