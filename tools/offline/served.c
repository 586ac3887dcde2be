/* tools/offline/served.c - see served.h. */
#include "tools/offline/served.h"
#include "rec/v1/ranking.pb-c.h"
#include "retrieval/bundle_write.h"
#include "retrieval/retrieve.h"
#include "server/app.h"
#include "server/config.h"
#include "server/handlers.h"
#include "server/online.h"
#include "server/rpc.h"
#include "common/log.h"
#include "tools/offline/pipeline.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* One CSV field, quoted (RFC 4180) when it holds a comma, quote or line break. */
static void field(FILE *fp, const char *s) {
  if (!strpbrk(s, ",\"\r\n")) {
    fputs(s, fp);
    return;
  }
  fputc('"', fp);
  for (; *s; s++) {
    if (*s == '"') fputc('"', fp);
    fputc(*s, fp);
  }
  fputc('"', fp);
}

/* The training side of the split as an interactions CSV in the default
 * columns (those the dataset has). */
static int write_training(const dataset *d, const bool *train, const char *path, rec_error *err) {
  FILE *fp = fopen(path, "w");
  if (!fp) return rec_fail(err, REC_EIO, "%s: %s", path, strerror(errno));
  fprintf(fp, "user_id,item_id%s,quantity%s,rating\n", d->has_time ? ",timestamp" : "", d->has_price ? ",price" : "");
  for (size_t e = 0; e < d->n_events; e++) {
    const ds_event *x = &d->events[e];
    if (!train[e]) continue;
    field(fp, d->user_ids[x->user]);
    fputc(',', fp);
    field(fp, d->items[x->item].id);
    if (d->has_time) fprintf(fp, ",%lld", (long long)x->time);
    fprintf(fp, ",%.9g", (double)x->quantity);
    if (d->has_price) {
      if (x->priced) fprintf(fp, ",%.9g", (double)x->price);
      else fputc(',', fp);
    }
    if (isnan(x->rating)) fputs(",\n", fp);
    else fprintf(fp, ",%.9g\n", (double)x->rating);
  }
  bool ok = !ferror(fp);
  if (fclose(fp) != 0) ok = false;
  return ok ? 0 : rec_fail(err, REC_EIO, "%s: write failed", path);
}

/* recd's application on 'bundle_dir', as recd sets it up. */
static int open_app(const char *bundle_dir, const char *ranking_config, app *ap, recd_config *cfg, rec_error *err) {
  static char flag_b[4200], flag_r[4200];
  snprintf(flag_b, sizeof flag_b, "--bundle=%s", bundle_dir);
  snprintf(flag_r, sizeof flag_r, "--ranking_config=%s", ranking_config ? ranking_config : "");
  char *argv[] = {"recd", flag_b, flag_r, "--call_log=off", NULL};
  FILE *devnull = fopen("/dev/null", "w");
  int rc = config_parse(4, argv, cfg, devnull ? devnull : stderr, err);
  if (devnull) fclose(devnull);
  if (rc) return rc;
  retrieve_thread_init();
  rec_log_set_level(REC_LOG_WARN); /* recd's load lines are not the evaluation's output */
  app_init(ap, cfg);
  char old_v[REC_ID_MAX + 1], new_v[REC_ID_MAX + 1];
  if (online_new(&ap->online) != 0) {
    app_destroy(ap);
    return rec_fail(err, REC_ENOMEM, "out of memory");
  }
  if ((rc = app_reload(ap, cfg->bundle, old_v, new_v, err))) {
    online_free(ap->online);
    app_destroy(ap);
  }
  return rc;
}

int served_lists(const dataset *d, const bool *train, int64_t now, const build_opts *o,
                 const char *ranking_config, const uint32_t *users, size_t n_test, size_t k, uint32_t *lists,
                 size_t *n_list, rec_error *err) {
  char dir[] = "/tmp/recctl-served.XXXXXX", csv[64], bundle_dir[64];
  if (!mkdtemp(dir)) return rec_fail(err, REC_EIO, "served: cannot make a temporary directory: %s", strerror(errno));
  snprintf(csv, sizeof csv, "%s/train.csv", dir);
  snprintf(bundle_dir, sizeof bundle_dir, "%s/bundle", dir);
  int rc = write_training(d, train, csv, err);
  /* The bundle `recctl build` would make of the training side: the same
   * options, the interactions in the default columns. */
  build_opts bo = *o;
  ds_schema s = o->schema;
  s.user = DS_SCHEMA_DEFAULT.user, s.item = DS_SCHEMA_DEFAULT.item, s.time = DS_SCHEMA_DEFAULT.time;
  s.quantity = DS_SCHEMA_DEFAULT.quantity, s.price = DS_SCHEMA_DEFAULT.price, s.event = NULL;
  s.rating = DS_SCHEMA_DEFAULT.rating;
  bo.schema = s;
  bo.interactions = csv;
  bo.out = bundle_dir;
  bo.evaluate = false;
  bo.tune = false; /* the split's own choices, made inside its training side */
  bo.quiet = true;
  bo.version = "served-eval";
  if (!rc) rc = pipeline_build(&bo, err);
  app ap;
  recd_config cfg;
  bool opened = !rc && !(rc = open_app(bundle_dir, ranking_config, &ap, &cfg, err));
  arena a;
  arena_init(&a, 0);
  for (size_t t = 0; opened && !rc && t < n_test; t++) {
    Rec__V1__Context c = REC__V1__CONTEXT__INIT;
    c.time_unix_ms = now > 0 && now < INT64_MAX / 1000 ? now * 1000 : 0; /* not Unix seconds: the clock */
    Rec__V1__RecommendRequest q = REC__V1__RECOMMEND_REQUEST__INIT;
    q.user_id = d->user_ids[users[t]];
    q.k = (int32_t)k;
    q.context = &c;
    rpc_ctx ctx;
    rpc_local_begin(&ctx, &a, &ap, INT64_MAX);
    const ProtobufCMessage *out = NULL;
    int r = rpc_local_call(&ctx, &h_recommend, &q.base, &out);
    size_t m = 0;
    if (r == 0) {
      const Rec__V1__RecommendResponse *res = (const Rec__V1__RecommendResponse *)out;
      for (size_t i = 0; i < res->n_items && m < k; i++)
        if (dataset_find_item(d, res->items[i]->item_id, &lists[t * k + m])) m++;
    } else {
      rc = rec_fail(err, r, "served: Recommend for user '%.100s' failed: %s", q.user_id, ctx.err.msg);
    }
    n_list[t] = m;
    rpc_local_end(&ctx);
    arena_reset(&a);
  }
  arena_destroy(&a);
  if (opened) {
    online_free(ap.online);
    app_destroy(&ap);
  }
  bundle__remove_tree(bundle_dir);
  unlink(csv);
  rmdir(dir);
  return rc;
}
