/* tests/server/test_rpc_wire.c - rpc_decode: bytes checked against the
 * descriptor before protobuf-c allocates anything: strings must be UTF-8
 * without NUL (the error names the field), repeated fields and unknown
 * fields are capped, nesting is bounded, malformed bytes are refused. */
#include "rec/v1/events.pb-c.h"
#include "rec/v1/ranking.pb-c.h"
#include "server/rpc.h"
#include "tests/test.h"

#include <stdlib.h>
#include <string.h>

/* Appends a varint. */
static size_t put_varint(uint8_t *p, uint64_t v) {
  size_t n = 0;
  do {
    p[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
    v >>= 7;
  } while (v);
  return n;
}

/* Appends field 'num' as a length-delimited value. */
static size_t put_bytes(uint8_t *p, unsigned num, const void *s, size_t n) {
  size_t k = put_varint(p, (uint64_t)num << 3 | 2);
  k += put_varint(p + k, n);
  memcpy(p + k, s, n);
  return k + n;
}

static ProtobufCMessage *decode(const uint8_t *p, size_t n, const ProtobufCMessageDescriptor *d,
                                arena *a, rec_error *e) {
  memset(e, 0, sizeof *e);
  return rpc_decode(p, n, d, NULL, a, e);
}

static void good_requests_decode(void) {
  arena a;
  arena_init(&a, 0);
  Rec__V1__RecommendRequest q = REC__V1__RECOMMEND_REQUEST__INIT;
  char *ex[] = {"I1", "Ünïcode-Ω-✓"};
  q.user_id = "U00001";
  q.k = 7;
  q.exclude_item_ids = ex;
  q.n_exclude_item_ids = 2;
  uint8_t buf[256];
  size_t n = rec__v1__recommend_request__pack(&q, buf);
  rec_error e;
  Rec__V1__RecommendRequest *r = (Rec__V1__RecommendRequest *)decode(buf, n, &rec__v1__recommend_request__descriptor, &a, &e);
  CU_ASSERT_PTR_NOT_NULL_FATAL(r);
  CU_ASSERT_STRING_EQUAL(r->user_id, "U00001");
  CU_ASSERT_EQUAL(r->k, 7);
  CU_ASSERT_STRING_EQUAL(r->exclude_item_ids[1], "Ünïcode-Ω-✓");
  /* An unknown field (a newer client's) is skipped. */
  n += put_bytes(buf + n, 99, "future", 6);
  CU_ASSERT_PTR_NOT_NULL(decode(buf, n, &rec__v1__recommend_request__descriptor, &a, &e));
  arena_destroy(&a);
}

static void bad_strings_name_the_field(void) {
  arena a;
  arena_init(&a, 0);
  rec_error e;
  uint8_t buf[256];
  size_t n = put_bytes(buf, 1, "U00001\0other", 12);
  CU_ASSERT_PTR_NULL(decode(buf, n, &rec__v1__recommend_request__descriptor, &a, &e));
  CU_ASSERT_EQUAL(e.code, REC_EINVAL);
  CU_ASSERT_STRING_EQUAL(e.msg, "user_id contains a NUL byte");
  static const char *const bad[] = {"\xff", "\xc0\xaf", "\xe0\x80\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80",
                                    "ok\xe2\x82", "\x80"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    /* events[1].item_id of a RecordRequest */
    uint8_t ev[64];
    size_t m = put_bytes(ev, 2, bad[i], strlen(bad[i]));
    uint8_t good[16];
    size_t g = put_bytes(good, 2, "I1", 2);
    n = put_bytes(buf, 1, good, g);
    n += put_bytes(buf + n, 1, ev, m);
    CU_ASSERT_PTR_NULL(decode(buf, n, &rec__v1__record_request__descriptor, &a, &e));
    CU_ASSERT_EQUAL(e.code, REC_EINVAL);
    CU_ASSERT_STRING_EQUAL(e.msg, "events[1].item_id is not valid UTF-8");
  }
  arena_destroy(&a);
}

/* 2 million empty events in 4 MiB would decode into hundreds of MiB: the
 * walk refuses them before protobuf-c allocates anything. */
static void huge_repeated_fields_are_refused_before_decoding(void) {
  arena a;
  arena_init(&a, 0);
  size_t count = 2000000, n = 2 * count;
  uint8_t *buf = malloc(n);
  CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
  for (size_t i = 0; i < count; i++) buf[2 * i] = 0x0a, buf[2 * i + 1] = 0;
  rec_error e;
  CU_ASSERT_PTR_NULL(decode(buf, n, &rec__v1__record_request__descriptor, &a, &e));
  CU_ASSERT_EQUAL(e.code, REC_ETOOBIG);
  CU_ASSERT_STRING_EQUAL(e.msg, "events holds more than 10000 elements, more than any request may");
  CU_ASSERT_EQUAL(a.used_total, 0);
  /* At the cap it decodes. */
  CU_ASSERT_PTR_NOT_NULL(decode(buf, 2 * 10000, &rec__v1__record_request__descriptor, &a, &e));
  /* Unknown fields are capped too: each would be kept by protobuf-c. */
  for (size_t i = 0; i < 1000; i++) buf[2 * i] = 0xf8, buf[2 * i + 1] = 0x01; /* field 31, varint */
  CU_ASSERT_PTR_NULL(decode(buf, 2000, &rec__v1__record_request__descriptor, &a, &e));
  CU_ASSERT_EQUAL(e.code, REC_EINVAL);
  free(buf);
  arena_destroy(&a);
}

static void malformed_bytes_are_refused(void) {
  arena a;
  arena_init(&a, 0);
  rec_error e;
  static const struct {
    const char *bytes;
    size_t n;
  } cases[] = {
      {"\x0a\x05U0", 4},          /* length past the end */
      {"\x0a", 1},                /* no length */
      {"\x10\xff\xff", 3},        /* unfinished varint */
      {"\x0b\x0c", 2},            /* a group */
      {"\x00\x01", 2},            /* field number 0 */
      {"\x19\x01\x02", 3},        /* fixed64 cut short */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    CU_ASSERT_PTR_NULL(decode((const uint8_t *)cases[i].bytes, cases[i].n, &rec__v1__recommend_request__descriptor, &a, &e));
    CU_ASSERT_EQUAL(e.code, REC_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "not a valid rec.v1.RecommendRequest"));
  }
  arena_destroy(&a);
}

void suite_rpc_wire(void) {
  static const test_case cases[] = {
      {"good requests decode", good_requests_decode},
      {"bad strings name the field", bad_strings_name_the_field},
      {"huge repeated fields are refused before decoding", huge_repeated_fields_are_refused_before_decoding},
      {"malformed bytes are refused", malformed_bytes_are_refused},
      {NULL, NULL}};
  test_add_suite("rpc_wire", cases);
}
