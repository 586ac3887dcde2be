/* tests/ranking/test_experiments.c - layered experiments: the file's rules
 * and errors, assignment shares and independence over 100k ids, share
 * changes, per-arm settings and their combinations across layers; and
 * attribution of events to the slates an arm served. */
#include "ranking/experiments.h"
#include "server/attribution.h"
#include "server/metrics.h"
#include "tests/test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static experiments *parse(const char *text) {
  experiments *e = NULL;
  rec_error err = {0};
  int rc = experiments_parse(text, strlen(text), "exp.conf", &e, &err);
  if (rc) fprintf(stderr, "\n  %s\n", err.msg);
  CU_ASSERT_EQUAL(rc, 0);
  return e;
}

/* Parsing 'text' fails REC_EINVAL with exactly 'want'. */
static void refused(const char *text, const char *want) {
  experiments *e = (experiments *)&e;
  rec_error err = {0};
  CU_ASSERT_EQUAL(experiments_parse(text, strlen(text), "exp.conf", &e, &err), REC_EINVAL);
  CU_ASSERT_PTR_EQUAL(e, (experiments *)&e);
  if (strcmp(err.msg, want)) fprintf(stderr, "\n  got:  %s\n  want: %s\n", err.msg, want);
  CU_ASSERT_STRING_EQUAL(err.msg, want);
}

static const char *TWO_LAYERS =
    "# two layers\n"
    "layer.ranker.salt = r-1\n"
    "layer.ranker.arm.control.share = 3000\n"
    "layer.ranker.arm.lowmmr.share = 3000\n"
    "layer.ranker.arm.lowmmr.set.diversity.mmr_lambda = 0.3\n"
    "layer.ranker.arm.holdout.share = 1000\n"
    "layer.ranker.arm.holdout.holdout = true\n"
    "layer.blend.salt = b-1\n"
    "layer.blend.unit = session\n"
    "layer.blend.control = base\n"
    "layer.blend.arm.base.share = 5000\n"
    "layer.blend.arm.ann.share = 5000\n"
    "layer.blend.arm.ann.set.blend.ann = 0.9\n";

static void parses_layers_and_arms(void) {
  experiments *e = parse(TWO_LAYERS);
  CU_ASSERT_FATAL(e != NULL);
  CU_ASSERT_EQUAL(e->n_layers, 2);
  CU_ASSERT_STRING_EQUAL(e->layers[0].name, "ranker");
  CU_ASSERT_EQUAL(e->layers[0].n_arms, 3);
  CU_ASSERT_EQUAL(e->layers[0].control, 0);
  CU_ASSERT_EQUAL(e->layers[0].unit, EXP_UNIT_USER);
  CU_ASSERT(e->layers[0].arms[2].holdout);
  CU_ASSERT_EQUAL(e->layers[1].unit, EXP_UNIT_SESSION);
  CU_ASSERT_EQUAL(e->layers[1].control, 0);
  CU_ASSERT_STRING_EQUAL(e->layers[1].arms[1].set_key[0], "blend.ann");
  experiments_free(e);
}

static void bad_files_name_line_and_rule(void) {
  refused("layer.a.salt = s\nlayer.a.arm.x.share = 20000\n",
          "exp.conf:2: layer.a.arm.x.share: must be an integer in [0, 10000] (basis points), got '20000'");
  refused("layer.a.salt = s\nlayer.a.arm.x.share = 6000\nlayer.a.arm.y.share = 5000\n",
          "exp.conf: layer a: shares add up to 11000 basis points, more than 10000");
  refused("layer.a.arm.x.share = 10\n", "exp.conf: layer a has no salt (layer.a.salt)");
  refused("layer.a.salt = s\nlayer.a.salt = t\n", "exp.conf:2: layer.a.salt is set twice");
  refused("layer.a.salt = s\nlayer.a.arm.x.share = 10\nlayer.b.salt = s\nlayer.b.arm.x.share = 10\n",
          "exp.conf: layers a and b share the salt 's'; their assignments would not be independent");
  refused("layer.a b.salt = s\n", "exp.conf:1: layer name 'a b' must be 1 to 32 of A-Z a-z 0-9 _ -");
  refused("layer.a.salt = s\nlayer.a.arm.h.share = 10\nlayer.a.arm.h.holdout = true\nlayer.a.arm.h.bundle = x\n",
          "exp.conf: layer a arm h: a holdout serves popularity only; it takes no set.* or bundle");
  refused("layer.a.salt = s\nlayer.a.control = c\nlayer.a.arm.x.share = 10\n",
          "exp.conf: layer a: control arm 'c' is not declared");
  refused("layer.a.salt = s\nlayer.a.arm.x.color = red\n",
          "exp.conf:2: unknown setting 'layer.a.arm.x.color' (an arm has share, holdout, bundle and set.KEY)");
  refused("blend.ann = 0.5\n", "exp.conf:1: unknown setting 'blend.ann' (keys start with layer.NAME.)");
  refused("# nothing\n\n", "exp.conf: declares no layers (to end every experiment, stop each with recctl "
          "experiments stop, or run recd without --experiments)");
  refused("layer.a.salt = a\"b\n", "exp.conf:1: layer.a.salt: must be 1 to 64 of A-Z a-z 0-9 _ - . :");
}

/* Each arm's share of 100k ids is within 1 point of its share, and two
 * layers' assignments are independent: the joint shares are the products. */
static void shares_are_uniform_and_layers_independent(void) {
  experiments *e = parse(TWO_LAYERS);
  CU_ASSERT_FATAL(e != NULL);
  enum { N = 100000 };
  size_t count[2][EXP_MAX_ARMS + 1] = {{0}}, joint[EXP_MAX_ARMS + 1][EXP_MAX_ARMS + 1] = {{0}};
  char id[32];
  for (int i = 0; i < N; i++) {
    int n = snprintf(id, sizeof id, "user-%d", i);
    int a = exp_arm_of(&e->layers[0], exp_bucket(e->layers[0].salt, id, (size_t)n));
    int b = exp_arm_of(&e->layers[1], exp_bucket(e->layers[1].salt, id, (size_t)n));
    count[0][a + 1]++, count[1][b + 1]++, joint[a + 1][b + 1]++;
    /* deterministic */
    CU_ASSERT_EQUAL(a, exp_arm_of(&e->layers[0], exp_bucket(e->layers[0].salt, id, (size_t)n)));
  }
  double want0[] = {0.30, 0.30, 0.30, 0.10}; /* none, control, lowmmr, holdout */
  double want1[] = {0.0, 0.5, 0.5};
  for (int k = 0; k < 4; k++) CU_ASSERT(fabs((double)count[0][k] / N - want0[k]) <= 0.01);
  for (int k = 0; k < 3; k++) CU_ASSERT(fabs((double)count[1][k] / N - want1[k]) <= 0.01);
  for (int a = 0; a < 4; a++)
    for (int b = 1; b < 3; b++) {
      double p = (double)joint[a][b] / N, q = (double)count[0][a] / N * count[1][b] / N;
      CU_ASSERT(fabs(p - q) <= 0.01);
    }
  experiments_free(e);
}

static void share_changes_move_units_and_stay_bounded(void) {
  experiments *e = parse(TWO_LAYERS);
  CU_ASSERT_FATAL(e != NULL);
  rec_error err = {0};
  CU_ASSERT_EQUAL(experiments_set_share(e, 0, 1, 6000, &err), 0);
  CU_ASSERT_EQUAL(experiments_set_share(e, 0, 0, 4000, &err), REC_EINVAL);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "11000"));
  CU_ASSERT_EQUAL(e->layers[0].arms[0].share, 3000); /* unchanged on refusal */
  int moved = 0;
  for (int i = 0; i < 10000; i++) {
    char id[32];
    int n = snprintf(id, sizeof id, "u%d", i);
    moved += exp_arm_of(&e->layers[0], exp_bucket("r-1", id, (size_t)n)) == 1;
  }
  CU_ASSERT(moved > 5700 && moved < 6300);
  e->layers[0].stopped = true;
  CU_ASSERT_EQUAL(exp_arm_of(&e->layers[0], 0), -1);
  experiments_free(e);
}

static void arms_get_their_settings_in_every_combination(void) {
  experiments *e = parse(TWO_LAYERS);
  rank_config *base = NULL;
  CU_ASSERT_FATAL(e && rank_config_load(NULL, &base, NULL) == 0);
  exp_plan *p = NULL;
  rec_error err = {0};
  CU_ASSERT_EQUAL_FATAL(exp_compile(e, base, &p, &err), 0);
  bool seen[3][3] = {{false}};
  for (int i = 0; i < 2000; i++) {
    char id[32], sess[32];
    int n = snprintf(id, sizeof id, "user-%d", i), m = snprintf(sess, sizeof sess, "s-%d", i);
    exp_assignment as;
    exp_assign(p, id, (size_t)n, sess, (size_t)m, &as);
    CU_ASSERT_EQUAL(as.n_layers, 2);
    int a = as.arm[0], b = as.arm[1];
    /* the session decides the session layer */
    CU_ASSERT_EQUAL(b, exp_arm_of(&e->layers[1], exp_bucket("b-1", sess, (size_t)m)));
    CU_ASSERT_EQUAL(as.holdout, a == 2);
    CU_ASSERT_EQUAL(as.cfg->mmr_lambda, a == 1 ? 0.3f : 0.7f);
    CU_ASSERT_EQUAL(as.cfg->weight[REC_SRC_ANN], b == 1 ? 0.9f : 0.2f);
    CU_ASSERT_EQUAL(as.cfg->weight[REC_SRC_ITEM_CF], 0.2f);
    if (a >= 0 && b >= 0) seen[a][b] = true;
  }
  CU_ASSERT(seen[1][1] && seen[0][0] && seen[1][0] && seen[0][1]);
  exp_plan_free(p);
  /* Combinations share the base's lists unless an arm sets one. */
  rank_config *listed = NULL;
  CU_ASSERT_EQUAL_FATAL(rank_config_load(NULL, &listed, NULL), 0);
  CU_ASSERT_EQUAL(rank_config_set(listed, "rules.blocked_items", "b1, b2", &err), 0);
  experiments *lists = parse("layer.a.salt = s\nlayer.a.arm.x.share = 5000\nlayer.a.arm.x.set.blend.ann = 0.1\n"
                             "layer.a.arm.y.share = 5000\nlayer.a.arm.y.set.rules.blocked_items = b3\n");
  CU_ASSERT_EQUAL_FATAL(exp_compile(lists, listed, &p, &err), 0);
  for (int i = 0; i < 200; i++) {
    char id[16];
    int n = snprintf(id, sizeof id, "v%d", i);
    exp_assignment as;
    exp_assign(p, id, (size_t)n, NULL, 0, &as);
    CU_ASSERT_EQUAL(as.cfg->n_blocked, as.arm[0] == 1 ? 1 : 2);
    CU_ASSERT_STRING_EQUAL(as.cfg->blocked[0], as.arm[0] == 1 ? "b3" : "b1");
    if (as.arm[0] == 0) CU_ASSERT_PTR_EQUAL(as.cfg->blocked, exp_plan_base(p)->blocked);
  }
  exp_plan_free(p); /* frees each list once (valgrind and ASan check) */
  experiments_free(lists);
  rank_config_free(listed);
  /* A setting no ranking key knows, or out of range, is refused naming the arm. */
  experiments *bad = parse("layer.a.salt = s\nlayer.a.arm.x.share = 10\nlayer.a.arm.x.set.diversity.mmr_lambda = 3\n");
  CU_ASSERT_EQUAL(exp_compile(bad, base, &p, &err), REC_EINVAL);
  CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "layer a arm x: set.diversity.mmr_lambda: "));
  experiments_free(bad);
  experiments_free(e);
  rank_config_free(base);
}

static void attribution_counts_what_slates_led_to(void) {
  attribution *t = NULL;
  CU_ASSERT_EQUAL_FATAL(attribution_new(4, 1 << 20, 60000, &t), 0);
  uint64_t items[3] = {attribution_hash("i1", 2), attribution_hash("i2", 2), attribution_hash("i3", 2)};
  int slot = 7;
  attribution_served(t, "r1", "alice", 5, &slot, 1, items, 3, 1000000);
  attribution_event(t, "r1", "alice", 5, "i2", 2, 4, 0, 0, 1000100);    /* click */
  attribution_event(t, "r1", "alice", 5, "i2", 2, 4, 0, 0, 1000200);    /* the same click again */
  attribution_event(t, "r1", "mallory", 7, "i1", 2, 4, 0, 0, 1000300);  /* not her slate */
  attribution_event(t, "", "alice", 5, "i3", 2, 3, 2, 10.0, 1000400);   /* purchase, no id: last slate */
  attribution_event(t, "", "alice", 5, "i9", 2, 3, 1, 99.0, 1000500);   /* not shown */
  attribution_event(t, "", "alice", 5, "i1", 2, 3, 1, 5.0, 1000000 + 61000); /* out of the window */
  arm_outcomes o;
  attribution_outcomes(t, slot, &o);
  CU_ASSERT_EQUAL(o.slates, 1);
  CU_ASSERT_EQUAL(o.items, 3);
  CU_ASSERT_EQUAL(o.clicks, 1);
  CU_ASSERT_EQUAL(o.clicked_slates, 1);
  CU_ASSERT_EQUAL(o.purchases, 1);
  CU_ASSERT_EQUAL(o.purchased_slates, 1);
  CU_ASSERT_DOUBLE_EQUAL(o.revenue, 20.0, 1e-9);
  CU_ASSERT_DOUBLE_EQUAL(o.revenue_sq, 400.0, 1e-9);
  /* Two users' slates under one request id are two slates. */
  attribution_served(t, "shared", "carol", 5, &slot, 1, items, 3, 1000600);
  attribution_served(t, "shared", "dave", 4, &slot, 1, items, 3, 1000700);
  attribution_event(t, "shared", "carol", 5, "i1", 2, 4, 0, 0, 1000800);
  attribution_event(t, "shared", "dave", 4, "i1", 2, 4, 0, 0, 1000800);
  attribution_outcomes(t, slot, &o);
  CU_ASSERT_EQUAL(o.slates, 3);
  CU_ASSERT_EQUAL(o.clicks, 3);
  /* Past the capacity the oldest slate is forgotten; its events count for nobody. */
  for (int i = 0; i < 4; i++) {
    char rid[8];
    snprintf(rid, sizeof rid, "x%d", i);
    attribution_served(t, rid, "bob", 3, &slot, 1, items, 3, 2000000);
  }
  attribution_event(t, "r1", "alice", 5, "i1", 2, 4, 0, 0, 2000100);
  attribution_event(t, "x3", "bob", 3, "i1", 2, 4, 0, 0, 2000100);
  attribution_outcomes(t, slot, &o);
  CU_ASSERT_EQUAL(o.slates, 7);
  CU_ASSERT_EQUAL(o.clicks, 4);
  attribution_free(t);
}

void suite_experiments(void) {
  static const test_case cases[] = {
      {"parses_layers_and_arms", parses_layers_and_arms},
      {"bad_files_name_line_and_rule", bad_files_name_line_and_rule},
      {"shares_are_uniform_and_layers_independent", shares_are_uniform_and_layers_independent},
      {"share_changes_move_units_and_stay_bounded", share_changes_move_units_and_stay_bounded},
      {"arms_get_their_settings_in_every_combination", arms_get_their_settings_in_every_combination},
      {"attribution_counts_what_slates_led_to", attribution_counts_what_slates_led_to},
      {NULL, NULL}};
  test_add_suite("experiments", cases);
}
