/* server/reloader.h - bundle loads off the serving threads: the first one,
 * SIGHUP's, --watch_bundle's and Admin.Reload's run one at a time, in the
 * order asked, on libuv's worker pool (app_reload), so neither the loop
 * (which answers /readyz) nor a gRPC worker waits for a load.
 *
 * Callers asking for the same path while a load of it is queued share that
 * load; a caller whose deadline passed before its load started is answered
 * DEADLINE_EXCEEDED without loading, and one whose deadline passes during
 * the load is answered then (its call stops holding an in-flight slot);
 * at most RELOADER_QUEUE loads wait, each for at most RELOADER_WAITERS
 * callers.
 * Admin.Reload is refused until the first load has finished (its outcome
 * decides whether recd serves at all).
 *
 * reloader_queue is callable from any thread; everything else runs on the
 * loop's thread. */
#ifndef REC_RELOADER_H
#define REC_RELOADER_H
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>
#include "server/app.h"

enum { RELOADER_QUEUE = 8, RELOADER_WAITERS = 32 };

typedef struct reloader reloader;

/* The first load's outcome: 0 (serve) or its error. */
typedef void (*reloader_first_fn)(void *arg, int rc, const rec_error *err);

/* A reloader on 'loop' for 'ap' that loads ap->cfg->bundle first. Returns 0
 * or REC_ENOMEM. */
int  reloader_new(uv_loop_t *loop, app *ap, reloader_first_fn first, void *first_arg, reloader **out);
/* app_reload_start_fn for Admin.Reload (owner: the reloader). Fails at once
 * with REC_EUNAVAIL (first load not done, or shutting down) or REC_EOVERLOAD
 * (queue full). */
int  reloader_queue(void *owner, const char *path, int64_t deadline_ns, app_reload_fn done, void *arg,
                    rec_error *err);
/* A load of the configured path nobody waits for (SIGHUP, the watch). */
void reloader_poke(reloader *r);
/* Stops taking loads: queued ones and the callers of the one running are
 * answered UNAVAILABLE now. True when a load is still running: the loop
 * must keep turning until reloader_busy says false. */
bool reloader_close(reloader *r);
bool reloader_busy(const reloader *r);
/* After reloader_close, once the loop is closed (or abandoned). */
void reloader_free(reloader *r);
#endif
