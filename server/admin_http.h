/* server/admin_http.h - the admin port: plain HTTP/1.1 on libuv (default
 * 127.0.0.1:9464), one request per connection, closed after the answer.
 *   GET /metrics  Prometheus text (server/metrics.h)
 *   GET /healthz  200 while the process runs
 *   GET /readyz   200 when serving a bundle, 503 otherwise (loading, draining)
 *   GET /status   JSON: version, bundle, counts, serving, uptime
 *   GET /console  the web console's page, and its /console/console.js and
 *                 /console/console.css (server/admin_console.h)
 *   GET /api/...  the console's read-only JSON API (server/admin_console.h),
 *                 run on libuv's worker threads, at most two at once (503
 *                 past that)
 * Only /api/ reads a query string; another path is 404, another method
 * 405, a request http_parser refuses 400, a URL over 4095 bytes 414. Every
 * answer says nosniff, no-store and a Content-Security-Policy that allows
 * nothing from elsewhere. Without a token on the port, /api/ answers only
 * a Host that is an address or localhost (403: DNS rebinding).
 * Runs on the libuv loop of the main thread; reads the serving side only
 * through its thread-safe accessors. */
#ifndef REC_ADMIN_HTTP_H
#define REC_ADMIN_HTTP_H
#include <uv.h>
#include "common/err.h"
#include "server/app.h"
#include "server/rpc.h"

typedef struct admin_http admin_http;

/* Listens on 'addr' ("host:port" or "[v6 host]:port", port 0 picks one;
 * stored in *port). Returns 0, or REC_EINVAL / REC_ENOMEM with 'err' filled;
 * after a failed bind the loop must run once more to free the handle.
 * With 'au' every route but /healthz and /readyz needs "Authorization:
 * Bearer TOKEN" with one of its tokens, else 401. */
int  admin_http_start(uv_loop_t *loop, const char *addr, app *ap, rpc_server *srv, const auth *au,
                      admin_http **out, int *port, rec_error *err);
/* Stops listening and closes every open connection (a client that never
 * finishes its request must not keep the loop alive); the handle is freed
 * once libuv has closed them all. NULL is a no-op. */
void admin_http_close(admin_http *h);
#endif
