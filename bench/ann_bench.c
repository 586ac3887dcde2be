/* bench/ann_bench.c - recd-ann-bench: the ANN stage alone, on a bundle's
 * own queries. For each of the first --queries users, the user tower's
 * vector is searched for its --k nearest items three ways: exactly (every
 * item scored), with recd's HNSW search (FAISS's graph walk with recd's
 * inner product and a visited table reused per thread) and with FAISS's
 * stock IndexHNSW::search, at each efSearch asked. Prints recall@k against
 * exact search and CPU microseconds per search for both: the recall
 * against cost of the one stage that dominates a Recommend (Recommend asks
 * for candidates.ann = 200). A program that prints numbers, not a
 * test.
 *
 * usage: recd-ann-bench --bundle DIR [--queries N] [--k N] [--ef N,N,...] */
#include "common/clock.h"
#include "retrieval/ann.h"
#include "retrieval/ann_tune.h"
#include "retrieval/bundle.h"
#include "retrieval/retrieve.h"
#include "retrieval/tower.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int64_t cpu_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int by_id(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

/* How many of 'got' are in 'want' (sorted). */
static size_t hits(const int64_t *want, size_t nw, const int64_t *got, size_t ng) {
  size_t h = 0;
  for (size_t i = 0; i < ng; i++) h += bsearch(&got[i], want, nw, sizeof *want, by_id) != NULL;
  return h;
}

int main(int argc, char **argv) {
  const char *dir = NULL, *efs = "16,32,64,128,256";
  long queries = 500, k = 200;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--bundle")) dir = argv[i + 1];
    else if (!strcmp(argv[i], "--queries")) queries = strtol(argv[i + 1], NULL, 10);
    else if (!strcmp(argv[i], "--k")) k = strtol(argv[i + 1], NULL, 10);
    else if (!strcmp(argv[i], "--ef")) efs = argv[i + 1];
    else dir = NULL, i = argc;
  }
  if (!dir || queries < 1 || k < 1) {
    fprintf(stderr, "usage: recd-ann-bench --bundle DIR [--queries N] [--k N] [--ef N,N,...]\n");
    return 2;
  }
  retrieve_thread_init();
  bundle *b;
  rec_error err = {0};
  if (bundle_load(dir, &b, &err) != 0) {
    fprintf(stderr, "recd-ann-bench: %s\n", err.msg);
    return 1;
  }
  size_t n = b->catalog->count, d = b->dim, nq = (size_t)queries < b->user_count ? (size_t)queries : b->user_count;
  float *q = malloc(nq * d * sizeof *q), *scratch = malloc(2 * b->tower.max_width * sizeof *scratch);
  float *sc = malloc((size_t)k * sizeof *sc);
  int64_t *exact = malloc(nq * (size_t)k * sizeof *exact), *got = malloc((size_t)k * sizeof *got);
  if (!q || !scratch || !exact || !got || !sc) return 1;
  for (size_t u = 0; u < nq; u++) /* the queries Recommend serves: each user's tower vector */
    tower_forward(&b->tower, bundle_user_features(b, (uint32_t)u), q + u * d, scratch);
  if (ann_exact_topk(b->item_emb, n, d, q, nq, (size_t)k, exact, &err) != 0) {
    fprintf(stderr, "recd-ann-bench: %s\n", err.msg);
    return 1;
  }
  for (size_t u = 0; u < nq; u++) qsort(exact + u * (size_t)k, (size_t)k, sizeof *exact, by_id);
  printf("recd-ann-bench: bundle %s (%zu items, dim %zu, index %s), %zu user-tower queries, recall@%ld against "
         "exact search\n", b->version, n, d, b->index_type, nq, k);
  printf("%8s %18s %14s %18s %14s\n", "efSearch", "recd recall", "recd us", "faiss recall", "faiss us");
  char *list = strdup(efs);
  for (char *save = NULL, *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
    int ef = atoi(t);
    double rec[2] = {0}, us[2] = {0};
    for (int way = 0; way < 2; way++) {
      size_t h = 0, m;
      int64_t t0 = cpu_ns();
      for (size_t u = 0; u < nq; u++) {
        int rc = way ? ann_search_faiss(b->ann, q + u * d, (size_t)k, ef, got, sc, &m)
                     : ann_search_ef(b->ann, q + u * d, (size_t)k, ef, got, sc, &m);
        if (rc == 0) h += hits(exact + u * (size_t)k, (size_t)k, got, m);
      }
      us[way] = (double)(cpu_ns() - t0) / 1e3 / (double)nq;
      rec[way] = (double)h / (double)(nq * (size_t)k);
    }
    printf("%8d %18.4f %14.1f %18.4f %14.1f\n", ef, rec[0], us[0], rec[1], us[1]);
  }
  free(list);
  free(q), free(scratch), free(sc), free(exact), free(got);
  bundle_unref(b);
  return 0;
}
