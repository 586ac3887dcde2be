/* server/bundle_root.h - where Admin.Reload may load a bundle from: a
 * name or path is resolved under one root directory, and refused unless
 * its real path (symlinks followed) lies inside that root. The answer
 * never tells a caller what exists outside the root. */
#ifndef REC_BUNDLE_ROOT_H
#define REC_BUNDLE_ROOT_H
#include <stdbool.h>
#include <stddef.h>
#include "common/err.h"

/* The real path of 'dir' into 'out' (cap bytes): the root to pass below.
 * REC_EINVAL with 'err' filled when it is not a directory, or is "/". */
int bundle_root_open(const char *dir, char *out, size_t cap, rec_error *err);
/* True when anyone may create entries in 'root' (/tmp, say): whoever can
 * write there chooses what a reload by name loads. */
bool bundle_root_world_writable(const char *root);

/* Resolves 'name' ("twotower-ab12", "team/v3", or an absolute path) under
 * 'root' (a real path from bundle_root_open) into 'out'. Returns 0; or
 * REC_EDENIED "... is not under the bundle root" for anything that leaves
 * it ("..", an absolute path elsewhere, a symlink pointing out), or
 * REC_ENOTFOUND when nothing by that name is under the root. */
int bundle_root_resolve(const char *root, const char *name, char *out, size_t cap, rec_error *err);
#endif
