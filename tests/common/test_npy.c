/* tests/common/test_npy.c - the .npy files bundles carry. */
#include "common/npy.h"
#include "tests/test.h"

#include <stdio.h>
#include <string.h>

static void round_trip_2d_and_1d(void) {
  float m[6] = {1, 2, 3, 4, 5, -6.5f};
  const char *p = test_path("m.npy");
  CU_ASSERT_EQUAL_FATAL(npy_f32_write(p, m, 2, 3, 2, NULL), 0);
  npy_f32 a;
  CU_ASSERT_EQUAL_FATAL(npy_f32_read(p, &a, NULL), 0);
  CU_ASSERT_EQUAL(a.ndim, 2);
  CU_ASSERT_EQUAL(a.rows, 2);
  CU_ASSERT_EQUAL(a.cols, 3);
  CU_ASSERT_EQUAL(memcmp(a.data, m, sizeof m), 0);
  npy_f32_destroy(&a);
  const char *q = test_path("v.npy");
  CU_ASSERT_EQUAL_FATAL(npy_f32_write(q, m, 6, 1, 1, NULL), 0);
  CU_ASSERT_EQUAL_FATAL(npy_f32_read(q, &a, NULL), 0);
  CU_ASSERT_EQUAL(a.ndim, 1);
  CU_ASSERT_EQUAL(a.rows, 6);
  CU_ASSERT_EQUAL(a.data[5], -6.5f);
  npy_f32_destroy(&a);
}

/* The header as NumPy writes it: 64-byte aligned data. */
static void header_is_numpy_shaped(void) {
  float v[1] = {1};
  const char *p = test_path("h.npy");
  npy_f32_write(p, v, 1, 1, 2, NULL);
  FILE *fp = fopen(p, "rb");
  unsigned char b[10];
  CU_ASSERT_EQUAL(fread(b, 1, 10, fp), 10);
  fclose(fp);
  CU_ASSERT_EQUAL(b[6], 1);
  CU_ASSERT_EQUAL((10 + b[8] + (b[9] << 8)) % 64, 0);
}

static void write_raw(const char *path, const char *header, size_t data_bytes) {
  FILE *fp = fopen(path, "wb");
  size_t hl = strlen(header);
  unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)hl, 0};
  fwrite(pre, 1, 10, fp);
  fwrite(header, 1, hl, fp);
  for (size_t i = 0; i < data_bytes; i++) fputc(0, fp);
  fclose(fp);
}

static void refuses_what_it_would_misread(void) {
  npy_f32 a;
  rec_error e = {0};
  const char *p = test_path("bad.npy");
  write_raw(p, "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }\n", 16);
  CU_ASSERT_EQUAL(npy_f32_read(p, &a, &e), REC_ECORRUPT);
  CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "float32"));
  write_raw(p, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }\n", 16);
  CU_ASSERT_EQUAL(npy_f32_read(p, &a, &e), REC_ECORRUPT);
  CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "Fortran"));
  write_raw(p, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }\n", 15);
  CU_ASSERT_EQUAL(npy_f32_read(p, &a, &e), REC_ECORRUPT);
  CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "truncated"));
  write_raw(p, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }\n", 17);
  CU_ASSERT_EQUAL(npy_f32_read(p, &a, &e), REC_ECORRUPT);
  CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "trailing"));
  /* A forged shape asking for 128 TiB is refused by a size check, not by
   * an allocation that fails (or, worse, succeeds lazily). */
  write_raw(p, "{'descr': '<f4', 'fortran_order': False, 'shape': (35184372088832, 1), }\n", 64);
  CU_ASSERT_EQUAL(npy_f32_read(p, &a, &e), REC_ECORRUPT);
  CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "truncated: header says 35184372088832 x 1 floats"));
  test_write_file(p, "not numpy at all");
  CU_ASSERT_EQUAL(npy_f32_read(p, &a, &e), REC_ECORRUPT);
  CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, p));
  CU_ASSERT_EQUAL(npy_f32_read(test_path("missing.npy"), &a, &e), REC_EIO);
}

void suite_npy(void) {
  static const test_case cases[] = {{"round_trip_2d_and_1d", round_trip_2d_and_1d},
                                    {"header_is_numpy_shaped", header_is_numpy_shaped},
                                    {"refuses_what_it_would_misread", refuses_what_it_would_misread},
                                    {NULL, NULL}};
  test_add_suite("npy", cases);
}
