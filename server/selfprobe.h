/* server/selfprobe.h - is the serving listener still accepting
 * connections? gRPC 1.51 stops accepting for good on a listener whose
 * accept4 once failed with EMFILE (out of file descriptors), while the
 * process and its admin port look healthy. Every few seconds a probe on
 * libuv's thread pool connects to the serving port and opens a session the
 * way a client would (the HTTP/2 preface, or a TLS ClientHello made by
 * OpenSSL) and waits for the server's first bytes. After three failures in
 * a row the listener counts as stuck: /healthz and /readyz answer 503, so
 * an orchestrator restarts recd. Runs on the main thread's libuv loop. */
#ifndef REC_SELFPROBE_H
#define REC_SELFPROBE_H
#include <stdatomic.h>
#include <stdbool.h>
#include <uv.h>

typedef struct selfprobe selfprobe;

/* Probes 'listen' ("host:port"; a wildcard host is probed on loopback) at
 * 'port' every 'interval_ms', speaking TLS when 'tls'; sets *stuck (which
 * must outlive the probe) after three failures in a row and clears it on
 * the next success. Returns 0 or REC_ENOMEM. */
int  selfprobe_start(uv_loop_t *loop, const char *listen, int port, bool tls, int interval_ms,
                     atomic_bool *stuck, selfprobe **out);
/* Stops probing; the probe frees itself once a probe in flight is done.
 * NULL is a no-op. */
void selfprobe_close(selfprobe *p);
#endif
