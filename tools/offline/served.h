/* tools/offline/served.h - the "served" row of `recctl eval`: what recd
 * itself would show each test user, not what a model scores. The training
 * side of the split becomes a bundle exactly as `recctl build` makes one
 * (a temporary directory, removed after), recd's own application is set up
 * on it with the default settings (or --ranking_config), and every test
 * user gets a Recommend through recd's own handler, in process: every
 * source, the blend, the rules, MMR and the category cap. The price of
 * diversity and of the rules is then the gap between this row and the
 * models' rows. */
#ifndef REC_SERVED_H
#define REC_SERVED_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "common/err.h"
#include "tools/offline/dataset.h"
#include "tools/offline/train.h"

/* For each of the n_test users users[t], the first k item indices recd
 * answers into lists[t * k ..], their count into n_list[t]. 'train' masks
 * the events of 'd' the bundle is built from; 'now' (Unix seconds) is the
 * time the requests are served at (Context.time_unix_ms). 'o' carries the
 * build options and the catalog path. Returns 0 or a negative code. */
int served_lists(const dataset *d, const bool *train, int64_t now, const build_opts *o,
                 const char *ranking_config, const uint32_t *users, size_t n_test, size_t k, uint32_t *lists,
                 size_t *n_list, rec_error *err);
#endif
