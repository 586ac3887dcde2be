/* tests/retrieval/test_tower.c - the user tower's forward pass, checked
 * against values computed by hand. */
#include "retrieval/tower.h"
#include "tests/test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static float *dup(const float *v, size_t n) {
  float *p = malloc(n * sizeof *p);
  memcpy(p, v, n * sizeof *p);
  return p;
}

/* x = [1, 2]; layer 0 (2x3, relu): W = [[1, -1, 0], [0, 1, -1]], b = [0, 0, 1]
 *   x W + b = [1, 1, -1] -> relu -> [1, 1, 0]
 * layer 1 (3x2, linear): W = [[3, 0], [0, 4], [5, 5]], b = [0, 0]
 *   -> [3, 4] -> normalised [0.6, 0.8] */
static void forward_matches_hand_computation(void) {
  const float w0[] = {1, -1, 0, 0, 1, -1}, b0[] = {0, 0, 1};
  const float w1[] = {3, 0, 0, 4, 5, 5}, b1[] = {0, 0};
  tower_layer *ls = calloc(2, sizeof *ls);
  ls[0] = (tower_layer){2, 3, dup(w0, 6), dup(b0, 3), TOWER_RELU};
  ls[1] = (tower_layer){3, 2, dup(w1, 6), dup(b1, 2), TOWER_LINEAR};
  tower t;
  CU_ASSERT_EQUAL_FATAL(tower_init(&t, ls, 2, NULL), 0);
  CU_ASSERT_EQUAL(t.in_dim, 2);
  CU_ASSERT_EQUAL(t.out_dim, 2);
  float x[] = {1, 2}, out[2], scratch[6];
  CU_ASSERT_EQUAL(tower_forward(&t, x, out, scratch), 0);
  CU_ASSERT_DOUBLE_EQUAL(out[0], 0.6, 1e-6);
  CU_ASSERT_DOUBLE_EQUAL(out[1], 0.8, 1e-6);
  /* A zero output has no direction to search in: refused. */
  memset(ls[1].w, 0, 6 * sizeof(float));
  CU_ASSERT_EQUAL(tower_forward(&t, x, out, scratch), REC_EINVAL);
  tower_destroy(&t);
}

static void shapes_must_chain(void) {
  tower_layer ls[2] = {{2, 3, NULL, NULL, TOWER_RELU}, {4, 2, NULL, NULL, TOWER_LINEAR}};
  tower t;
  rec_error e = {0};
  CU_ASSERT_EQUAL(tower_init(&t, ls, 2, &e), REC_EMISMATCH);
  CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "layer 1 takes 4 inputs but layer 0 gives 3"));
}

static void activations_parse(void) {
  CU_ASSERT_EQUAL(tower_act_parse("relu"), TOWER_RELU);
  CU_ASSERT_EQUAL(tower_act_parse("linear"), TOWER_LINEAR);
  CU_ASSERT_EQUAL(tower_act_parse("tanh"), TOWER_TANH);
  CU_ASSERT_EQUAL(tower_act_parse("gelu"), -1);
  float v[] = {3, 4};
  CU_ASSERT_TRUE(tower_l2_normalize(v, 2));
  CU_ASSERT_DOUBLE_EQUAL(v[0], 0.6, 1e-6);
  float z[] = {0, 0};
  CU_ASSERT_FALSE(tower_l2_normalize(z, 2));
}

void suite_tower(void) {
  static const test_case cases[] = {
      {"forward_matches_hand_computation", forward_matches_hand_computation},
      {"shapes_must_chain", shapes_must_chain},
      {"activations_parse", activations_parse},
      {NULL, NULL}};
  test_add_suite("tower", cases);
}
