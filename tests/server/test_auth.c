/* tests/server/test_auth.c - the admin surface's guards without a server:
 * the token file (format, errors by file:line that never show the token,
 * permissions), bearer checks, the certificate allow-list, what counts as
 * loopback, reloads confined to the bundle root (.., absolute paths,
 * symlinks out and in), and quoting what a caller sent into a log line. */
#include "common/log.h"
#include "server/auth.h"
#include "server/bundle_root.h"
#include "tests/test.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *token_file(const char *name, const char *text, mode_t mode) {
  const char *p = test_path(name);
  test_write_file(p, text);
  chmod(p, mode);
  return p;
}

static bool bearer(const auth *a, const char *v, char *who) { return auth_bearer(a, v, strlen(v), who); }

static void token_file_format(void) {
  auth *a = NULL;
  rec_error e = {0};
  const char *p = token_file("tokens", "# admin tokens for recd, one per operator\n\nops  aaaaaaaaaaaaaaaa-ops\r\n"
                                       "  # ci's\nci\tbbbbbbbbbbbbbbbb-ci\n", 0600);
  CU_ASSERT_EQUAL_FATAL(auth_new(p, "", &a, &e), 0);
  CU_ASSERT(auth_configured(a));
  char who[AUTH_NAME_MAX + 1] = "";
  CU_ASSERT(bearer(a, "Bearer aaaaaaaaaaaaaaaa-ops", who));
  CU_ASSERT_STRING_EQUAL(who, "ops");
  CU_ASSERT(bearer(a, "Bearer bbbbbbbbbbbbbbbb-ci", who));
  CU_ASSERT_STRING_EQUAL(who, "ci");
  CU_ASSERT(bearer(a, "bearer   bbbbbbbbbbbbbbbb-ci", who));
  CU_ASSERT(!bearer(a, "Bearer bbbbbbbbbbbbbbbb-c", who));    /* a prefix */
  CU_ASSERT(!bearer(a, "Bearer bbbbbbbbbbbbbbbb-cix", who));  /* longer */
  CU_ASSERT(!bearer(a, "Bearer bbbbbbbbbbbbbbbb-cI", who));   /* case matters in the token */
  CU_ASSERT(!bearer(a, "Basic bbbbbbbbbbbbbbbb-ci", who));
  CU_ASSERT(!bearer(a, "bbbbbbbbbbbbbbbb-ci", who));
  CU_ASSERT(!bearer(a, "Bearer ", who));
  CU_ASSERT(!bearer(a, "", who));
  CU_ASSERT(!auth_bearer(a, "Bearer bbbbbbbbbbbbbbbb-ci", 20, who)); /* cut short: length counts, not NUL */
  auth_free(a);

  p = token_file("lone", "cccccccccccccccccccc\n", 0400);
  CU_ASSERT_EQUAL_FATAL(auth_new(p, NULL, &a, &e), 0);
  CU_ASSERT(bearer(a, "Bearer cccccccccccccccccccc", who));
  CU_ASSERT_STRING_EQUAL(who, "admin");
  auth_free(a);

  CU_ASSERT_EQUAL(auth_new("", "", &a, &e), 0); /* nothing configured: nothing matches */
  CU_ASSERT(!auth_configured(a));
  CU_ASSERT(!bearer(a, "Bearer cccccccccccccccccccc", who));
  auth_free(a);
}

static void token_file_errors_name_the_line_not_the_token(void) {
  static const struct {
    const char *text, *want;
  } bad[] = {
      {"ops short-secret\n", "tokens:1: the token must be 16 to 256 characters long"},
      {"# c\nops aaaaaaaaaaaaaaaa-é-secret\n", "tokens:2: the token holds a character"},
      {"ops aaaaaaaaaaaaaaaa-secret extra\n", "tokens:1: expected NAME TOKEN or TOKEN"},
      {"o\"ps aaaaaaaaaaaaaaaa-secret\n", "tokens:1: the name holds a quote"},
      {"# nothing\n\n", "holds no token"},
      {"ops aaaaaaaaaaaaaaaa-secret\nci aaaaaaaaaaaaaaaa-secret\n",
       "tokens:2: the same token as 'ops': the logs could not tell them apart"},
      {"ops aaaaaaaaaaaaaaaa-secret\nops bbbbbbbbbbbbbbbb-secret\n", "tokens:2: the name 'ops' is given twice"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    auth *a = NULL;
    rec_error e = {0};
    const char *p = token_file("tokens", bad[i].text, 0600);
    CU_ASSERT_EQUAL(auth_new(p, "", &a, &e), REC_EINVAL);
    CU_ASSERT_PTR_NULL(a);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, bad[i].want));
    CU_ASSERT_PTR_NULL(strstr(e.msg, "secret"));
  }
  auth *a = NULL;
  rec_error e = {0};
  const char *p = token_file("tokens", "ops aaaaaaaaaaaaaaaa-secret\n", 0644);
  CU_ASSERT_EQUAL(auth_new(p, "", &a, &e), REC_EINVAL);
  CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "chmod 600"));
  CU_ASSERT_PTR_NULL(strstr(e.msg, "secret"));
  CU_ASSERT_EQUAL(auth_new(test_path("absent"), "", &a, &e), REC_EIO);
  CU_ASSERT_EQUAL(auth_new(test_tmpdir(), "", &a, &e), REC_EINVAL); /* a directory */
}

static void certificate_allow_list(void) {
  auth *a = NULL;
  rec_error e = {0};
  CU_ASSERT_EQUAL_FATAL(auth_new("", " CN=ops ; CN=deploy,O=shop;", &a, &e), 0);
  CU_ASSERT(auth_configured(a));
  CU_ASSERT(auth_identity_allowed(a, "CN=ops,O=shop", "ops"));     /* by common name */
  CU_ASSERT(auth_identity_allowed(a, "CN=deploy,O=shop", "deploy")); /* by whole subject */
  CU_ASSERT(!auth_identity_allowed(a, "CN=deploy,O=other", "deploy"));
  CU_ASSERT(!auth_identity_allowed(a, "CN=opsx", "opsx"));
  CU_ASSERT(!auth_identity_allowed(a, NULL, NULL));
  CU_ASSERT(auth_identity_allowed(a, NULL, "ops"));
  auth_free(a);
}

static void loopback_addresses(void) {
  const char *yes[] = {"127.0.0.1:9464", "127.1.2.3:0", "[::1]:80", "localhost:1", "LOCALHOST:2"};
  const char *no[] = {"0.0.0.0:9464", "[::]:80", "10.0.0.1:1", "127.0.0.1.evil.com:1", "128.0.0.1:1",
                      "127.0.0.256:1", "[::1:80", ":9464", "example.com:80"};
  for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) CU_ASSERT(auth_addr_is_loopback(yes[i]));
  for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) CU_ASSERT(!auth_addr_is_loopback(no[i]));
}

static void mkdirs(const char *rel) {
  char p[PATH_MAX];
  snprintf(p, sizeof p, "%s/%s", test_tmpdir(), rel);
  for (char *s = p + strlen(test_tmpdir()) + 1; (s = strchr(s, '/')); s++) {
    *s = '\0';
    mkdir(p, 0700);
    *s = '/';
  }
  mkdir(p, 0700);
}

static void reloads_stay_under_the_bundle_root(void) {
  mkdirs("br/root/b1");
  mkdirs("br/root/team/b2");
  mkdirs("br/outside/b3");
  mkdirs("br/rootsibling/b4"); /* shares the root's name as a prefix */
  char root_dir[PATH_MAX], root[PATH_MAX / 2], link[PATH_MAX], target[PATH_MAX], out[PATH_MAX];
  snprintf(root_dir, sizeof root_dir, "%s/br/root", test_tmpdir());
  rec_error e = {0};
  CU_ASSERT_EQUAL_FATAL(bundle_root_open(root_dir, root, sizeof root, &e), 0);
  snprintf(target, sizeof target, "%s/br/outside/b3", test_tmpdir());
  snprintf(link, sizeof link, "%s/escape", root);
  CU_ASSERT_EQUAL(symlink(target, link), 0);
  snprintf(target, sizeof target, "%s/b1", root);
  snprintf(link, sizeof link, "%s/current", root);
  CU_ASSERT_EQUAL(symlink(target, link), 0);

  const char *ok[][2] = {{"b1", "/b1"}, {"team/b2", "/team/b2"}, {"./team/../b1", "/b1"},
                         {"current", "/b1"}, {"b1/", "/b1"}};
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    CU_ASSERT_EQUAL(bundle_root_resolve(root, ok[i][0], out, sizeof out, &e), 0);
    char want[PATH_MAX];
    snprintf(want, sizeof want, "%.2000s%s", root, ok[i][1]);
    CU_ASSERT_STRING_EQUAL(out, want);
  }
  char abs_in[PATH_MAX], abs_out[PATH_MAX], sibling[PATH_MAX];
  CU_ASSERT_FATAL(strlen(root) < 1024);
  snprintf(abs_in, sizeof abs_in, "%s/team/b2", root);
  CU_ASSERT_EQUAL(bundle_root_resolve(root, abs_in, out, sizeof out, &e), 0);
  snprintf(abs_out, sizeof abs_out, "%s/br/outside/b3", test_tmpdir());
  snprintf(sibling, sizeof sibling, "%s/br/rootsibling/b4", test_tmpdir());
  const char *denied[] = {"../outside/b3", "..", "b1/../../outside/b3", "escape", abs_out, sibling,
                          "/etc", "/", ".", "", "team/../..", "nosuch/../../../../etc"};
  for (size_t i = 0; i < sizeof denied / sizeof denied[0]; i++) {
    memset(&e, 0, sizeof e);
    CU_ASSERT_EQUAL(bundle_root_resolve(root, denied[i], out, sizeof out, &e), REC_EDENIED);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "is not under the bundle root"));
  }
  /* Nothing outside is told apart: a missing and an existing path outside
   * get the same answer. */
  rec_error e1 = {0}, e2 = {0};
  bundle_root_resolve(root, "../outside/b3", out, sizeof out, &e1);
  bundle_root_resolve(root, "../outside/none", out, sizeof out, &e2);
  CU_ASSERT_EQUAL(e1.code, e2.code);
  CU_ASSERT_PTR_NULL(strstr(e1.msg, "No such file"));
  CU_ASSERT_PTR_NULL(strstr(e2.msg, "No such file"));
  CU_ASSERT_EQUAL(bundle_root_resolve(root, "nosuch", out, sizeof out, &e), REC_ENOTFOUND);
  CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "no bundle 'nosuch' under the bundle root"));
  test_write_file(test_path("plainfile"), "x");
  CU_ASSERT_EQUAL(bundle_root_open(test_path("plainfile"), out, sizeof out, &e), REC_EINVAL);
}

static void log_quote_escapes_and_cuts(void) {
  char b[32];
  CU_ASSERT_STRING_EQUAL(rec_log_quote(b, sizeof b, "a\"b\\c\nd", 7), "a\\\"b\\\\c\\x0ad");
  const char nul[] = {'x', '\0', 'y'};
  CU_ASSERT_STRING_EQUAL(rec_log_quote(b, sizeof b, nul, 3), "x\\x00y");
  rec_log_quote(b, 12, "0123456789abcdef", 16);
  CU_ASSERT_STRING_EQUAL(b, "01234567...");
  rec_log_quote(b, 8, "\n\n\n\n", 4);
  CU_ASSERT_STRING_EQUAL(b, "\\x0a...");
  CU_ASSERT_STRING_EQUAL(rec_log_quote(b, sizeof b, "", 0), "");
}

void suite_auth(void) {
  static const test_case cases[] = {
      {"token file format", token_file_format},
      {"token file errors name the line, not the token", token_file_errors_name_the_line_not_the_token},
      {"certificate allow-list", certificate_allow_list},
      {"loopback addresses", loopback_addresses},
      {"reloads stay under the bundle root", reloads_stay_under_the_bundle_root},
      {"log quoting escapes and cuts", log_quote_escapes_and_cuts},
      {NULL, NULL}};
  test_add_suite("auth", cases);
}
