/* server/selfprobe.c - see selfprobe.h. */
#include "server/selfprobe.h"
#include "common/err.h"
#include "common/log.h"

#include <netdb.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

enum { TIMEOUT_S = 2, FAILURES = 3 };

struct selfprobe {
  uv_timer_t timer;
  uv_work_t work;
  char host[256], port[8];
  bool tls;
  bool busy;                 /* a probe is on the thread pool */
  bool closing, timer_closed;
  bool ok;                   /* the last probe's result (written by the pool thread) */
  int failures;
  atomic_bool *stuck;
};

/* The first bytes a TLS client sends: OpenSSL's ClientHello, through a
 * memory BIO. Returns its length (0 on failure). */
static size_t client_hello(unsigned char *out, size_t cap) {
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  SSL *ssl = ctx ? SSL_new(ctx) : NULL;
  BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
  size_t n = 0;
  if (ssl && rb && wb) {
    static const unsigned char alpn[] = {2, 'h', '2'};
    SSL_set_alpn_protos(ssl, alpn, sizeof alpn);
    SSL_set_bio(ssl, rb, wb); /* ssl owns them now */
    rb = wb = NULL;
    SSL_connect(ssl); /* wants to read: the hello is in the write BIO */
    int got = BIO_read(SSL_get_wbio(ssl), out, (int)cap);
    n = got > 0 ? (size_t)got : 0;
  }
  BIO_free(rb);
  BIO_free(wb);
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  return n;
}

/* One probe: connect, open a session, wait for the server's first bytes. */
static bool probe_once(const selfprobe *p) {
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
  if (getaddrinfo(p->host, p->port, &hints, &ai) != 0 || !ai) return false;
  int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  bool ok = false;
  if (fd >= 0) {
    struct timeval tv = {.tv_sec = TIMEOUT_S};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    unsigned char hello[2048];
    static const unsigned char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
                                           "\x00\x00\x00\x04\x00\x00\x00\x00\x00"; /* and an empty SETTINGS */
    size_t n = p->tls ? client_hello(hello, sizeof hello) : sizeof preface - 1;
    const void *first = p->tls ? (const void *)hello : (const void *)preface;
    unsigned char answer[16];
    ok = n && connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 && send(fd, first, n, MSG_NOSIGNAL) == (ssize_t)n &&
         recv(fd, answer, sizeof answer, 0) > 0;
    close(fd);
  }
  freeaddrinfo(ai);
  return ok;
}

static void on_work(uv_work_t *w) {
  selfprobe *p = w->data;
  p->ok = probe_once(p);
}

static void on_closed(uv_handle_t *h) {
  selfprobe *p = h->data;
  p->timer_closed = true;
  if (!p->busy) free(p);
}

static void on_done(uv_work_t *w, int status) {
  selfprobe *p = w->data;
  (void)status;
  p->busy = false;
  if (p->closing) {
    if (p->timer_closed) free(p); /* else the close callback frees it */
    return;
  }
  if (p->ok) {
    if (atomic_exchange(p->stuck, false))
      LOG_INFO("the serving listener accepts connections again", "port=%s", p->port);
    p->failures = 0;
  } else if (++p->failures == FAILURES) {
    atomic_store(p->stuck, true);
    LOG_ERROR("the serving listener stopped accepting connections; /healthz and /readyz now fail",
              "port=%s probes_failed=%d hint=\"out of file descriptors? raise the open-file limit; restart recd\"",
              p->port, p->failures);
  }
}

static void on_tick(uv_timer_t *t) {
  selfprobe *p = t->data;
  if (p->busy || p->closing) return;
  p->busy = true;
  p->work.data = p;
  if (uv_queue_work(t->loop, &p->work, on_work, on_done) != 0) p->busy = false;
}

int selfprobe_start(uv_loop_t *loop, const char *listen, int port, bool tls, int interval_ms,
                    atomic_bool *stuck, selfprobe **out) {
  selfprobe *p = calloc(1, sizeof *p);
  if (!p) return REC_ENOMEM;
  const char *colon = strrchr(listen, ':');
  size_t hl = colon ? (size_t)(colon - listen) : strlen(listen);
  snprintf(p->host, sizeof p->host, "%.*s", (int)hl, listen);
  if (p->host[0] == '[') { /* [v6] */
    memmove(p->host, p->host + 1, strlen(p->host));
    p->host[strcspn(p->host, "]")] = '\0';
  }
  if (!p->host[0] || strcmp(p->host, "0.0.0.0") == 0) snprintf(p->host, sizeof p->host, "127.0.0.1");
  else if (strcmp(p->host, "::") == 0) snprintf(p->host, sizeof p->host, "::1");
  snprintf(p->port, sizeof p->port, "%d", port);
  p->tls = tls;
  p->stuck = stuck;
  uv_timer_init(loop, &p->timer);
  p->timer.data = p;
  uv_timer_start(&p->timer, on_tick, (uint64_t)interval_ms, (uint64_t)interval_ms);
  uv_unref((uv_handle_t *)&p->timer);
  *out = p;
  return 0;
}

void selfprobe_close(selfprobe *p) {
  if (!p) return;
  p->closing = true;
  uv_close((uv_handle_t *)&p->timer, on_closed);
}
