/* server/bundle_root.c - see bundle_root.h. The name is first checked as
 * written (so ".." cannot climb out even through directories that do not
 * exist), then through realpath (so a symlink cannot lead out). */
#define _XOPEN_SOURCE 700 /* realpath */
#include "server/bundle_root.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int bundle_root_open(const char *dir, char *out, size_t cap, rec_error *err) {
  char real[PATH_MAX];
  struct stat st;
  if (!realpath(dir, real) || stat(real, &st) != 0 || !S_ISDIR(st.st_mode))
    return rec_fail(err, REC_EINVAL, "bundle root %s: not a directory", dir);
  if (strcmp(real, "/") == 0)
    return rec_fail(err, REC_EINVAL, "bundle root %s: the file system's root would confine nothing", dir);
  if (strlen(real) >= cap) return rec_fail(err, REC_EINVAL, "bundle root %s: path too long", dir);
  memcpy(out, real, strlen(real) + 1);
  return 0;
}

/* True when 'path' is 'root' itself or lies inside it. */
static bool inside(const char *root, const char *path, bool allow_root) {
  size_t n = strlen(root);
  if (n == 1 && root[0] == '/') return allow_root || path[1] != '\0';
  if (strncmp(path, root, n) != 0) return false;
  return path[n] == '/' ? path[n + 1] != '\0' : (allow_root && path[n] == '\0');
}

/* 'path' with "." and ".." folded as written; false when ".." would climb
 * above the root of the path. */
static bool fold(const char *path, char *out, size_t cap) {
  size_t o = 0;
  for (const char *p = path; *p;) {
    while (*p == '/') p++;
    const char *end = strchr(p, '/');
    size_t n = end ? (size_t)(end - p) : strlen(p);
    if (n == 0) break;
    if (n == 1 && p[0] == '.') {
    } else if (n == 2 && p[0] == '.' && p[1] == '.') {
      if (o == 0) return false;
      while (o > 0 && out[o - 1] != '/') o--;
      o = o > 0 ? o - 1 : 0;
    } else {
      if (o + 1 + n + 1 > cap) return false;
      out[o++] = '/';
      memcpy(out + o, p, n);
      o += n;
    }
    p += n;
  }
  if (o == 0) out[o++] = '/';
  out[o] = '\0';
  return true;
}

int bundle_root_resolve(const char *root, const char *name, char *out, size_t cap, rec_error *err) {
  char joined[PATH_MAX], folded[PATH_MAX], real[PATH_MAX];
  int n = name[0] == '/' ? snprintf(joined, sizeof joined, "%s", name)
                         : snprintf(joined, sizeof joined, "%s/%s", root, name);
  if (n < 0 || (size_t)n >= sizeof joined || !fold(joined, folded, sizeof folded) || !inside(root, folded, false))
    return rec_fail(err, REC_EDENIED, "bundle '%.200s' is not under the bundle root", name);
  if (!realpath(folded, real))
    return rec_fail(err, REC_ENOTFOUND, "no bundle '%.200s' under the bundle root", name);
  if (!inside(root, real, false))
    return rec_fail(err, REC_EDENIED, "bundle '%.200s' is not under the bundle root", name);
  if (strlen(real) >= cap) return rec_fail(err, REC_EINVAL, "bundle '%.200s': path too long", name);
  memcpy(out, real, strlen(real) + 1);
  return 0;
}

bool bundle_root_world_writable(const char *root) {
  struct stat st;
  return stat(root, &st) == 0 && (st.st_mode & S_IWOTH);
}
