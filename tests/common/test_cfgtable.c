/* tests/common/test_cfgtable.c - a settings table over a struct of every
 * field type: defaults, single settings, files, the fallback, and errors that
 * name the key and its range. */
#include "common/cfgtable.h"
#include "tests/test.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct demo {
  int32_t n;
  int64_t big;
  uint32_t u;
  float f;
  double d;
  float cap;
  bool b;
  int e;
  char s[8];
  int extra;  /* set by the fallback */
} demo;

static const char *const COLOURS[] = {"rank", "minmax", NULL};

static const cfg_field FIELDS[] = {
    {"n", .type = CFG_INT, .offset = offsetof(demo, n), .size = sizeof(int32_t), .def = "5",
     .min = -10, .max = 100, .help = "a small integer"},
    {"big", .type = CFG_INT, .offset = offsetof(demo, big), .size = sizeof(int64_t),
     .def = "5000000000", .min = 0, .max = 1e12, .help = "a wide integer"},
    {"u", .type = CFG_INT, .offset = offsetof(demo, u), .size = sizeof(uint32_t), .def = "7",
     .min = 1, .max = 100000, .help = "an unsigned integer"},
    {"f", .type = CFG_FLOAT, .offset = offsetof(demo, f), .size = sizeof(float), .def = "0.25",
     .min = 0, .max = 1, .help = "a fraction"},
    {"d", .type = CFG_FLOAT, .offset = offsetof(demo, d), .size = sizeof(double), .def = "-1.5",
     .min = -2, .max = 2.5, .help = "a double"},
    {"cap", .type = CFG_FLOAT, .offset = offsetof(demo, cap), .size = sizeof(float), .def = "0",
     .min = 1, .max = 100, .zero_off = true, .help = "a ratio; 0 = off"},
    {"b", .type = CFG_BOOL, .offset = offsetof(demo, b), .size = sizeof(bool), .def = "true",
     .help = "a switch"},
    {"e", .type = CFG_ENUM, .offset = offsetof(demo, e), .size = sizeof(int), .def = "minmax",
     .names = COLOURS, .help = "a choice"},
    {"s", .type = CFG_STR, .offset = offsetof(demo, s), .size = 8, .def = "abc",
     .help = "a short string"},
};

/* Knows "extra" (an integer it parses itself) and "extra.bad" (always refused). */
static int fallback(void *obj, const char *key, const char *value, rec_error *err) {
  if (strcmp(key, "extra.bad") == 0) return rec_fail(err, REC_EINVAL, "extra.bad: refused");
  if (strcmp(key, "extra") != 0) return REC_ENOTFOUND;
  ((demo *)obj)->extra = atoi(value);
  return 0;
}

static const cfg_table TABLE = {FIELDS, sizeof FIELDS / sizeof FIELDS[0], fallback};
static const cfg_table PLAIN = {FIELDS, sizeof FIELDS / sizeof FIELDS[0], NULL};

static void defaults(demo *d) {
  memset(d, 0, sizeof *d);
  CU_ASSERT_EQUAL_FATAL(cfg_defaults(&TABLE, d, NULL), 0);
}

static void defaults_fill_every_type(void) {
  demo d;
  defaults(&d);
  CU_ASSERT_EQUAL(d.n, 5);
  CU_ASSERT_EQUAL(d.big, 5000000000LL);
  CU_ASSERT_EQUAL(d.u, 7);
  CU_ASSERT_EQUAL(d.f, 0.25f);
  CU_ASSERT_EQUAL(d.d, -1.5);
  CU_ASSERT_EQUAL(d.cap, 0.0f);
  CU_ASSERT_TRUE(d.b);
  CU_ASSERT_EQUAL(d.e, 1);
  CU_ASSERT_STRING_EQUAL(d.s, "abc");
  CU_ASSERT_EQUAL(d.extra, 0);
}

static void a_bad_default_is_a_bug(void) {
  static const cfg_field bad[] = {{"n", .type = CFG_INT, .offset = offsetof(demo, n),
                                   .size = sizeof(int32_t), .def = "200", .min = 0, .max = 100,
                                   .help = ""}};
  const cfg_table t = {bad, 1, NULL};
  demo d;
  rec_error e = {0};
  CU_ASSERT_EQUAL(cfg_defaults(&t, &d, &e), REC_EINTERNAL);
  CU_ASSERT_STRING_EQUAL(e.msg, "bad default: n: must be an integer in [0, 100], got '200'");
}

static void sets_every_type(void) {
  demo d;
  defaults(&d);
  CU_ASSERT_EQUAL(cfg_set(&TABLE, &d, "n", "-10", NULL), 0);
  CU_ASSERT_EQUAL(cfg_set(&TABLE, &d, "big", "1000000000000", NULL), 0);
  CU_ASSERT_EQUAL(cfg_set(&TABLE, &d, "u", "100000", NULL), 0);
  CU_ASSERT_EQUAL(cfg_set(&TABLE, &d, "f", "1", NULL), 0);
  CU_ASSERT_EQUAL(cfg_set(&TABLE, &d, "d", "2.5", NULL), 0);
  CU_ASSERT_EQUAL(cfg_set(&TABLE, &d, "cap", "1.5", NULL), 0);
  CU_ASSERT_EQUAL(cfg_set(&TABLE, &d, "b", "false", NULL), 0);
  CU_ASSERT_EQUAL(cfg_set(&TABLE, &d, "e", "rank", NULL), 0);
  CU_ASSERT_EQUAL(cfg_set(&TABLE, &d, "s", "1234567", NULL), 0);
  CU_ASSERT_EQUAL(cfg_set(&TABLE, &d, "extra", "42", NULL), 0);
  CU_ASSERT_EQUAL(d.n, -10);
  CU_ASSERT_EQUAL(d.big, 1000000000000LL);
  CU_ASSERT_EQUAL(d.u, 100000);
  CU_ASSERT_EQUAL(d.f, 1.0f);
  CU_ASSERT_EQUAL(d.d, 2.5);
  CU_ASSERT_EQUAL(d.cap, 1.5f);
  CU_ASSERT_FALSE(d.b);
  CU_ASSERT_EQUAL(d.e, 0);
  CU_ASSERT_STRING_EQUAL(d.s, "1234567");
  CU_ASSERT_EQUAL(d.extra, 42);
  CU_ASSERT_EQUAL(cfg_set(&TABLE, &d, "cap", "0", NULL), 0); /* 0 = off, outside [1, 100] */
  CU_ASSERT_EQUAL(d.cap, 0.0f);
  CU_ASSERT_EQUAL(cfg_set(&TABLE, &d, "s", "", NULL), 0);
  CU_ASSERT_STRING_EQUAL(d.s, "");
  const cfg_field *f = cfg_find(&TABLE, "big=3", 3);
  CU_ASSERT_PTR_EQUAL(f, &FIELDS[1]);
  CU_ASSERT_PTR_NULL(cfg_find(&TABLE, "bi", 2)); /* a prefix is not a name */
}

/* 'key' = 'value' is refused with exactly 'want', and the struct is unchanged. */
static void refused(const cfg_table *t, const char *key, const char *value, const char *want) {
  demo d, before;
  defaults(&d);
  memcpy(&before, &d, sizeof d);
  rec_error e = {0};
  CU_ASSERT_EQUAL(cfg_set(t, &d, key, value, &e), REC_EINVAL);
  CU_ASSERT_EQUAL(e.code, REC_EINVAL);
  if (strcmp(e.msg, want)) fprintf(stderr, "\n  got:  %s\n  want: %s\n", e.msg, want);
  CU_ASSERT_STRING_EQUAL(e.msg, want);
  CU_ASSERT_EQUAL(memcmp(&d, &before, sizeof d), 0);
}

static void errors_name_key_and_range(void) {
  refused(&TABLE, "n", "abc", "n: must be an integer in [-10, 100], got 'abc'");
  refused(&TABLE, "n", "101", "n: must be an integer in [-10, 100], got '101'");
  refused(&TABLE, "n", "", "n: must be an integer in [-10, 100], got ''");
  refused(&TABLE, "n", "1.5", "n: must be an integer in [-10, 100], got '1.5'");
  refused(&TABLE, "n", "99999999999999999999",
          "n: must be an integer in [-10, 100], got '99999999999999999999'");
  refused(&TABLE, "u", "0", "u: must be an integer in [1, 100000], got '0'");
  refused(&TABLE, "u", "-1", "u: must be an integer in [1, 100000], got '-1'");
  refused(&TABLE, "f", "1.01", "f: must be a number in [0, 1], got '1.01'");
  refused(&TABLE, "f", "-0.1", "f: must be a number in [0, 1], got '-0.1'");
  refused(&TABLE, "f", "nan", "f: must be a number in [0, 1], got 'nan'");
  refused(&TABLE, "f", "0.5x", "f: must be a number in [0, 1], got '0.5x'");
  refused(&TABLE, "d", "inf", "d: must be a number in [-2, 2.5], got 'inf'");
  refused(&TABLE, "cap", "0.5", "cap: must be 0 or a number in [1, 100], got '0.5'");
  refused(&TABLE, "b", "yes", "b: must be true or false, got 'yes'");
  refused(&TABLE, "b", "True", "b: must be true or false, got 'True'");
  refused(&TABLE, "e", "zscore", "e: must be one of rank, minmax, got 'zscore'");
  refused(&TABLE, "s", "12345678", "s: value longer than 7 bytes");
  refused(&TABLE, "nope", "1", "unknown setting 'nope'");
  refused(&PLAIN, "extra", "1", "unknown setting 'extra'"); /* no fallback */
  refused(&TABLE, "extra.bad", "1", "extra.bad: refused");
}

static void file_with_every_kind_of_line(void) {
  const char *p = test_path("demo.conf");
  test_write_file(p, "# a comment\n"
                     "   # an indented comment\n"
                     "\n"
                     "n=7\n"
                     "  f   =   0.5  \r\n"
                     "\tb = false\t\n"
                     "e = rank\n"
                     "s = a=b\n"    /* split at the first '=' */
                     "extra = 9\n"  /* through the fallback */
                     "n = 8\n");    /* the later line wins */
  demo d;
  defaults(&d);
  rec_error e = {0};
  CU_ASSERT_EQUAL_FATAL(cfg_load_file(&TABLE, &d, p, &e), 0);
  CU_ASSERT_EQUAL(d.n, 8);
  CU_ASSERT_EQUAL(d.f, 0.5f);
  CU_ASSERT_FALSE(d.b);
  CU_ASSERT_EQUAL(d.e, 0);
  CU_ASSERT_STRING_EQUAL(d.s, "a=b");
  CU_ASSERT_EQUAL(d.extra, 9);
  CU_ASSERT_EQUAL(d.u, 7); /* untouched keys keep their defaults */
}

static void a_line_longer_than_any_buffer(void) {
  size_t pad = 100000;
  char *text = malloc(pad + 32);
  CU_ASSERT_PTR_NOT_NULL_FATAL(text);
  memcpy(text, "u = ", 4);
  memset(text + 4, '0', pad); /* leading zeros: a valid, very long integer */
  strcpy(text + 4 + pad, "42\nn = 3\n");
  const char *p = test_path("long.conf");
  test_write_file(p, text);
  free(text);
  demo d;
  defaults(&d);
  CU_ASSERT_EQUAL(cfg_load_file(&TABLE, &d, p, NULL), 0);
  CU_ASSERT_EQUAL(d.u, 42);
  CU_ASSERT_EQUAL(d.n, 3);
}

/* The file holding 'text' fails with 'code' and exactly "PATH:" + 'want'. */
static void file_refused(const char *text, int code, const char *want) {
  const char *p = test_path("bad.conf");
  test_write_file(p, text);
  demo d;
  defaults(&d);
  rec_error e = {0};
  CU_ASSERT_EQUAL(cfg_load_file(&TABLE, &d, p, &e), code);
  char full[1024];
  snprintf(full, sizeof full, "%s:%s", p, want);
  if (strcmp(e.msg, full)) fprintf(stderr, "\n  got:  %s\n  want: %s\n", e.msg, full);
  CU_ASSERT_STRING_EQUAL(e.msg, full);
}

static void file_errors_name_file_and_line(void) {
  file_refused("n = 1\n\n# x\nn = 500\n", REC_EINVAL,
               "4: n: must be an integer in [-10, 100], got '500'");
  file_refused("f = 0.5\nmystery = 1\n", REC_EINVAL, "2: unknown setting 'mystery'");
  file_refused("just words\n", REC_EINVAL, "1: want 'key = value'");
  file_refused("b = on\n", REC_EINVAL, "1: b: must be true or false, got 'on'");
  file_refused("e =\n", REC_EINVAL, "1: e: must be one of rank, minmax, got ''");
  file_refused("s = toolongvalue\n", REC_EINVAL, "1: s: value longer than 7 bytes");
  file_refused("n = 1\nextra.bad = 1\n", REC_EINVAL, "2: extra.bad: refused");
  demo d;
  rec_error e = {0};
  CU_ASSERT_EQUAL(cfg_load_file(&TABLE, &d, "/no/such/file.conf", &e), REC_EIO);
  CU_ASSERT_STRING_EQUAL(e.msg, "/no/such/file.conf: No such file or directory");
}

static void error_prefix(void) {
  rec_error e = {0};
  rec_fail(&e, REC_EINVAL, "n: bad");
  CU_ASSERT_EQUAL(cfg_error_prefix(&e, REC_EIO, "f.conf:3: "), REC_EIO);
  CU_ASSERT_EQUAL(e.code, REC_EIO);
  CU_ASSERT_STRING_EQUAL(e.msg, "f.conf:3: n: bad");
  CU_ASSERT_EQUAL(cfg_error_prefix(NULL, REC_EINVAL, "x"), REC_EINVAL);
  char s[] = " \t a b \r\n";
  CU_ASSERT_STRING_EQUAL(cfg_trim(s), "a b");
}

/* Every type written back as a settings file holds it, and read back the same. */
static void format_writes_what_set_reads(void) {
  demo d, again;
  defaults(&d);
  CU_ASSERT_EQUAL(cfg_set(&TABLE, &d, "big", "1000000000000", NULL), 0);
  CU_ASSERT_EQUAL(cfg_set(&TABLE, &d, "e", "rank", NULL), 0);
  const char *want[] = {"5", "1000000000000", "7", "0.25", "-1.5", "0", "true", "rank", "abc"};
  char buf[64];
  defaults(&again);
  for (size_t i = 0; i < sizeof FIELDS / sizeof FIELDS[0]; i++) {
    CU_ASSERT_STRING_EQUAL(cfg_format(&FIELDS[i], &d, buf, sizeof buf), want[i]);
    CU_ASSERT_EQUAL(cfg_set_field(&FIELDS[i], &again, buf, NULL), 0);
  }
  CU_ASSERT(again.big == d.big && again.e == d.e && again.f == d.f && again.d == d.d);
  CU_ASSERT_STRING_EQUAL(cfg_format(&FIELDS[0], &d, buf, 1), ""); /* cut, still a string */
}

static void usage_lists_every_field(void) {
  const char *p = test_path("usage.txt");
  FILE *fp = fopen(p, "w");
  CU_ASSERT_PTR_NOT_NULL_FATAL(fp);
  cfg_usage(&TABLE, fp, "--");
  fclose(fp);
  char buf[4096] = "";
  fp = fopen(p, "r");
  CU_ASSERT_PTR_NOT_NULL_FATAL(fp);
  size_t got = fread(buf, 1, sizeof buf - 1, fp);
  buf[got] = '\0';
  fclose(fp);
  const char *want[] = {
      "  --n                        a small integer (default: 5; range -10..100)\n",
      "  --f                        a fraction (default: 0.25; range 0..1)\n",
      "  --cap                      a ratio; 0 = off (default: 0; range 0 or 1..100)\n",
      "  --b                        a switch (default: true; true or false)\n",
      "  --e                        a choice (default: minmax; one of rank, minmax)\n",
      "  --s                        a short string (default: abc)\n",
  };
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    if (!strstr(buf, want[i])) fprintf(stderr, "\n  missing: %s  in:\n%s", want[i], buf);
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, want[i]));
  }
}

void suite_cfgtable(void) {
  static const test_case cases[] = {
      {"defaults_fill_every_type", defaults_fill_every_type},
      {"a_bad_default_is_a_bug", a_bad_default_is_a_bug},
      {"sets_every_type", sets_every_type},
      {"errors_name_key_and_range", errors_name_key_and_range},
      {"file_with_every_kind_of_line", file_with_every_kind_of_line},
      {"a_line_longer_than_any_buffer", a_line_longer_than_any_buffer},
      {"file_errors_name_file_and_line", file_errors_name_file_and_line},
      {"error_prefix", error_prefix},
      {"usage_lists_every_field", usage_lists_every_field},
      {"format_writes_what_set_reads", format_writes_what_set_reads},
      {NULL, NULL}};
  test_add_suite("cfgtable", cases);
}
