/* tests/fuzz/fuzz_eventlog.c - the event log's reader (server/eventlog.h):
 * a log directory whose one segment is the input, read by eventlog_scan
 * (every record a replay would see, the file untouched) and then opened
 * with eventlog_open (which also truncates a torn tail) and closed. Every
 * record either pass replays must keep the header's promises (user and item
 * 1 to 128 bytes, sequences rising), and open must replay what scan read. */
#include "server/eventlog.h"
#include "tests/fuzz/fuzz.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char dir[1024], segment[1100];

typedef struct seen {
  uint64_t last_seq;
  size_t records;
  uint32_t sum;        /* reads every byte of every id, for ASan */
} seen;

static void check(void *arg, uint64_t seq, const ev_record *r) {
  seen *s = arg;
  if (r->user_len < 1 || r->user_len > 128 || r->item_len < 1 || r->item_len > 128 ||
      (s->records && seq <= s->last_seq)) {
    fprintf(stderr, "fuzz_eventlog: record %llu breaks the reader's contract\n", (unsigned long long)seq);
    abort();
  }
  for (size_t i = 0; i < r->user_len; i++) s->sum += (uint8_t)r->user[i];
  for (size_t i = 0; i < r->item_len; i++) s->sum += (uint8_t)r->item[i];
  s->last_seq = seq;
  s->records++;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc; (void)argv;
  fuzz_quiet();
  snprintf(dir, sizeof dir, "%s", fuzz_path(fuzz_tmpdir("eventlog"), "log"));
  snprintf(segment, sizeof segment, "%s/events-%020d.log", dir, 1);
  fuzz_empty_dir(dir);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_empty_dir(dir); /* open may have started a new segment last time */
  fuzz_write(segment, data, size);
  seen s = {0};
  size_t count = 0;
  rec_error err = {0};
  int rc = eventlog_scan(dir, check, &s, &count, &err);
  fuzz_report("eventlog_scan", rc, err.msg);
  bool scanned = rc == 0;
  if (scanned && count != s.records) abort();
  seen o = {0};
  eventlog *l = NULL;
  size_t replayed = 0;
  rc = eventlog_open(dir, 1 << 20, check, &o, &l, &replayed, &err);
  fuzz_report("eventlog_open", rc, err.msg);
  if (rc == 0) {
    if (scanned && replayed != s.records) {
      fprintf(stderr, "fuzz_eventlog: scan saw %zu records, open replayed %zu\n", s.records,
              replayed);
      abort();
    }
    eventlog_close(l);
  }
  return 0;
}
