/* tools/offline/chart.c - see chart.h. Layout is computed up front from text lengths
 * (about 7 px per character at 12 px) so labels never overlap; colours are
 * the Okabe-Ito palette, which stays distinguishable under colour blindness. */
#include "tools/offline/chart.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static const char *const COLOURS[] = {"#0072B2", "#E69F00", "#009E73", "#CC79A7",
                                      "#56B4E9", "#D55E00", "#F0E442", "#999999"};
enum { NCOLOURS = sizeof COLOURS / sizeof COLOURS[0] };

enum { BAR_W = 18, GROUP_PAD = 24, PLOT_H = 280, CHAR_W = 7, ROW_H = 18, SWATCH = 12 };

typedef struct layout {
  double ymax, step;
  int ticks;                      /* tick marks above 0 */
  double left, top, group_w, plot_w, legend_x, width, height;
} layout;

typedef struct chart {
  const char *title;
  const char *const *groups, *const *series;
  size_t n_groups, n_series;
  const double *mean, *lo, *hi;
} chart;

/* Characters, not bytes: UTF-8 continuation bytes do not take up width. */
static double text_w(const char *s) {
  size_t n = 0;
  for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
  return (double)n * CHAR_W;
}

/* Writes 's' as XML character data or attribute text. Control characters
 * other than tab and newline are not allowed in XML 1.0 and become '?'. */
static void put_text(FILE *fp, const char *s) {
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    switch (c) {
    case '&': fputs("&amp;", fp); break;
    case '<': fputs("&lt;", fp); break;
    case '>': fputs("&gt;", fp); break;
    case '"': fputs("&quot;", fp); break;
    case '\'': fputs("&apos;", fp); break;
    default: fputc(c < 0x20 && c != '\t' && c != '\n' ? '?' : c, fp);
    }
  }
}

static int validate(const chart *c, rec_error *err) {
  if (!c->n_groups || !c->n_series || !c->groups || !c->series || !c->mean)
    return rec_fail(err, REC_EINVAL, "chart: no groups, series or values");
  if (c->n_groups > SIZE_MAX / c->n_series)
    return rec_fail(err, REC_EINVAL, "chart: %zu x %zu bars is too many", c->n_groups,
                    c->n_series);
  if (!c->lo != !c->hi) return rec_fail(err, REC_EINVAL, "chart: lo and hi go together");
  for (size_t g = 0; g < c->n_groups; g++)
    if (!c->groups[g]) return rec_fail(err, REC_EINVAL, "chart: group %zu has no name", g);
  for (size_t s = 0; s < c->n_series; s++)
    if (!c->series[s]) return rec_fail(err, REC_EINVAL, "chart: series %zu has no name", s);
  for (size_t i = 0; i < c->n_groups * c->n_series; i++) {
    double m = c->mean[i], l = c->lo ? c->lo[i] : 0, h = c->hi ? c->hi[i] : 0;
    if (!(isfinite(m) && isfinite(l) && isfinite(h) && m >= 0 && l >= 0 && l <= h))
      return rec_fail(err, REC_EINVAL, "chart: bar %zu: mean %g [%g, %g] is not >= 0 and finite",
                      i, m, l, h);
  }
  return 0;
}

/* A tick step of 1, 2, 2.5 or 5 times a power of ten giving about five
 * ticks, and the first multiple of it at or above the largest value. */
static void scale(const chart *c, layout *L) {
  double vmax = 0;
  for (size_t i = 0; i < c->n_groups * c->n_series; i++) {
    double v = c->hi && c->hi[i] > c->mean[i] ? c->hi[i] : c->mean[i];
    if (v > vmax) vmax = v;
  }
  if (vmax <= 0) vmax = 1;
  double raw = vmax / 5, mag = pow(10, floor(log10(raw))), r = raw / mag;
  L->step = mag * (r <= 1 + 1e-9 ? 1 : r <= 2 + 1e-9 ? 2 : r <= 2.5 + 1e-9 ? 2.5
                   : r <= 5 + 1e-9 ? 5 : 10);
  L->ticks = (int)ceil(vmax / L->step - 1e-9);
  L->ymax = L->ticks * L->step;
}

static void place(const chart *c, layout *L) {
  double label_w = 0;
  for (int t = 0; t <= L->ticks; t++) {
    char buf[32];
    snprintf(buf, sizeof buf, "%g", t * L->step);
    if (text_w(buf) > label_w) label_w = text_w(buf);
  }
  L->left = 24 + label_w;
  L->top = c->title ? 44 : 16;
  L->group_w = (double)c->n_series * BAR_W;
  for (size_t g = 0; g < c->n_groups; g++)
    if (text_w(c->groups[g]) + 8 > L->group_w) L->group_w = text_w(c->groups[g]) + 8;
  L->group_w += GROUP_PAD;
  L->plot_w = L->group_w * (double)c->n_groups;
  L->legend_x = L->left + L->plot_w + 20;
  double legend_w = 0;
  for (size_t s = 0; s < c->n_series; s++)
    if (text_w(c->series[s]) > legend_w) legend_w = text_w(c->series[s]);
  L->width = L->legend_x + SWATCH + 6 + legend_w + 16;
  if (c->title && text_w(c->title) * 1.4 + 32 > L->width) L->width = text_w(c->title) * 1.4 + 32;
  L->height = L->top + PLOT_H + 40;
  double legend_h = L->top + (double)c->n_series * ROW_H + 16;
  if (legend_h > L->height) L->height = legend_h;
}

static double y_of(const layout *L, double v) { return L->top + PLOT_H * (1 - v / L->ymax); }

static void write_axes(FILE *fp, const chart *c, const layout *L) {
  if (c->title) {
    fputs("<text x=\"16\" y=\"26\" font-size=\"16\" font-weight=\"bold\">", fp);
    put_text(fp, c->title);
    fputs("</text>\n", fp);
  }
  for (int t = 0; t <= L->ticks; t++) {
    double y = y_of(L, t * L->step);
    fprintf(fp, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\"/>\n",
            L->left - 4, y, L->left + L->plot_w, y, t ? "#dddddd" : "#000000");
    fprintf(fp, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n", L->left - 8,
            y + 4, t * L->step);
  }
  fprintf(fp, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#000000\"/>\n",
          L->left, L->top, L->left, L->top + PLOT_H);
  for (size_t g = 0; g < c->n_groups; g++) {
    fprintf(fp, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">",
            L->left + L->group_w * ((double)g + 0.5), L->top + PLOT_H + 20);
    put_text(fp, c->groups[g]);
    fputs("</text>\n", fp);
  }
}

/* One bar, its whisker with caps, and a tooltip naming series, group and values. */
static void write_bar(FILE *fp, const chart *c, const layout *L, size_t g, size_t s) {
  size_t i = g * c->n_series + s;
  double x = L->left + L->group_w * (double)g +
             (L->group_w - (double)c->n_series * BAR_W) / 2 + (double)s * BAR_W;
  double y = y_of(L, c->mean[i]), mid = x + BAR_W / 2.0;
  fprintf(fp, "<rect class=\"bar\" x=\"%.1f\" y=\"%.1f\" width=\"%d\" height=\"%.1f\" fill=\"%s\">",
          x + 1, y, BAR_W - 2, L->top + PLOT_H - y, COLOURS[s % NCOLOURS]);
  fputs("<title>", fp);
  put_text(fp, c->series[s]);
  fputs(" ", fp);
  put_text(fp, c->groups[g]);
  fprintf(fp, ": %.4g", c->mean[i]);
  if (c->lo) fprintf(fp, " [%.4g, %.4g]", c->lo[i], c->hi[i]);
  fputs("</title></rect>\n", fp);
  if (!c->lo) return;
  double yl = y_of(L, c->lo[i]), yh = y_of(L, c->hi[i]);
  fprintf(fp, "<path class=\"whisker\" d=\"M%.1f %.1fV%.1fM%.1f %.1fH%.1fM%.1f %.1fH%.1f\" "
              "stroke=\"#222222\" stroke-width=\"1.2\" fill=\"none\"/>\n",
          mid, yl, yh, mid - 4, yl, mid + 4, mid - 4, yh, mid + 4);
}

static void write_legend(FILE *fp, const chart *c, const layout *L) {
  for (size_t s = 0; s < c->n_series; s++) {
    double y = L->top + (double)s * ROW_H;
    fprintf(fp, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%d\" height=\"%d\" fill=\"%s\"/>\n",
            L->legend_x, y, SWATCH, SWATCH, COLOURS[s % NCOLOURS]);
    fprintf(fp, "<text x=\"%.1f\" y=\"%.1f\">", L->legend_x + SWATCH + 6, y + SWATCH - 2);
    put_text(fp, c->series[s]);
    fputs("</text>\n", fp);
  }
}

static void write_svg(FILE *fp, const chart *c, const layout *L) {
  fputs("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n", fp);
  fprintf(fp, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
              "viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\" font-size=\"12\">\n",
          L->width, L->height, L->width, L->height);
  fputs("<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n", fp);
  write_axes(fp, c, L);
  for (size_t g = 0; g < c->n_groups; g++)
    for (size_t s = 0; s < c->n_series; s++) write_bar(fp, c, L, g, s);
  write_legend(fp, c, L);
  fputs("</svg>\n", fp);
}

int chart_svg_bars(const char *path, const char *title, const char *const *groups,
                   size_t n_groups, const char *const *series, size_t n_series,
                   const double *mean, const double *lo, const double *hi, rec_error *err) {
  chart c = {title, groups, series, n_groups, n_series, mean, lo, hi};
  if (!path) return rec_fail(err, REC_EINVAL, "chart: no path");
  int rc = validate(&c, err);
  if (rc) return rc;
  layout L;
  scale(&c, &L);
  place(&c, &L);
  FILE *fp = fopen(path, "w");
  if (!fp) return rec_fail(err, REC_EIO, "%s: %s", path, strerror(errno));
  write_svg(fp, &c, &L);
  /* Only a regular file is removed on failure: 'path' may be /dev/stdout. */
  struct stat st;
  bool regular = fstat(fileno(fp), &st) == 0 && S_ISREG(st.st_mode);
  bool bad = ferror(fp) != 0;
  if (fclose(fp) != 0 || bad) {
    rc = rec_fail(err, REC_EIO, "%s: %s", path, strerror(errno));
    if (regular) remove(path);
    return rc;
  }
  return 0;
}
