/* tests/server/test_admin_http.c - the admin port on 127.0.0.1, port 0,
 * served by a libuv loop on the test's thread while a client thread talks
 * to it over real sockets: every route, 404, 405, 400, 414, a request in
 * pieces, a pipelined second request, bad addresses, a port in use, and a
 * close that also closes a connection whose request never ends; the web
 * console's files and API (checks, headers, answers without a bundle, a
 * client gone before its answer, a burst past the queue). */
#include "server/admin_http.h"
#include "server/auth.h"
#include "tests/test.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

typedef struct fixture {
  uv_loop_t loop;
  uv_async_t finished;       /* the client thread is done: stop serving */
  recd_config cfg;
  app ap;
  rpc_server *srv;
  admin_http *h;
  int port;
  int idle_fd;               /* a connection left open by a client script */
} fixture;

static void on_finished(uv_async_t *a) { uv_stop(a->loop); }

static void nap_ms(long ms) { nanosleep(&(struct timespec){ms / 1000, (ms % 1000) * 1000000}, NULL); }

static void fixture_open_auth(fixture *f, const auth *au) {
  memset(f, 0, sizeof *f);
  f->cfg.max_k = 200;
  f->cfg.max_call_mb = 64;
  signal(SIGPIPE, SIG_IGN); /* as recd does: a client gone mid-answer is no crash */
  CU_ASSERT_EQUAL_FATAL(uv_loop_init(&f->loop), 0);
  app_init(&f->ap, &f->cfg);
  rpc_server_opts o = {.listen = "127.0.0.1:0", .threads = 1, .requests_per_method = 1,
                       .max_message_bytes = 1 << 20, .max_concurrent_streams = 8, .app = &f->ap};
  int grpc_port;
  rec_error e = {0};
  CU_ASSERT_EQUAL_FATAL(rpc_server_start(&o, &f->srv, &grpc_port, &e), 0);
  CU_ASSERT_EQUAL_FATAL(admin_http_start(&f->loop, "127.0.0.1:0", &f->ap, f->srv, au, &f->h, &f->port, &e), 0);
  CU_ASSERT(f->port > 0);
  uv_async_init(&f->loop, &f->finished, on_finished);
  f->idle_fd = -1;
}

static void fixture_open(fixture *f) { fixture_open_auth(f, NULL); }

/* Runs the loop until nothing is left on it (bounded: a handle left open
 * fails the test instead of hanging it). */
static void drain(uv_loop_t *loop) {
  for (int i = 0; i < 2000 && uv_loop_alive(loop); i++) {
    uv_run(loop, UV_RUN_NOWAIT);
    nap_ms(1);
  }
  CU_ASSERT(!uv_loop_alive(loop));
}

static void fixture_close(fixture *f) {
  admin_http_close(f->h);
  uv_close((uv_handle_t *)&f->finished, NULL);
  drain(&f->loop);
  CU_ASSERT_EQUAL(uv_loop_close(&f->loop), 0);
  rpc_server_stop(f->srv, 0);
  app_destroy(&f->ap);
}

typedef struct client {
  fixture *f;
  void (*script)(fixture *f);
} client;

static void *client_main(void *arg) {
  client *c = arg;
  c->script(c->f);
  uv_async_send(&c->f->finished);
  return NULL;
}

/* Runs 'script' on a client thread while this thread serves the loop. Only
 * one thread uses CUnit at a time: this one waits in uv_run meanwhile. */
static void run_client(fixture *f, void (*script)(fixture *f)) {
  client c = {f, script};
  pthread_t t;
  pthread_create(&t, NULL, client_main, &c);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  pthread_join(t, NULL);
}

static int dial(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct timeval tv = {.tv_sec = 5};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

typedef struct response {
  int code;
  char head[2048];
  char body[65536];
  size_t body_len;
  long content_length;
} response;

/* Sends the request in 'parts' (NULL-terminated) and reads the whole answer
 * until the server closes the connection. */
static void request(int port, const char *const *parts, response *r) {
  memset(r, 0, sizeof *r);
  r->content_length = -1;
  int fd = dial(port);
  CU_ASSERT_FATAL(fd >= 0);
  for (size_t i = 0; parts[i]; i++) {
    if (i) nap_ms(20); /* the server may see each piece in its own read */
    CU_ASSERT_EQUAL((size_t)send(fd, parts[i], strlen(parts[i]), 0), strlen(parts[i]));
  }
  static char raw[sizeof r->head + sizeof r->body];
  size_t n = 0;
  ssize_t got;
  while (n < sizeof raw - 1 && (got = recv(fd, raw + n, sizeof raw - 1 - n, 0)) > 0) n += (size_t)got;
  close(fd);
  raw[n] = '\0';
  char *end = strstr(raw, "\r\n\r\n");
  CU_ASSERT_PTR_NOT_NULL_FATAL(end);
  sscanf(raw, "HTTP/1.1 %d", &r->code);
  snprintf(r->head, sizeof r->head, "%.*s", (int)(end - raw + 2), raw);
  r->body_len = n - (size_t)(end + 4 - raw);
  memcpy(r->body, end + 4, r->body_len);
  const char *cl = strstr(r->head, "Content-Length: ");
  if (cl) r->content_length = strtol(cl + 16, NULL, 10);
}

static void get(int port, const char *req, response *r) {
  const char *parts[] = {req, NULL};
  request(port, parts, r);
}

/* ---- scripts (client thread) ---- */

static void check_text(const response *r, int code, const char *body) {
  CU_ASSERT_EQUAL(r->code, code);
  CU_ASSERT_STRING_EQUAL(r->body, body);
  CU_ASSERT_EQUAL(r->content_length, (long)r->body_len);
  CU_ASSERT_PTR_NOT_NULL(strstr(r->head, "Connection: close\r\n"));
}

static void routes_script(fixture *f) {
  static response r;
  get(f->port, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n", &r);
  check_text(&r, 200, "ok\n");
  get(f->port, "GET /readyz HTTP/1.1\r\n\r\n", &r);
  check_text(&r, 503, "not ready\n");
  get(f->port, "GET /metrics HTTP/1.1\r\n\r\n", &r);
  CU_ASSERT_PTR_NOT_NULL(strstr(r.body, "recd_serving 0\n"));
  rpc_server_set_serving(f->srv, true); /* thread-safe */
  get(f->port, "GET /readyz HTTP/1.1\r\n\r\n", &r);
  check_text(&r, 200, "ready\n");

  get(f->port, "GET /metrics HTTP/1.1\r\n\r\n", &r);
  CU_ASSERT_EQUAL(r.code, 200);
  CU_ASSERT_PTR_NOT_NULL(strstr(r.head, "Content-Type: text/plain; version=0.0.4"));
  CU_ASSERT_EQUAL(r.content_length, (long)r.body_len);
  CU_ASSERT_PTR_NOT_NULL(strstr(r.body, "recd_serving 1\n"));
  CU_ASSERT_PTR_NOT_NULL(strstr(r.body, "recd_event_log_sequence 3\n"));

  get(f->port, "GET /status HTTP/1.1\r\n\r\n", &r);
  CU_ASSERT_EQUAL(r.code, 200);
  CU_ASSERT_PTR_NOT_NULL(strstr(r.head, "Content-Type: application/json"));
  cJSON *j = cJSON_Parse(r.body);
  CU_ASSERT_PTR_NOT_NULL_FATAL(j);
  CU_ASSERT(cJSON_IsTrue(cJSON_GetObjectItem(j, "serving")));
  CU_ASSERT_STRING_EQUAL(cJSON_GetStringValue(cJSON_GetObjectItem(j, "bundle_version")), "");
  CU_ASSERT_EQUAL(cJSON_GetNumberValue(cJSON_GetObjectItem(j, "items")), 0);
  CU_ASSERT(cJSON_GetNumberValue(cJSON_GetObjectItem(j, "uptime_seconds")) >= 0);
  const char *v = cJSON_GetStringValue(cJSON_GetObjectItem(j, "recd_version"));
  CU_ASSERT(v && *v);
  cJSON_Delete(j);

  get(f->port, "GET /status?verbose=1 HTTP/1.1\r\n\r\n", &r); /* the query is not part of the route */
  CU_ASSERT_EQUAL(r.code, 200);
  get(f->port, "GET /nope HTTP/1.1\r\n\r\n", &r);
  CU_ASSERT_EQUAL(r.code, 404);
  CU_ASSERT_PTR_NOT_NULL(strstr(r.body, "/metrics"));
  get(f->port, "POST /healthz HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi", &r);
  check_text(&r, 405, "GET only\n");
  CU_ASSERT_PTR_NOT_NULL(strstr(r.head, "Allow: GET\r\n"));
  get(f->port, "HELLO there\r\n\r\n", &r);
  check_text(&r, 400, "malformed HTTP request\n");
  static char long_url[4200] = "GET /";
  memset(long_url + 5, 'a', 4100);
  strcpy(long_url + 4105, " HTTP/1.1\r\n\r\n");
  get(f->port, long_url, &r);
  CU_ASSERT_EQUAL(r.code, 414);

  const char *pieces[] = {"GET /hea", "lthz HTTP/1.1\r\nHo", "st: t\r\n", "\r\n", NULL};
  request(f->port, pieces, &r);
  check_text(&r, 200, "ok\n");
  /* One answer per connection, to the first request only. */
  get(f->port, "GET /healthz HTTP/1.1\r\n\r\nGET /status HTTP/1.1\r\n\r\n", &r);
  check_text(&r, 200, "ok\n");
}

static void every_route(void) {
  fixture f;
  fixture_open(&f);
  const char *dir = test_path("admin_log");
  size_t n;
  rec_error e = {0};
  CU_ASSERT_EQUAL_FATAL(eventlog_open(dir, 1 << 20, NULL, NULL, &f.ap.log, &n, &e), 0);
  ev_record r = {.type = 1, .quantity = 1, .user = "u", .item = "i", .user_len = 1, .item_len = 1};
  ev_record batch[3] = {r, r, r};
  uint64_t last;
  CU_ASSERT_EQUAL(eventlog_append(f.ap.log, batch, 3, &last, &e), 0);
  run_client(&f, routes_script);
  eventlog_close(f.ap.log);
  f.ap.log = NULL;
  fixture_close(&f);
}

static void idle_script(fixture *f) {
  f->idle_fd = dial(f->port);
  CU_ASSERT(f->idle_fd >= 0);
  CU_ASSERT_EQUAL(send(f->idle_fd, "GET /heal", 9, 0), 9); /* and never the rest */
  /* An answer on a later connection means the loop has accepted the first. */
  static response r;
  get(f->port, "GET /healthz HTTP/1.1\r\n\r\n", &r);
  check_text(&r, 200, "ok\n");
}

/* Idle connections cannot pile up: past 256 open, a new one is closed at
 * once; once some go, requests are answered again. */
static void cap_script(fixture *f) {
  enum { N = 256 };
  static int fds[N];
  static response r;
  (void)r;
  for (int i = 0; i < N; i++) fds[i] = dial(f->port);
  int extra = dial(f->port);
  CU_ASSERT_FATAL(extra >= 0);
  send(extra, "GET /healthz HTTP/1.1\r\n\r\n", 25, MSG_NOSIGNAL);
  char buf[64];
  CU_ASSERT(recv(extra, buf, sizeof buf, 0) <= 0); /* closed unanswered: one too many */
  close(extra);
  for (int i = 0; i < 8; i++) close(fds[i]);
  int code = 0;
  for (int tries = 0; tries < 100 && code != 200; tries++) { /* the loop sees the closes in its own time */
    nap_ms(10);
    int fd = dial(f->port);
    const char *req = "GET /healthz HTTP/1.1\r\n\r\n";
    if (fd >= 0 && send(fd, req, strlen(req), 0) > 0) {
      char ans[64] = "";
      if (recv(fd, ans, sizeof ans - 1, 0) > 0) sscanf(ans, "HTTP/1.1 %d", &code);
    }
    if (fd >= 0) close(fd);
  }
  CU_ASSERT_EQUAL(code, 200);
  for (int i = 8; i < N; i++) close(fds[i]);
}

static void idle_connections_are_capped(void) {
  fixture f;
  fixture_open(&f);
  run_client(&f, cap_script);
  fixture_close(&f);
}

static void close_also_closes_idle_connections(void) {
  fixture f;
  fixture_open(&f);
  run_client(&f, idle_script);
  fixture_close(&f); /* the loop ends although the client never finished */
  char c;
  CU_ASSERT(recv(f.idle_fd, &c, 1, 0) <= 0); /* the server hung up */
  close(f.idle_fd);
}

static void bad_addresses_and_a_port_in_use(void) {
  fixture f;
  fixture_open(&f);
  const char *bad[] = {"127.0.0.1:abc", "127.0.0.1:70000", "127.0.0.1:", "nocolon", "127.0.0.1:-1",
                       "300.1.1.1:80"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    admin_http *h = NULL;
    int port = -7;
    rec_error e = {0};
    CU_ASSERT_EQUAL(admin_http_start(&f.loop, bad[i], &f.ap, f.srv, NULL, &h, &port, &e), REC_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "admin_listen"));
    CU_ASSERT(h == NULL && port == -7);
  }
  char addr[64];
  snprintf(addr, sizeof addr, "127.0.0.1:%d", f.port);
  admin_http *h = NULL;
  int port = -7;
  rec_error e = {0};
  CU_ASSERT_EQUAL(admin_http_start(&f.loop, addr, &f.ap, f.srv, NULL, &h, &port, &e), REC_EINVAL);
  CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "cannot listen"));
  CU_ASSERT(h == NULL && port == -7);
  fixture_close(&f); /* also frees the refused listener (ASan would see a leak) */
}

static const char TOKEN[] = "http-token-0123456789abcdef";

static void get_auth(fixture *f, const char *path, const char *authz, response *r) {
  char req[512];
  snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\n%s%s%sConnection: close\r\n\r\n", path,
           authz ? "Authorization: " : "", authz ? authz : "", authz ? "\r\n" : "");
  const char *parts[] = {req, NULL};
  request(f->port, parts, r);
}

static void token_script(fixture *f) {
  static response r;
  const char *paths[] = {"/metrics", "/status", "/nowhere"};
  char good[128], lower[128];
  snprintf(good, sizeof good, "Bearer %s", TOKEN);
  snprintf(lower, sizeof lower, "bearer %s", TOKEN);
  for (size_t i = 0; i < 3; i++) {
    get_auth(f, paths[i], NULL, &r);
    CU_ASSERT_EQUAL(r.code, 401);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.head, "WWW-Authenticate: Bearer"));
    get_auth(f, paths[i], "Bearer http-token-0123456789abcdeX", &r);
    CU_ASSERT_EQUAL(r.code, 401);
    get_auth(f, paths[i], "Bearer http-token-0123456789abcde", &r); /* a prefix of it */
    CU_ASSERT_EQUAL(r.code, 401);
    get_auth(f, paths[i], TOKEN, &r); /* no scheme */
    CU_ASSERT_EQUAL(r.code, 401);
    get_auth(f, paths[i], good, &r);
    CU_ASSERT_EQUAL(r.code, i == 2 ? 404 : 200);
    get_auth(f, paths[i], lower, &r);
    CU_ASSERT_EQUAL(r.code, i == 2 ? 404 : 200);
    CU_ASSERT_PTR_NULL(strstr(r.body, TOKEN));
  }
  get_auth(f, "/healthz", NULL, &r); /* probes never need it */
  CU_ASSERT_EQUAL(r.code, 200);
  get_auth(f, "/console", NULL, &r); /* nor the console's files, which hold no data */
  CU_ASSERT_EQUAL(r.code, 200);
  get_auth(f, "/console/console.js", NULL, &r);
  CU_ASSERT_EQUAL(r.code, 200);
  get_auth(f, "/api/bundle", NULL, &r); /* but its data does */
  CU_ASSERT_EQUAL(r.code, 401);
  get_auth(f, "/api/recommend?user=%ZZ", NULL, &r); /* checked only once allowed */
  CU_ASSERT_EQUAL(r.code, 401);
  get_auth(f, "/api/bundle", good, &r);
  CU_ASSERT_EQUAL(r.code, 200);
  get_auth(f, "/readyz", NULL, &r);
  CU_ASSERT_EQUAL(r.code, 503);
  /* The header split over two reads still counts. */
  char a[512], b[128];
  snprintf(a, sizeof a, "GET /metrics HTTP/1.1\r\nAuthorization: Bearer %.8s", TOKEN);
  snprintf(b, sizeof b, "%s\r\nConnection: close\r\n\r\n", TOKEN + 8);
  const char *split[] = {a, b, NULL};
  request(f->port, split, &r);
  CU_ASSERT_EQUAL(r.code, 200);
  /* Two Authorization headers match nothing. */
  snprintf(a, sizeof a, "GET /metrics HTTP/1.1\r\nAuthorization: %s\r\nAuthorization: %s\r\n\r\n", good, good);
  const char *twice[] = {a, NULL};
  request(f->port, twice, &r);
  CU_ASSERT_EQUAL(r.code, 401);
}

static void console_script(fixture *f) {
  static response r;
  get(f->port, "GET /console HTTP/1.1\r\n\r\n", &r);
  CU_ASSERT_EQUAL(r.code, 200);
  CU_ASSERT_PTR_NOT_NULL(strstr(r.head, "Content-Type: text/html; charset=utf-8\r\n"));
  CU_ASSERT_PTR_NOT_NULL(strstr(r.head, "X-Content-Type-Options: nosniff\r\n"));
  CU_ASSERT_PTR_NOT_NULL(strstr(r.head, "Cache-Control: no-store\r\n"));
  CU_ASSERT_PTR_NOT_NULL(strstr(r.head, "Content-Security-Policy: default-src 'none'; script-src 'self';"));
  CU_ASSERT_EQUAL(r.content_length, (long)r.body_len);
  CU_ASSERT_PTR_NOT_NULL(strstr(r.body, "<script src=\"/console/console.js\""));
  get(f->port, "GET /console/console.js HTTP/1.1\r\n\r\n", &r);
  CU_ASSERT_EQUAL(r.code, 200);
  CU_ASSERT_PTR_NOT_NULL(strstr(r.head, "Content-Type: text/javascript"));
  get(f->port, "GET /console/nothing.js HTTP/1.1\r\n\r\n", &r);
  CU_ASSERT_EQUAL(r.code, 404);

  /* The API answers JSON, also before any bundle. */
  get(f->port, "GET /api/bundle HTTP/1.1\r\nHost: 127.0.0.1:9464\r\n\r\n", &r);
  CU_ASSERT_EQUAL(r.code, 200);
  CU_ASSERT_PTR_NOT_NULL(strstr(r.head, "Content-Type: application/json\r\n"));
  CU_ASSERT_PTR_NOT_NULL(strstr(r.head, "Cache-Control: no-store\r\n"));
  cJSON *j = cJSON_Parse(r.body);
  CU_ASSERT_PTR_NOT_NULL_FATAL(j);
  CU_ASSERT_STRING_EQUAL(cJSON_GetStringValue(cJSON_GetObjectItem(j, "bundle_version")), "");
  CU_ASSERT(cJSON_IsArray(cJSON_GetObjectItem(j, "settings")));
  CU_ASSERT_EQUAL(cJSON_GetNumberValue(cJSON_GetObjectItem(j, "max_k")), 200);
  cJSON_Delete(j);
  get(f->port, "GET /api/recommend?user=U1&k=5&why=a%20b HTTP/1.1\r\nHost: localhost:9464\r\n\r\n", &r);
  CU_ASSERT_EQUAL(r.code, 503); /* no bundle yet */
  CU_ASSERT_PTR_NOT_NULL(strstr(r.body, "\"error\":\"no bundle loaded yet"));
  get(f->port, "GET /api/similar?item=x HTTP/1.1\r\nHost: [::1]:9464\r\n\r\n", &r);
  CU_ASSERT_EQUAL(r.code, 503);
  get(f->port, "GET /api/experiments HTTP/1.1\r\nHost: 10.1.2.3\r\n\r\n", &r);
  CU_ASSERT_EQUAL(r.code, 200);
  CU_ASSERT_STRING_EQUAL(r.body, "{\"layers\":[],\"changes\":[],\"file\":\"\"}");

  /* Without a token on the port, the data answers only to an address in
   * Host: a page of another site rebound to this port sends its own name. */
  const char *hosts[] = {"", "Host: evil.example\r\n", "Host: evil.example:9464\r\n", "Host: 127.0.0.1.evil\r\n",
                         "Host: [::1\r\n", "Host: [::1]x\r\n", "Host: localhostx\r\n"};
  for (size_t i = 0; i < sizeof hosts / sizeof hosts[0]; i++) {
    char req[256];
    snprintf(req, sizeof req, "GET /api/bundle HTTP/1.1\r\n%s\r\n", hosts[i]);
    get(f->port, req, &r);
    CU_ASSERT_EQUAL(r.code, 403);
  }

  /* Refused before anything runs, without repeating what was sent. */
  const char *bad[] = {"/api/recommend", "/api/recommend?user=%ZZ", "/api/recommend?user=%E2%82",
                       "/api/recommend?user=a%0Ab", "/api/recommend?user=a&k=0", "/api/recommend?user=a&k=201",
                       "/api/recommend?user=a&k=x9", "/api/recommend?user=a&user=a", "/api/recommend?who=a",
                       "/api/recommend?user=a&flag", "/api/similar", "/api/similar?item=%",
                       "/api/bundle?x=1"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char req[256];
    snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", bad[i]);
    get(f->port, req, &r);
    CU_ASSERT_EQUAL(r.code, 400);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.head, "Content-Type: application/json\r\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(r.body, "{\"error\":"));
    CU_ASSERT_PTR_NULL(strstr(r.body, "ZZ"));
  }
  get(f->port, "GET /api/nope HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", &r);
  CU_ASSERT_EQUAL(r.code, 404);

  /* A client gone before its answer, and a burst past what may wait: every
   * answer is 200 or 503, and the port serves on. */
  enum { BURST = 40 };
  int fds[BURST];
  for (int i = 0; i < BURST; i++) {
    fds[i] = dial(f->port);
    CU_ASSERT_FATAL(fds[i] >= 0);
    const char *req = "GET /api/bundle HTTP/1.1\r\nHost: 127.0.0.1:9464\r\n\r\n";
    CU_ASSERT_EQUAL((size_t)send(fds[i], req, strlen(req), 0), strlen(req));
    if (i % 4 == 0) close(fds[i]);
  }
  for (int i = 0; i < BURST; i++) {
    if (i % 4 == 0) continue;
    char head[64] = "";
    CU_ASSERT(recv(fds[i], head, sizeof head - 1, MSG_WAITALL) > 12);
    CU_ASSERT(strncmp(head, "HTTP/1.1 200", 12) == 0 || strncmp(head, "HTTP/1.1 503", 12) == 0);
    close(fds[i]);
  }
  get(f->port, "GET /healthz HTTP/1.1\r\n\r\n", &r);
  check_text(&r, 200, "ok\n");
}

static void console_files_and_api(void) {
  fixture f;
  fixture_open(&f);
  run_client(&f, console_script);
  fixture_close(&f);
}

static void token_on_every_route_but_the_probes(void) {
  char path[] = "/tmp/rec-http-token-XXXXXX";
  int fd = mkstemp(path);
  CU_ASSERT_FATAL(fd >= 0);
  dprintf(fd, "ops %s\n", TOKEN);
  close(fd);
  auth *au = NULL;
  rec_error e = {0};
  CU_ASSERT_EQUAL_FATAL(auth_new(path, "", &au, &e), 0);
  unlink(path);
  fixture f;
  fixture_open_auth(&f, au);
  run_client(&f, token_script);
  fixture_close(&f);
  auth_free(au);
}

void suite_admin_http(void) {
  static const test_case cases[] = {
      {"every route", every_route},
      {"close also closes idle connections", close_also_closes_idle_connections},
      {"bad addresses and a port in use", bad_addresses_and_a_port_in_use},
      {"a token on every route but the probes", token_on_every_route_but_the_probes},
      {"idle connections are capped", idle_connections_are_capped},
      {"the console's files and API", console_files_and_api},
      {NULL, NULL}};
  test_add_suite("admin_http", cases);
}
