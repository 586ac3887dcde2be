/* bench/rank_bench.c - the ranking tier's cost per request: 1,000 candidates
 * from three sources, default rules, MMR over 64-dimensional embeddings and
 * the category cap, k = 20, on one core. Prints microseconds per call (mean,
 * median, p99) over many calls. A program that prints numbers, not a test.
 * --skew makes the first category's candidates outscore the rest, so the
 * MMR pool is one category and the cap must reach past it.
 *
 * usage: recd-rank-bench [--candidates N] [--k N] [--items N] [--calls N] [--categories N] [--skew]
 *                        [--no-mmr] */
#include "common/catalog.h"
#include "common/clock.h"
#include "ranking/rank.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint64_t rng = 99;
static double uniform(void) {
  rng = rng * 6364136223846793005ull + 1442695040888963407ull;
  return (double)(rng >> 11) * 0x1.0p-53;
}

static int by_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

/* The most items of one category on the slate. */
static size_t largest_category(const catalog *c, const rank_result *res) {
  size_t *per = calloc(c->category_count + 1, sizeof *per), most = 0;
  for (size_t i = 0; per && i < res->n; i++) {
    size_t x = ++per[c->category[res->items[i].item]];
    most = x > most ? x : most;
  }
  free(per);
  return most;
}

int main(int argc, char **argv) {
  size_t n_cands = 1000, k = 20, n_items = 100000, calls = 5000, dim = 64, n_cats = 30;
  bool mmr = true, skew = false;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--no-mmr")) mmr = false;
    else if (!strcmp(argv[i], "--skew")) skew = true;
    else if (i + 1 < argc && !strcmp(argv[i], "--categories")) n_cats = strtoul(argv[++i], NULL, 10);
    else if (i + 1 < argc && !strcmp(argv[i], "--candidates")) n_cands = strtoul(argv[++i], NULL, 10);
    else if (i + 1 < argc && !strcmp(argv[i], "--k")) k = strtoul(argv[++i], NULL, 10);
    else if (i + 1 < argc && !strcmp(argv[i], "--items")) n_items = strtoul(argv[++i], NULL, 10);
    else if (i + 1 < argc && !strcmp(argv[i], "--calls")) calls = strtoul(argv[++i], NULL, 10);
    else {
      fprintf(stderr, "usage: recd-rank-bench [--candidates N] [--k N] [--items N] [--calls N] "
                      "[--categories N] [--skew] [--no-mmr]\n");
      return 2;
    }
  }
  if (n_cats == 0) n_cats = 1;
  char path[] = "/tmp/recd-rank-bench.XXXXXX";
  int fd = mkstemp(path);
  FILE *fp = fdopen(fd, "w");
  fprintf(fp, "item_id\tcategory\tprice\tin_stock\tpopularity\tmargin\n");
  for (size_t i = 0; i < n_items; i++)
    fprintf(fp, "i%zu\tc%zu\t%.2f\t%d\t%.1f\t0.2\n", i, i % n_cats, 1 + 99 * uniform(), uniform() < 0.95,
            1000 * uniform());
  fclose(fp);
  catalog *c;
  rec_error err = {0};
  if (catalog_load(path, &c, &err)) {
    fprintf(stderr, "%s\n", err.msg);
    return 1;
  }
  unlink(path);
  float *emb = malloc(n_items * dim * sizeof *emb);
  for (size_t i = 0; i < n_items; i++) {
    double s = 0;
    for (size_t d = 0; d < dim; d++) s += pow(emb[i * dim + d] = (float)uniform() - 0.5f, 2);
    for (size_t d = 0; d < dim; d++) emb[i * dim + d] /= (float)sqrt(s);
  }
  rec_candidate *cands = calloc(n_cands, sizeof *cands);
  for (size_t i = 0; i < n_cands; i++) {
    cands[i].item = (uint32_t)((i * 7919) % n_items);
    for (int s = 0; s < REC_SRC_COUNT; s++)
      if (uniform() < 0.6 || s == 0) {
        cands[i].sources |= 1u << s;
        cands[i].raw[s] = (float)uniform() + (skew && cands[i].item % n_cats == 0 ? 1.0f : 0.0f);
      }
  }
  rank_config *cfg;
  rank_config_load(NULL, &cfg, &err);
  if (!mmr) rank_config_set(cfg, "diversity.mmr", "false", &err);
  rank_items it = {.catalog = c, .emb = emb, .dim = dim};
  rank_req r = {.k = k, .cfg = cfg, .segment = 2, .mean_price = 40, .now = 1700000000};
  arena a;
  arena_init(&a, 1 << 16);
  int64_t *ns = malloc(calls * sizeof *ns);
  double sum = 0;
  size_t slate = 0, most = 0;
  for (size_t i = 0; i < calls; i++) {
    rank_result res;
    int64_t t0 = rec_mono_ns();
    rank_slate(&it, cands, n_cands, &r, &a, &res);
    ns[i] = rec_mono_ns() - t0;
    sum += (double)ns[i];
    slate = res.n;
    if (i == 0) most = largest_category(c, &res);
    arena_reset(&a);
  }
  qsort(ns, calls, sizeof *ns, by_i64);
  printf("machine: %ld cores; one thread\n", sysconf(_SC_NPROCESSORS_ONLN));
  printf("rank_slate: %zu candidates, k %zu, %zu-item catalog, dim %zu, MMR %s (pool %u), "
         "category share %.2f of %zu categories%s\n", n_cands, k, n_items, dim, mmr ? "on" : "off",
         cfg->mmr_pool, (double)cfg->category_share, n_cats, skew ? ", skewed to one" : "");
  printf("  %zu calls: mean %.1f us, median %.1f us, p99 %.1f us (slate of %zu, %zu of one category)\n",
         calls, sum / (double)calls / 1000, (double)ns[calls / 2] / 1000, (double)ns[calls * 99 / 100] / 1000,
         slate, most);
  free(ns);
  arena_destroy(&a);
  rank_config_free(cfg);
  free(cands);
  free(emb);
  catalog_free(c);
  return 0;
}
