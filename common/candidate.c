/* common/candidate.c - the candidate sources' names. */
#include "common/candidate.h"

static const char *const NAMES[REC_SRC_COUNT] = {
    [REC_SRC_ANN] = "ann", [REC_SRC_ITEM_CF] = "item_cf", [REC_SRC_POPULARITY] = "popularity",
    [REC_SRC_EASE] = "ease"};

const char *rec_source_name(rec_source s) { return s >= 0 && s < REC_SRC_COUNT ? NAMES[s] : "?"; }
