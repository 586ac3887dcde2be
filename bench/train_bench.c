/* bench/train_bench.c - offline training throughput. Writes a synthetic
 * interactions CSV with a realistic popularity skew (items drawn from a Zipf
 * law with exponent 1.0, users from one with exponent 0.6, each user leaning
 * to two categories), then times each offline step on it: CSV load and
 * cleaning, the strength matrix, item-CF, two-tower epochs and ALS sweeps,
 * printing interactions per second. A program that prints numbers, not a test.
 *
 * usage: recd-train-bench [--interactions N] [--items N] [--users N]
 *                         [--epochs N] [--threads N] [--dir DIR] */
#include "tools/offline/als.h"
#include "tools/offline/dataset.h"
#include "tools/offline/features.h"
#include "tools/offline/train.h"
#include "tools/offline/twotower.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t rng = 12345;
static double uniform(void) {
  uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return (double)((z ^ (z >> 31)) >> 11) * 0x1.0p-53;
}

/* Cumulative Zipf weights 1/(r+1)^s; sample by binary search. */
static double *zipf_cdf(size_t n, double s) {
  double *c = malloc(n * sizeof *c), t = 0;
  for (size_t r = 0; r < n; r++) c[r] = t += 1.0 / pow((double)(r + 1), s);
  for (size_t r = 0; r < n; r++) c[r] /= t;
  return c;
}

static size_t draw(const double *cdf, size_t n) {
  double u = uniform();
  size_t lo = 0, hi = n - 1;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (cdf[mid] < u) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

enum { CATS = 20 };

static void write_data(const char *dir, size_t n, size_t items, size_t users) {
  char path[512];
  snprintf(path, sizeof path, "%s/catalog.csv", dir);
  FILE *fp = fopen(path, "w");
  fprintf(fp, "item_id,category,subcategory,brand,price,margin,in_stock,name\n");
  for (size_t i = 0; i < items; i++)
    fprintf(fp, "I%zu,c%zu,,,%.2f,0.2,1,\n", i, i % CATS, 2.0 + 200.0 * uniform() * uniform());
  fclose(fp);
  double *icdf = zipf_cdf(items / CATS, 1.0), *ucdf = zipf_cdf(users, 0.6);
  snprintf(path, sizeof path, "%s/interactions.csv", dir);
  fp = fopen(path, "w");
  fprintf(fp, "user_id,item_id,timestamp,quantity,price,event_type,rating\n");
  for (size_t k = 0; k < n; k++) {
    size_t u = draw(ucdf, users);
    size_t cat = (u * 7 + (uniform() < 0.7 ? 0 : 1 + u % 3)) % CATS; /* two favourite categories */
    size_t item = draw(icdf, items / CATS) * CATS + cat;
    fprintf(fp, "U%zu,I%zu,%lld,%d,%.2f,purchase,\n", u, item,
            1500000000LL + (long long)(uniform() * 3e7), 1 + (int)(3 * uniform() * uniform()),
            2.0 + 200.0 * uniform() * uniform());
  }
  fclose(fp);
  free(icdf);
  free(ucdf);
}

static void on_epoch(void *arg, int epoch, double loss) {
  double *t = arg;
  double t1 = now();
  fprintf(stderr, "  epoch %d: loss %.4f, %.2f s\n", epoch, loss, t1 - *t);
  *t = t1;
}

int main(int argc, char **argv) {
  size_t n = 1000000, items = 50000, users = 50000;
  int epochs = 3, threads = 0;
  const char *dir = NULL;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--interactions")) n = strtoul(argv[i + 1], NULL, 10);
    else if (!strcmp(argv[i], "--items")) items = strtoul(argv[i + 1], NULL, 10);
    else if (!strcmp(argv[i], "--users")) users = strtoul(argv[i + 1], NULL, 10);
    else if (!strcmp(argv[i], "--epochs")) epochs = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--dir")) dir = argv[i + 1];
    else {
      fprintf(stderr, "unknown option %s\n", argv[i]);
      return 2;
    }
  }
  char tmp[] = "/tmp/recd-train-bench.XXXXXX";
  if (!dir && !(dir = mkdtemp(tmp))) return 1;
  train_threads(threads);
  printf("machine: %ld cores; threads %d (0 = all)\n", sysconf(_SC_NPROCESSORS_ONLN), threads);
  double t0 = now();
  write_data(dir, n, items, users);
  printf("generate  %zu interactions, %zu items, %zu users: %.2f s\n", n, items, users, now() - t0);

  char ip[512], cp[512];
  snprintf(ip, sizeof ip, "%s/interactions.csv", dir);
  snprintf(cp, sizeof cp, "%s/catalog.csv", dir);
  rec_error err = {0};
  dataset *d;
  t0 = now();
  if (dataset_load(ip, cp, &DS_SCHEMA_DEFAULT, &d, &err)) {
    fprintf(stderr, "load: %s\n", err.msg);
    return 1;
  }
  double tl = now() - t0;
  printf("load      %.2f s  %.0f rows/s  (kept %zu, %zu duplicates)\n", tl, (double)n / tl,
         d->report.kept, d->report.duplicates);

  ui_matrix R;
  profiles p;
  itemcf cf;
  t0 = now();
  ui_matrix_build(d, NULL, &R);
  profiles_build(d, NULL, 50, &p);
  printf("matrix    %.2f s  (%zu user-item pairs)\n", now() - t0, R.nnz);
  t0 = now();
  itemcf_build(&R, 50, &cf);
  printf("item-CF   %.2f s  %.0f pairs/s\n", now() - t0, (double)R.nnz / (now() - t0));

  build_opts o;
  build_opts_default(&o);
  tt_opts to = o.tt;
  to.epochs = epochs;
  double te = now();
  to.progress = on_epoch;
  to.progress_arg = &te;
  tt_model *m;
  t0 = now();
  if (tt_train(d, &R, &p, &to, &m, &err)) {
    fprintf(stderr, "two-tower: %s\n", err.msg);
    return 1;
  }
  double tt = now() - t0;
  printf("two-tower %d epochs %.2f s  %.0f interactions/s  (dim %zu, batch %zu)\n", epochs, tt,
         (double)R.nnz * epochs / tt, to.dim, to.batch);
  tt_free(m);

  float *U = malloc(d->n_users * o.als.factors * sizeof *U);
  float *V = malloc(d->n_items * o.als.factors * sizeof *V);
  csr c = ui_matrix_csr(&R);
  t0 = now();
  if (als_train(&c, &o.als, U, V, &err)) {
    fprintf(stderr, "als: %s\n", err.msg);
    return 1;
  }
  double ta = now() - t0;
  printf("als       %d sweeps %.2f s  %.0f interactions/s  (factors %zu)\n", o.als.iterations, ta,
         (double)R.nnz * o.als.iterations / ta, o.als.factors);
  free(U);
  free(V);
  itemcf_destroy(&cf);
  profiles_destroy(&p);
  ui_matrix_destroy(&R);
  dataset_free(d);
  if (dir == tmp) {
    unlink(ip);
    unlink(cp);
    rmdir(dir);
  }
  return 0;
}
