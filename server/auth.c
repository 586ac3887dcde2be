/* server/auth.c - see auth.h. */
#include "server/auth.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

enum { MAX_CREDS = 64, TOKEN_MIN = 16, TOKEN_MAX = 256 };

typedef struct cred {
  char name[AUTH_NAME_MAX + 1];
  char token[TOKEN_MAX + 1];
  size_t len;
} cred;

struct auth {
  cred creds[MAX_CREDS];
  size_t n_creds;
  char **allow;   /* subjects, or "CN=..." entries */
  size_t n_allow;
};

/* Wipes memory the compiler may not elide. */
static void wipe(void *p, size_t n) {
  volatile unsigned char *v = p;
  while (n--) *v++ = 0;
}

void auth_free(auth *a) {
  if (!a) return;
  for (size_t i = 0; i < a->n_allow; i++) free(a->allow[i]);
  free(a->allow);
  wipe(a->creds, sizeof a->creds);
  free(a);
}

static bool token_char(char c) { return c > ' ' && c < 127; }

/* One line of the token file, without its newline. */
static int parse_line(auth *a, char *line, const char *file, int lineno, rec_error *err) {
  char *f[3] = {0};
  int n = 0;
  line += strspn(line, " \t\r");
  if (*line == '#') return 0; /* a comment, whatever it says */
  for (char *save = NULL, *t = strtok_r(line, " \t\r", &save); t; t = strtok_r(NULL, " \t\r", &save)) {
    if (n == 2) return rec_fail(err, REC_EINVAL, "%s:%d: expected NAME TOKEN or TOKEN", file, lineno);
    f[n++] = t;
  }
  if (n == 0 || f[0][0] == '#') return 0;
  const char *name = n == 2 ? f[0] : "admin", *token = n == 2 ? f[1] : f[0];
  size_t len = strlen(token);
  if (len < TOKEN_MIN || len > TOKEN_MAX)
    return rec_fail(err, REC_EINVAL, "%s:%d: the token must be %d to %d characters long", file, lineno,
                    TOKEN_MIN, TOKEN_MAX);
  for (size_t i = 0; i < len; i++)
    if (!token_char(token[i]))
      return rec_fail(err, REC_EINVAL, "%s:%d: the token holds a character that is not printable ASCII",
                      file, lineno);
  if (strlen(name) > AUTH_NAME_MAX)
    return rec_fail(err, REC_EINVAL, "%s:%d: the name is longer than %d bytes", file, lineno, AUTH_NAME_MAX);
  for (const char *p = name; *p; p++)
    if (!token_char(*p) || *p == '"' || *p == '\\')
      return rec_fail(err, REC_EINVAL, "%s:%d: the name holds a quote, a backslash or a character "
                      "that is not printable ASCII", file, lineno);
  if (a->n_creds == MAX_CREDS)
    return rec_fail(err, REC_EINVAL, "%s:%d: more than %d tokens", file, lineno, MAX_CREDS);
  for (size_t i = 0; i < a->n_creds; i++) {
    if (a->creds[i].len == len && memcmp(a->creds[i].token, token, len) == 0)
      return rec_fail(err, REC_EINVAL, "%s:%d: the same token as '%s': the logs could not tell them apart",
                      file, lineno, a->creds[i].name);
    if (strcmp(a->creds[i].name, name) == 0)
      return rec_fail(err, REC_EINVAL, "%s:%d: the name '%s' is given twice", file, lineno, name);
  }
  cred *c = &a->creds[a->n_creds++];
  snprintf(c->name, sizeof c->name, "%s", name);
  memcpy(c->token, token, len);
  c->len = len;
  return 0;
}

static int read_tokens(auth *a, const char *file, rec_error *err) {
  FILE *fp = fopen(file, "re");
  if (!fp) return rec_fail(err, REC_EIO, "%s: %s", file, strerror(errno));
  struct stat st;
  if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) {
    fclose(fp);
    return rec_fail(err, REC_EINVAL, "%s: not a regular file", file);
  }
  if (st.st_mode & (S_IRWXG | S_IRWXO)) {
    fclose(fp);
    return rec_fail(err, REC_EINVAL, "%s: readable by group or others (mode %03o); chmod 600 it",
                    file, (unsigned)(st.st_mode & 0777));
  }
  char line[1024];
  int lineno = 0, rc = 0;
  while (!rc && fgets(line, sizeof line, fp)) {
    lineno++;
    size_t n = strlen(line);
    if (n == sizeof line - 1 && line[n - 1] != '\n')
      rc = rec_fail(err, REC_EINVAL, "%s:%d: line too long", file, lineno);
    else {
      line[strcspn(line, "\n")] = '\0';
      rc = parse_line(a, line, file, lineno, err);
    }
  }
  wipe(line, sizeof line);
  fclose(fp);
  if (!rc && a->n_creds == 0) rc = rec_fail(err, REC_EINVAL, "%s: holds no token", file);
  return rc;
}

static int read_allow(auth *a, const char *allow, rec_error *err) {
  size_t cap = 1;
  for (const char *p = allow; *p; p++) cap += *p == ';';
  a->allow = calloc(cap, sizeof *a->allow);
  if (!a->allow) return rec_fail(err, REC_ENOMEM, "out of memory");
  /* Subjects hold commas ("CN=ops,O=shop"): entries are ';'-separated. */
  for (const char *p = allow; *p;) {
    const char *end = strchr(p, ';');
    size_t n = end ? (size_t)(end - p) : strlen(p);
    while (n && (*p == ' ')) p++, n--;
    while (n && p[n - 1] == ' ') n--;
    if (n) {
      if (!(a->allow[a->n_allow] = strndup(p, n))) return rec_fail(err, REC_ENOMEM, "out of memory");
      a->n_allow++;
    }
    p = end ? end + 1 : p + strlen(p);
  }
  return 0;
}

int auth_new(const char *token_file, const char *allow, auth **out, rec_error *err) {
  auth *a = calloc(1, sizeof *a);
  if (!a) return rec_fail(err, REC_ENOMEM, "out of memory");
  int rc = 0;
  if (token_file && *token_file) rc = read_tokens(a, token_file, err);
  if (!rc && allow && *allow) rc = read_allow(a, allow, err);
  if (rc) {
    auth_free(a);
    return rc;
  }
  *out = a;
  return 0;
}

bool auth_configured(const auth *a) { return a && (a->n_creds || a->n_allow); }

/* Equal in time that depends only on the stored token's length. */
static bool same(const char *guess, size_t n, const cred *c) {
  unsigned d = n != c->len;
  for (size_t i = 0; i < c->len; i++) d |= (unsigned char)(c->token[i] ^ (i < n ? guess[i] : 0));
  return d == 0;
}

bool auth_bearer(const auth *a, const char *value, size_t len, char who[AUTH_NAME_MAX + 1]) {
  if (!a || len < 7 || strncasecmp(value, "Bearer ", 7) != 0) return false;
  value += 7, len -= 7;
  while (len && *value == ' ') value++, len--;
  int match = -1;
  for (size_t i = 0; i < a->n_creds; i++) /* every token, whatever matched */
    if (same(value, len, &a->creds[i]) && match < 0) match = (int)i;
  if (match < 0) return false;
  snprintf(who, AUTH_NAME_MAX + 1, "%s", a->creds[match].name);
  return true;
}

bool auth_identity_allowed(const auth *a, const char *subject, const char *cn) {
  if (!a) return false;
  for (size_t i = 0; i < a->n_allow; i++) {
    const char *e = a->allow[i];
    if (subject && strcmp(e, subject) == 0) return true;
    if (cn && strncmp(e, "CN=", 3) == 0 && !strchr(e, ',') && strcmp(e + 3, cn) == 0) return true;
  }
  return false;
}

bool auth_addr_is_loopback(const char *addr) {
  char host[256];
  const char *end;
  if (addr[0] == '[') {
    end = strchr(addr, ']');
    if (!end) return false;
    snprintf(host, sizeof host, "%.*s", (int)(end - addr - 1), addr + 1);
  } else {
    end = strrchr(addr, ':');
    snprintf(host, sizeof host, "%.*s", end ? (int)(end - addr) : (int)strlen(addr), addr);
  }
  if (strcmp(host, "::1") == 0 || strcasecmp(host, "localhost") == 0) return true;
  unsigned b[4];
  char tail;
  return sscanf(host, "%u.%u.%u.%u%c", &b[0], &b[1], &b[2], &b[3], &tail) == 4 && b[0] == 127 &&
         b[1] < 256 && b[2] < 256 && b[3] < 256;
}
