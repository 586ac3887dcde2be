/* tools/offline/progress.h - progress for long offline steps on stderr: a redrawn bar
 * on a terminal, one line per step otherwise (CI logs stay readable). A
 * progress value belongs to the one thread that drives the step. */
#ifndef REC_PROGRESS_H
#define REC_PROGRESS_H
#include <stddef.h>

typedef struct progress {
  const char *label;
  size_t total;
  double start;
  int tty, quiet;
} progress;

void progress_start(progress *p, const char *label, size_t total, int quiet);
/* 'done' of 'total' finished; 'note' (may be NULL) is shown after the bar. */
void progress_update(progress *p, size_t done, const char *note);
/* Ends the step with a summary line ("label: note (1.2 s)"). */
void progress_end(progress *p, const char *note);
#endif
