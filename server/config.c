/* server/config.c - the settings table and its parser. */
#include "server/config.h"

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef enum { CFG_INT, CFG_STR } cfg_type;

typedef struct cfg_field {
  const char *name;
  cfg_type type;
  size_t offset, size;       /* size: capacity of a string field */
  const char *def;
  long min, max;             /* integers only */
  const char *help;
} cfg_field;

#define STR(f) CFG_STR, offsetof(recd_config, f), sizeof(((recd_config *)0)->f)
#define INT(f) CFG_INT, offsetof(recd_config, f), sizeof(int)

static const cfg_field FIELDS[] = {
    {"listen", STR(listen), "0.0.0.0:50051", 0, 0, "gRPC listen address host:port (port 0: any free port)"},
    {"bundle", STR(bundle), "", 0, 0, "bundle directory to serve (required)"},
    {"threads", INT(threads), "0", 0, 256, "completion-queue worker threads; 0 = one per core"},
    {"max_k", INT(max_k), "200", 1, 10000, "largest k a request may ask for"},
    {"max_exclude", INT(max_exclude), "1000", 0, 100000, "most exclude_item_ids per request"},
    {"max_message_bytes", INT(max_message_bytes), "4194304", 1024, 67108864,
     "largest request or reply, in bytes (larger: RESOURCE_EXHAUSTED)"},
    {"max_concurrent_streams", INT(max_concurrent_streams), "256", 1, 65536,
     "HTTP/2 streams per connection (caps rapid-reset exposure)"},
    {"requests_per_method", INT(requests_per_method), "16", 1, 1024,
     "requests kept posted per method and worker"},
    {"drain_ms", INT(drain_ms), "5000", 0, 600000, "on shutdown, how long calls in flight may finish"},
    {"log_level", STR(log_level), "info", 0, 0, "debug, info, warn or error"},
};
enum { NFIELDS = sizeof FIELDS / sizeof FIELDS[0] };

static const cfg_field *find(const char *name, size_t len) {
  for (int i = 0; i < NFIELDS; i++)
    if (strlen(FIELDS[i].name) == len && strncmp(FIELDS[i].name, name, len) == 0) return &FIELDS[i];
  return NULL;
}

static int set(recd_config *cfg, const cfg_field *f, const char *v, const char *where,
               rec_error *err) {
  char *dst = (char *)cfg + f->offset;
  if (f->type == CFG_STR) {
    if (strlen(v) >= f->size)
      return rec_fail(err, REC_EINVAL, "%s%s: value longer than %zu bytes", where, f->name, f->size - 1);
    strcpy(dst, v);
    return 0;
  }
  char *end;
  errno = 0;
  long n = strtol(v, &end, 10);
  if (!*v || *end || errno || n < f->min || n > f->max)
    return rec_fail(err, REC_EINVAL, "%s%s: must be an integer in [%ld, %ld], got '%s'", where,
                    f->name, f->min, f->max, v);
  *(int *)dst = (int)n;
  return 0;
}

static char *trim(char *s) {
  while (*s == ' ' || *s == '\t') s++;
  char *e = s + strlen(s);
  while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r')) *--e = '\0';
  return s;
}

static int load_file(recd_config *cfg, const char *path, rec_error *err) {
  FILE *fp = fopen(path, "r");
  if (!fp) return rec_fail(err, REC_EINVAL, "--config: %s: %s", path, strerror(errno));
  char line[8192], where[4200];
  int rc = 0;
  for (int lineno = 1; rc == 0 && fgets(line, sizeof line, fp); lineno++) {
    char *s = trim(line);
    if (!*s || *s == '#') continue;
    char *eq = strchr(s, '=');
    snprintf(where, sizeof where, "%s:%d: ", path, lineno);
    if (!eq) {
      rc = rec_fail(err, REC_EINVAL, "%swant 'key = value'", where);
      break;
    }
    *eq = '\0';
    char *key = trim(s);
    const cfg_field *f = find(key, strlen(key));
    if (!f) rc = rec_fail(err, REC_EINVAL, "%sunknown setting '%s'", where, key);
    else rc = set(cfg, f, trim(eq + 1), where, err);
  }
  fclose(fp);
  return rc;
}

static int check(recd_config *cfg, rec_error *err) {
  if (!cfg->bundle[0]) return rec_fail(err, REC_EINVAL, "bundle: required (--bundle=DIR)");
  if (!strchr(cfg->listen, ':'))
    return rec_fail(err, REC_EINVAL, "listen: want host:port, got '%s'", cfg->listen);
  const char *lv = cfg->log_level;
  if (strcmp(lv, "debug") && strcmp(lv, "info") && strcmp(lv, "warn") && strcmp(lv, "error"))
    return rec_fail(err, REC_EINVAL, "log_level: must be debug, info, warn or error, got '%s'", lv);
  if (cfg->threads == 0) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    cfg->threads = n < 1 ? 1 : n > 256 ? 256 : (int)n;
  }
  return 0;
}

/* Splits "--name=value" or "--name value"; advances *i past what it used. */
static int flag(int argc, char **argv, int *i, const char **name, size_t *len, const char **val,
                rec_error *err) {
  const char *a = argv[*i];
  if (strncmp(a, "--", 2) != 0)
    return rec_fail(err, REC_EINVAL, "unexpected argument '%s' (settings are --name=value)", a);
  *name = a + 2;
  const char *eq = strchr(*name, '=');
  if (eq) {
    *len = (size_t)(eq - *name);
    *val = eq + 1;
  } else if (*i + 1 < argc) {
    *len = strlen(*name);
    *val = argv[++*i];
  } else {
    return rec_fail(err, REC_EINVAL, "%s: missing value", a);
  }
  return 0;
}

int config_parse(int argc, char **argv, recd_config *cfg, FILE *out, rec_error *err) {
  memset(cfg, 0, sizeof *cfg);
  for (int i = 0; i < NFIELDS; i++) set(cfg, &FIELDS[i], FIELDS[i].def, "", NULL);
  for (int i = 1; i < argc; i++)
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      config_usage(out);
      return 1;
    }
  const char *name, *val;
  size_t len;
  int rc;
  for (int i = 1; i < argc; i++) { /* the file first, so flags override it */
    if ((rc = flag(argc, argv, &i, &name, &len, &val, err))) return rc;
    if (len == 6 && strncmp(name, "config", 6) == 0 && (rc = load_file(cfg, val, err))) return rc;
  }
  for (int i = 1; i < argc; i++) {
    flag(argc, argv, &i, &name, &len, &val, err);
    if (len == 6 && strncmp(name, "config", 6) == 0) continue;
    const cfg_field *f = find(name, len);
    if (!f) return rec_fail(err, REC_EINVAL, "unknown option --%.*s (see --help)", (int)len, name);
    if ((rc = set(cfg, f, val, "--", err))) return rc;
  }
  return check(cfg, err);
}

void config_usage(FILE *out) {
  fprintf(out, "usage: recd --bundle=DIR [--name=value ...] [--config=FILE]\n\n"
               "Serves recommendations over gRPC from a model bundle. Settings (FILE holds\n"
               "'name = value' lines; flags override it):\n\n");
  for (int i = 0; i < NFIELDS; i++) {
    const cfg_field *f = &FIELDS[i];
    fprintf(out, "  --%-24s %s (default: %s", f->name, f->help, f->def[0] ? f->def : "none");
    if (f->type == CFG_INT) fprintf(out, "; range %ld..%ld", f->min, f->max);
    fprintf(out, ")\n");
  }
}
