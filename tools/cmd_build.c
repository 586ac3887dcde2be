/* tools/cmd_build.c - flags of `recctl build` and `recctl eval` into
 * build_opts; see `recctl build --help`. */
#include "tools/cmd_build.h"
#include "tools/offline/eval.h"
#include "tools/offline/pipeline.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char USAGE[] =
    "usage: recctl build --interactions CSV --catalog CSV --out DIR [options]\n"
    "       recctl eval  --interactions CSV --catalog CSV [--json FILE] [--chart FILE.svg] [options]\n\n"
    "data:\n"
    "  --schema FILE          'field = column name' lines mapping CSV columns\n"
    "  --col FIELD=COLUMN     one mapping (fields: user item time quantity price event rating\n"
    "                         c_item c_category c_subcategory c_brand c_price c_margin c_in_stock c_name)\n"
    "model:\n"
    "  --model twotower|als|ease  the ANN's embeddings (default twotower); ease: a rank --dim\n"
    "                         factorisation of EASE's weights (EASE is a source in every bundle)\n"
    "  --dim N --id-dim N --hidden N --epochs N --batch N --lr X --temperature X --seed N\n"
    "  --factors N --iterations N --regularization X --alpha X      (ALS)\n"
    "  --als-popularity X     ALS's popularity prior: + X x (its own score scale) x log(1 + users of\n"
    "                         the item), normalised (default: tuned, else 0 = none; at most 1000,\n"
    "                         the factors dropped: popularity's order)\n"
    "  --ease-lambda X        EASE's L2 weight (default: tuned, else 400; 0 = no EASE)\n"
    "  --ease-max-items N     items EASE's dense solve covers, the most frequent (default 16000,\n"
    "                         8 N^2 bytes of memory)\n"
    "  --ease-neighbours N    EASE weights kept per item, largest |weight| first (default 500)\n"
    "  --ease-recency-boost X the user's most recent item weighs 1+X in EASE's sum, the one N places\n"
    "  --ease-recency-scale S back 1+X*exp(-N/S) (default: tuned, else 3 and 20; 0 = all weigh 1;\n"
    "                         data without a time column: 0)\n"
    "  --neighbours N         item-CF neighbours per item (default 50)\n"
    "  --half-life-days X     popularity decay (default 90; 0 = none)\n"
    "  --threads N            OpenMP/OpenBLAS threads (default: all cores)\n"
    "bundle (build):\n"
    "  --index SPEC           FAISS index (default Flat up to 20000 items, else IVF<sqrt(items)>,Flat)\n"
    "  --ef N                 HNSW efSearch recorded in the bundle (default from the catalog\n"
    "                         size: 128 up to 500000 items, then 256)\n"
    "  --ef-construction N    HNSW build breadth (default 128 up to 100000 items, then 200)\n"
    "  --version V            bundle version (default <model>-<content hash>)\n"
    "  --no-eval              skip the holdout measurement recorded in the manifest\n"
    "  --no-tune              keep the hyper-parameters as given (default: EASE lambda, ALS\n"
    "                         regularization and alpha, two-tower temperature and epochs are\n"
    "                         chosen on a validation split of the training data, except those\n"
    "                         set by a flag; the manifest records the grid and the choice)\n"
    "  --tune-seconds S       no tuning trial starts after S seconds (default 900; 0 = no limit);\n"
    "                         the trials that did not run are recorded, the defaults stand for them\n"
    "eval:\n"
    "  --split user|global|both   per-user last-20% holdout, a global time cut, or both (default both)\n"
    "  --bootstrap N          bootstrap resamples for the intervals (default 1000)\n"
    "  --ranking-config F     settings of the 'served' row (recd --ranking_config); default: recd's\n"
    "  --no-served            skip the 'served' row (recd's own answers, from a bundle built on the\n"
    "                         training side)\n"
    "import (recctl import --catalog CSV [--interactions CSV] --out DIR):\n"
    "  --item-embeddings F.npy   (n_items, dim) float32, rows in catalog order\n"
    "  --users FILE              one user id per line, rows of --user-features\n"
    "  --user-features F.npy     (n_users, feature_dim) float32: the user tower's input\n"
    "  --layer W.npy:B.npy:ACT   user-tower layer, W (in, out), ACT relu|tanh|linear; repeat per layer\n"
    "  --quiet                no progress output\n";

typedef struct flagset {
  build_opts *o;
  const char **json, **chart, **split;
  long *bootstrap;
  eval_opts *ev;             /* recctl eval only, else NULL */
  import_opts *imp;          /* recctl import only, else NULL */
} flagset;

static int bad_num(const char *flag, const char *v) {
  fprintf(stderr, "recctl: %s: '%s' is not a valid number (see recctl build --help)\n", flag, v);
  return 2;
}

int flag_long(const char *flag, const char *v, long lo, long hi, long *out) {
  char *end;
  errno = 0;
  long n = strtol(v, &end, 10);
  if (!*v || *end || errno || n < lo || n > hi) {
    fprintf(stderr, "recctl: %s must be an integer in [%ld, %ld], got '%s'\n", flag, lo, hi, v);
    return 2;
  }
  *out = n;
  return 0;
}

static int get_float(const char *flag, const char *v, float *out) {
  char *end;
  errno = 0;
  float x = strtof(v, &end);
  if (!*v || *end || errno || !isfinite(x)) return bad_num(flag, v);
  *out = x;
  return 0;
}

/* Integer flags with their ranges, written to a size_t/int/uint64 via a long. */
static int int_flag(const char *a, const char *v, build_opts *o) {
  long n;
  int rc;
#define LONG(name, lo, hi, dst) \
  if (strcmp(a, name) == 0) return (rc = flag_long(a, v, lo, hi, &n)) ? rc : ((dst) = n, 0)
  if (strcmp(a, "--epochs") == 0) o->fixed |= TUNE_EPOCHS;
  LONG("--dim", 2, 1024, o->tt.dim);
  LONG("--id-dim", 1, 1024, o->tt.id_dim);
  LONG("--hidden", 1, 4096, o->tt.hidden);
  LONG("--epochs", 1, 10000, o->tt.epochs);
  LONG("--batch", 2, 65536, o->tt.batch);
  LONG("--seed", 0, 2147483647, o->tt.seed);
  LONG("--factors", 1, 1024, o->als.factors);
  LONG("--iterations", 1, 1000, o->als.iterations);
  LONG("--neighbours", 0, 1000, o->itemcf_neighbours);
  LONG("--ease-max-items", 2, 100000, o->ease_max_items);
  LONG("--ease-neighbours", 1, 100000, o->ease_per_item);
  LONG("--threads", 0, 256, o->threads);
  LONG("--ef", 1, 65536, o->ef_search);
  LONG("--ef-construction", 1, 65536, o->ef_construction);
#undef LONG
  return -1;
}

static int float_flag(const char *a, const char *v, build_opts *o) {
  float x;
  int rc;
#define FLT(name, dst) \
  if (strcmp(a, name) == 0) return (rc = get_float(a, v, &x)) ? rc : ((dst) = x, 0)
  o->fixed |= !strcmp(a, "--temperature") ? TUNE_TEMPERATURE : !strcmp(a, "--regularization") ? TUNE_REGULARIZATION
            : !strcmp(a, "--alpha") ? TUNE_ALPHA : !strcmp(a, "--ease-lambda") ? TUNE_EASE_LAMBDA : 0u;
  FLT("--lr", o->tt.lr);
  FLT("--temperature", o->tt.temperature);
  FLT("--regularization", o->als.regularization);
  FLT("--alpha", o->als.alpha);
#undef FLT
  if (strcmp(a, "--tune-seconds") == 0) {
    if ((rc = get_float(a, v, &x))) return rc;
    if (x < 0) return bad_num(a, v);
    o->tune_seconds = x;
    return 0;
  }
  if (strcmp(a, "--ease-recency-boost") == 0 || strcmp(a, "--ease-recency-scale") == 0) {
    if ((rc = get_float(a, v, &x))) return rc;
    bool boost = a[15] == 'b';
    if (boost ? !(x >= 0 && x <= 1000) : !(x > 0 && x <= 1e6)) return bad_num(a, v);
    o->fixed |= TUNE_EASE_RECENCY;
    *(boost ? &o->ease_recency_boost : &o->ease_recency_scale) = x;
    return 0;
  }
  if (strcmp(a, "--als-popularity") == 0) {
    if ((rc = get_float(a, v, &x))) return rc;
    if (!(x >= 0 && x <= ALS_PRIOR_MAX)) return bad_num(a, v);
    o->fixed |= TUNE_ALS_POPULARITY;
    o->als_popularity = x;
    return 0;
  }
  if (strcmp(a, "--ease-lambda") == 0) {
    if ((rc = get_float(a, v, &x))) return rc;
    if (x < 0) return bad_num(a, v);
    o->ease_lambda = x;
    return 0;
  }
  if (strcmp(a, "--half-life-days") == 0) {
    if ((rc = get_float(a, v, &x))) return rc;
    o->half_life_days = x;
    return 0;
  }
  return -1;
}

static int string_flag(const char *a, const char *v, flagset *f, char **storage) {
  build_opts *o = f->o;
  const char **dst = !strcmp(a, "--interactions") ? &o->interactions
                   : !strcmp(a, "--catalog") ? &o->catalog : !strcmp(a, "--out") ? &o->out
                   : !strcmp(a, "--model") ? &o->model : !strcmp(a, "--index") ? &o->index_type
                   : !strcmp(a, "--version") ? &o->version : !strcmp(a, "--json") ? f->json
                   : !strcmp(a, "--chart") ? f->chart : !strcmp(a, "--split") ? f->split
                   : f->ev && !strcmp(a, "--ranking-config") ? &f->ev->ranking_config : NULL;
  if (dst) {
    *dst = v;
    return 0;
  }
  if (strcmp(a, "--schema") == 0) {
    rec_error err = {0};
    if (ds_schema_load(v, &o->schema, storage, &err) == 0) return 0;
    fprintf(stderr, "recctl: %s\n", err.msg);
    return 2;
  }
  if (f->imp && (dst = !strcmp(a, "--item-embeddings") ? &f->imp->item_embeddings
                    : !strcmp(a, "--users") ? &f->imp->users
                    : !strcmp(a, "--user-features") ? &f->imp->user_features : NULL)) {
    *dst = v;
    return 0;
  }
  if (f->imp && strcmp(a, "--layer") == 0) {
    if (f->imp->n_layers == 2) {
      fprintf(stderr, "recctl: at most two --layer\n");
      return 2;
    }
    f->imp->layers[f->imp->n_layers++] = v;
    return 0;
  }
  if (strcmp(a, "--col") == 0) {
    char *eq = strchr(v, '=');
    if (eq) *eq = '\0';
    if (eq && ds_schema_set(&o->schema, v, eq + 1) == 0) return 0;
    fprintf(stderr, "recctl: --col wants FIELD=COLUMN with a known field, got '%s'\n", v);
    return 2;
  }
  return -1;
}

static int parse(int argc, char **argv, flagset *f, char **storage) {
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      fputs(USAGE, stdout);
      return 1;
    }
    if (!strcmp(a, "--no-eval")) { f->o->evaluate = false; continue; }
    if (!strcmp(a, "--no-tune")) { f->o->tune = false; continue; }
    if (f->ev && !strcmp(a, "--no-served")) { f->ev->served = false; continue; }
    if (!strcmp(a, "--quiet")) { f->o->quiet = true; continue; }
    if (i + 1 >= argc) {
      fprintf(stderr, "recctl: %s needs a value (see recctl build --help)\n", a);
      return 2;
    }
    const char *v = argv[++i];
    int rc = int_flag(a, v, f->o);
    if (rc < 0) rc = float_flag(a, v, f->o);
    if (rc < 0 && strcmp(a, "--bootstrap") == 0) rc = flag_long(a, v, 0, 100000, f->bootstrap);
    if (rc < 0) rc = string_flag(a, v, f, storage);
    if (rc < 0) {
      fprintf(stderr, "recctl: unknown option %s (see recctl build --help)\n", a);
      return 2;
    }
    if (rc) return rc;
  }
  const char *m = f->o->model;
  if (strcmp(m, "twotower") && strcmp(m, "als") && strcmp(m, "ease") && strcmp(m, "import")) {
    fprintf(stderr, "recctl: --model picks the embedding model of the ANN stage: twotower, als or ease, got '%s'\n",
            m);
    return 2;
  }
  if (!strcmp(m, "ease") && !(f->o->ease_lambda > 0)) {
    fprintf(stderr, "recctl: --model ease factorises EASE's weights: --ease-lambda must be above 0\n");
    return 2;
  }
  f->o->als.seed = f->o->tt.seed;
  return 0;
}

int cmd_build(int argc, char **argv) {
  build_opts o;
  build_opts_default(&o);
  const char *unused = NULL;
  long boot = 0;
  char *storage = NULL;
  flagset f = {&o, &unused, &unused, &unused, &boot, NULL, NULL};
  int rc = parse(argc, argv, &f, &storage);
  if (rc == 1) rc = 0;
  else if (!rc) {
    rec_error err = {0};
    if (pipeline_build(&o, &err) != 0) {
      fprintf(stderr, "recctl: build: %s\n", err.msg);
      rc = 1;
    }
  }
  free(storage);
  return rc;
}

int cmd_eval(int argc, char **argv) {
  eval_opts e = {.split = "both", .bootstrap = 1000, .served = true};
  build_opts_default(&e.b);
  const char *json = NULL, *chart = NULL, *split = "both";
  long boot = 1000;
  char *storage = NULL;
  flagset f = {&e.b, &json, &chart, &split, &boot, &e, NULL};
  int rc = parse(argc, argv, &f, &storage);
  if (rc == 1) rc = 0;
  else if (!rc && (!e.b.interactions || !e.b.catalog)) {
    fprintf(stderr, "recctl: eval needs --interactions and --catalog (see recctl build --help)\n");
    rc = 2;
  } else if (!rc) {
    e.json_path = json;
    e.chart_path = chart;
    e.split = split;
    e.bootstrap = (int)boot;
    rec_error err = {0};
    if (eval_run(&e, &err) != 0) {
      fprintf(stderr, "recctl: eval: %s\n", err.msg);
      rc = 1;
    }
  }
  free(storage);
  return rc;
}

int cmd_import(int argc, char **argv) {
  import_opts im = {0};
  build_opts_default(&im.b);
  im.b.model = "import";
  const char *unused = NULL;
  long boot = 0;
  char *storage = NULL;
  flagset f = {&im.b, &unused, &unused, &unused, &boot, NULL, &im};
  int rc = parse(argc, argv, &f, &storage);
  if (rc == 1) rc = 0;
  else if (!rc) {
    rec_error err = {0};
    if (pipeline_import(&im, &err) != 0) {
      fprintf(stderr, "recctl: import: %s\n", err.msg);
      rc = 1;
    }
  }
  free(storage);
  return rc;
}
