/* server/admin_http.c - see admin_http.h. http_parser reads the request;
 * the answer is written whole and the connection closed. The listener keeps
 * a list of its open connections so that closing it closes them too. The
 * console's API calls run on libuv's worker threads (uv_queue_work), a few
 * at a time, so the loop stays free for the probes. */
#include "server/admin_http.h"
#include "common/clock.h"
#include "common/log.h"
#include "server/admin_console.h"
#include "server/auth.h"
#include "server/metrics.h"

#include <cjson/cJSON.h>
#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct conn conn;

/* A connection that has not been answered this long is closed, and past
 * this many open ones a new connection is closed at once: idle sockets
 * must not pile up until the process runs out of file descriptors. */
enum { REQUEST_MS = 10000, MAX_CONNS = 256 };
/* Console API calls running at once (libuv's pool has 4 threads, and
 * reloads and the listener probe need theirs), and waiting for a turn
 * (the page asks several at once); past both 503. */
enum { MAX_JOBS = 2, MAX_WAITING = 16 };

/* Every answer: nothing is sniffed into another type, cached, or allowed to
 * load from anywhere but this port (the console's own files). */
#define SAFE_HEADERS "X-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\n" \
  "Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; " \
  "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'\r\n" \
  "Referrer-Policy: no-referrer\r\n"

struct admin_http {
  uv_tcp_t tcp;
  uv_timer_t sweep;          /* every second: closes connections past REQUEST_MS */
  size_t n_conns;
  app *ap;
  rpc_server *srv;
  const auth *auth;          /* non-NULL: routes but the probes and the console's files need a token */
  conn *conns;               /* open connections */
  size_t handles;            /* the listener, each connection and each job, until done */
  size_t jobs;               /* console API calls running */
  struct job *waiting, *waiting_tail; /* and those waiting for a turn, oldest first */
  size_t n_waiting;
};

/* A console API call on a worker thread; 'c' is NULL once its connection
 * closed under it (the answer is then dropped). */
typedef struct job {
  uv_work_t work;
  admin_http *h;
  conn *c;
  struct job *next;          /* in h->waiting */
  console_query q;
  console_reply r;
} job;

struct conn {
  uv_tcp_t tcp;
  http_parser parser;
  admin_http *h;
  conn *prev, *next;
  char url[4096];
  size_t url_len;
  char field[16];            /* the header name being read, lowercased, cut at 15 */
  size_t field_len;
  bool in_value;             /* the parser is inside a header value */
  char authz[320];           /* the Authorization value; wiped after routing */
  size_t authz_len;
  bool authz_seen;
  char host[72];             /* the Host value, cut at 71 bytes (then matching no address) */
  size_t host_len;
  bool complete, too_long;
  uv_write_t wr;
  char *out;
  uint64_t opened_ms;        /* uv_now when accepted */
  job *job;                  /* its console API call, while one runs */
};

static void on_sweep(uv_timer_t *t);

static void release(admin_http *h) {
  if (--h->handles == 0) free(h);
}

static void on_closed(uv_handle_t *handle) {
  conn *c = handle->data;
  admin_http *h = c->h;
  if (c->prev) c->prev->next = c->next;
  else h->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  h->n_conns--;
  if (c->job) c->job->c = NULL;
  free(c->out);
  free(c);
  release(h);
}

static void close_conn(conn *c) {
  if (!uv_is_closing((uv_handle_t *)&c->tcp)) uv_close((uv_handle_t *)&c->tcp, on_closed);
}

/* Also called with UV_ECANCELED when admin_http_close closed the connection
 * under the write. */
static void on_written(uv_write_t *w, int status) {
  (void)status;
  close_conn(w->data);
}

static const char *reason_of(int code) {
  switch (code) {
  case 200: return "OK";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 414: return "URI Too Long";
  case 501: return "Not Implemented";
  case 503: return "Service Unavailable";
  case 507: return "Insufficient Storage";
  default: return "Internal Server Error";
  }
}

/* Writes the answer (the 'len' bytes of 'body') and closes the connection. */
static void reply_bytes(conn *c, int code, const char *type, const void *body, size_t len) {
  size_t cap = len + 1024;
  c->out = malloc(cap);
  if (!c->out) {
    close_conn(c);
    return;
  }
  int n = snprintf(c->out, cap, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s%s"
                   "Connection: close\r\n\r\n", code, reason_of(code), type, len,
                   code == 405 ? "Allow: GET\r\n" : code == 401 ? "WWW-Authenticate: Bearer\r\n"
                   : code == 503 ? "Retry-After: 1\r\n" : "", SAFE_HEADERS);
  memcpy(c->out + n, body, len);
  uv_buf_t b = uv_buf_init(c->out, (unsigned)(n + len));
  c->wr.data = c;
  uv_read_stop((uv_stream_t *)&c->tcp);
  if (uv_write(&c->wr, (uv_stream_t *)&c->tcp, &b, 1, on_written) != 0) close_conn(c);
}

static void reply(conn *c, int code, const char *type, const char *body) {
  reply_bytes(c, code, type, body, strlen(body));
}

/* A 200 with 'body' (malloc'd, freed here), or a 500 when making it failed. */
static void reply_made(conn *c, const char *type, char *body) {
  if (body) reply(c, 200, type, body);
  else reply(c, 500, "text/plain", "out of memory\n");
  free(body);
}

static void reply_json(conn *c, const console_reply *r) {
  if (r->body) reply(c, r->status, "application/json", r->body);
  else reply(c, 500, "application/json", "{\"error\":\"out of memory\"}");
}

static void run_job(uv_work_t *w) {
  job *j = w->data;
  console_run(j->h->ap, j->h->srv, &j->q, &j->r);
}

/* Answers j's connection, if it is still open, and frees j. */
static void job_finish(job *j) {
  admin_http *h = j->h;
  if (j->c) {
    j->c->job = NULL;
    reply_json(j->c, &j->r);
  }
  free(j->r.body);
  free(j);
  release(h);
}

static void job_done(uv_work_t *w, int status);

/* Starts waiting jobs while there is room; one whose connection closed
 * meanwhile is dropped. */
static void start_jobs(admin_http *h) {
  while (h->waiting && h->jobs < MAX_JOBS) {
    job *j = h->waiting;
    if (!(h->waiting = j->next)) h->waiting_tail = NULL;
    h->n_waiting--;
    if (!j->c) {
      job_finish(j);
      continue;
    }
    if (uv_queue_work(j->c->tcp.loop, &j->work, run_job, job_done) != 0) {
      j->r = (console_reply){500, strdup("{\"error\":\"cannot queue the look-up\"}")};
      job_finish(j);
      continue;
    }
    h->jobs++;
  }
}

static void job_done(uv_work_t *w, int status) {
  job *j = w->data;
  admin_http *h = j->h;
  (void)status;
  h->jobs--;
  h->handles++; /* job_finish may free h: keep it for start_jobs */
  job_finish(j);
  start_jobs(h);
  release(h);
}

/* A console API request: checked here, run on a worker thread. */
static void console_api(conn *c, const char *path, const char *query) {
  admin_http *h = c->h;
  job *j = calloc(1, sizeof *j);
  if (!j) {
    reply(c, 500, "application/json", "{\"error\":\"out of memory\"}");
    return;
  }
  if (console_parse(path, query, h->ap->cfg->max_k, &j->q, &j->r) != 0 || h->n_waiting >= MAX_WAITING) {
    if (!j->r.body) j->r = (console_reply){503, strdup("{\"error\":\"busy: too many look-ups waiting; retry\"}")};
    reply_json(c, &j->r);
    free(j->r.body);
    free(j);
    return;
  }
  j->h = h;
  j->c = c;
  j->work.data = j;
  if (h->waiting_tail) h->waiting_tail->next = j;
  else h->waiting = j;
  h->waiting_tail = j;
  h->n_waiting++;
  uv_read_stop((uv_stream_t *)&c->tcp);
  c->job = j;
  h->handles++;
  start_jobs(h);
}

static char *status_json(const admin_http *h) {
  cJSON *j = cJSON_CreateObject();
  bundle *b = app_acquire(h->ap);
  cJSON_AddBoolToObject(j, "serving", rpc_server_serving(h->srv));
  cJSON_AddStringToObject(j, "bundle_version", b ? b->version : "");
  cJSON_AddStringToObject(j, "bundle_path", b ? b->path : "");
  cJSON_AddNumberToObject(j, "items", b ? (double)b->catalog->count : 0);
  cJSON_AddNumberToObject(j, "users", b ? (double)b->user_count : 0);
  cJSON_AddNumberToObject(j, "inflight", rpc_server_inflight(h->srv));
  cJSON_AddNumberToObject(j, "catalog_generation", b ? (double)b->catalog->generation : 0);
  cJSON_AddNumberToObject(j, "uptime_seconds", (double)((rec_mono_ns() - h->ap->started_ns) / 1000000000));
  cJSON_AddStringToObject(j, "recd_version", RECD_VERSION);
  bundle_unref(b);
  char *s = cJSON_PrintUnformatted(j);
  cJSON_Delete(j);
  return s;
}

static char *metrics_text(const admin_http *h) {
  bundle *b = app_acquire(h->ap);
  metrics_log log = {.enabled = h->ap->log != NULL, .attribution = h->ap->attr};
  if (log.enabled) {
    log.applied = atomic_load(&h->ap->events_applied);
    log.durable = eventlog_last_seq(h->ap->log);
    log.corrupt = eventlog_corrupt_records(h->ap->log);
    log.syncs = eventlog_syncs(h->ap->log);
  }
  if ((log.catalog_enabled = h->ap->live != NULL)) {
    log.catalog_generation = live_catalog_generation(h->ap->live);
    log.catalog_overlay = live_catalog_size(h->ap->live);
  }
  char *s = metrics_render(b ? b->version : "", rpc_server_serving(h->srv),
                           (rec_mono_ns() - h->ap->started_ns) / 1000000000, rpc_server_inflight(h->srv),
                           &log);
  bundle_unref(b);
  return s;
}

/* With a token configured for this port, every route but the probes needs it. */
static bool allowed(conn *c) {
  const admin_http *h = c->h;
  console_file f;
  /* The console's page, script and style hold no data: a browser must get
   * them to ask for the token at all (it sends no header on navigation). */
  if (!h->auth || strcmp(c->url, "/healthz") == 0 || strcmp(c->url, "/readyz") == 0 ||
      console_file_find(c->url, &f))
    return true;
  char who[AUTH_NAME_MAX + 1];
  bool ok = c->authz_seen && auth_bearer(h->auth, c->authz, c->authz_len, who);
  memset(c->authz, 0, sizeof c->authz);
  if (!ok) {
    char path[80];
    LOG_WARN("admin HTTP request refused", "path=\"%s\" reason=\"%s\"",
             rec_log_quote(path, sizeof path, c->url, strlen(c->url)),
             c->authz_seen ? "the token matches none configured" : "no authorization header");
  }
  return ok;
}

/* Host names an address (127.0.0.1:9464, [::1]:9464) or localhost. A
 * browser page from another site whose name was made to resolve to this
 * port (DNS rebinding) would send its own name: without a token on the
 * port, that is all that keeps it from reading the console's data. */
static bool host_is_address(const char *host) {
  char name[72], buf[16];
  snprintf(name, sizeof name, "%s", host);
  char *colon = name[0] == '[' ? strchr(name, ']') : strrchr(name, ':');
  if (name[0] == '[') {
    if (!colon || (colon[1] && colon[1] != ':')) return false;
    *colon = '\0';
    return uv_inet_pton(AF_INET6, name + 1, buf) == 0;
  }
  if (colon) *colon = '\0';
  return strcmp(name, "localhost") == 0 || uv_inet_pton(AF_INET, name, buf) == 0;
}

/* Routes on the path; only the console's API reads a query string. */
static void route(conn *c) {
  const admin_http *h = c->h;
  size_t cut = strcspn(c->url, "?");
  const char *query = c->url[cut] ? c->url + cut + 1 : NULL;
  c->url[cut] = '\0';
  console_file f;
  if (!allowed(c))
    reply(c, 401, "text/plain", "this port needs \"Authorization: Bearer TOKEN\"\n");
  else if (c->parser.method != HTTP_GET)
    reply(c, 405, "text/plain", "GET only\n");
  else if (console_file_find(c->url, &f))
    reply_bytes(c, 200, f.type, f.data, f.len);
  else if (console_is_api(c->url) && !h->auth && !host_is_address(c->host))
    reply(c, 403, "application/json", "{\"error\":\"without a token on this port the console's data answers only "
          "to an address or localhost in Host; open the console by address\"}");
  else if (console_is_api(c->url))
    console_api(c, c->url, query);
  else if (strcmp(c->url, "/metrics") == 0)
    reply_made(c, "text/plain; version=0.0.4; charset=utf-8", metrics_text(h));
  else if (strcmp(c->url, "/healthz") == 0 || strcmp(c->url, "/readyz") == 0) {
    bool ready = strcmp(c->url, "/healthz") == 0 || rpc_server_serving(h->srv);
    if (atomic_load(&h->ap->listener_stuck))
      reply(c, 503, "text/plain", "the serving port stopped accepting connections\n");
    else if (ready)
      reply(c, 200, "text/plain", c->url[1] == 'h' ? "ok\n" : "ready\n");
    else
      reply(c, 503, "text/plain", "not ready\n");
  }
  else if (strcmp(c->url, "/status") == 0)
    reply_made(c, "application/json", status_json(h));
  else
    reply(c, 404, "text/plain", "try /metrics, /healthz, /readyz, /status or /console\n");
}

static int on_url(http_parser *p, const char *at, size_t len) {
  conn *c = p->data;
  if (c->url_len + len >= sizeof c->url) {
    c->too_long = true;
    return 0;
  }
  memcpy(c->url + c->url_len, at, len);
  c->url[c->url_len += len] = '\0';
  return 0;
}

/* Keeps the Authorization header's value; every other header is ignored. */
static int on_header_field(http_parser *p, const char *at, size_t len) {
  conn *c = p->data;
  if (c->in_value) c->field_len = 0, c->in_value = false;
  for (size_t i = 0; i < len && c->field_len < sizeof c->field - 1; i++) {
    char ch = at[i];
    c->field[c->field_len++] = ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
  }
  if (len && c->field_len == sizeof c->field - 1) c->field[0] = '\0'; /* too long to be ours */
  c->field[c->field_len] = '\0';
  return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len) {
  conn *c = p->data;
  if (!c->in_value) {
    c->in_value = true;
    if (strcmp(c->field, "authorization") == 0) {
      if (c->authz_seen) c->authz_len = sizeof c->authz; /* two of them: matches nothing */
      c->authz_seen = true;
    }
  }
  if (strcmp(c->field, "host") == 0) {
    size_t n = len < sizeof c->host - 1 - c->host_len ? len : sizeof c->host - 1 - c->host_len;
    memcpy(c->host + c->host_len, at, n);
    c->host[c->host_len += n] = '\0';
    return 0;
  }
  if (strcmp(c->field, "authorization") != 0) return 0;
  if (c->authz_len + len > sizeof c->authz) {
    c->authz_len = sizeof c->authz; /* too long to be a token: matches nothing */
    return 0;
  }
  memcpy(c->authz + c->authz_len, at, len);
  c->authz_len += len;
  return 0;
}

/* One request per connection: pausing stops a pipelined second request
 * from adding its URL to the first one's. */
static int on_complete(http_parser *p) {
  ((conn *)p->data)->complete = true;
  http_parser_pause(p, 1);
  return 0;
}

static const http_parser_settings SETTINGS = {.on_url = on_url, .on_header_field = on_header_field,
                                              .on_header_value = on_header_value,
                                              .on_message_complete = on_complete};

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *b) {
  (void)handle;
  b->base = malloc(suggested);
  b->len = b->base ? suggested : 0;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b) {
  conn *c = s->data;
  if (nread > 0 && !c->out) {
    size_t used = http_parser_execute(&c->parser, &SETTINGS, b->base, (size_t)nread);
    if (c->too_long) reply(c, 414, "text/plain", "URI too long\n");
    else if (c->complete) route(c);
    else if (used != (size_t)nread || HTTP_PARSER_ERRNO(&c->parser) != HPE_OK)
      reply(c, 400, "text/plain", "malformed HTTP request\n");
  } else if (nread < 0 && !c->out) {
    close_conn(c);
  }
  free(b->base);
}

static void on_connection(uv_stream_t *server, int status) {
  admin_http *h = server->data;
  if (status < 0) return;
  conn *c = calloc(1, sizeof *c);
  if (!c) return;
  c->h = h;
  uv_tcp_init(server->loop, &c->tcp);
  c->tcp.data = c;
  c->next = h->conns;
  if (h->conns) h->conns->prev = c;
  h->conns = c;
  h->handles++;
  h->n_conns++;
  c->opened_ms = uv_now(server->loop);
  if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 || h->n_conns > MAX_CONNS) {
    close_conn(c); /* accepted only to be closed: refusing would leave it in the backlog */
    return;
  }
  http_parser_init(&c->parser, HTTP_REQUEST);
  c->parser.data = c;
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

/* "host:port" or "[v6 host]:port", the port 0 to 65535 in digits. */
static int parse_addr(const char *addr, struct sockaddr_storage *sa) {
  char host[256], *end;
  const char *colon = strrchr(addr, ':');
  if (!colon || (size_t)(colon - addr) >= sizeof host || colon[1] < '0' || colon[1] > '9') return -1;
  unsigned long port = strtoul(colon + 1, &end, 10);
  if (*end || port > 65535) return -1;
  size_t n = (size_t)(colon - addr);
  memcpy(host, addr, n);
  host[n] = '\0';
  if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
    host[n - 1] = '\0';
    return uv_ip6_addr(host + 1, (int)port, (struct sockaddr_in6 *)sa);
  }
  return uv_ip4_addr(host, (int)port, (struct sockaddr_in *)sa);
}

int admin_http_start(uv_loop_t *loop, const char *addr, app *ap, rpc_server *srv, const auth *au, admin_http **out,
                     int *port, rec_error *err) {
  struct sockaddr_storage sa;
  if (parse_addr(addr, &sa) != 0)
    return rec_fail(err, REC_EINVAL, "admin_listen: want host:port (port 0 to 65535), got '%s'", addr);
  admin_http *h = calloc(1, sizeof *h);
  if (!h) return rec_fail(err, REC_ENOMEM, "out of memory");
  h->ap = ap;
  h->srv = srv;
  h->auth = au;
  h->handles = 2; /* the listener and the sweep timer */
  uv_tcp_init(loop, &h->tcp);
  h->tcp.data = h;
  uv_timer_init(loop, &h->sweep);
  h->sweep.data = h;
  uv_timer_start(&h->sweep, on_sweep, 1000, 1000);
  uv_unref((uv_handle_t *)&h->sweep); /* the sweep alone does not keep the loop running */
  int rc = uv_tcp_bind(&h->tcp, (const struct sockaddr *)&sa, 0);
  if (!rc) rc = uv_listen((uv_stream_t *)&h->tcp, 64, on_connection);
  if (rc) {
    admin_http_close(h);
    return rec_fail(err, REC_EINVAL, "admin_listen: cannot listen on %s: %s", addr, uv_strerror(rc));
  }
  struct sockaddr_storage bound;
  int len = sizeof bound;
  uv_tcp_getsockname(&h->tcp, (struct sockaddr *)&bound, &len);
  *port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                            : ((struct sockaddr_in *)&bound)->sin_port);
  *out = h;
  return 0;
}

static void on_listener_closed(uv_handle_t *handle) { release(handle->data); }

void admin_http_close(admin_http *h) {
  if (!h) return;
  for (conn *c = h->conns; c; c = c->next) close_conn(c);
  if (!uv_is_closing((uv_handle_t *)&h->sweep)) uv_close((uv_handle_t *)&h->sweep, on_listener_closed);
  uv_close((uv_handle_t *)&h->tcp, on_listener_closed);
}

static void on_sweep(uv_timer_t *t) {
  admin_http *h = t->data;
  uint64_t now = uv_now(t->loop);
  for (conn *c = h->conns; c; c = c->next)
    if (!c->out && !c->job && now - c->opened_ms > REQUEST_MS) close_conn(c); /* never sent a whole request */
  if (h->srv) rpc_server_sweep_replies(h->srv); /* replies nobody reads, on an idle server too */
}
