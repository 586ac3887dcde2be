/* tools/offline/progress.c - see progress.h. */
#include "tools/offline/progress.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void progress_start(progress *p, const char *label, size_t total, int quiet) {
  *p = (progress){label, total, now(), isatty(STDERR_FILENO), quiet};
}

void progress_update(progress *p, size_t done, const char *note) {
  if (p->quiet) return;
  double secs = now() - p->start;
  if (!p->tty) {
    fprintf(stderr, "%s: %zu/%zu %s (%.1f s)\n", p->label, done, p->total, note ? note : "", secs);
    return;
  }
  int width = 30, filled = p->total ? (int)((double)width * (double)done / (double)p->total) : width;
  fprintf(stderr, "\r%-14s [", p->label);
  for (int i = 0; i < width; i++) fputc(i < filled ? '#' : '.', stderr);
  fprintf(stderr, "] %zu/%zu %s %.1fs\033[K", done, p->total, note ? note : "", secs);
  fflush(stderr);
}

void progress_end(progress *p, const char *note) {
  if (p->quiet) return;
  fprintf(stderr, "%s%s: %s (%.1f s)\n", p->tty ? "\r\033[K" : "", p->label, note ? note : "done",
          now() - p->start);
}
