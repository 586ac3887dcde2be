/* server/reloader.c - see reloader.h. */
#include "server/reloader.h"
#include "common/clock.h"
#include "common/log.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct waiter {
  app_reload_fn done;
  void *arg;
  int64_t deadline_ns;
  struct waiter *next;
} waiter;

typedef struct job {
  uv_work_t work;
  reloader *r;
  char path[4096];
  bool first;                /* the startup load */
  bool internal;             /* asked by SIGHUP or the watch: loads with no waiter */
  waiter *waiters;           /* Admin.Reload callers */
  int rc;
  char old_v[REC_ID_MAX + 1], new_v[REC_ID_MAX + 1];
  rec_error err;
  struct job *next;
} job;

struct reloader {
  uv_loop_t *loop;
  uv_async_t wake;
  uv_timer_t expire;         /* answers callers whose deadline passed while they waited */
  app *ap;
  reloader_first_fn first;
  void *first_arg;
  pthread_mutex_t mu;        /* guards everything below but 'running' */
  job *head, *tail;
  size_t queued;
  bool accepting, first_done;
  job *running;              /* loop thread only */
};

static void answer(waiter *w, int rc, const char *old_v, const char *new_v, const rec_error *err) {
  while (w) {
    waiter *next = w->next;
    w->done(w->arg, rc, old_v, new_v, err);
    free(w);
    w = next;
  }
}

static void refuse(waiter *w, int code, const char *why) {
  rec_error e;
  rec_fail(&e, code, "%s", why);
  answer(w, code, "", "", &e);
}

static void load_work(uv_work_t *w) {
  job *j = w->data;
  j->rc = app_reload(j->r->ap, j->path, j->old_v, j->new_v, &j->err); /* logs */
}

static void start_next(reloader *r);

static void load_done(uv_work_t *w, int status) {
  job *j = w->data;
  reloader *r = j->r;
  r->running = NULL;
  if (status != 0 && j->rc == 0) j->rc = rec_fail(&j->err, REC_EINTERNAL, "load cancelled");
  if (j->first) {
    pthread_mutex_lock(&r->mu);
    r->first_done = true;
    pthread_mutex_unlock(&r->mu);
    r->first(r->first_arg, j->rc, &j->err);
  }
  answer(j->waiters, j->rc, j->old_v, j->new_v, &j->err);
  free(j);
  start_next(r);
}

/* Callers whose deadline passed while they waited are answered now. */
static waiter *drop_late(waiter *w) {
  waiter *keep = NULL, **tail = &keep;
  int64_t now = rec_mono_ns();
  while (w) {
    waiter *next = w->next;
    w->next = NULL;
    if (now >= w->deadline_ns) {
      refuse(w, REC_EDEADLINE, "deadline passed while earlier reloads ran; nothing loaded");
    } else {
      *tail = w;
      tail = &w->next;
    }
    w = next;
  }
  return keep;
}

static void start_next(reloader *r) {
  while (!r->running) {
    pthread_mutex_lock(&r->mu);
    job *j = r->accepting ? r->head : NULL;
    if (j) {
      if (!(r->head = j->next)) r->tail = NULL;
      r->queued--;
    }
    pthread_mutex_unlock(&r->mu);
    if (!j) return;
    j->waiters = drop_late(j->waiters);
    if (!j->waiters && !j->internal && !j->first) { /* everybody gave up */
      free(j);
      continue;
    }
    r->running = j;
    j->work.data = j;
    uv_queue_work(r->loop, &j->work, load_work, load_done);
  }
}

/* The earliest deadline of any waiting caller, INT64_MAX if none. */
static int64_t earliest(const reloader *r) {
  int64_t t = INT64_MAX;
  for (const job *j = r->head; j; j = j->next)
    for (const waiter *w = j->waiters; w; w = w->next) t = w->deadline_ns < t ? w->deadline_ns : t;
  for (const waiter *w = r->running ? r->running->waiters : NULL; w; w = w->next)
    t = w->deadline_ns < t ? w->deadline_ns : t;
  return t;
}

static void arm(reloader *r);

/* A caller whose deadline passed stops waiting (gRPC has told it so) and
 * gives back its call's in-flight slot; a load it was part of goes on. */
static void on_expire(uv_timer_t *t) {
  reloader *r = t->data;
  pthread_mutex_lock(&r->mu);
  waiter *late = NULL;
  job *all[RELOADER_QUEUE + 1];
  size_t n = 0;
  for (job *j = r->head; j && n < RELOADER_QUEUE; j = j->next) all[n++] = j;
  if (r->running) all[n++] = r->running;
  int64_t now = rec_mono_ns();
  for (size_t i = 0; i < n; i++)
    for (waiter **w = &all[i]->waiters; *w;) {
      if ((*w)->deadline_ns > now) {
        w = &(*w)->next;
        continue;
      }
      waiter *x = *w;
      *w = x->next;
      x->next = late;
      late = x;
    }
  pthread_mutex_unlock(&r->mu);
  refuse(late, REC_EDEADLINE, "deadline passed while the bundle loaded; the load goes on");
  arm(r);
}

static void arm(reloader *r) {
  pthread_mutex_lock(&r->mu);
  int64_t t = r->accepting ? earliest(r) : INT64_MAX;
  pthread_mutex_unlock(&r->mu);
  if (t == INT64_MAX) {
    uv_timer_stop(&r->expire);
    return;
  }
  int64_t ms = (t - rec_mono_ns()) / 1000000 + 1;
  uv_timer_start(&r->expire, on_expire, (uint64_t)(ms > 0 ? ms : 0), 0);
}

static void on_wake(uv_async_t *h) {
  start_next(h->data);
  arm(h->data);
}

/* Queues under the lock: joins a queued load of the same path, or adds one. */
static int enqueue(reloader *r, const char *path, waiter *w, bool first, rec_error *err) {
  if (!r->accepting) return rec_fail(err, REC_EUNAVAIL, "recd is shutting down; reload refused");
  if (w && !r->first_done)
    return rec_fail(err, REC_EUNAVAIL, "still loading the first bundle; reload refused, retry shortly");
  for (job *q = r->head; q; q = q->next)
    if (strcmp(q->path, path) == 0) {
      if (!w) {
        q->internal = true;
        return 0;
      }
      size_t n = 0;
      for (const waiter *x = q->waiters; x; x = x->next) n++;
      if (n >= RELOADER_WAITERS)
        return rec_fail(err, REC_EOVERLOAD, "%d callers already wait for this reload; retry later", RELOADER_WAITERS);
      w->next = q->waiters;
      q->waiters = w;
      return 0;
    }
  if (r->queued >= RELOADER_QUEUE)
    return rec_fail(err, REC_EOVERLOAD, "%d reloads already queued; retry later", RELOADER_QUEUE);
  job *j = calloc(1, sizeof *j);
  if (!j) return rec_fail(err, REC_ENOMEM, "out of memory");
  *j = (job){.r = r, .first = first, .internal = !w, .waiters = w};
  snprintf(j->path, sizeof j->path, "%s", path);
  if (r->tail) r->tail->next = j;
  else r->head = j;
  r->tail = j;
  r->queued++;
  uv_async_send(&r->wake);
  return 0;
}

int reloader_queue(void *owner, const char *path, int64_t deadline_ns, app_reload_fn done, void *arg,
                   rec_error *err) {
  reloader *r = owner;
  waiter *w = malloc(sizeof *w);
  if (!w) return rec_fail(err, REC_ENOMEM, "out of memory");
  *w = (waiter){done, arg, deadline_ns, NULL};
  pthread_mutex_lock(&r->mu);
  int rc = enqueue(r, path, w, false, err);
  pthread_mutex_unlock(&r->mu);
  if (rc) free(w);
  return rc;
}

static void poke(reloader *r, bool first) {
  rec_error err;
  pthread_mutex_lock(&r->mu);
  int rc = enqueue(r, r->ap->cfg->bundle, NULL, first, &err);
  pthread_mutex_unlock(&r->mu);
  char q[600];
  if (rc) LOG_WARN("bundle load not queued", "error=\"%s\"", rec_log_quote(q, sizeof q, err.msg, strlen(err.msg)));
}

void reloader_poke(reloader *r) { poke(r, false); }

int reloader_new(uv_loop_t *loop, app *ap, reloader_first_fn first, void *first_arg, reloader **out) {
  reloader *r = calloc(1, sizeof *r);
  if (!r) return REC_ENOMEM;
  *r = (reloader){.loop = loop, .ap = ap, .first = first, .first_arg = first_arg, .accepting = true};
  pthread_mutex_init(&r->mu, NULL);
  uv_async_init(loop, &r->wake, on_wake);
  r->wake.data = r;
  uv_timer_init(loop, &r->expire);
  r->expire.data = r;
  poke(r, true);
  *out = r;
  return 0;
}

bool reloader_close(reloader *r) {
  pthread_mutex_lock(&r->mu);
  r->accepting = false;
  job *j = r->head;
  r->head = r->tail = NULL;
  r->queued = 0;
  pthread_mutex_unlock(&r->mu);
  while (j) {
    job *next = j->next;
    refuse(j->waiters, REC_EUNAVAIL, "recd is shutting down; reload refused");
    free(j);
    j = next;
  }
  if (r->running) { /* its callers are not kept waiting for a load that may take long */
    refuse(r->running->waiters, REC_EUNAVAIL, "recd is shutting down; the reload in progress is abandoned");
    r->running->waiters = NULL;
  }
  uv_close((uv_handle_t *)&r->wake, NULL);
  uv_close((uv_handle_t *)&r->expire, NULL);
  return r->running != NULL;
}

bool reloader_busy(const reloader *r) { return r->running != NULL; }

void reloader_free(reloader *r) {
  if (!r) return;
  pthread_mutex_destroy(&r->mu);
  free(r);
}
