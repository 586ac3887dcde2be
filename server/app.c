/* server/app.c - see app.h. */
#include "server/app.h"
#include "common/clock.h"

void app_init(app *a, const recd_config *cfg) {
  a->cfg = cfg;
  a->started_ns = rec_mono_ns();
  atomic_init(&a->seq, 0);
  pthread_mutex_init(&a->mu, NULL);
  a->current = NULL;
}

void app_destroy(app *a) {
  bundle_unref(a->current);
  a->current = NULL;
  pthread_mutex_destroy(&a->mu);
}

bundle *app_acquire(app *a) {
  pthread_mutex_lock(&a->mu);
  bundle *b = a->current ? bundle_ref(a->current) : NULL;
  pthread_mutex_unlock(&a->mu);
  return b;
}

void app_swap(app *a, bundle *b) {
  pthread_mutex_lock(&a->mu);
  bundle *old = a->current;
  a->current = b;
  pthread_mutex_unlock(&a->mu);
  bundle_unref(old);
}
