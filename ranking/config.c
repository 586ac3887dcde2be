/* ranking/config.c - the ranking tier's settings table (common/cfgtable) plus
 * what a table cannot say: per-segment overrides, list keys, and rules that
 * span keys. Overrides are kept apart from the base values and merged after
 * every change, so a segment inherits the base whatever order the file uses. */
#include "ranking/config.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/cfgtable.h"

const char *const RANK_SEGMENT_NAMES[RANK_SEGMENTS] = {"small", "low", "average", "high"};

enum {
  MAX_ID = 128,        /* bytes in an item id (rank_pin.item holds one plus NUL) */
  MAX_BLOCKED = 10000, /* ids in rules.blocked_items */
  MAX_BOOSTS = 10000,  /* entries in promotions.boost */
  MAX_SLOT = 1000,     /* highest promotions.pin slot, so also the most pins */
};

static const char *const NORMS[] = {"rank", "minmax", "max", NULL};

#define U32(f, lo, hi) .type = CFG_INT, .offset = offsetof(rank_config, f), \
                       .size = sizeof(uint32_t), .min = lo, .max = hi
#define NUM(f, lo, hi) .type = CFG_FLOAT, .offset = offsetof(rank_config, f), \
                       .size = sizeof(float), .min = lo, .max = hi
#define SOFT(f, lo, hi) NUM(soft.f, lo, hi)

static const cfg_field FIELDS[] = {
    {"candidates.ann", U32(cand_ann, 1, 100000), .def = "200",
     .help = "ANN candidates on the first round, at least 4 x (k + 1); x4 a round"},
    {"candidates.itemcf", U32(cand_itemcf, 1, 100000), .def = "200",
     .help = "item-CF candidates on the first round; x4 a round"},
    {"candidates.popularity", U32(cand_popularity, 1, 100000), .def = "100",
     .help = "popularity candidates on the first round, at least 2 x (k + 1); x4 a round"},
    {"candidates.ease", U32(cand_ease, 1, 100000), .def = "200",
     .help = "EASE candidates on the first round (bundles with EASE weights); x4 a round"},
    {"blend.ann", NUM(weight[REC_SRC_ANN], 0, 1), .def = "0.2",
     .help = "weight of the ANN score in the blend"},
    {"blend.itemcf", NUM(weight[REC_SRC_ITEM_CF], 0, 1), .def = "0.2",
     .help = "weight of the item-CF score in the blend"},
    {"blend.popularity", NUM(weight[REC_SRC_POPULARITY], 0, 1), .def = "0.1",
     .help = "weight of the popularity score in the blend"},
    {"blend.ease", NUM(weight[REC_SRC_EASE], 0, 1), .def = "1",
     .help = "weight of the EASE score in the blend (bundles with EASE weights; sources a bundle lacks "
             "leave the blend, the others' weights are scaled to sum to 1)"},
    {"blend.normalization", .type = CFG_ENUM, .offset = offsetof(rank_config, norm),
     .size = sizeof(int), .names = NORMS, .def = "max",
     .help = "per-source score normalisation before blending"},
    {"rules.exclude_purchased", .type = CFG_BOOL, .offset = offsetof(rank_config, exclude_purchased),
     .size = sizeof(bool), .def = "true",
     .help = "never recommend an item the user has bought and nobody buys twice (no repurchase cycle)"},
    {"repurchase.block_fraction", NUM(repurchase_block, 0, 10), .def = "0.5",
     .help = "bought within this share of its cycle: never recommended"},
    {"repurchase.due_fraction", NUM(repurchase_due, 0, 10), .def = "1.0",
     .help = "at least this share of its cycle since bought: due (>= block_fraction)"},
    {"repurchase.boost", NUM(repurchase_boost, 0, 10), .def = "0.15",
     .help = "due items' score x (1 + boost)"},
    {"price.soft_ratio", SOFT(price_soft_ratio, 1, 100), .def = "1.5",
     .help = "penalise items above this multiple of the user's mean price"},
    {"price.penalty", SOFT(price_penalty, 0, 1), .def = "0.8",
     .help = "score multiplier above the soft ratio"},
    {"price.cap_ratio", SOFT(price_cap_ratio, 1, 100), .zero_off = true, .def = "2.0",
     .help = "never above this multiple of the mean price (>= soft_ratio); 0 = off"},
    {"upsell.factor", SOFT(upsell_factor, 0, 1), .def = "0.1",
     .help = "strength of the upsell bonus"},
    {"upsell.price_weight", SOFT(upsell_price_weight, 0, 10), .def = "0.2",
     .help = "how much the upsell bonus grows with price"},
    {"margin.weight", SOFT(margin_weight, 0, 1), .def = "0",
     .help = "weight of the item's margin; 0 = off"},
    {"diversity.mmr", .type = CFG_BOOL, .offset = offsetof(rank_config, mmr),
     .size = sizeof(bool), .def = "true", .help = "pick the slate with MMR"},
    {"diversity.mmr_lambda", NUM(mmr_lambda, 0, 1), .def = "0.7",
     .help = "MMR trade-off; 1 = relevance only"},
    {"diversity.mmr_pool", U32(mmr_pool, 1, 100000), .def = "200",
     .help = "MMR picks among the best N candidates, then the next N"},
    {"diversity.category_share", NUM(category_share, 0, 1), .def = "0.5",
     .help = "at most ceil(share x k) items of a category per page; 0 = off"},
    {"explore.boost", NUM(explore_boost, 0, 10), .def = "0.5",
     .help = "items added live: score x (1 + boost / (1 + events / explore.fade_events)); 0 = no boost"},
    {"explore.fade_events", NUM(explore_fade_events, 1, 1000000), .def = "20",
     .help = "events an item added live gathers before its boost has halved"},
    {"explore.max_share", NUM(explore_max_share, 0, 1), .def = "0.2",
     .help = "at most ceil(share x k) items added live per page (unless nothing else fills it); 1 = no cap"},
};
enum { NFIELDS = sizeof FIELDS / sizeof FIELDS[0] };
_Static_assert(NFIELDS <= 64, "override masks hold one bit per field");
_Static_assert(sizeof(rank_norm) == sizeof(int), "CFG_ENUM stores an int");

/* The public struct first, so a rank_config* is also a rank_config_priv*. */
typedef struct rank_config_priv {
  rank_config pub;
  rank_soft over[RANK_SEGMENTS];     /* values set by segment.<name>.<key> */
  uint64_t overridden[RANK_SEGMENTS]; /* bit i: FIELDS[i] set for that segment */
  unsigned borrowed;                 /* lists owned by another config (rank_config_derive) */
} rank_config_priv;

enum { BORROWED_BLOCKED = 1, BORROWED_PINS = 2, BORROWED_BOOSTS = 4 };

/* Replaces one list of 'c': the old one is freed unless it was borrowed. */
static void *swap_list(rank_config *c, void *old, void *fresh, unsigned bit) {
  rank_config_priv *p = (rank_config_priv *)c;
  if (!(p->borrowed & bit)) free(old);
  p->borrowed &= ~bit;
  return fresh;
}

static int fallback(void *obj, const char *key, const char *value, rec_error *err);
static const cfg_table TABLE = {FIELDS, NFIELDS, fallback};

static const size_t SOFT_OFF = offsetof(rank_config, soft);

static bool is_soft(const cfg_field *f) {
  return f->offset >= SOFT_OFF && f->offset < SOFT_OFF + sizeof(rank_soft);
}

/* Every segment is the base with its own overrides on top. */
static void merge_segments(rank_config_priv *p) {
  for (int s = 0; s < RANK_SEGMENTS; s++) {
    p->pub.segment[s] = p->pub.soft;
    for (int i = 0; i < NFIELDS; i++) {
      if (!(p->overridden[s] >> i & 1)) continue;
      size_t off = FIELDS[i].offset - SOFT_OFF;
      memcpy((char *)&p->pub.segment[s] + off, (const char *)&p->over[s] + off, FIELDS[i].size);
    }
  }
}

/* The segment named by the 'len' bytes at 'name', or -1. */
static int segment_index(const char *name, size_t len) {
  for (int s = 0; s < RANK_SEGMENTS; s++)
    if (strlen(RANK_SEGMENT_NAMES[s]) == len && strncmp(RANK_SEGMENT_NAMES[s], name, len) == 0)
      return s;
  return -1;
}

/* "segment.<name>.<soft key>": validated like the base key, named in full. */
static int set_segment(rank_config_priv *p, const char *key, const char *value, rec_error *err) {
  const char *name = key + strlen("segment.");
  const char *dot = strchr(name, '.');
  int s = dot ? segment_index(name, (size_t)(dot - name)) : -1;
  if (s < 0)
    return rec_fail(err, REC_EINVAL, "%s: unknown segment (small, low, average or high)", key);
  const cfg_field *base = cfg_find(&TABLE, dot + 1, strlen(dot + 1));
  if (!base || !is_soft(base))
    return rec_fail(err, REC_EINVAL,
                    "%s: a segment may override only price.soft_ratio, price.penalty, "
                    "price.cap_ratio, upsell.factor, upsell.price_weight or margin.weight",
                    key);
  cfg_field f = *base;
  f.name = key;
  f.offset -= SOFT_OFF;
  int rc = cfg_set_field(&f, &p->over[s], value, err);
  if (rc == 0) p->overridden[s] |= UINT64_C(1) << (base - FIELDS);
  return rc;
}

/* Splits a comma-separated 'list' into trimmed elements, copied into one
 * block that holds the element pointers followed by the text, so a single
 * free() releases it. An all-blank list has no elements (*out = NULL). */
static int split_list(const char *key, const char *list, size_t max, char ***out, size_t *n,
                      rec_error *err) {
  size_t len = strlen(list), count = 1;
  for (const char *c = list; *c; c++) count += *c == ',';
  if (strspn(list, " \t") == len) count = 0;
  if (count > max) return rec_fail(err, REC_EINVAL, "%s: more than %zu entries", key, max);
  char **elems = NULL;
  if (count) {
    elems = malloc(count * sizeof *elems + len + 1); /* count <= max: no overflow */
    if (!elems) return rec_fail(err, REC_ENOMEM, "%s: out of memory", key);
    char *s = memcpy(elems + count, list, len + 1);
    for (size_t i = 0; i < count; i++) {
      char *next = strchr(s, ','); /* NULL after the last element */
      if (next) *next++ = '\0';
      elems[i] = cfg_trim(s);
      s = next;
    }
  }
  *out = elems;
  *n = count;
  return 0;
}

/* An id is 1..MAX_ID bytes; 'pos' is its 1-based entry in the list. */
static int check_id(const char *key, const char *id, size_t pos, rec_error *err) {
  if (!*id) return rec_fail(err, REC_EINVAL, "%s: entry %zu has an empty item id", key, pos);
  if (strlen(id) > MAX_ID)
    return rec_fail(err, REC_EINVAL, "%s: entry %zu: item id longer than %d bytes ('%.40s...')",
                    key, pos, MAX_ID, id);
  return 0;
}

static int set_blocked(rank_config *c, const char *value, rec_error *err) {
  const char *key = "rules.blocked_items";
  char **ids;
  size_t n;
  int rc = split_list(key, value, MAX_BLOCKED, &ids, &n, err);
  if (rc) return rc;
  for (size_t i = 0; rc == 0 && i < n; i++) rc = check_id(key, ids[i], i + 1, err);
  if (rc) {
    free(ids);
    return rc;
  }
  c->blocked = swap_list(c, c->blocked, ids, BORROWED_BLOCKED);
  c->n_blocked = n;
  return 0;
}

/* Splits "ID<sep>VALUE" at the last 'sep' (ids may contain it), both trimmed.
 * Returns false when there is no 'sep' or no value. */
static bool split_pair(char *elem, char sep, char **id, char **val) {
  char *at = strrchr(elem, sep);
  if (!at) return false;
  *at = '\0';
  *id = cfg_trim(elem);
  *val = cfg_trim(at + 1);
  return **val != '\0';
}

/* Days from 1970-01-01 to the civil date y-m-d (proleptic Gregorian). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  unsigned yoe = (unsigned)(y - era * 400);
  unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + (int64_t)doe - 719468;
}

/* "2026-12-01T00:00:00Z" (UTC only) into Unix seconds; "" is 0 (open). */
static bool parse_time(const char *s, int64_t *out) {
  unsigned y, mo, d, h, mi, se;
  char z, tail;
  if (!*s) {
    *out = 0;
    return true;
  }
  if (sscanf(s, "%4u-%2u-%2uT%2u:%2u:%2u%c%c", &y, &mo, &d, &h, &mi, &se, &z, &tail) != 7 || z != 'Z' ||
      strlen(s) != 20 || y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 59)
    return false;
  *out = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se;
  return *out > 0;
}

/* Cuts a trailing "@FROM/TO" window off 'buf' (an element of a pin or boost
 * list) into *w; an element without one applies always. */
static int cut_window(const char *key, char *buf, const char *elem, rank_window *w, rec_error *err) {
  *w = (rank_window){0, 0};
  char *at = strrchr(buf, '@');
  if (!at || !strchr(at, '/')) return 0;
  char *slash = strchr(at, '/');
  *slash = '\0';
  if (!parse_time(cfg_trim(at + 1), &w->from_s) || !parse_time(cfg_trim(slash + 1), &w->to_s))
    return rec_fail(err, REC_EINVAL, "%s: window must be @FROM/TO, each empty or a UTC time like "
                    "2026-12-01T00:00:00Z, got '%s'", key, elem);
  if (w->from_s && w->to_s && w->to_s <= w->from_s)
    return rec_fail(err, REC_EINVAL, "%s: window ends before it starts in '%s'", key, elem);
  *at = '\0';
  return 0;
}

static int parse_pin(const char *elem, size_t pos, rank_pin *pin, rec_error *err) {
  const char *key = "promotions.pin";
  char buf[MAX_ID + 128], *id, *slot, *end;
  if (strlen(elem) >= sizeof buf) return check_id(key, elem, pos, err); /* too long */
  strcpy(buf, elem);
  int wrc = cut_window(key, buf, elem, &pin->when, err);
  if (wrc) return wrc;
  if (!split_pair(buf, '@', &id, &slot))
    return rec_fail(err, REC_EINVAL, "%s: want ID@SLOT, got '%s'", key, elem);
  int rc = check_id(key, id, pos, err);
  if (rc) return rc;
  errno = 0;
  long n = strtol(slot, &end, 10);
  if (*end || errno || n < 1 || n > MAX_SLOT)
    return rec_fail(err, REC_EINVAL, "%s: slot must be an integer in [1, %d], got '%s'", key,
                    MAX_SLOT, elem);
  strcpy(pin->item, id);
  pin->slot = (uint32_t)n;
  return 0;
}

static int cmp_pin_slot(const void *a, const void *b) {
  uint32_t x = ((const rank_pin *)a)->slot, y = ((const rank_pin *)b)->slot;
  return (x > y) - (x < y);
}

/* True when two windows share a moment. */
static bool overlap(rank_window a, rank_window b) {
  return (!a.to_s || !b.from_s || b.from_s < a.to_s) && (!b.to_s || !a.from_s || a.from_s < b.to_s);
}

/* Two pins active at once may share neither a slot nor an item; with at
 * most MAX_SLOT pins the pairwise check is cheap and names the pins in the
 * order written. */
static int check_pins(const rank_pin *pins, size_t n, rec_error *err) {
  for (size_t i = 0; i < n; i++)
    for (size_t j = 0; j < i; j++) {
      if (!overlap(pins[i].when, pins[j].when)) continue;
      if (pins[i].slot == pins[j].slot)
        return rec_fail(err, REC_EINVAL, "promotions.pin: '%s@%u' and '%s@%u' both pin slot %u",
                        pins[j].item, pins[j].slot, pins[i].item, pins[i].slot, pins[i].slot);
      if (strcmp(pins[i].item, pins[j].item) == 0)
        return rec_fail(err, REC_EINVAL, "promotions.pin: '%s@%u' and '%s@%u' pin the same item",
                        pins[j].item, pins[j].slot, pins[i].item, pins[i].slot);
    }
  return 0;
}

static int set_pins(rank_config *c, const char *value, rec_error *err) {
  char **elems;
  size_t n;
  int rc = split_list("promotions.pin", value, MAX_SLOT, &elems, &n, err);
  if (rc) return rc;
  rank_pin *pins = NULL;
  if (n && !(pins = calloc(n, sizeof *pins)))
    rc = rec_fail(err, REC_ENOMEM, "promotions.pin: out of memory");
  for (size_t i = 0; rc == 0 && i < n; i++) rc = parse_pin(elems[i], i + 1, &pins[i], err);
  if (rc == 0) rc = check_pins(pins, n, err);
  free(elems);
  if (rc) {
    free(pins);
    return rc;
  }
  if (n) qsort(pins, n, sizeof *pins, cmp_pin_slot);
  c->pins = swap_list(c, c->pins, pins, BORROWED_PINS);
  c->n_pins = n;
  return 0;
}

static int parse_boost(const char *elem, size_t pos, rank_boost *b, rec_error *err) {
  const char *key = "promotions.boost";
  char buf[MAX_ID + 128], *id, *factor, *end;
  if (strlen(elem) >= sizeof buf) return check_id(key, elem, pos, err); /* too long */
  strcpy(buf, elem);
  int wrc = cut_window(key, buf, elem, &b->when, err);
  if (wrc) return wrc;
  if (!split_pair(buf, ':', &id, &factor))
    return rec_fail(err, REC_EINVAL, "%s: want ID:FACTOR, got '%s'", key, elem);
  int rc = check_id(key, id, pos, err);
  if (rc) return rc;
  errno = 0;
  double f = strtod(factor, &end);
  if (*end || errno || !isfinite(f) || f < 0.1 || f > 10)
    return rec_fail(err, REC_EINVAL, "%s: factor must be a number in [0.1, 10], got '%s'", key,
                    elem);
  strcpy(b->item, id);
  b->factor = (float)f;
  return 0;
}

static int cmp_boost_item(const void *a, const void *b) {
  return strcmp(((const rank_boost *)a)->item, ((const rank_boost *)b)->item);
}

static int set_boosts(rank_config *c, const char *value, rec_error *err) {
  char **elems;
  size_t n;
  int rc = split_list("promotions.boost", value, MAX_BOOSTS, &elems, &n, err);
  if (rc) return rc;
  rank_boost *boosts = NULL;
  if (n && !(boosts = calloc(n, sizeof *boosts)))
    rc = rec_fail(err, REC_ENOMEM, "promotions.boost: out of memory");
  for (size_t i = 0; rc == 0 && i < n; i++) rc = parse_boost(elems[i], i + 1, &boosts[i], err);
  free(elems);
  /* Sorted by id, duplicates are neighbours (and lookups can bsearch). */
  if (rc == 0 && n) qsort(boosts, n, sizeof *boosts, cmp_boost_item);
  for (size_t i = 1; rc == 0 && i < n; i++)
    for (size_t j = i; rc == 0 && j-- > 0 && strcmp(boosts[i].item, boosts[j].item) == 0;)
      if (overlap(boosts[i].when, boosts[j].when))
        rc = rec_fail(err, REC_EINVAL, "promotions.boost: item '%s' is boosted twice at once", boosts[i].item);
  if (rc) {
    free(boosts);
    return rc;
  }
  c->boosts = swap_list(c, c->boosts, boosts, BORROWED_BOOSTS);
  c->n_boosts = n;
  return 0;
}

static int fallback(void *obj, const char *key, const char *value, rec_error *err) {
  rank_config_priv *p = obj;
  if (strncmp(key, "segment.", strlen("segment.")) == 0) return set_segment(p, key, value, err);
  if (strcmp(key, "rules.blocked_items") == 0) return set_blocked(&p->pub, value, err);
  if (strcmp(key, "promotions.pin") == 0) return set_pins(&p->pub, value, err);
  if (strcmp(key, "promotions.boost") == 0) return set_boosts(&p->pub, value, err);
  return REC_ENOTFOUND;
}

static int check_soft(const rank_soft *s, const char *seg, rec_error *err) {
  if (s->price_cap_ratio != 0 && s->price_cap_ratio < s->price_soft_ratio)
    return rec_fail(err, REC_EINVAL,
                    "%sprice.cap_ratio (%g) must be 0 or >= %sprice.soft_ratio (%g)", seg,
                    s->price_cap_ratio, seg, s->price_soft_ratio);
  return 0;
}

/* The rules that span keys, checked once all keys are in. */
static int check(const rank_config *c, rec_error *err) {
  float sum = 0;
  for (int i = 0; i < REC_SRC_COUNT; i++) sum += c->weight[i];
  if (!(sum > 0)) return rec_fail(err, REC_EINVAL, "blend.*: weights must not all be 0");
  if (c->repurchase_due < c->repurchase_block)
    return rec_fail(err, REC_EINVAL,
                    "repurchase.due_fraction (%g) must be >= repurchase.block_fraction (%g)",
                    c->repurchase_due, c->repurchase_block);
  int rc = check_soft(&c->soft, "", err);
  for (int s = 0; rc == 0 && s < RANK_SEGMENTS; s++) {
    char seg[32];
    snprintf(seg, sizeof seg, "segment.%s.", RANK_SEGMENT_NAMES[s]);
    rc = check_soft(&c->segment[s], seg, err);
  }
  return rc;
}

int rank_config_load(const char *path, rank_config **out, rec_error *err) {
  rank_config_priv *p = calloc(1, sizeof *p);
  if (!p) return rec_fail(err, REC_ENOMEM, "rank config: out of memory");
  int rc = cfg_defaults(&TABLE, p, err);
  if (rc == 0 && path) rc = cfg_load_file(&TABLE, p, path, err);
  if (rc == 0) {
    merge_segments(p);
    char where[600];
    snprintf(where, sizeof where, "%s: ", path ? path : "defaults");
    if ((rc = check(&p->pub, err))) cfg_error_prefix(err, rc, where);
  }
  if (rc) {
    rank_config_free(&p->pub);
    return rc;
  }
  *out = &p->pub;
  return 0;
}

int rank_config_set(rank_config *c, const char *key, const char *value, rec_error *err) {
  rank_config_priv *p = (rank_config_priv *)c, before = *p;
  int rc = cfg_set(&TABLE, p, key, value, err);
  if (rc) return rc;
  merge_segments(p);
  /* Lists take part in no cross-key rule, so a failure here comes from a
   * scalar and 'before' still holds the current list pointers. */
  if ((rc = check(c, err))) *p = before;
  return rc;
}

int rank_config_clone(const rank_config *c, rank_config **out) {
  const rank_config_priv *p = (const rank_config_priv *)c;
  rank_config_priv *q = malloc(sizeof *q);
  if (!q) return REC_ENOMEM;
  *q = *p;
  q->borrowed = 0;
  q->pub.blocked = NULL, q->pub.pins = NULL, q->pub.boosts = NULL;
  size_t text = 0;
  for (size_t i = 0; i < c->n_blocked; i++) text += strlen(c->blocked[i]) + 1;
  bool ok = true;
  if (c->n_blocked) { /* one block, like split_list: the pointers, then the text */
    char **ids = malloc(c->n_blocked * sizeof *ids + text);
    if ((ok = ids != NULL)) {
      char *s = (char *)(ids + c->n_blocked);
      for (size_t i = 0; i < c->n_blocked; i++) {
        size_t n = strlen(c->blocked[i]) + 1;
        ids[i] = memcpy(s, c->blocked[i], n);
        s += n;
      }
    }
    q->pub.blocked = ids;
  }
  if (ok && c->n_pins && (ok = (q->pub.pins = malloc(c->n_pins * sizeof *c->pins)) != NULL))
    memcpy(q->pub.pins, c->pins, c->n_pins * sizeof *c->pins);
  if (ok && c->n_boosts && (ok = (q->pub.boosts = malloc(c->n_boosts * sizeof *c->boosts)) != NULL))
    memcpy(q->pub.boosts, c->boosts, c->n_boosts * sizeof *c->boosts);
  if (!ok) {
    rank_config_free(&q->pub);
    return REC_ENOMEM;
  }
  *out = &q->pub;
  return 0;
}

int rank_config_derive(const rank_config *c, rank_config **out) {
  rank_config_priv *q = malloc(sizeof *q);
  if (!q) return REC_ENOMEM;
  *q = *(const rank_config_priv *)c;
  q->borrowed = BORROWED_BLOCKED | BORROWED_PINS | BORROWED_BOOSTS;
  *out = &q->pub;
  return 0;
}

void rank_config_each(const rank_config *c, rank_config_visit_fn fn, void *arg) {
  const rank_config_priv *p = (const rank_config_priv *)c;
  char key[96], value[64];
  for (int i = 0; i < NFIELDS; i++) fn(arg, FIELDS[i].name, cfg_format(&FIELDS[i], c, value, sizeof value));
  for (int s = 0; s < RANK_SEGMENTS; s++)
    for (int i = 0; i < NFIELDS; i++) {
      if (!(p->overridden[s] >> i & 1)) continue;
      cfg_field f = FIELDS[i];
      f.offset -= SOFT_OFF;
      snprintf(key, sizeof key, "segment.%s.%s", RANK_SEGMENT_NAMES[s], FIELDS[i].name);
      fn(arg, key, cfg_format(&f, &p->over[s], value, sizeof value));
    }
  const struct { const char *key; size_t n; } lists[] = {
      {"rules.blocked_items", c->n_blocked}, {"promotions.pin", c->n_pins}, {"promotions.boost", c->n_boosts}};
  for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) {
    snprintf(value, sizeof value, "%zu entries", lists[i].n);
    fn(arg, lists[i].key, value);
  }
}

void rank_config_free(rank_config *c) {
  if (!c) return;
  unsigned borrowed = ((rank_config_priv *)c)->borrowed;
  if (!(borrowed & BORROWED_BLOCKED)) free(c->blocked);
  if (!(borrowed & BORROWED_PINS)) free(c->pins);
  if (!(borrowed & BORROWED_BOOSTS)) free(c->boosts);
  free((rank_config_priv *)c);
}

void rank_config_usage(FILE *out) {
  cfg_usage(&TABLE, out, "");
  /* Keys the table cannot describe, aligned with its column (the longest
   * name, repurchase.block_fraction, sets it). */
  fprintf(out, "  %-25s %s\n", "segment.NAME.KEY",
          "KEY (price.*, upsell.*, margin.weight) for segment NAME: small, low, average or high");
  fprintf(out, "  %-25s ids never recommended: \"ID, ID, ...\" (at most %d)\n",
          "rules.blocked_items", MAX_BLOCKED);
  fprintf(out, "  %-25s \"ID@SLOT, ...\": item at slot 1..%d, one item per slot\n",
          "promotions.pin", MAX_SLOT);
  fprintf(out, "  %-25s \"ID:FACTOR, ...\": score x FACTOR (0.1..10), at most %d\n",
          "promotions.boost", MAX_BOOSTS);
}
