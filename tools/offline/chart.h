/* tools/offline/chart.h - grouped bar charts as standalone SVG files, for `recctl
 * eval` reports: one group per metric, one bar per model, optional error
 * whiskers. No dependencies beyond stdio; thread-safe (no shared state). */
#ifndef REC_CHART_H
#define REC_CHART_H
#include <stddef.h>
#include "common/err.h"

/* Writes to 'path' (created or truncated) an SVG with n_groups groups along
 * the x axis (groups[g], e.g. "NDCG@50"), each with n_series bars (series[s],
 * e.g. "als"; the same colour in every group and named in a legend), and a y
 * axis ticked from 0 to a rounded maximum. mean, lo and hi are
 * [n_groups x n_series], row-major (bar (g, s) is mean[g * n_series + s]);
 * lo and hi draw a whisker per bar and are both NULL or both not. 'title'
 * may be NULL. Text is UTF-8 and is escaped for XML. Numbers are written
 * with the current locale's decimal point, which must be '.' (the C locale).
 * Returns 0; REC_EINVAL if a count is 0, a name is NULL, a value is negative
 * or not finite, or lo > hi; REC_EIO if the file cannot be written (no
 * partial file is left). Fills 'err' (may be NULL) on failure. */
int chart_svg_bars(const char *path, const char *title, const char *const *groups,
                   size_t n_groups, const char *const *series, size_t n_series,
                   const double *mean, const double *lo, const double *hi, rec_error *err);
#endif
