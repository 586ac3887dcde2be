/* server/admin_http.h - the admin port: plain HTTP/1.1 on libuv (default
 * 127.0.0.1:9464), one request per connection.
 *   GET /metrics  Prometheus text (server/metrics.h)
 *   GET /healthz  200 while the process runs
 *   GET /readyz   200 when serving a bundle, 503 otherwise (loading, draining)
 *   GET /status   JSON: version, bundle, counts, serving, uptime
 * Runs on the libuv loop of the main thread; reads the serving side only
 * through its thread-safe accessors. */
#ifndef REC_ADMIN_HTTP_H
#define REC_ADMIN_HTTP_H
#include <uv.h>
#include "common/err.h"
#include "server/app.h"
#include "server/rpc.h"

typedef struct admin_http admin_http;

/* Listens on 'addr' ("host:port", port 0 picks one; stored in *port).
 * Returns 0 or REC_EINVAL with 'err' filled. */
int  admin_http_start(uv_loop_t *loop, const char *addr, app *ap, rpc_server *srv, admin_http **out,
                      int *port, rec_error *err);
/* Stops listening; the handle is freed once libuv has closed it. */
void admin_http_close(admin_http *h);
#endif
