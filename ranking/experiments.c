/* ranking/experiments.c - see experiments.h. */
#include "ranking/experiments.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "common/cfgtable.h"
#include "common/fileio.h"

const char *exp_unit_name(exp_unit u) { return u == EXP_UNIT_SESSION ? "session" : "user"; }

static bool valid_name(const char *s, size_t n) {
  if (n < 1 || n > EXP_NAME_MAX) return false;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
      return false;
  }
  return true;
}

/* A salt: 1..EXP_SALT_MAX of [A-Za-z0-9_.:-] (it is a metric label too). */
static bool valid_salt(const char *s) {
  size_t n = strlen(s);
  if (n < 1 || n > EXP_SALT_MAX) return false;
  for (size_t i = 0; i < n; i++)
    if (!valid_name(s + i, 1) && s[i] != '.' && s[i] != ':') return false;
  return true;
}

static bool printable(const char *s, size_t max) {
  size_t n = strlen(s);
  if (n < 1 || n > max) return false;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e) return false;
  return true;
}

static void free_arm(exp_arm *a) {
  for (size_t i = 0; i < a->n_set; i++) {
    free(a->set_key[i]);
    free(a->set_value[i]);
  }
  a->n_set = 0;
}

void experiments_free(experiments *e) {
  if (!e) return;
  for (size_t l = 0; l < e->n_layers; l++)
    for (size_t a = 0; a < e->layers[l].n_arms; a++) free_arm(&e->layers[l].arms[a]);
  free(e);
}

int experiments_layer(const experiments *e, const char *name) {
  for (size_t l = 0; l < e->n_layers; l++)
    if (strcmp(e->layers[l].name, name) == 0) return (int)l;
  return -1;
}

int experiments_arm(const exp_layer *l, const char *name) {
  for (size_t a = 0; a < l->n_arms; a++)
    if (strcmp(l->arms[a].name, name) == 0) return (int)a;
  return -1;
}

/* Layer or arm named by the 'n' bytes at 's', added when new. */
static int layer_at(experiments *e, const char *s, size_t n, rec_error *err) {
  if (!valid_name(s, n))
    return rec_fail(err, REC_EINVAL, "layer name '%.*s' must be 1 to %d of A-Z a-z 0-9 _ -", (int)(n > 64 ? 64 : n),
                    s, EXP_NAME_MAX);
  for (size_t l = 0; l < e->n_layers; l++)
    if (strlen(e->layers[l].name) == n && memcmp(e->layers[l].name, s, n) == 0) return (int)l;
  if (e->n_layers == EXP_MAX_LAYERS) return rec_fail(err, REC_EINVAL, "more than %d layers", EXP_MAX_LAYERS);
  exp_layer *l = &e->layers[e->n_layers];
  memcpy(l->name, s, n);
  l->control = -1;
  return (int)e->n_layers++;
}

static int arm_at(exp_layer *l, const char *s, size_t n, rec_error *err) {
  if (!valid_name(s, n))
    return rec_fail(err, REC_EINVAL, "arm name '%.*s' must be 1 to %d of A-Z a-z 0-9 _ -", (int)(n > 64 ? 64 : n), s,
                    EXP_NAME_MAX);
  for (size_t a = 0; a < l->n_arms; a++)
    if (strlen(l->arms[a].name) == n && memcmp(l->arms[a].name, s, n) == 0) return (int)a;
  if (l->n_arms == EXP_MAX_ARMS)
    return rec_fail(err, REC_EINVAL, "layer %s: more than %d arms", l->name, EXP_MAX_ARMS);
  memcpy(l->arms[l->n_arms].name, s, n);
  return (int)l->n_arms++;
}

/* The control arm's name, kept until the whole file is read. */
typedef struct pending {
  char control[EXP_MAX_LAYERS][EXP_NAME_MAX + 1];
  uint32_t seen[EXP_MAX_LAYERS];   /* bit 0 salt, 1 unit, 2 control */
  uint64_t arm_seen[EXP_MAX_LAYERS][EXP_MAX_ARMS]; /* bit 0 share, 1 holdout, 2 bundle */
} pending;

static int set_twice(const char *key, rec_error *err) {
  return rec_fail(err, REC_EINVAL, "%s is set twice", key);
}

static int arm_key(exp_layer *l, int a, uint64_t *seen, const char *key, const char *sub, const char *value,
                   rec_error *err) {
  exp_arm *arm = &l->arms[a];
  if (strcmp(sub, "share") == 0) {
    if (*seen & 1) return set_twice(key, err);
    char *end;
    long v = strtol(value, &end, 10);
    if (!*value || *end || v < 0 || v > EXP_BP)
      return rec_fail(err, REC_EINVAL, "%s: must be an integer in [0, %d] (basis points), got '%.64s'", key, EXP_BP,
                      value);
    arm->share = (uint32_t)v;
    *seen |= 1;
    return 0;
  }
  if (strcmp(sub, "holdout") == 0) {
    if (*seen & 2) return set_twice(key, err);
    if (strcmp(value, "true") && strcmp(value, "false"))
      return rec_fail(err, REC_EINVAL, "%s: must be true or false, got '%.64s'", key, value);
    arm->holdout = strcmp(value, "true") == 0;
    *seen |= 2;
    return 0;
  }
  if (strcmp(sub, "bundle") == 0) {
    if (*seen & 4) return set_twice(key, err);
    if (!printable(value, sizeof arm->bundle - 1))
      return rec_fail(err, REC_EINVAL, "%s: must be a bundle name or path of 1 to %zu printable characters", key,
                      sizeof arm->bundle - 1);
    snprintf(arm->bundle, sizeof arm->bundle, "%s", value);
    *seen |= 4;
    return 0;
  }
  if (strncmp(sub, "set.", 4) == 0 && sub[4]) {
    const char *k = sub + 4;
    for (size_t i = 0; i < arm->n_set; i++)
      if (strcmp(arm->set_key[i], k) == 0) return set_twice(key, err);
    if (arm->n_set == EXP_MAX_SETTINGS)
      return rec_fail(err, REC_EINVAL, "%s: an arm overrides at most %d settings", key, EXP_MAX_SETTINGS);
    char *kk = strdup(k), *vv = strdup(value);
    if (!kk || !vv) {
      free(kk);
      free(vv);
      return rec_fail(err, REC_ENOMEM, "out of memory");
    }
    arm->set_key[arm->n_set] = kk;
    arm->set_value[arm->n_set++] = vv;
    return 0;
  }
  return rec_fail(err, REC_EINVAL, "unknown setting '%s' (an arm has share, holdout, bundle and set.KEY)", key);
}

static int parse_line(experiments *e, pending *p, char *line, rec_error *err) {
  char *s = cfg_trim(line);
  if (!*s || *s == '#') return 0;
  char *eq = strchr(s, '=');
  if (!eq) return rec_fail(err, REC_EINVAL, "want 'key = value'");
  *eq = '\0';
  char *key = cfg_trim(s), *value = cfg_trim(eq + 1);
  if (strncmp(key, "layer.", 6) != 0)
    return rec_fail(err, REC_EINVAL, "unknown setting '%.128s' (keys start with layer.NAME.)", key);
  const char *name = key + 6, *dot = strchr(name, '.');
  if (!dot) return rec_fail(err, REC_EINVAL, "unknown setting '%.128s'", key);
  int l = layer_at(e, name, (size_t)(dot - name), err);
  if (l < 0) return l;
  exp_layer *ly = &e->layers[l];
  const char *sub = dot + 1;
  if (strcmp(sub, "salt") == 0) {
    if (p->seen[l] & 1) return set_twice(key, err);
    if (!valid_salt(value))
      return rec_fail(err, REC_EINVAL, "%s: must be 1 to %d of A-Z a-z 0-9 _ - . :", key, EXP_SALT_MAX);
    snprintf(ly->salt, sizeof ly->salt, "%s", value);
    p->seen[l] |= 1;
    return 0;
  }
  if (strcmp(sub, "unit") == 0) {
    if (p->seen[l] & 2) return set_twice(key, err);
    if (strcmp(value, "user") && strcmp(value, "session"))
      return rec_fail(err, REC_EINVAL, "%s: must be user or session, got '%.64s'", key, value);
    ly->unit = strcmp(value, "session") == 0 ? EXP_UNIT_SESSION : EXP_UNIT_USER;
    p->seen[l] |= 2;
    return 0;
  }
  if (strcmp(sub, "control") == 0) {
    if (p->seen[l] & 4) return set_twice(key, err);
    if (!valid_name(value, strlen(value)))
      return rec_fail(err, REC_EINVAL, "%s: must be an arm name, got '%.64s'", key, value);
    snprintf(p->control[l], sizeof p->control[l], "%s", value);
    p->seen[l] |= 4;
    return 0;
  }
  if (strncmp(sub, "arm.", 4) == 0) {
    const char *an = sub + 4, *adot = strchr(an, '.');
    if (!adot) return rec_fail(err, REC_EINVAL, "unknown setting '%.128s' (want layer.L.arm.A.KEY)", key);
    int a = arm_at(ly, an, (size_t)(adot - an), err);
    if (a < 0) return a;
    return arm_key(ly, a, &p->arm_seen[l][a], key, adot + 1, value, err);
  }
  return rec_fail(err, REC_EINVAL, "unknown setting '%.128s' (a layer has salt, unit, control and arm.NAME.*)", key);
}

/* The rules over the whole file. */
static int check_all(experiments *e, const pending *p, rec_error *err) {
  if (!e->n_layers)
    return rec_fail(err, REC_EINVAL, "declares no layers (to end every experiment, stop each with recctl "
                    "experiments stop, or run recd without --experiments)");
  for (size_t l = 0; l < e->n_layers; l++) {
    exp_layer *ly = &e->layers[l];
    if (!ly->salt[0]) return rec_fail(err, REC_EINVAL, "layer %s has no salt (layer.%s.salt)", ly->name, ly->name);
    if (!ly->n_arms) return rec_fail(err, REC_EINVAL, "layer %s has no arms", ly->name);
    uint32_t sum = 0;
    for (size_t a = 0; a < ly->n_arms; a++) {
      const exp_arm *arm = &ly->arms[a];
      if (!(p->arm_seen[l][a] & 1))
        return rec_fail(err, REC_EINVAL, "layer %s arm %s has no share (layer.%s.arm.%s.share)", ly->name, arm->name,
                        ly->name, arm->name);
      if (arm->holdout && (arm->n_set || arm->bundle[0]))
        return rec_fail(err, REC_EINVAL, "layer %s arm %s: a holdout serves popularity only; it takes no set.* or "
                        "bundle", ly->name, arm->name);
      sum += arm->share;
    }
    if (sum > EXP_BP)
      return rec_fail(err, REC_EINVAL, "layer %s: shares add up to %u basis points, more than %d", ly->name, sum, EXP_BP);
    const char *control = p->seen[l] & 4 ? p->control[l] : "control";
    ly->control = experiments_arm(ly, control);
    if (ly->control < 0 && (p->seen[l] & 4))
      return rec_fail(err, REC_EINVAL, "layer %s: control arm '%s' is not declared", ly->name, control);
    if (ly->control < 0) ly->control = 0; /* no arm named control: the first declared */
    for (size_t m = 0; m < l; m++)
      if (strcmp(e->layers[m].salt, ly->salt) == 0)
        return rec_fail(err, REC_EINVAL, "layers %s and %s share the salt '%s'; their assignments would not be "
                        "independent", e->layers[m].name, ly->name, ly->salt);
  }
  return 0;
}

int experiments_parse(const char *text, size_t len, const char *name, experiments **out, rec_error *err) {
  experiments *e = calloc(1, sizeof *e);
  pending *p = calloc(1, sizeof *p);
  char *line = malloc(len + 1);
  int rc = 0;
  if (!e || !p || !line) rc = rec_fail(err, REC_ENOMEM, "out of memory");
  long lineno = 0;
  for (size_t at = 0; !rc && at < len;) {
    const char *nl = memchr(text + at, '\n', len - at);
    size_t n = nl ? (size_t)(nl - (text + at)) : len - at;
    memcpy(line, text + at, n);
    line[n] = '\0';
    at += n + 1;
    lineno++;
    if (memchr(line, '\0', n)) rc = rec_fail(err, REC_EINVAL, "a NUL byte in the line");
    else rc = parse_line(e, p, line, err);
    if (rc) {
      char where[600];
      snprintf(where, sizeof where, "%s:%ld: ", name, lineno);
      cfg_error_prefix(err, rc, where);
    }
  }
  if (!rc && (rc = check_all(e, p, err))) {
    char where[600];
    snprintf(where, sizeof where, "%s: ", name);
    cfg_error_prefix(err, rc, where);
  }
  free(line);
  free(p);
  if (rc) {
    experiments_free(e);
    return rc;
  }
  *out = e;
  return 0;
}

int experiments_load(const char *path, experiments **out, rec_error *err) {
  size_t len;
  char *text = rec_read_file(path, &len, err);
  if (!text) return err ? err->code : REC_EIO;
  int rc = experiments_parse(text, len, path, out, err);
  free(text);
  return rc;
}

int experiments_copy(const experiments *e, experiments **out) {
  experiments *c = malloc(sizeof *c);
  if (!c) return REC_ENOMEM;
  *c = *e;
  bool ok = true;
  for (size_t l = 0; l < c->n_layers; l++)
    for (size_t a = 0; a < c->layers[l].n_arms; a++) {
      exp_arm *arm = &c->layers[l].arms[a];
      for (size_t i = 0; i < arm->n_set; i++) {
        arm->set_key[i] = ok ? strdup(arm->set_key[i]) : NULL;
        arm->set_value[i] = ok ? strdup(arm->set_value[i]) : NULL;
        ok = ok && arm->set_key[i] && arm->set_value[i];
      }
    }
  if (!ok) {
    experiments_free(c); /* free(NULL) for what was not copied */
    return REC_ENOMEM;
  }
  *out = c;
  return 0;
}

int experiments_set_share(experiments *e, int l, int a, uint32_t share, rec_error *err) {
  exp_layer *ly = &e->layers[l];
  uint32_t sum = share;
  for (size_t i = 0; i < ly->n_arms; i++)
    if ((int)i != a) sum += ly->arms[i].share;
  if (share > EXP_BP || sum > EXP_BP)
    return rec_fail(err, REC_EINVAL, "experiment %s: shares would add up to %u basis points, more than %d; lower "
                    "another arm first", ly->name, sum, EXP_BP);
  ly->arms[a].share = share;
  return 0;
}

uint32_t exp_bucket(const char *salt, const char *unit, size_t len) {
  /* The salt's own hash seeds the unit's: a layer is a different hash function. */
  return (uint32_t)(XXH3_64bits_withSeed(unit, len, XXH3_64bits(salt, strlen(salt))) % EXP_BP);
}

int exp_arm_of(const exp_layer *l, uint32_t bucket) {
  if (l->stopped) return -1;
  uint32_t end = 0;
  for (size_t a = 0; a < l->n_arms; a++) {
    end += l->arms[a].share;
    if (bucket < end) return (int)a;
  }
  return -1;
}

/* ---- compiled plans ---- */

struct exp_plan {
  experiments *e;
  rank_config *base;
  size_t n_combos;
  rank_config **combo;                      /* combo[0] is the base itself */
  size_t stride[EXP_MAX_LAYERS];
  uint8_t digit[EXP_MAX_LAYERS][EXP_MAX_ARMS]; /* 0: the arm overrides nothing */
};

void exp_plan_free(exp_plan *p) {
  if (!p) return;
  for (size_t i = 1; p->combo && i < p->n_combos; i++) rank_config_free(p->combo[i]);
  free(p->combo);
  rank_config_free(p->base);
  experiments_free(p->e);
  free(p);
}

const experiments *exp_plan_experiments(const exp_plan *p) { return p->e; }
const rank_config *exp_plan_base(const exp_plan *p) { return p->base; }

/* Combination 'c': the base with each layer's overriding arm applied. */
static int build_combo(exp_plan *p, size_t c, rec_error *err) {
  rank_config *cfg;
  if (rank_config_derive(p->base, &cfg)) return rec_fail(err, REC_ENOMEM, "out of memory");
  for (size_t l = 0; l < p->e->n_layers; l++) {
    const exp_layer *ly = &p->e->layers[l];
    size_t radix = 1;
    for (size_t a = 0; a < ly->n_arms; a++) radix += p->digit[l][a] != 0;
    size_t want = (c / p->stride[l]) % radix;
    if (!want) continue;
    for (size_t a = 0; a < ly->n_arms; a++) {
      if (p->digit[l][a] != want) continue;
      const exp_arm *arm = &ly->arms[a];
      for (size_t i = 0; i < arm->n_set; i++) {
        rec_error e2;
        int rc = rank_config_set(cfg, arm->set_key[i], arm->set_value[i], &e2);
        if (rc) {
          rank_config_free(cfg);
          return rec_fail(err, rc == REC_ENOMEM ? REC_ENOMEM : REC_EINVAL, "layer %s arm %s: set.%s: %s", ly->name,
                          arm->name, arm->set_key[i], e2.msg);
        }
      }
    }
  }
  p->combo[c] = cfg;
  return 0;
}

int exp_compile(const experiments *e, const rank_config *base, exp_plan **out, rec_error *err) {
  exp_plan *p = calloc(1, sizeof *p);
  if (!p) return rec_fail(err, REC_ENOMEM, "out of memory");
  int rc = 0;
  if (experiments_copy(e, &p->e) || rank_config_clone(base, &p->base)) rc = rec_fail(err, REC_ENOMEM, "out of memory");
  size_t n = 1;
  int bundle_layer = -1;
  for (size_t l = 0; !rc && l < e->n_layers; l++) {
    const exp_layer *ly = &e->layers[l];
    uint8_t k = 0;
    for (size_t a = 0; a < ly->n_arms; a++) {
      p->digit[l][a] = ly->arms[a].n_set ? ++k : 0;
      if (ly->arms[a].bundle[0] && bundle_layer >= 0 && bundle_layer != (int)l)
        rc = rec_fail(err, REC_EINVAL, "layers %s and %s both choose bundles; only one layer may",
                      e->layers[bundle_layer].name, ly->name);
      if (ly->arms[a].bundle[0]) bundle_layer = (int)l;
    }
    p->stride[l] = n;
    n *= (size_t)k + 1;
    if (n > EXP_MAX_COMBOS)
      rc = rec_fail(err, REC_EINVAL, "arms that override settings make more than %d combinations across layers; "
                    "use fewer such arms or layers", EXP_MAX_COMBOS);
  }
  if (!rc && !(p->combo = calloc(n, sizeof *p->combo))) rc = rec_fail(err, REC_ENOMEM, "out of memory");
  if (!rc) {
    p->n_combos = n;
    p->combo[0] = p->base;
  }
  for (size_t c = 1; !rc && c < n; c++) rc = build_combo(p, c, err);
  if (rc) {
    exp_plan_free(p);
    return rc;
  }
  *out = p;
  return 0;
}

void exp_assign(const exp_plan *p, const char *user, size_t user_len, const char *session, size_t session_len,
                exp_assignment *out) {
  const experiments *e = p->e;
  size_t c = 0;
  out->n_layers = e->n_layers;
  out->holdout = false;
  out->bundle = NULL;
  for (size_t l = 0; l < e->n_layers; l++) {
    const exp_layer *ly = &e->layers[l];
    bool by_session = ly->unit == EXP_UNIT_SESSION && session && session_len;
    int a = exp_arm_of(ly, exp_bucket(ly->salt, by_session ? session : user, by_session ? session_len : user_len));
    out->arm[l] = a;
    if (a < 0) continue;
    c += p->digit[l][a] * p->stride[l];
    out->holdout |= ly->arms[a].holdout;
    if (ly->arms[a].bundle[0]) out->bundle = ly->arms[a].bundle;
  }
  out->cfg = p->combo[c];
}
