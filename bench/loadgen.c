/* bench/loadgen.c - recd-loadgen: a load generator over gRPC's C core, over
 * --channels connections: one thread (closed loop), or a sender and a
 * reaper (open loop).
 *
 * Closed loop (the default): keeps --concurrency unary calls in flight,
 * counts what completes inside the measured window: the saturation rate.
 * Open loop (--rate R): calls arrive at R per second, evenly spaced or as a
 * Poisson process (--arrivals), whatever the server does; a call that finds
 * every one of the --concurrency slots busy waits in a backlog, and its
 * latency is measured from its *intended* send time, so a stalled server
 * shows as latency rather than as fewer calls sent (no coordinated
 * omission). Calls are counted by their intended time: those meant to go
 * inside the window, however late they finish.
 *
 * Requests: user ids from --users-file (one per line) or synthetic ones;
 * --filter-share of them restrict to one of --categories. Latencies go to a
 * log-linear histogram (within 3%). Given the server's pid, the server's CPU
 * time in the window is divided by the calls in it.
 *
 * The generator runs as SCHED_BATCH (--sched): on a machine it shares with
 * the server, its wake-ups then do not preempt the server mid-call, which
 * cost the server a context switch and its cache state each time and the
 * generator more CPU per call than the calls it drives could spare. Its
 * share of the CPU is unchanged, and what waiting for the server to yield
 * costs it shows in its send lag and the latencies, never as fewer calls.
 *
 * Exit codes: 0 ok, 1 more than 1% of the calls failed (or none
 * completed), 2 bad usage or setup failure. */
#define _GNU_SOURCE /* SCHED_BATCH */
#include "common/clock.h"
#include "grpc/health/v1/health.pb-c.h"
#include "rec/v1/ranking.pb-c.h"
#include "server/rpc_internal.h" /* the one unary client batch */

#include <errno.h>
#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* Latency histogram in microseconds: exact below SUB, then SUB/2 buckets per
 * power of two, so a reported percentile is within 1/32 (3%) of the truth. */
#define SUB_BITS 6
#define SUB (1u << SUB_BITS)
#define MAX_SHIFT 30
#define NBUCKETS ((MAX_SHIFT + 2) * (SUB / 2))

/* Error buckets: gRPC codes 0..16, then two of our own. */
enum { N_GRPC_CODES = 17, ERR_OTHER = N_GRPC_CODES, ERR_NO_MESSAGE, N_ERR };

typedef struct opts {
  const char *addr;
  bool recommend, json, poisson;
  bool batch;                /* --sched batch: SCHED_BATCH, no wake-up preemption */
  long concurrency, channels, users, k, server_pid, timeout_ms, max_calls, seed;
  double duration_s, warmup_s, rate, filter_share;
  const char *users_file, *categories;
  char **user_ids;           /* from --users-file */
  size_t n_user_ids;
  char **cats;               /* from --categories, pointing into cats_text */
  char *cats_text;
  size_t n_cats;
} opts;

enum { BACKLOG_MAX = 1 << 20 }; /* open loop: arrivals waiting for a slot */

typedef struct hist {
  uint64_t n, max, b[NBUCKETS];
} hist;

/* One call slot; its address is the completion tag. A slot carries at most
 * one call at a time and is reused for the next as soon as it completes. */
typedef struct slot {
  rpc_unary u;               /* u.call is NULL while the slot is free */
  int64_t t0;                /* when the call was meant to go (open loop) or went */
  bool measured;             /* open loop: meant to go inside the window */
} slot;

typedef enum { PH_WARMUP, PH_MEASURE, PH_DRAIN } phase;

/* What the measured window saw. */
typedef struct tally {
  uint64_t offered;          /* open loop: arrivals inside the window */
  uint64_t calls, errors, by_code[N_ERR];
  char first_details[N_ERR][160]; /* the first status message seen per code */
  hist lat;
  hist lag;                  /* open loop: actual send - intended send, of the calls sent on arrival */
} tally;

typedef struct bench {
  const opts *o;
  grpc_completion_queue *cq;
  grpc_channel **chans;
  slot *slots;
  size_t next_chan;
  uint64_t seq;              /* calls started, for cycling user ids */
  long in_flight;
  phase ph;
  bool cancelled, failed;
  int64_t t_measure, t_end;  /* rec_mono_ns(); actual window bounds once reached */
  tally win;
  uint64_t other_calls, other_errors; /* warmup and drain */
  long long cpu0, cpu1;      /* server clock ticks at the window bounds, -1 if unread */
  double self0, self1;       /* our own CPU seconds at the window bounds */
  /* open loop */
  int64_t t_next;            /* the next arrival's intended time */
  uint64_t arrivals;         /* so far, for --max-calls */
  int64_t *backlog;          /* intended times of arrivals waiting for a slot (a ring) */
  size_t bl_head, bl_n;
  uint64_t backlog_full;     /* arrivals dropped because the backlog was full */
  slot **free_slots;
  size_t n_free;
  uint64_t rng;
  pthread_mutex_t mu;        /* open loop: all of the above, between the sender and the reaper */
  bool sending;              /* open loop: the sender thread still makes arrivals */
} bench;

static const char *const ERR_NAMES[N_ERR] = {
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
    "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
    "UNAUTHENTICATED", "OTHER_STATUS", "OK_WITHOUT_MESSAGE"};

static void usage(FILE *f) {
  fputs("usage: recd-loadgen --addr HOST:PORT [options]\n\n"
        "  --method health|recommend  what to call (default health)\n"
        "  --concurrency N            calls kept in flight (default 32)\n"
        "  --channels N               connections; calls go round-robin (default 4)\n"
        "  --duration-s S             measured window (default 5)\n"
        "  --warmup-s S               calls before the window, not counted (default 1)\n"
        "  --users N                  recommend: user ids U00000..U{N-1}, plus 10%\n"
        "                             unknown users cold-N (default 1000)\n"
        "  -k N                       recommend: items per call (default 10)\n"
        "  --timeout-ms N             deadline of every call (default 5000)\n"
        "  --server-pid PID           also report the server's CPU time per call\n"
        "  --json                     one JSON object on stdout instead of text\n"
        "  --rate R                   open loop: R calls/s arrive whatever the server does\n"
        "                             (--concurrency caps those in flight; the rest wait,\n"
        "                             their latency counted from when they were due)\n"
        "  --arrivals constant|poisson  open loop: evenly spaced, or a Poisson process (default)\n"
        "  --max-calls N              open loop: stop after N arrivals (default: no cap)\n"

        "  --users-file F             recommend: user ids, one per line (instead of --users)\n"
        "  --categories A,B,...       recommend: categories for filtered requests\n"
        "  --filter-share X           recommend: share of requests with one category filter\n"
        "                             (default 0; needs --categories)\n"
        "  --seed N                   arrivals, users and filters drawn from this (default 1)\n"
        "  --sched batch|normal       the generator's scheduling: batch (default) does not\n"
        "                             preempt a server on the same cores when it wakes\n",
        f);
}

static int bad(const char *what, const char *arg) {
  fprintf(stderr, "recd-loadgen: %s '%s' (see --help)\n", what, arg);
  return 2;
}

static int num(const char *flag, const char *v, long lo, long hi, long *out) {
  char *end;
  errno = 0;
  long n = strtol(v, &end, 10);
  if (!*v || *end || errno || n < lo || n > hi) {
    fprintf(stderr, "recd-loadgen: %s must be an integer in [%ld, %ld], got '%s'\n", flag, lo,
            hi, v);
    return 2;
  }
  *out = n;
  return 0;
}

static int seconds(const char *flag, const char *v, double lo, double hi, double *out) {
  char *end;
  errno = 0;
  double d = strtod(v, &end);
  if (!*v || *end || errno || !(d >= lo && d <= hi)) {
    fprintf(stderr, "recd-loadgen: %s must be a number of seconds in [%g, %g], got '%s'\n",
            flag, lo, hi, v);
    return 2;
  }
  *out = d;
  return 0;
}

static int parse_one(opts *o, const char *a, const char *v) {
  long n;
  int rc;
  if (strcmp(a, "--addr") == 0) o->addr = v;
  else if (strcmp(a, "--method") == 0) {
    if (strcmp(v, "health") && strcmp(v, "recommend")) return bad("unknown method", v);
    o->recommend = strcmp(v, "recommend") == 0;
  } else if (strcmp(a, "--concurrency") == 0) return num(a, v, 1, 100000, &o->concurrency);
  else if (strcmp(a, "--channels") == 0) return num(a, v, 1, 1000, &o->channels);
  else if (strcmp(a, "--users") == 0) return num(a, v, 1, 100000000, &o->users);
  else if (strcmp(a, "-k") == 0) return num(a, v, 1, 100000, &o->k);
  else if (strcmp(a, "--timeout-ms") == 0) return num(a, v, 1, 600000, &o->timeout_ms);
  else if (strcmp(a, "--duration-s") == 0) return seconds(a, v, 0.1, 3600, &o->duration_s);
  else if (strcmp(a, "--warmup-s") == 0) return seconds(a, v, 0, 3600, &o->warmup_s);
  else if (strcmp(a, "--rate") == 0) return seconds(a, v, 0.001, 10000000, &o->rate);
  else if (strcmp(a, "--arrivals") == 0) {
    if (strcmp(v, "constant") && strcmp(v, "poisson")) return bad("unknown arrivals", v);
    o->poisson = strcmp(v, "poisson") == 0;
  } else if (strcmp(a, "--max-calls") == 0) return num(a, v, 1, 1000000000, &o->max_calls);
  else if (strcmp(a, "--users-file") == 0) o->users_file = v;
  else if (strcmp(a, "--categories") == 0) o->categories = v;
  else if (strcmp(a, "--filter-share") == 0) return seconds(a, v, 0, 1, &o->filter_share);
  else if (strcmp(a, "--seed") == 0) return num(a, v, 0, 2147483647, &o->seed);
  else if (strcmp(a, "--sched") == 0) {
    if (strcmp(v, "batch") && strcmp(v, "normal")) return bad("unknown scheduling", v);
    o->batch = strcmp(v, "batch") == 0;
  }
  else if (strcmp(a, "--server-pid") == 0) {
    if ((rc = num(a, v, 1, 4194304, &n))) return rc;
    o->server_pid = n;
  } else return bad("unknown option", a);
  return 0;
}

/* Returns 0, 1 for --help, or an exit code. */
static int parse(int argc, char **argv, opts *o) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) return 1;
    if (strcmp(a, "--json") == 0) { o->json = true; continue; }
    if (i + 1 == argc) return bad("missing value for", a);
    int rc = parse_one(o, a, argv[++i]);
    if (rc) return rc;
  }
  if (!o->addr) return bad("--addr is required", "");
  if (o->filter_share > 0 && !o->categories) return bad("--filter-share needs", "--categories");
  return 0;
}

/* Splits --categories and reads --users-file. 0, or an exit code. */
static int load_inputs(opts *o) {
  if (o->categories) {
    char *all = o->cats_text = strdup(o->categories);
    size_t n = 1;
    for (const char *c = o->categories; *c; c++) n += *c == ',';
    o->cats = calloc(n, sizeof *o->cats);
    if (!all || !o->cats) return 2;
    for (char *save = NULL, *t = strtok_r(all, ",", &save); t; t = strtok_r(NULL, ",", &save))
      o->cats[o->n_cats++] = t;
    if (!o->n_cats) return bad("no categories in", o->categories);
  }
  if (!o->users_file) return 0;
  FILE *f = fopen(o->users_file, "r");
  if (!f) return bad("cannot read", o->users_file);
  char line[256];
  size_t cap = 0;
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\r\n")] = '\0';
    if (!line[0]) continue;
    if (o->n_user_ids == cap) {
      cap = cap ? 2 * cap : 1024;
      char **x = realloc(o->user_ids, cap * sizeof *x);
      if (!x) break;
      o->user_ids = x;
    }
    if (!(o->user_ids[o->n_user_ids] = strdup(line))) break;
    o->n_user_ids++;
  }
  fclose(f);
  return o->n_user_ids ? 0 : bad("no user ids in", o->users_file);
}

static void free_inputs(opts *o) {
  for (size_t i = 0; i < o->n_user_ids; i++) free(o->user_ids[i]);
  free(o->user_ids);
  free(o->cats);
  free(o->cats_text);
}

/* xorshift64*: arrivals, users and filters, reproducible from --seed. */
static uint64_t rnd(bench *b) {
  b->rng ^= b->rng >> 12;
  b->rng ^= b->rng << 25;
  b->rng ^= b->rng >> 27;
  return b->rng * 2685821657736338717ULL;
}

static double unit(bench *b) { return (double)(rnd(b) >> 11) / 9007199254740992.0; } /* [0, 1) */

static size_t bucket_of(uint64_t v) {
  if (v < SUB) return (size_t)v;
  int shift = 63 - __builtin_clzll(v) - SUB_BITS + 1;
  if (shift > MAX_SHIFT) return NBUCKETS - 1;
  return (size_t)shift * (SUB / 2) + (size_t)(v >> shift);
}

/* The largest value bucket i holds. */
static uint64_t bucket_top(size_t i) {
  if (i < SUB) return i;
  size_t shift = i / (SUB / 2) - 1, m = i - shift * (SUB / 2);
  return ((uint64_t)(m + 1) << shift) - 1;
}

static void hist_add(hist *h, uint64_t v) {
  h->b[bucket_of(v)]++;
  h->n++;
  if (v > h->max) h->max = v;
}

/* The value at quantile q: the top of the bucket reaching it, never above max. */
static uint64_t hist_at(const hist *h, double q) {
  if (!h->n) return 0;
  uint64_t want = (uint64_t)(q * (double)h->n + 0.999999), seen = 0;
  if (want < 1) want = 1;
  for (size_t i = 0; i < NBUCKETS; i++) {
    seen += h->b[i];
    if (seen >= want) return bucket_top(i) < h->max ? bucket_top(i) : h->max;
  }
  return h->max;
}

/* utime + stime of every thread of 'pid', in clock ticks, or -1. */
static long long proc_cpu_ticks(long pid) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%ld/stat", pid);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  /* The command name in field 2 may hold spaces and parentheses; skip past its last ')'. */
  const char *p = strrchr(buf, ')');
  unsigned long long ut, st;
  if (!p || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
    return -1;
  return (long long)(ut + st);
}

static double self_cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* The next request, encoded: every tenth recommend call is for a user the
 * bundle does not know, so the popularity fallback is part of the mix. */
static grpc_byte_buffer *next_request(bench *b) {
  uint64_t n = b->seq++;
  unsigned char buf[1024];
  size_t len = 0;
  const opts *o = b->o;
  if (o->recommend) {
    char user[160];
    if (o->n_user_ids) snprintf(user, sizeof user, "%s", o->user_ids[rnd(b) % o->n_user_ids]);
    else if (n % 10 == 9) snprintf(user, sizeof user, "cold-%" PRIu64, n);
    else snprintf(user, sizeof user, "U%05" PRIu64, n % (uint64_t)o->users);
    Rec__V1__RecommendRequest q = REC__V1__RECOMMEND_REQUEST__INIT;
    Rec__V1__Filters f = REC__V1__FILTERS__INIT;
    char *cat[1];
    q.user_id = user;
    q.k = (int32_t)o->k;
    if (o->n_cats && unit(b) < o->filter_share) {
      cat[0] = o->cats[rnd(b) % o->n_cats];
      f.include_categories = cat;
      f.n_include_categories = 1;
      q.filters = &f;
    }
    len = rec__v1__recommend_request__pack(&q, buf);
  } else {
    Grpc__Health__V1__HealthCheckRequest q = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    len = grpc__health__v1__health_check_request__pack(&q, buf);
  }
  grpc_slice s = grpc_slice_from_copied_buffer((const char *)buf, len);
  grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
  grpc_slice_unref(s);
  return bb;
}

/* Frees what start_call and the completion left in the slot. */
static void end_call(slot *s) { rpc__unary_end(&s->u); }

/* Open loop: a call meant to go at 't' belongs to the measured window. */
static bool in_window(const bench *b, int64_t t) {
  return t >= b->t_measure && t < b->t_end && b->ph != PH_WARMUP;
}

/* Starts one call on the next channel, meant to go at 'due' (0: now).
 * Returns 0, or -1 if gRPC refused the batch. */
static int start_call(bench *b, slot *s, int64_t due) {
  static const char *const paths[] = {"/grpc.health.v1.Health/Check", "/rec.v1.Ranking/Recommend"};
  grpc_channel *ch = b->chans[b->next_chan++ % (size_t)b->o->channels];
  int64_t now = rec_mono_ns();
  s->t0 = due ? due : now;
  s->measured = in_window(b, s->t0);
  /* How late the generator itself sends (a backlogged arrival's wait is the
   * server's doing): beside the latencies, it says how far to trust them. */
  if (due && s->measured && b->bl_n == 0) hist_add(&b->win.lag, (uint64_t)((now - due) / 1000));
  grpc_byte_buffer *send = next_request(b);
  bool started = rpc__unary_start(&s->u, ch, b->cq, paths[b->o->recommend], send,
                                  rpc__deadline_in((int64_t)b->o->timeout_ms * 1000000), s);
  grpc_byte_buffer_destroy(send);
  if (!started) {
    fprintf(stderr, "recd-loadgen: grpc_call_start_batch failed\n");
    end_call(s);
    return -1;
  }
  b->in_flight++;
  return 0;
}

static void count(bench *b, const slot *s, bool batch_ok, int64_t now) {
  int code = (int)s->u.status;
  int err = !batch_ok || code < 0 || code >= N_GRPC_CODES ? ERR_OTHER
          : code == GRPC_STATUS_OK && !s->u.recv ? ERR_NO_MESSAGE
          : code;
  if (b->o->rate > 0 ? !s->measured : b->ph != PH_MEASURE) {
    b->other_calls++;
    b->other_errors += err != GRPC_STATUS_OK;
    return;
  }
  b->win.calls++;
  if (!b->win.by_code[err]++)
    snprintf(b->win.first_details[err], sizeof b->win.first_details[err], "%.*s",
             (int)GRPC_SLICE_LENGTH(s->u.details), (const char *)GRPC_SLICE_START_PTR(s->u.details));
  b->win.errors += err != GRPC_STATUS_OK;
  hist_add(&b->win.lat, (uint64_t)((now - s->t0) / 1000));
}

/* Moves warmup -> measure -> drain when their time comes, reading the CPU clocks. */
static void advance(bench *b, int64_t now) {
  bool open = b->o->rate > 0; /* open loop: the window is the planned one, arrivals are counted by due time */
  if (b->ph == PH_WARMUP && now >= b->t_measure) {
    b->ph = PH_MEASURE;
    if (!open) b->t_measure = now;
    b->t_end = b->t_measure + (int64_t)(b->o->duration_s * 1e9);
    b->cpu0 = b->o->server_pid ? proc_cpu_ticks(b->o->server_pid) : -1;
    b->self0 = self_cpu_s();
  } else if (b->ph == PH_MEASURE && now >= b->t_end) {
    b->ph = PH_DRAIN;
    if (!open) b->t_end = now;
    b->cpu1 = b->o->server_pid ? proc_cpu_ticks(b->o->server_pid) : -1;
    b->self1 = self_cpu_s();
  }
}

static void cancel_all(bench *b) {
  for (long i = 0; i < b->o->concurrency; i++)
    if (b->slots[i].u.call) grpc_call_cancel(b->slots[i].u.call, NULL);
  b->cancelled = true;
}

/* Every call carries a deadline, so draining ends by itself; cancelling is
 * the backstop for a peer that stops answering altogether. */
static void cancel_stragglers(bench *b, int64_t now) {
  int64_t grace = ((int64_t)b->o->timeout_ms + 2000) * 1000000;
  if (b->ph != PH_DRAIN || b->cancelled || now < b->t_end + grace) return;
  fprintf(stderr, "recd-loadgen: %ld calls outlived their deadline; cancelling\n", b->in_flight);
  cancel_all(b);
}

/* Stops starting calls and cancels those in flight; run() then collects them. */
static void abort_run(bench *b) {
  b->failed = true;
  b->ph = PH_DRAIN;
  cancel_all(b);
}

/* Runs warmup, window and drain. Returns when no call is in flight: 0, or -1
 * if gRPC refused to start a call. */
static int run(bench *b) {
  int64_t start = rec_mono_ns();
  b->t_measure = start + (int64_t)(b->o->warmup_s * 1e9);
  b->t_end = INT64_MAX;
  for (long i = 0; i < b->o->concurrency && !b->failed; i++)
    if (start_call(b, &b->slots[i], 0) != 0) abort_run(b);
  while (b->in_flight > 0) {
    gpr_timespec tick = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                     gpr_time_from_millis(50, GPR_TIMESPAN));
    grpc_event ev = grpc_completion_queue_next(b->cq, tick, NULL);
    int64_t now = rec_mono_ns();
    advance(b, now);
    cancel_stragglers(b, now);
    if (ev.type != GRPC_OP_COMPLETE) continue;
    slot *s = ev.tag;
    b->in_flight--;
    count(b, s, ev.success != 0, now);
    end_call(s);
    if (b->ph != PH_DRAIN && start_call(b, s, 0) != 0) abort_run(b);
  }
  return b->failed ? -1 : 0;
}

/* Open loop: the gap to the next arrival. */
static int64_t gap_ns(bench *b) {
  double mean = 1e9 / b->o->rate;
  return (int64_t)(b->o->poisson ? -log(1.0 - unit(b)) * mean : mean);
}

/* An arrival meant for 'due': into a free slot, else into the backlog. */
static void arrive(bench *b, int64_t due) {
  b->arrivals++;
  bool measured = in_window(b, due);
  b->win.offered += measured;
  if (b->n_free) {
    if (start_call(b, b->free_slots[--b->n_free], due) != 0) abort_run(b);
    return;
  }
  if (b->bl_n == BACKLOG_MAX) { /* counted as a failed call of the window */
    b->backlog_full++;
    if (measured) b->win.calls++, b->win.errors++, b->win.by_code[ERR_OTHER]++;
    return;
  }
  b->backlog[(b->bl_head + b->bl_n++) % BACKLOG_MAX] = due;
}

/* Open loop, the sender thread: each arrival at its intended time, to the
 * microsecond (a precise absolute sleep, not a completion-queue wait whose
 * deadline gRPC rounds to milliseconds: that made every call about a
 * millisecond late). Stops when the window is over or --max-calls sent. */
static void *sender_main(void *arg) {
  bench *b = arg;
  const opts *o = b->o;
  prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0); /* wake on time, not up to 50 us later */
  pthread_mutex_lock(&b->mu);
  for (;;) {
    int64_t now = rec_mono_ns();
    advance(b, now);
    bool arriving = b->ph != PH_DRAIN && !b->failed && (!o->max_calls || b->arrivals < (uint64_t)o->max_calls);
    if (!arriving) break;
    if (now < b->t_next) {
      int64_t until = b->t_next - now > 50000000 ? now + 50000000 : b->t_next; /* look at the phase now and then */
      pthread_mutex_unlock(&b->mu);
      struct timespec ts = {(time_t)(until / 1000000000), (long)(until % 1000000000)};
      while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
      }
      pthread_mutex_lock(&b->mu);
      continue;
    }
    while (now >= b->t_next && b->ph != PH_DRAIN && !b->failed &&
           (!o->max_calls || b->arrivals < (uint64_t)o->max_calls)) {
      int64_t due = b->t_next;
      b->t_next += gap_ns(b);
      if (due >= b->t_measure && b->ph == PH_WARMUP) advance(b, due);
      arrive(b, due);
    }
  }
  if (b->ph == PH_MEASURE) { /* --max-calls reached: the window ends at the last arrival */
    b->t_end = b->t_next;
    advance(b, b->t_end);
  }
  b->sending = false;
  pthread_mutex_unlock(&b->mu);
  return NULL;
}

/* Runs warmup, window and drain with arrivals at --rate; the calls meant
 * for the window are all waited for. This thread reaps completions and
 * hands each freed slot to the oldest waiting arrival; sender_main makes
 * the arrivals. */
static int run_open(bench *b) {
  const opts *o = b->o;
  int64_t start = rec_mono_ns();
  b->backlog = malloc(BACKLOG_MAX * sizeof *b->backlog);
  b->free_slots = malloc((size_t)o->concurrency * sizeof *b->free_slots);
  if (!b->backlog || !b->free_slots) return -1;
  for (long i = 0; i < o->concurrency; i++) b->free_slots[b->n_free++] = &b->slots[o->concurrency - 1 - i];
  b->t_measure = start + (int64_t)(o->warmup_s * 1e9);
  b->t_end = INT64_MAX;
  b->t_next = start;
  b->sending = true;
  pthread_t sender;
  if (pthread_create(&sender, NULL, sender_main, b) != 0) {
    fprintf(stderr, "recd-loadgen: cannot start the sender thread\n");
    return -1;
  }
  for (bool done = false; !done;) {
    gpr_timespec tick = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(50, GPR_TIMESPAN));
    grpc_event ev = grpc_completion_queue_next(b->cq, tick, NULL);
    pthread_mutex_lock(&b->mu);
    int64_t now = rec_mono_ns();
    advance(b, now);
    cancel_stragglers(b, now);
    if (ev.type == GRPC_OP_COMPLETE) {
      slot *s = ev.tag;
      b->in_flight--;
      count(b, s, ev.success != 0, now);
      end_call(s);
      if (b->bl_n && !b->failed) { /* the oldest waiting arrival takes the slot */
        int64_t due = b->backlog[b->bl_head];
        b->bl_head = (b->bl_head + 1) % BACKLOG_MAX;
        b->bl_n--;
        if (start_call(b, s, due) != 0) abort_run(b);
      } else {
        b->free_slots[b->n_free++] = s;
      }
    }
    done = !b->sending && b->ph == PH_DRAIN && b->in_flight == 0 && (b->bl_n == 0 || b->failed);
    pthread_mutex_unlock(&b->mu);
  }
  pthread_join(sender, NULL);
  return b->failed ? -1 : 0;
}

typedef struct result {
  double secs, calls_per_s, offered_per_s, server_cpu_us, server_us_per_call, self_us_per_call;
  bool have_server;
} result;

static result summarize(const bench *b) {
  result r = {0};
  r.secs = (double)(b->t_end - b->t_measure) / 1e9;
  uint64_t n = b->win.calls;
  r.calls_per_s = r.secs > 0 ? (double)n / r.secs : 0;
  r.offered_per_s = r.secs > 0 ? (double)b->win.offered / r.secs : 0;
  r.self_us_per_call = n ? (b->self1 - b->self0) * 1e6 / (double)n : 0;
  r.have_server = b->cpu0 >= 0 && b->cpu1 >= b->cpu0;
  if (r.have_server) {
    r.server_cpu_us = (double)(b->cpu1 - b->cpu0) * 1e6 / (double)sysconf(_SC_CLK_TCK);
    r.server_us_per_call = n ? r.server_cpu_us / (double)n : 0;
  }
  return r;
}

static void print_text(const bench *b, const result *r) {
  const opts *o = b->o;
  const hist *h = &b->win.lat;
  if (o->rate > 0)
    printf("recd-loadgen: %s on %s, open loop at %.1f calls/s (%s arrivals), %ld channels, at most %ld in "
           "flight, %.2f s measured after %.1f s warmup, sched %s\n", o->recommend ? "recommend" : "health",
           o->addr, o->rate, o->poisson ? "Poisson" : "constant", o->channels, o->concurrency, r->secs, o->warmup_s,
           o->batch ? "batch" : "normal");
  else
    printf("recd-loadgen: %s on %s, closed loop, %ld channels, %ld in flight, %.2f s measured after %.1f s "
           "warmup, sched %s\n", o->recommend ? "recommend" : "health", o->addr, o->channels, o->concurrency,
           r->secs, o->warmup_s, o->batch ? "batch" : "normal");
  printf("calls          %" PRIu64 "\n", b->win.calls);
  if (o->rate > 0) printf("offered/s      %.1f\n", r->offered_per_s);
  printf("calls/s        %.1f\n", r->calls_per_s);
  printf("errors         %" PRIu64, b->win.errors);
  for (int i = 1; i < N_ERR; i++)
    if (b->win.by_code[i]) printf("  %s=%" PRIu64, ERR_NAMES[i], b->win.by_code[i]);
  printf("\n");
  for (int i = 1; i < N_ERR; i++)
    if (b->win.by_code[i]) printf("  first %s: %s\n", ERR_NAMES[i], b->win.first_details[i]);
  printf("latency us     p50 %" PRIu64 "  p90 %" PRIu64 "  p99 %" PRIu64 "  p99.9 %" PRIu64 "  max %" PRIu64 "%s\n",
         hist_at(h, 0.50), hist_at(h, 0.90), hist_at(h, 0.99), hist_at(h, 0.999), h->max,
         o->rate > 0 ? "  (from each call's intended send time)" : "");
  if (o->rate > 0)
    printf("send lag us    p50 %" PRIu64 "  p99 %" PRIu64 "  max %" PRIu64 "  (the generator's own lateness, "
           "included in the latencies)\n", hist_at(&b->win.lag, 0.50), hist_at(&b->win.lag, 0.99), b->win.lag.max);
  if (r->have_server)
    printf("server cpu     %.1f us/call (pid %ld: %.3f s CPU in %.2f s, %.0f%% of one core)\n",
           r->server_us_per_call, o->server_pid, r->server_cpu_us / 1e6, r->secs,
           r->secs > 0 ? 100 * r->server_cpu_us / 1e6 / r->secs : 0);
  else if (o->server_pid)
    printf("server cpu     unknown (cannot read /proc/%ld/stat)\n", o->server_pid);
  printf("loadgen cpu    %.1f us/call\n", r->self_us_per_call);
  printf("outside window %" PRIu64 " calls, %" PRIu64 " errors (warmup and drain)\n",
         b->other_calls, b->other_errors);
}

static void print_json(const bench *b, const result *r) {
  const hist *h = &b->win.lat;
  printf("{\"method\":\"%s\",\"addr\":\"%s\",\"mode\":\"%s\",\"rate\":%.3f,\"arrivals\":\"%s\",\"sched\":\"%s\","
         "\"channels\":%ld,\"concurrency\":%ld,\"seconds\":%.3f,\"offered_per_s\":%.1f,\"calls\":%" PRIu64
         ",\"calls_per_s\":%.1f,\"errors\":%" PRIu64 ",\"errors_by_code\":{", b->o->recommend ? "recommend" : "health",
         b->o->addr, b->o->rate > 0 ? "open" : "closed", b->o->rate, b->o->poisson ? "poisson" : "constant",
         b->o->batch ? "batch" : "normal", b->o->channels, b->o->concurrency, r->secs, b->o->rate > 0 ? r->offered_per_s : r->calls_per_s,
         b->win.calls, r->calls_per_s, b->win.errors);
  const char *sep = "";
  for (int i = 1; i < N_ERR; i++)
    if (b->win.by_code[i]) {
      printf("%s\"%s\":%" PRIu64, sep, ERR_NAMES[i], b->win.by_code[i]);
      sep = ",";
    }
  printf("},\"latency_us\":{\"p50\":%" PRIu64 ",\"p90\":%" PRIu64 ",\"p99\":%" PRIu64
         ",\"p99.9\":%" PRIu64 ",\"max\":%" PRIu64 "},", hist_at(h, 0.50), hist_at(h, 0.90), hist_at(h, 0.99),
         hist_at(h, 0.999), h->max);
  if (b->o->rate > 0)
    printf("\"send_lag_us\":{\"p50\":%" PRIu64 ",\"p99\":%" PRIu64 ",\"max\":%" PRIu64 "},",
           hist_at(&b->win.lag, 0.50), hist_at(&b->win.lag, 0.99), b->win.lag.max);
  if (r->have_server)
    printf("\"server_cpu_s\":%.3f,\"server_cpu_us_per_call\":%.2f,", r->server_cpu_us / 1e6,
           r->server_us_per_call);
  else
    printf("\"server_cpu_s\":null,\"server_cpu_us_per_call\":null,");
  printf("\"loadgen_cpu_us_per_call\":%.2f,\"outside_window\":{\"calls\":%" PRIu64
         ",\"errors\":%" PRIu64 "}}\n", r->self_us_per_call, b->other_calls, b->other_errors);
}

/* Each channel gets its own connection: by default gRPC would let channels to
 * one target share a subchannel, and so one TCP connection. */
static int open_channels(bench *b) {
  b->chans = calloc((size_t)b->o->channels, sizeof *b->chans);
  if (!b->chans) return -1;
  grpc_arg args[] = {{GRPC_ARG_INTEGER, GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, {.integer = 1}}};
  grpc_channel_args ca = {sizeof args / sizeof args[0], args};
  grpc_channel_credentials *creds = grpc_insecure_credentials_create();
  for (long i = 0; i < b->o->channels; i++) b->chans[i] = grpc_channel_create(b->o->addr, creds, &ca);
  grpc_channel_credentials_release(creds);
  return 0;
}

/* Called when no call is in flight (run() returns only then). */
static void close_all(bench *b) {
  for (long i = 0; b->chans && i < b->o->channels; i++)
    if (b->chans[i]) grpc_channel_destroy(b->chans[i]);
  grpc_completion_queue_shutdown(b->cq);
  while (grpc_completion_queue_next(b->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type !=
         GRPC_QUEUE_SHUTDOWN) {
  }
  grpc_completion_queue_destroy(b->cq);
  free(b->chans);
  free(b->slots);
  free(b->backlog);
  free(b->free_slots);
}

int main(int argc, char **argv) {
  opts o = {.concurrency = 32, .channels = 4, .users = 1000, .k = 10, .timeout_ms = 5000,
            .duration_s = 5, .warmup_s = 1, .poisson = true, .seed = 1, .batch = true};
  int rc = parse(argc, argv, &o);
  if (rc == 1) usage(stdout);
  if (rc) return rc == 1 ? 0 : rc;
  if ((rc = load_inputs(&o))) {
    free_inputs(&o);
    return rc;
  }
  /* Before grpc_init, so that gRPC's threads and the sender inherit it. */
  if (o.batch && sched_setscheduler(0, SCHED_BATCH, &(struct sched_param){0}) != 0) {
    fprintf(stderr, "recd-loadgen: cannot run as SCHED_BATCH (%s); running as SCHED_OTHER\n", strerror(errno));
    o.batch = false;
  }
  rpc__runtime_init();
  grpc_init();
  bench b = {.o = &o, .cpu0 = -1, .cpu1 = -1, .rng = 0x9E3779B97F4A7C15ULL ^ (uint64_t)o.seed,
             .mu = PTHREAD_MUTEX_INITIALIZER};
  b.cq = grpc_completion_queue_create_for_next(NULL);
  b.slots = calloc((size_t)o.concurrency, sizeof *b.slots);
  if (!b.slots || open_channels(&b) != 0) {
    fprintf(stderr, "recd-loadgen: out of memory\n");
    rc = 2;
    goto cleanup;
  }
  if ((o.rate > 0 ? run_open(&b) : run(&b)) != 0) {
    rc = 2;
    goto cleanup;
  }
  result r = summarize(&b);
  if (o.json) print_json(&b, &r);
  else print_text(&b, &r);
  uint64_t all = b.win.calls + b.other_calls, failed = b.win.errors + b.other_errors;
  if (b.win.calls == 0 || failed * 100 > all) {
    fprintf(stderr, "recd-loadgen: %" PRIu64 " of %" PRIu64 " calls failed\n", failed, all);
    rc = 1;
  }
cleanup:
  close_all(&b);
  grpc_shutdown();
  free_inputs(&o);
  return rc;
}
