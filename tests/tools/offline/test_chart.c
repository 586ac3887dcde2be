/* tests/tools/offline/test_chart.c - the SVG chart parses as XML, draws one bar per
 * value at the right height, escapes its text, and fails with the right
 * codes without leaving a file behind. */
#include "tests/test.h"
#include "tools/offline/chart.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define PYTHON "/usr/bin/python3"

static const char *const GROUPS[] = {"Recall@50", "NDCG@50"};
static const char *const SERIES[] = {"popularity", "a<b & c", "two-tower"};
/* Largest whisker top 0.34: ticks every 0.1 up to 0.4. */
static const double MEAN[] = {0.10, 0.25, 0.31, 0.05, 0.20, 0.28};
static const double LO[] = {0.08, 0.22, 0.29, 0.04, 0.18, 0.25};
static const double HI[] = {0.12, 0.28, 0.34, 0.06, 0.22, 0.31};

/* Parses the SVG with Python's minidom and checks, from the parsed tree:
 * the bar count; each bar's height against the y axis, whose scale is read
 * from where the tick labels "0" and argv[3] (the top tick) sit; and that
 * each text in argv[4:] is the content of some <text> element. */
static const char CHECK_PY[] =
    "import sys, xml.dom.minidom as m\n"
    "d = m.parse(sys.argv[1])\n"
    "bars = [r for r in d.getElementsByTagName('rect') if r.getAttribute('class') == 'bar']\n"
    "want = [float(x) for x in sys.argv[2].split(',')]\n"
    "assert len(bars) == len(want), len(bars)\n"
    "texts = {t.firstChild.data: t for t in d.getElementsByTagName('text') if t.firstChild}\n"
    "y = lambda s: float(texts[s].getAttribute('y'))\n"
    "scale = (y('0') - y(sys.argv[3])) / float(sys.argv[3])\n"
    "for b, w in zip(bars, want):\n"
    "  assert abs(float(b.getAttribute('height')) - w * scale) < 0.2, (b.toxml(), w, scale)\n"
    "for s in sys.argv[4:]: assert s in texts, (s, list(texts))\n";

static char *slurp(const char *path) {
  FILE *fp = fopen(path, "rb");
  CU_ASSERT_PTR_NOT_NULL_FATAL(fp);
  static char buf[1 << 16];
  size_t n = fread(buf, 1, sizeof buf - 1, fp);
  CU_ASSERT_FATAL(n < sizeof buf - 1);
  buf[n] = 0;
  fclose(fp);
  return buf;
}

static int count(const char *hay, const char *needle) {
  int n = 0;
  for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle)) n++;
  return n;
}

static void writes_parseable_svg_with_escaped_names(void) {
  const char *svg = test_path("chart.svg");
  rec_error e = {0};
  CU_ASSERT_EQUAL_FATAL(
      chart_svg_bars(svg, "Eval <v1> & \"friends\"", GROUPS, 2, SERIES, 3, MEAN, LO, HI, &e), 0);
  const char *text = slurp(svg);
  CU_ASSERT(strncmp(text, "<?xml", 5) == 0);
  CU_ASSERT_PTR_NOT_NULL(strstr(text, "<svg xmlns=\"http://www.w3.org/2000/svg\""));
  CU_ASSERT_PTR_NOT_NULL(strstr(text, "</svg>"));
  CU_ASSERT_PTR_NOT_NULL(strstr(text, ">a&lt;b &amp; c</text>"));
  CU_ASSERT_PTR_NULL(strstr(text, "a<b"));
  CU_ASSERT_PTR_NOT_NULL(strstr(text, "Eval &lt;v1&gt; &amp; &quot;friends&quot;"));
  CU_ASSERT_EQUAL(count(text, "class=\"bar\""), 6);
  CU_ASSERT_EQUAL(count(text, "class=\"whisker\""), 6);
  CU_ASSERT_PTR_NOT_NULL(strstr(text, ">0.4</text>"));
  CU_ASSERT_PTR_NULL(strstr(text, ">0.5</text>"));
  CU_ASSERT_EQUAL(access(PYTHON, X_OK), 0);
  const char *py = test_path("check_svg.py");
  test_write_file(py, CHECK_PY);
  char cmd[2048];
  snprintf(cmd, sizeof cmd,
           PYTHON " %s %s 0.10,0.25,0.31,0.05,0.20,0.28 0.4 Recall@50 NDCG@50 popularity "
                  "'a<b & c' two-tower 0.1 'Eval <v1> & \"friends\"'",
           py, svg);
  CU_ASSERT_EQUAL(system(cmd), 0);
}

static void no_whiskers_without_intervals(void) {
  const char *svg = test_path("chart_plain.svg");
  CU_ASSERT_EQUAL_FATAL(chart_svg_bars(svg, NULL, GROUPS, 2, SERIES, 3, MEAN, NULL, NULL, NULL),
                        0);
  const char *text = slurp(svg);
  CU_ASSERT_EQUAL(count(text, "class=\"bar\""), 6);
  CU_ASSERT_EQUAL(count(text, "class=\"whisker\""), 0);
  /* Largest mean 0.31: the axis still stops at 0.4. */
  CU_ASSERT_PTR_NOT_NULL(strstr(text, ">0.4</text>"));
  CU_ASSERT_PTR_NULL(strstr(text, ">0.5</text>"));
}

/* All-zero values still get a usable axis (0 to 1), not a division by zero. */
static void zero_values_draw_flat_bars(void) {
  const char *svg = test_path("chart_zero.svg");
  const double zero[] = {0, 0};
  CU_ASSERT_EQUAL_FATAL(chart_svg_bars(svg, "zeros", GROUPS, 2, SERIES, 1, zero, NULL, NULL, NULL),
                        0);
  const char *text = slurp(svg);
  CU_ASSERT_PTR_NULL(strstr(text, "nan"));
  CU_ASSERT_PTR_NULL(strstr(text, "inf"));
  CU_ASSERT_PTR_NOT_NULL(strstr(text, ">1</text>"));
}

static void unwritable_path_is_eio(void) {
  const char *svg = test_path("no_such_dir/chart.svg");
  rec_error e = {0};
  CU_ASSERT_EQUAL(chart_svg_bars(svg, "t", GROUPS, 2, SERIES, 3, MEAN, LO, HI, &e), REC_EIO);
  CU_ASSERT_EQUAL(e.code, REC_EIO);
  CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "no_such_dir/chart.svg"));
}

/* A write that fails part-way (the file-size limit stands in for a full
 * disk) is REC_EIO and removes the truncated file. */
static void failed_write_leaves_no_file(void) {
  const char *svg = test_path("chart_cut.svg");
  struct rlimit old, small;
  CU_ASSERT_EQUAL_FATAL(getrlimit(RLIMIT_FSIZE, &old), 0);
  small = old;
  small.rlim_cur = 64;
  void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
  CU_ASSERT_EQUAL_FATAL(setrlimit(RLIMIT_FSIZE, &small), 0);
  rec_error e = {0};
  int rc = chart_svg_bars(svg, "t", GROUPS, 2, SERIES, 3, MEAN, LO, HI, &e);
  setrlimit(RLIMIT_FSIZE, &old);
  signal(SIGXFSZ, prev);
  CU_ASSERT_EQUAL(rc, REC_EIO);
  CU_ASSERT_EQUAL(e.code, REC_EIO);
  CU_ASSERT_NOT_EQUAL(access(svg, F_OK), 0);
}

static void bad_input_is_einval(void) {
  const char *svg = test_path("chart_bad.svg");
  rec_error e = {0};
  CU_ASSERT_EQUAL(chart_svg_bars(svg, "t", GROUPS, 2, SERIES, 0, MEAN, NULL, NULL, &e),
                  REC_EINVAL);
  CU_ASSERT_EQUAL(e.code, REC_EINVAL);
  CU_ASSERT_EQUAL(chart_svg_bars(svg, "t", GROUPS, 0, SERIES, 3, MEAN, NULL, NULL, NULL),
                  REC_EINVAL);
  const double neg[] = {0.1, -0.2, 0.3}, nan_[] = {0.1, NAN, 0.3};
  CU_ASSERT_EQUAL(chart_svg_bars(svg, "t", GROUPS, 1, SERIES, 3, neg, NULL, NULL, NULL),
                  REC_EINVAL);
  CU_ASSERT_EQUAL(chart_svg_bars(svg, "t", GROUPS, 1, SERIES, 3, nan_, NULL, NULL, NULL),
                  REC_EINVAL);
  /* lo above hi, and lo without hi. */
  CU_ASSERT_EQUAL(chart_svg_bars(svg, "t", GROUPS, 2, SERIES, 3, MEAN, HI, LO, NULL), REC_EINVAL);
  CU_ASSERT_EQUAL(chart_svg_bars(svg, "t", GROUPS, 2, SERIES, 3, MEAN, LO, NULL, NULL),
                  REC_EINVAL);
  const char *const unnamed[] = {"a", NULL, "c"};
  CU_ASSERT_EQUAL(chart_svg_bars(svg, "t", GROUPS, 2, unnamed, 3, MEAN, NULL, NULL, NULL),
                  REC_EINVAL);
  CU_ASSERT_EQUAL(chart_svg_bars(NULL, "t", GROUPS, 2, SERIES, 3, MEAN, NULL, NULL, NULL),
                  REC_EINVAL);
  /* Refused before the file is opened. */
  CU_ASSERT_NOT_EQUAL(access(svg, F_OK), 0);
}

void suite_chart(void) {
  static const test_case cases[] = {
      {"writes_parseable_svg_with_escaped_names", writes_parseable_svg_with_escaped_names},
      {"no_whiskers_without_intervals", no_whiskers_without_intervals},
      {"zero_values_draw_flat_bars", zero_values_draw_flat_bars},
      {"unwritable_path_is_eio", unwritable_path_is_eio},
      {"failed_write_leaves_no_file", failed_write_leaves_no_file},
      {"bad_input_is_einval", bad_input_is_einval},
      {NULL, NULL}};
  test_add_suite("chart", cases);
}
