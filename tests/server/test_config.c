/* tests/server/test_config.c - flags, the config file, and errors that name
 * the setting and its range. */
#include "server/config.h"
#include "tests/test.h"

#include <string.h>

static int parse(int argc, const char **argv, recd_config *c, rec_error *e) {
  FILE *devnull = fopen("/dev/null", "w");
  int rc = config_parse(argc, (char **)argv, c, devnull, e);
  fclose(devnull);
  return rc;
}

static void defaults_and_flags(void) {
  recd_config c;
  rec_error e = {0};
  const char *argv[] = {"recd", "--bundle=/b", "--threads", "3", "--max_k=50"};
  CU_ASSERT_EQUAL_FATAL(parse(5, argv, &c, &e), 0);
  CU_ASSERT_STRING_EQUAL(c.bundle, "/b");
  CU_ASSERT_EQUAL(c.threads, 3);
  CU_ASSERT_EQUAL(c.max_k, 50);
  CU_ASSERT_EQUAL(c.max_exclude, 1000);
  CU_ASSERT_STRING_EQUAL(c.listen, "127.0.0.1:50051");     /* loopback unless asked */
  CU_ASSERT_STRING_EQUAL(c.admin_grpc_listen, "127.0.0.1:50052");
  CU_ASSERT_STRING_EQUAL(c.admin_listen, "127.0.0.1:9464");
  CU_ASSERT(!c.admin_http_token);
  CU_ASSERT_STRING_EQUAL(c.tls_cert, "");                   /* plaintext unless asked */
  const char *one[] = {"recd", "--bundle=/b"};
  CU_ASSERT_EQUAL(parse(2, one, &c, &e), 0);
  CU_ASSERT(c.threads >= 1); /* 0 means one per core */
}

static void file_then_flags(void) {
  const char *p = test_path("recd.conf");
  test_write_file(p, "# comment\nbundle = /from/file\n max_k = 7 \n\nthreads=2\n");
  char flag[600];
  snprintf(flag, sizeof flag, "--config=%s", p);
  const char *argv[] = {"recd", "--threads=4", flag};
  recd_config c;
  rec_error e = {0};
  CU_ASSERT_EQUAL_FATAL(parse(3, argv, &c, &e), 0);
  CU_ASSERT_STRING_EQUAL(c.bundle, "/from/file");
  CU_ASSERT_EQUAL(c.max_k, 7);
  CU_ASSERT_EQUAL(c.threads, 4); /* a flag beats the file wherever it stands */
}

static void expect(int argc, const char **argv, const char *needle) {
  recd_config c;
  rec_error e = {0};
  CU_ASSERT_EQUAL(parse(argc, argv, &c, &e), REC_EINVAL);
  if (!strstr(e.msg, needle)) fprintf(stderr, "\n  got: %s\n  want: %s\n", e.msg, needle);
  CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, needle));
}

static void errors_are_one_clear_line(void) {
  const char *a1[] = {"recd", "--bundle=/b", "--threads=abc"};
  expect(3, a1, "threads: must be an integer in [0, 256], got 'abc'");
  const char *a2[] = {"recd", "--bundle=/b", "--max_k=0"};
  expect(3, a2, "max_k: must be an integer in [1, 10000], got '0'");
  const char *a3[] = {"recd", "--bundle=/b", "--nope=1"};
  expect(3, a3, "unknown option --nope");
  const char *a4[] = {"recd"};
  expect(1, a4, "bundle: required");
  const char *a5[] = {"recd", "--bundle=/b", "stray"};
  expect(3, a5, "unexpected argument 'stray'");
  const char *a6[] = {"recd", "--bundle=/b", "--listen=nocolon"};
  expect(3, a6, "listen: want host:port");
  const char *a7[] = {"recd", "--bundle"};
  expect(2, a7, "--bundle: missing value");
  const char *p = test_path("bad.conf");
  test_write_file(p, "bundle = /x\nthreads = many\n");
  char flag[600];
  snprintf(flag, sizeof flag, "--config=%s", p);
  const char *a8[] = {"recd", flag};
  char want[700];
  snprintf(want, sizeof want, "%s:2: threads: must be an integer", p);
  expect(2, a8, want);
  const char *a9[] = {"recd", "--config=/no/such/file"};
  expect(2, a9, "/no/such/file");
}

static void security_settings_that_cannot_work_are_refused(void) {
  struct {
    int argc;
    const char *argv[5];
    const char *want;
  } bad[] = {
      {3, {"recd", "--bundle=/b", "--admin_listen=0.0.0.0:9464"}, "not loopback"},
      {3, {"recd", "--bundle=/b", "--admin_http_auth=token"}, "set --admin_token_file"},
      {3, {"recd", "--bundle=/b", "--admin_http_auth=maybe"}, "admin_http_auth: must be auto or token"},
      {3, {"recd", "--bundle=/b", "--tls_cert=/c"}, "TLS needs both"},
      {4, {"recd", "--bundle=/b", "--tls_cert=/c", "--tls_key=/k"}, NULL},
      {3, {"recd", "--bundle=/b", "--tls_client_auth=require"}, "needs --tls_client_ca"},
      {3, {"recd", "--bundle=/b", "--tls_client_auth=sometimes"}, "none, optional or require"},
      {3, {"recd", "--bundle=/b", "--tls_client_ca=/ca"}, "client certificates need TLS"},
      {3, {"recd", "--bundle=/b", "--admin_allow=CN=ops"}, "admin_allow: certificate identities need --tls_client_ca"},
      {3, {"recd", "--bundle=/b", "--admin_client_auth=require"}, "require needs --tls_client_ca"},
      {3, {"recd", "--bundle=/b", "--shard_tls_cert=/c"}, "needs --shard_tls_ca"},
      {4, {"recd", "--bundle=/b", "--listen=127.0.0.1:7000", "--admin_grpc_listen=127.0.0.1:7000"},
       "must differ from --listen"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    if (!bad[i].want) { /* a good one among them */
      recd_config c;
      rec_error e = {0};
      CU_ASSERT_EQUAL(parse(bad[i].argc, bad[i].argv, &c, &e), 0);
      CU_ASSERT_EQUAL(c.tls_client_mode, 0);
      CU_ASSERT_EQUAL(c.admin_client_mode, 0); /* "optional" without a CA asks for nothing */
      continue;
    }
    expect(bad[i].argc, bad[i].argv, bad[i].want);
  }
  const char *ok[] = {"recd", "--bundle=/b", "--admin_listen=0.0.0.0:9464", "--admin_token_file=/t"};
  recd_config c;
  rec_error e = {0};
  CU_ASSERT_EQUAL(parse(4, ok, &c, &e), 0);
  CU_ASSERT(c.admin_http_token); /* off loopback: the token is needed */
}

static void help_is_not_an_error(void) {
  recd_config c;
  const char *argv[] = {"recd", "--help"};
  CU_ASSERT_EQUAL(parse(2, argv, &c, NULL), 1);
}

void suite_config(void) {
  static const test_case cases[] = {{"defaults_and_flags", defaults_and_flags},
                                    {"file_then_flags", file_then_flags},
                                    {"errors_are_one_clear_line", errors_are_one_clear_line},
                                    {"security settings that cannot work are refused",
                                     security_settings_that_cannot_work_are_refused},
                                    {"help_is_not_an_error", help_is_not_an_error},
                                    {NULL, NULL}};
  test_add_suite("config", cases);
}
