/* server/admin_console.h - the admin port's web console: one page and its
 * script and style (server/console/, compiled into recd at build time) and
 * the read-only JSON API the page reads:
 *   /api/bundle       the bundle serving now, recd's role and limits, the
 *                     ranking settings in force
 *   /api/experiments  Admin.Experiments' report (layers, arms, outcomes)
 *   /api/recommend    ?user=ID[&k=N][&why=ITEM]... Recommend with explain
 *                     for one user, with each arm's blend weights
 *   /api/similar      ?item=ID[&item=ID]...[&k=N] SimilarItems
 * Nothing here changes state: look-ups run recd's own handlers in process
 * (rpc_local_call) marked quiet, so they count in no metric and no
 * experiment's attribution. Parameters are checked before anything runs
 * and no error message repeats what the caller sent.
 *
 * console_parse is cheap and runs on the admin loop; console_run does the
 * work, is thread-safe and runs on libuv's worker threads, so a slow
 * look-up never holds up /healthz or /readyz. */
#ifndef REC_ADMIN_CONSOLE_H
#define REC_ADMIN_CONSOLE_H
#include <stdbool.h>
#include <stddef.h>
#include "common/catalog.h"
#include "server/app.h"
#include "server/rpc.h"

/* A file of the page, served as is. */
typedef struct console_file {
  const char *path;                /* "/console", "/console/console.js", ... */
  const char *type;                /* its Content-Type */
  const unsigned char *data;
  size_t len;
} console_file;

/* The file served at 'path' (no query string) into *out; false when none. */
bool console_file_find(const char *path, console_file *out);

/* True when 'path' (no query string) is one of the API's routes. */
bool console_is_api(const char *path);

enum { CONSOLE_MAX_IDS = 8,        /* why= and item= values per request */
       CONSOLE_DEFAULT_K = 10 };

typedef enum console_route { CONSOLE_BUNDLE, CONSOLE_EXPERIMENTS, CONSOLE_RECOMMEND, CONSOLE_SIMILAR } console_route;

typedef struct console_query {
  console_route route;
  char user[REC_ID_MAX + 1];
  char ids[CONSOLE_MAX_IDS][REC_ID_MAX + 1]; /* why= (recommend) or item= (similar), decoded */
  size_t n_ids;
  int k;
} console_query;

/* An answer: an HTTP status and its JSON body (malloc'd; NULL when memory
 * ran out, which the caller answers 500). */
typedef struct console_reply {
  int status;
  char *body;
} console_reply;

/* Reads the API request 'path' with 'query' (what follows '?', NULL when
 * none; percent-encoded) into *q. Every parameter is checked: a known
 * name, given once (why= and item= up to CONSOLE_MAX_IDS times), an id of
 * 1 to REC_ID_MAX bytes of UTF-8 without control characters once decoded,
 * k an integer 1 to max_k. Returns 0, or fills *reply (400, or 404 for a
 * path that is not a route) and returns its status. */
int  console_parse(const char *path, const char *query, int max_k, console_query *q, console_reply *reply);

/* Answers 'q' from 'ap' (whose serving listener is 'srv', may be NULL).
 * The look-up's memory is capped at the process's max_call_mb. Any thread. */
void console_run(app *ap, rpc_server *srv, const console_query *q, console_reply *reply);
#endif
