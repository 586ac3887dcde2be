/* tests/common/test_trace.c - W3C traceparent: the specification's valid
 * examples accepted with their fields, each way of being invalid refused
 * with the output untouched, new traces and child spans well formed. */
#include "common/trace.h"
#include "tests/test.h"

#include <string.h>

static bool parse(const char *v, trace_ctx *t) { return trace_parse(v, strlen(v), t); }

static bool lower_hex(const char *s, size_t n) {
  if (strlen(s) != n) return false;
  for (size_t i = 0; i < n; i++)
    if (!strchr("0123456789abcdef", s[i])) return false;
  return true;
}

static void valid_values_give_their_fields(void) {
  trace_ctx t;
  CU_ASSERT_TRUE_FATAL(parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", &t));
  CU_ASSERT_STRING_EQUAL(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
  CU_ASSERT_STRING_EQUAL(t.parent_id, "00f067aa0ba902b7");
  CU_ASSERT_TRUE(t.sampled);
  CU_ASSERT_TRUE(lower_hex(t.span_id, 16));
  CU_ASSERT_STRING_NOT_EQUAL(t.span_id, t.parent_id);
  CU_ASSERT_TRUE(parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", &t));
  CU_ASSERT_FALSE(t.sampled);
  CU_ASSERT_TRUE(parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03", &t)); /* other flags: kept out */
  CU_ASSERT_TRUE(t.sampled);
  /* A later version: its first four fields, when a '-' follows them. */
  CU_ASSERT_TRUE(parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes", &t));
  CU_ASSERT_TRUE(parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", &t));
}

static void invalid_values_are_refused(void) {
  static const char *const bad[] = {
      "",
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",     /* short */
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",   /* version 00 is exactly 55 */
      "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",    /* upper case */
      "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",    /* version ff */
      "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",    /* version not hex */
      "00-00000000000000000000000000000000-00f067aa0ba902b7-01",    /* zero trace id */
      "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",    /* zero parent id */
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",    /* flags not hex */
      "00 4bf92f3577b34da6a3ce929d0e0e4736 00f067aa0ba902b7 01",    /* separators */
      "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",    /* fields shifted */
      "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",   /* a later version: no '-' after */
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\n",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    trace_ctx t = {.trace_id = "kept"};
    CU_ASSERT_FALSE(parse(bad[i], &t));
    CU_ASSERT_STRING_EQUAL(t.trace_id, "kept");
  }
  trace_ctx t;
  const char *v = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  CU_ASSERT_FALSE(trace_parse(v, 54, &t)); /* the length given is what counts, not the NUL */
}

static void new_traces_and_children(void) {
  trace_ctx a, b;
  trace_start(&a);
  trace_start(&b);
  CU_ASSERT_TRUE(lower_hex(a.trace_id, 32));
  CU_ASSERT_TRUE(lower_hex(a.span_id, 16));
  CU_ASSERT_STRING_EQUAL(a.parent_id, "");
  CU_ASSERT_FALSE(a.sampled);
  CU_ASSERT_STRING_NOT_EQUAL(a.trace_id, b.trace_id);
  char c1[TRACEPARENT_LEN + 1], c2[TRACEPARENT_LEN + 1];
  trace_child(&a, c1);
  trace_child(&a, c2);
  CU_ASSERT_EQUAL(strlen(c1), TRACEPARENT_LEN);
  trace_ctx p;
  CU_ASSERT_TRUE_FATAL(parse(c1, &p)); /* what we send, we accept */
  CU_ASSERT_STRING_EQUAL(p.trace_id, a.trace_id);
  CU_ASSERT_STRING_NOT_EQUAL(p.parent_id, a.span_id); /* the callee's parent is a new span */
  CU_ASSERT_FALSE(p.sampled);
  CU_ASSERT_STRING_NOT_EQUAL(c1, c2);
  CU_ASSERT_TRUE(parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", &p));
  trace_child(&p, c1);
  CU_ASSERT_EQUAL(strncmp(c1, "00-4bf92f3577b34da6a3ce929d0e0e4736-", 36), 0);
  CU_ASSERT_STRING_EQUAL(c1 + 52, "-01");
}

void suite_trace(void) {
  static const test_case cases[] = {
      {"valid values give their fields", valid_values_give_their_fields},
      {"invalid values are refused", invalid_values_are_refused},
      {"new traces and children", new_traces_and_children},
      {NULL, NULL}};
  test_add_suite("trace", cases);
}
