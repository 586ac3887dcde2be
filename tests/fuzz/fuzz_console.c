/* tests/fuzz/fuzz_console.c - the admin console's API request line
 * (server/admin_console.h): the input is "PATH?QUERY" as a browser would
 * send it, read by console_parse. What it accepts must keep the promises
 * the look-ups rely on: a known route, k in 1..max_k, at most
 * CONSOLE_MAX_IDS ids, each 1 to 128 bytes with no control character and
 * no NUL; what it refuses is a 400 or 404 with a JSON {"error": ...}. */
#include "server/admin_console.h"
#include "tests/fuzz/fuzz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_K = 200 };

static void check_id(const char *id) {
  size_t n = strnlen(id, REC_ID_MAX + 1);
  if (n < 1 || n > REC_ID_MAX) abort();
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)id[i] < 0x20 || id[i] == 0x7f) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 8192) return 0;
  char *line = malloc(size + 1);
  if (!line) abort();
  memcpy(line, data, size);
  line[size] = '\0';
  if (strlen(line) != size) { /* the HTTP layer never hands on a NUL */
    free(line);
    return 0;
  }
  char *q = strchr(line, '?');
  if (q) *q++ = '\0';
  console_query query;
  console_reply reply = {0};
  int rc = console_parse(line, q, MAX_K, &query, &reply);
  if (rc == 0) {
    if (reply.body || query.k < 1 || query.k > MAX_K || query.n_ids > CONSOLE_MAX_IDS) abort();
    if (query.route == CONSOLE_RECOMMEND) check_id(query.user);
    for (size_t i = 0; i < query.n_ids; i++) check_id(query.ids[i]);
  } else {
    if ((rc != 400 && rc != 404) || reply.status != rc || !reply.body) abort();
    cJSON *j = cJSON_Parse(reply.body);
    if (!j || !cJSON_IsString(cJSON_GetObjectItem(j, "error"))) abort();
    cJSON_Delete(j);
    free(reply.body);
  }
  free(line);
  return 0;
}
