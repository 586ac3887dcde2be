/* tests/ranking/test_config.c - the ranking tier's settings: defaults, a file
 * using every key, errors naming file:line, key and range, segment overrides
 * whatever the order, and the list keys. */
#include "ranking/config.h"
#include "tests/test.h"

#include <stdlib.h>
#include <string.h>

/* Loads 'text' from a file; fails the test unless it loads. */
static rank_config *load_text(const char *text) {
  const char *p = test_path("rank.conf");
  test_write_file(p, text);
  rank_config *c = NULL;
  rec_error e = {0};
  int rc = rank_config_load(p, &c, &e);
  if (rc) fprintf(stderr, "\n  %s\n", e.msg);
  CU_ASSERT_EQUAL(rc, 0);
  return c;
}

/* Loading 'text' fails with REC_EINVAL and exactly "PATH" + 'want'; *out is untouched. */
static void refused(const char *text, const char *want) {
  const char *p = test_path("bad.conf");
  test_write_file(p, text);
  rank_config *c = (rank_config *)&c; /* a sentinel the loader must not overwrite */
  rec_error e = {0};
  CU_ASSERT_EQUAL(rank_config_load(p, &c, &e), REC_EINVAL);
  CU_ASSERT_PTR_EQUAL(c, (rank_config *)&c);
  char full[1024];
  snprintf(full, sizeof full, "%s%s", p, want);
  if (strcmp(e.msg, full)) fprintf(stderr, "\n  got:  %s\n  want: %s\n", e.msg, full);
  CU_ASSERT_STRING_EQUAL(e.msg, full);
}

static void soft_equal(const rank_soft *s, float soft_ratio, float penalty, float cap,
                       float upsell, float upsell_price, float margin) {
  CU_ASSERT_EQUAL(s->price_soft_ratio, soft_ratio);
  CU_ASSERT_EQUAL(s->price_penalty, penalty);
  CU_ASSERT_EQUAL(s->price_cap_ratio, cap);
  CU_ASSERT_EQUAL(s->upsell_factor, upsell);
  CU_ASSERT_EQUAL(s->upsell_price_weight, upsell_price);
  CU_ASSERT_EQUAL(s->margin_weight, margin);
}

static void defaults(void) {
  rank_config *c = NULL;
  CU_ASSERT_EQUAL_FATAL(rank_config_load(NULL, &c, NULL), 0);
  CU_ASSERT_EQUAL(c->cand_ann, 200);
  CU_ASSERT_EQUAL(c->cand_itemcf, 200);
  CU_ASSERT_EQUAL(c->cand_popularity, 100);
  CU_ASSERT_EQUAL(c->weight[REC_SRC_ANN], 0.2f);
  CU_ASSERT_EQUAL(c->weight[REC_SRC_ITEM_CF], 0.2f);
  CU_ASSERT_EQUAL(c->weight[REC_SRC_POPULARITY], 0.1f);
  CU_ASSERT_EQUAL(c->weight[REC_SRC_EASE], 1.0f);
  CU_ASSERT_EQUAL(c->norm, NORM_MAX);
  CU_ASSERT_EQUAL(c->repurchase_block, 0.5f);
  CU_ASSERT_EQUAL(c->repurchase_due, 1.0f);
  CU_ASSERT_EQUAL(c->repurchase_boost, 0.15f);
  soft_equal(&c->soft, 1.5f, 0.8f, 2.0f, 0.1f, 0.2f, 0.0f);
  for (int s = 0; s < RANK_SEGMENTS; s++)
    soft_equal(&c->segment[s], 1.5f, 0.8f, 2.0f, 0.1f, 0.2f, 0.0f);
  CU_ASSERT_TRUE(c->mmr);
  CU_ASSERT_EQUAL(c->mmr_lambda, 0.7f);
  CU_ASSERT_EQUAL(c->mmr_pool, 200);
  CU_ASSERT_EQUAL(c->category_share, 0.5f);
  CU_ASSERT_PTR_NULL(c->blocked);
  CU_ASSERT_EQUAL(c->n_blocked, 0);
  CU_ASSERT_PTR_NULL(c->pins);
  CU_ASSERT_EQUAL(c->n_pins, 0);
  CU_ASSERT_PTR_NULL(c->boosts);
  CU_ASSERT_EQUAL(c->n_boosts, 0);
  CU_ASSERT_STRING_EQUAL(RANK_SEGMENT_NAMES[0], "small");
  CU_ASSERT_STRING_EQUAL(RANK_SEGMENT_NAMES[3], "high");
  rank_config_free(c);
  rank_config_free(NULL);
}

static void a_file_with_every_key(void) {
  rank_config *c = load_text("# ranking\n"
                             "candidates.ann = 300\n"
                             "candidates.itemcf = 50\n"
                             "candidates.popularity = 1\n"
                             "blend.ann = 0.5\n"
                             "blend.itemcf = 0.25\n"
                             "blend.popularity = 0\n"
                             "blend.normalization = minmax\n"
                             "repurchase.block_fraction = 0.25\n"
                             "repurchase.due_fraction = 0.75\n"
                             "repurchase.boost = 0.5\n"
                             "price.soft_ratio = 2\n"
                             "price.penalty = 0.5\n"
                             "price.cap_ratio = 0\n"
                             "upsell.factor = 0.3\n"
                             "upsell.price_weight = 1.5\n"
                             "margin.weight = 0.25\n"
                             "segment.small.price.cap_ratio = 3\n"
                             "segment.high.price.soft_ratio = 4\n"
                             "segment.high.price.penalty = 0.9\n"
                             "segment.average.upsell.factor = 0.05\n"
                             "segment.low.upsell.price_weight = 0\n"
                             "segment.low.margin.weight = 1\n"
                             "diversity.mmr = false\n"
                             "diversity.mmr_lambda = 1\n"
                             "diversity.mmr_pool = 100000\n"
                             "diversity.category_share = 0\n"
                             "rules.blocked_items = A-1, B 2 ,C\n"
                             "promotions.pin = P9@10, P1@1\n"
                             "promotions.boost = Z:2, A:0.1, M:10\n");
  CU_ASSERT_PTR_NOT_NULL_FATAL(c);
  CU_ASSERT_EQUAL(c->cand_ann, 300);
  CU_ASSERT_EQUAL(c->cand_itemcf, 50);
  CU_ASSERT_EQUAL(c->cand_popularity, 1);
  CU_ASSERT_EQUAL(c->weight[REC_SRC_ANN], 0.5f);
  CU_ASSERT_EQUAL(c->weight[REC_SRC_ITEM_CF], 0.25f);
  CU_ASSERT_EQUAL(c->weight[REC_SRC_POPULARITY], 0.0f);
  CU_ASSERT_EQUAL(c->norm, NORM_MINMAX);
  CU_ASSERT_EQUAL(c->repurchase_block, 0.25f);
  CU_ASSERT_EQUAL(c->repurchase_due, 0.75f);
  CU_ASSERT_EQUAL(c->repurchase_boost, 0.5f);
  soft_equal(&c->soft, 2, 0.5f, 0, 0.3f, 1.5f, 0.25f);
  soft_equal(&c->segment[0], 2, 0.5f, 3, 0.3f, 1.5f, 0.25f);   /* small */
  soft_equal(&c->segment[1], 2, 0.5f, 0, 0.3f, 0, 1);          /* low */
  soft_equal(&c->segment[2], 2, 0.5f, 0, 0.05f, 1.5f, 0.25f);  /* average */
  soft_equal(&c->segment[3], 4, 0.9f, 0, 0.3f, 1.5f, 0.25f);   /* high */
  CU_ASSERT_FALSE(c->mmr);
  CU_ASSERT_EQUAL(c->mmr_lambda, 1.0f);
  CU_ASSERT_EQUAL(c->mmr_pool, 100000);
  CU_ASSERT_EQUAL(c->category_share, 0.0f);
  CU_ASSERT_EQUAL_FATAL(c->n_blocked, 3);
  CU_ASSERT_STRING_EQUAL(c->blocked[0], "A-1");
  CU_ASSERT_STRING_EQUAL(c->blocked[1], "B 2");
  CU_ASSERT_STRING_EQUAL(c->blocked[2], "C");
  CU_ASSERT_EQUAL_FATAL(c->n_pins, 2); /* sorted by slot */
  CU_ASSERT_STRING_EQUAL(c->pins[0].item, "P1");
  CU_ASSERT_EQUAL(c->pins[0].slot, 1);
  CU_ASSERT_STRING_EQUAL(c->pins[1].item, "P9");
  CU_ASSERT_EQUAL(c->pins[1].slot, 10);
  CU_ASSERT_EQUAL_FATAL(c->n_boosts, 3); /* sorted by item id */
  CU_ASSERT_STRING_EQUAL(c->boosts[0].item, "A");
  CU_ASSERT_EQUAL(c->boosts[0].factor, 0.1f);
  CU_ASSERT_STRING_EQUAL(c->boosts[1].item, "M");
  CU_ASSERT_EQUAL(c->boosts[1].factor, 10.0f);
  CU_ASSERT_STRING_EQUAL(c->boosts[2].item, "Z");
  CU_ASSERT_EQUAL(c->boosts[2].factor, 2.0f);
  rank_config_free(c);
}

static void each_key_names_its_range(void) {
  refused("candidates.ann = 0\n", ":1: candidates.ann: must be an integer in [1, 100000], got '0'");
  refused("\ncandidates.itemcf = 2.5\n",
          ":2: candidates.itemcf: must be an integer in [1, 100000], got '2.5'");
  refused("candidates.popularity = 100001\n",
          ":1: candidates.popularity: must be an integer in [1, 100000], got '100001'");
  refused("blend.ann = -0.1\n", ":1: blend.ann: must be a number in [0, 1], got '-0.1'");
  refused("blend.itemcf = 1.5\n", ":1: blend.itemcf: must be a number in [0, 1], got '1.5'");
  refused("blend.popularity = lots\n",
          ":1: blend.popularity: must be a number in [0, 1], got 'lots'");
  refused("blend.normalization = zscore\n",
          ":1: blend.normalization: must be one of rank, minmax, max, got 'zscore'");
  refused("repurchase.block_fraction = 11\n",
          ":1: repurchase.block_fraction: must be a number in [0, 10], got '11'");
  refused("repurchase.due_fraction = -1\n",
          ":1: repurchase.due_fraction: must be a number in [0, 10], got '-1'");
  refused("repurchase.boost = 10.5\n",
          ":1: repurchase.boost: must be a number in [0, 10], got '10.5'");
  refused("price.soft_ratio = 0.5\n",
          ":1: price.soft_ratio: must be a number in [1, 100], got '0.5'");
  refused("price.penalty = 1.2\n", ":1: price.penalty: must be a number in [0, 1], got '1.2'");
  refused("price.cap_ratio = 0.5\n",
          ":1: price.cap_ratio: must be 0 or a number in [1, 100], got '0.5'");
  refused("price.cap_ratio = 101\n",
          ":1: price.cap_ratio: must be 0 or a number in [1, 100], got '101'");
  refused("upsell.factor = 2\n", ":1: upsell.factor: must be a number in [0, 1], got '2'");
  refused("upsell.price_weight = 11\n",
          ":1: upsell.price_weight: must be a number in [0, 10], got '11'");
  refused("margin.weight = 1.01\n", ":1: margin.weight: must be a number in [0, 1], got '1.01'");
  refused("diversity.mmr = yes\n", ":1: diversity.mmr: must be true or false, got 'yes'");
  refused("diversity.mmr_lambda = 1.1\n",
          ":1: diversity.mmr_lambda: must be a number in [0, 1], got '1.1'");
  refused("diversity.mmr_pool = 0\n",
          ":1: diversity.mmr_pool: must be an integer in [1, 100000], got '0'");
  refused("diversity.category_share = nan\n",
          ":1: diversity.category_share: must be a number in [0, 1], got 'nan'");
  refused("segment.high.price.penalty = 3\n",
          ":1: segment.high.price.penalty: must be a number in [0, 1], got '3'");
  refused("segment.low.price.cap_ratio = 0.5\n",
          ":1: segment.low.price.cap_ratio: must be 0 or a number in [1, 100], got '0.5'");
  refused("segment.huge.price.penalty = 0.5\n",
          ":1: segment.huge.price.penalty: unknown segment (small, low, average or high)");
  refused("segment.high.blend.ann = 0.5\n",
          ":1: segment.high.blend.ann: a segment may override only price.soft_ratio, "
          "price.penalty, price.cap_ratio, upsell.factor, upsell.price_weight or margin.weight");
  refused("blend.ann = 0.5\nblend.annn = 0.5\n", ":2: unknown setting 'blend.annn'");
  refused("blend.ann 0.5\n", ":1: want 'key = value'");
}

static void rules_across_keys_are_checked_after_the_file(void) {
  refused("blend.ann = 0\nblend.itemcf = 0\nblend.popularity = 0\nblend.ease = 0\n",
          ": blend.*: weights must not all be 0");
  refused("repurchase.block_fraction = 2\n",
          ": repurchase.due_fraction (1) must be >= repurchase.block_fraction (2)");
  refused("price.cap_ratio = 1.2\n",
          ": price.cap_ratio (1.2) must be 0 or >= price.soft_ratio (1.5)");
  refused("segment.average.price.soft_ratio = 3\n",
          ": segment.average.price.cap_ratio (2) must be 0 or >= "
          "segment.average.price.soft_ratio (3)");
  /* The same pairs are fine whatever order they come in. */
  rank_config *c = load_text("repurchase.due_fraction = 3\nrepurchase.block_fraction = 2\n"
                             "price.cap_ratio = 5\nprice.soft_ratio = 4\n"
                             "blend.ann = 0\nblend.itemcf = 0\n");
  CU_ASSERT_PTR_NOT_NULL_FATAL(c);
  CU_ASSERT_EQUAL(c->repurchase_block, 2.0f);
  CU_ASSERT_EQUAL(c->repurchase_due, 3.0f);
  CU_ASSERT_EQUAL(c->segment[2].price_cap_ratio, 5.0f);
  rank_config_free(c);
}

static void segment_overrides_ignore_order(void) {
  const char *orders[] = {
      "segment.high.price.penalty = 0.5\nprice.penalty = 0.3\n"
      "segment.low.upsell.factor = 0.1\nupsell.factor = 0.9\n",
      "price.penalty = 0.3\nupsell.factor = 0.9\n"
      "segment.low.upsell.factor = 0.1\nsegment.high.price.penalty = 0.5\n",
  };
  for (int i = 0; i < 2; i++) {
    rank_config *c = load_text(orders[i]);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_EQUAL(c->soft.price_penalty, 0.3f);
    CU_ASSERT_EQUAL(c->segment[3].price_penalty, 0.5f); /* high keeps its override */
    CU_ASSERT_EQUAL(c->segment[0].price_penalty, 0.3f);
    CU_ASSERT_EQUAL(c->segment[2].price_penalty, 0.3f);
    /* An override equal to the old default still beats a later base value. */
    CU_ASSERT_EQUAL(c->soft.upsell_factor, 0.9f);
    CU_ASSERT_EQUAL(c->segment[1].upsell_factor, 0.1f);
    CU_ASSERT_EQUAL(c->segment[3].upsell_factor, 0.9f);
    rank_config_free(c);
  }
}

typedef struct seen {
  char text[4096];
  size_t n;
} seen;

static void note_setting(void *arg, const char *key, const char *value) {
  seen *s = arg;
  size_t used = strlen(s->text);
  snprintf(s->text + used, sizeof s->text - used, "%s=%s\n", key, value);
  s->n++;
}

/* What the admin console shows: every key in force, overrides and list sizes. */
static void each_lists_every_setting_in_force(void) {
  rank_config *c = load_text("blend.ann = 0.25\nblend.normalization = minmax\ndiversity.mmr = false\n"
                             "segment.high.price.penalty = 0.5\nrules.blocked_items = a, b\n");
  CU_ASSERT_PTR_NOT_NULL_FATAL(c);
  seen s = {"", 0};
  rank_config_each(c, note_setting, &s);
  const char *want[] = {"\nblend.ann=0.25\n", "\nblend.normalization=minmax\n", "\ndiversity.mmr=false\n",
                        "candidates.ann=200\n", "\nprice.penalty=0.8\n", "\nsegment.high.price.penalty=0.5\n",
                        "\nrules.blocked_items=2 entries\n", "\npromotions.pin=0 entries\n"};
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) CU_ASSERT_PTR_NOT_NULL(strstr(s.text, want[i]));
  CU_ASSERT_PTR_NULL(strstr(s.text, "segment.low."));
  CU_ASSERT(s.n > 25);
  rank_config_free(c);
}

static void lists_trim_and_replace(void) {
  rank_config *c = load_text("rules.blocked_items = x\n"
                             "rules.blocked_items =   a ,b,\t c  \n" /* replaces the first list */
                             "promotions.pin = mail@example@3 ,  q @ 7\n"
                             "promotions.boost = k : 1.5\n"
                             "promotions.boost = \n"); /* an empty list clears */
  CU_ASSERT_PTR_NOT_NULL_FATAL(c);
  CU_ASSERT_EQUAL_FATAL(c->n_blocked, 3);
  CU_ASSERT_STRING_EQUAL(c->blocked[0], "a");
  CU_ASSERT_STRING_EQUAL(c->blocked[1], "b");
  CU_ASSERT_STRING_EQUAL(c->blocked[2], "c");
  CU_ASSERT_EQUAL_FATAL(c->n_pins, 2);
  CU_ASSERT_STRING_EQUAL(c->pins[0].item, "mail@example"); /* split at the last '@' */
  CU_ASSERT_EQUAL(c->pins[0].slot, 3);
  CU_ASSERT_STRING_EQUAL(c->pins[1].item, "q");
  CU_ASSERT_EQUAL(c->pins[1].slot, 7);
  CU_ASSERT_EQUAL(c->n_boosts, 0);
  CU_ASSERT_PTR_NULL(c->boosts);
  rank_config_free(c);
}

/* "rules.blocked_items = " followed by 'n' ids, the first of 'len0' bytes. */
static char *blocked_line(size_t n, size_t len0) {
  char *s = malloc(64 + len0 + n * 8);
  CU_ASSERT_PTR_NOT_NULL_FATAL(s);
  size_t at = (size_t)sprintf(s, "rules.blocked_items = ");
  memset(s + at, 'x', len0);
  at += len0;
  for (size_t i = 1; i < n; i++) at += (size_t)sprintf(s + at, ",i%zu", i);
  strcpy(s + at, "\n");
  return s;
}

static void list_limits(void) {
  char *ok = blocked_line(10000, 128);
  rank_config *c = load_text(ok);
  free(ok);
  CU_ASSERT_PTR_NOT_NULL_FATAL(c);
  CU_ASSERT_EQUAL(c->n_blocked, 10000);
  CU_ASSERT_EQUAL(strlen(c->blocked[0]), 128);
  CU_ASSERT_STRING_EQUAL(c->blocked[9999], "i9999");
  rank_config_free(c);
  char *many = blocked_line(10001, 1);
  refused(many, ":1: rules.blocked_items: more than 10000 entries");
  free(many);
  char *wide = blocked_line(2, 129);
  refused(wide, ":1: rules.blocked_items: entry 1: item id longer than 128 bytes "
                "('xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...')");
  free(wide);
}

static void list_errors(void) {
  refused("rules.blocked_items = a,,b\n", ":1: rules.blocked_items: entry 2 has an empty item id");
  refused("rules.blocked_items = a, b,\n", ":1: rules.blocked_items: entry 3 has an empty item id");
  refused("promotions.pin = a@1, b\n", ":1: promotions.pin: want ID@SLOT, got 'b'");
  refused("promotions.pin = a@\n", ":1: promotions.pin: want ID@SLOT, got 'a@'");
  refused("promotions.pin = @4\n", ":1: promotions.pin: entry 1 has an empty item id");
  refused("promotions.pin = a@0\n",
          ":1: promotions.pin: slot must be an integer in [1, 1000], got 'a@0'");
  refused("promotions.pin = a@1001\n",
          ":1: promotions.pin: slot must be an integer in [1, 1000], got 'a@1001'");
  refused("promotions.pin = a@two\n",
          ":1: promotions.pin: slot must be an integer in [1, 1000], got 'a@two'");
  refused("promotions.pin = a@3, b@1, c@3\n",
          ":1: promotions.pin: 'a@3' and 'c@3' both pin slot 3");
  refused("promotions.pin = a@3, a@4\n",
          ":1: promotions.pin: 'a@3' and 'a@4' pin the same item");
  refused("promotions.boost = a\n", ":1: promotions.boost: want ID:FACTOR, got 'a'");
  refused("promotions.boost = a:0.05\n",
          ":1: promotions.boost: factor must be a number in [0.1, 10], got 'a:0.05'");
  refused("promotions.boost = a:11\n",
          ":1: promotions.boost: factor must be a number in [0.1, 10], got 'a:11'");
  refused("promotions.boost = a:x\n",
          ":1: promotions.boost: factor must be a number in [0.1, 10], got 'a:x'");
  refused("promotions.boost = b:2, a:1, b:3\n", ":1: promotions.boost: item 'b' is boosted twice at once");
  refused("promotions.boost = b:2@2026-12-01T00:00:00Z/, b:3@/2026-12-02T00:00:00Z\n",
          ":1: promotions.boost: item 'b' is boosted twice at once");
  refused("promotions.pin = a@3@2026-12-01T00:00:00Z/2026-12-10T00:00:00Z, c@3@2026-12-09T00:00:00Z/\n",
          ":1: promotions.pin: 'a@3' and 'c@3' both pin slot 3");
  refused("promotions.pin = a@3@2026-12-10T00:00:00Z/2026-12-01T00:00:00Z\n",
          ":1: promotions.pin: window ends before it starts in 'a@3@2026-12-10T00:00:00Z/2026-12-01T00:00:00Z'");
  refused("promotions.pin = a@3@2026-12-01/\n",
          ":1: promotions.pin: window must be @FROM/TO, each empty or a UTC time like 2026-12-01T00:00:00Z, "
          "got 'a@3@2026-12-01/'");
  refused("promotions.boost = a:2@2026-13-01T00:00:00Z/\n",
          ":1: promotions.boost: window must be @FROM/TO, each empty or a UTC time like 2026-12-01T00:00:00Z, "
          "got 'a:2@2026-13-01T00:00:00Z/'");
  /* A bad line after lists were built frees them (ASan checks). */
  refused("rules.blocked_items = a, b\npromotions.pin = a@1\npromotions.boost = a:2\n"
          "segment.low.margin.weight = 1\nblend.ann = 2\n",
          ":5: blend.ann: must be a number in [0, 1], got '2'");
}

/* Pins and boosts with time windows: parsed to Unix seconds; the same slot
 * or item may be promoted twice when the windows do not meet. */
static void promotion_windows(void) {
  rank_config *c = load_text("promotions.pin = a@1@2026-12-01T00:00:00Z/2026-12-24T00:00:00Z, "
                             "b@1@2026-12-24T00:00:00Z/, a@2@/2026-12-01T00:00:00Z\n"
                             "promotions.boost = k:1.5@2026-12-01T12:30:15Z/, k:2@/2026-12-01T12:30:15Z, m:3\n");
  CU_ASSERT_PTR_NOT_NULL_FATAL(c);
  CU_ASSERT_EQUAL_FATAL(c->n_pins, 3);
  const int64_t dec1 = 1796083200, dec24 = 1798070400; /* 2026-12-01 and -24, 00:00 UTC */
  bool seen_a1 = false;
  for (size_t i = 0; i < c->n_pins; i++)
    if (strcmp(c->pins[i].item, "a") == 0 && c->pins[i].slot == 1) {
      seen_a1 = true;
      CU_ASSERT_EQUAL(c->pins[i].when.from_s, dec1);
      CU_ASSERT_EQUAL(c->pins[i].when.to_s, dec24);
      CU_ASSERT(rank_window_holds(c->pins[i].when, dec1));
      CU_ASSERT(!rank_window_holds(c->pins[i].when, dec24)); /* the end is not in it */
      CU_ASSERT(!rank_window_holds(c->pins[i].when, dec1 - 1));
    }
  CU_ASSERT(seen_a1);
  CU_ASSERT_EQUAL_FATAL(c->n_boosts, 3);
  CU_ASSERT_EQUAL(c->boosts[2].when.from_s, 0); /* m: always */
  CU_ASSERT(rank_window_holds(c->boosts[2].when, 0));
  int64_t t = dec1 + 12 * 3600 + 30 * 60 + 15;
  CU_ASSERT((c->boosts[0].when.from_s == t && c->boosts[1].when.to_s == t) ||
            (c->boosts[1].when.from_s == t && c->boosts[0].when.to_s == t));
  rank_config_free(c);
}

static void set_keeps_the_config_valid(void) {
  rank_config *c = NULL;
  CU_ASSERT_EQUAL_FATAL(rank_config_load(NULL, &c, NULL), 0);
  rec_error e = {0};
  CU_ASSERT_EQUAL(rank_config_set(c, "segment.low.price.penalty", "0.1", &e), 0);
  CU_ASSERT_EQUAL(rank_config_set(c, "price.penalty", "0.6", &e), 0);
  CU_ASSERT_EQUAL(c->segment[1].price_penalty, 0.1f);
  CU_ASSERT_EQUAL(c->segment[0].price_penalty, 0.6f);
  CU_ASSERT_EQUAL(rank_config_set(c, "promotions.pin", "a@2", &e), 0);
  CU_ASSERT_EQUAL(c->n_pins, 1);
  /* A refused setting leaves the config as it was. */
  CU_ASSERT_EQUAL(rank_config_set(c, "repurchase.block_fraction", "5", &e), REC_EINVAL);
  CU_ASSERT_STRING_EQUAL(e.msg,
                         "repurchase.due_fraction (1) must be >= repurchase.block_fraction (5)");
  CU_ASSERT_EQUAL(c->repurchase_block, 0.5f);
  CU_ASSERT_EQUAL(rank_config_set(c, "segment.high.price.soft_ratio", "9", &e), REC_EINVAL);
  CU_ASSERT_EQUAL(c->segment[3].price_soft_ratio, 1.5f);
  CU_ASSERT_EQUAL(rank_config_set(c, "price.penalty", "0.6", &e), 0); /* the override stayed off */
  CU_ASSERT_EQUAL(c->segment[3].price_penalty, 0.6f);
  CU_ASSERT_EQUAL(rank_config_set(c, "promotions.pin", "a@2, b@2", &e), REC_EINVAL);
  CU_ASSERT_EQUAL_FATAL(c->n_pins, 1);
  CU_ASSERT_STRING_EQUAL(c->pins[0].item, "a");
  CU_ASSERT_EQUAL(rank_config_set(c, "nope", "1", &e), REC_EINVAL);
  CU_ASSERT_STRING_EQUAL(e.msg, "unknown setting 'nope'");
  rank_config_free(c);
}

static void unreadable_file(void) {
  rank_config *c = NULL;
  rec_error e = {0};
  CU_ASSERT_EQUAL(rank_config_load("/no/such/rank.conf", &c, &e), REC_EIO);
  CU_ASSERT_PTR_NULL(c);
  CU_ASSERT_STRING_EQUAL(e.msg, "/no/such/rank.conf: No such file or directory");
}

static void usage_names_every_key(void) {
  const char *p = test_path("rank_usage.txt");
  FILE *fp = fopen(p, "w");
  CU_ASSERT_PTR_NOT_NULL_FATAL(fp);
  rank_config_usage(fp);
  fclose(fp);
  static char buf[16384];
  fp = fopen(p, "r");
  CU_ASSERT_PTR_NOT_NULL_FATAL(fp);
  buf[fread(buf, 1, sizeof buf - 1, fp)] = '\0';
  fclose(fp);
  const char *want[] = {"candidates.ann", "blend.normalization", "one of rank, minmax, max",
                        "price.cap_ratio", "range 0 or 1..100", "diversity.mmr ",
                        "segment.NAME.KEY", "rules.blocked_items", "promotions.pin",
                        "promotions.boost"};
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, want[i]));
}

void suite_rank_config(void) {
  static const test_case cases[] = {
      {"defaults", defaults},
      {"a_file_with_every_key", a_file_with_every_key},
      {"each_key_names_its_range", each_key_names_its_range},
      {"rules_across_keys_are_checked_after_the_file",
       rules_across_keys_are_checked_after_the_file},
      {"segment_overrides_ignore_order", segment_overrides_ignore_order},
      {"lists_trim_and_replace", lists_trim_and_replace},
      {"each_lists_every_setting_in_force", each_lists_every_setting_in_force},
      {"list_limits", list_limits},
      {"list_errors", list_errors},
      {"promotion_windows", promotion_windows},
      {"set_keeps_the_config_valid", set_keeps_the_config_valid},
      {"unreadable_file", unreadable_file},
      {"usage_names_every_key", usage_names_every_key},
      {NULL, NULL}};
  test_add_suite("rank_config", cases);
}
