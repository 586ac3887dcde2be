/* tests/fuzz/fuzz_declog.c - the decision log's reader (server/declog.h), as
 * `recctl replay` uses it on a file it was handed: every record the reader
 * hands out must lie inside the file and keep its promised length, a damaged
 * one must stop the walk with an error naming an offset, and each payload is
 * unpacked the way replay unpacks it (the record, then the request and the
 * response inside it). */
#include "rec/v1/decision.pb-c.h"
#include "rec/v1/ranking.pb-c.h"
#include "server/declog.h"
#include "tests/fuzz/fuzz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char path[1100];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc; (void)argv;
  fuzz_quiet();
  snprintf(path, sizeof path, "%s", fuzz_path(fuzz_tmpdir("declog"), "decisions.log"));
  return 0;
}

static void unpack(const uint8_t *p, size_t n) {
  Rec__V1__DecisionRecord *d = rec__v1__decision_record__unpack(NULL, n, p);
  if (!d) return;
  Rec__V1__RecommendRequest *q = rec__v1__recommend_request__unpack(NULL, d->request.len, d->request.data);
  Rec__V1__RecommendResponse *r = rec__v1__recommend_response__unpack(NULL, d->response.len, d->response.data);
  if (q) rec__v1__recommend_request__free_unpacked(q, NULL);
  if (r) rec__v1__recommend_response__free_unpacked(r, NULL);
  rec__v1__decision_record__free_unpacked(d, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_write(path, data, size);
  declog_reader *rd;
  rec_error err = {0};
  if (declog_reader_open(path, &rd, &err) != 0) abort();
  const uint8_t *p;
  size_t n, end = 0;
  uint64_t off;
  int rc;
  while ((rc = declog_next(rd, &p, &n, &off, &err)) == 1) {
    if (off != end || off + DECLOG_OVERHEAD + n > size || memcmp(data + off + 8, p, n) != 0) {
      fprintf(stderr, "fuzz_declog: record at %llu breaks the reader's contract\n", (unsigned long long)off);
      abort();
    }
    end = off + DECLOG_OVERHEAD + n;
    unpack(p, n);
  }
  if (rc == 0 && end != size) abort(); /* a clean end only after the last byte */
  if (rc < 0 && !strstr(err.msg, "offset ")) abort();
  declog_reader_free(rd);
  return 0;
}
