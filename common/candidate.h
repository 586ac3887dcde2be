/* common/candidate.h - what the candidate tier hands the ranking tier: an
 * item (catalog row) with the raw score of every source that proposed it. */
#ifndef REC_CANDIDATE_H
#define REC_CANDIDATE_H
#include <stdint.h>

typedef enum rec_source {
  REC_SRC_ANN = 0,        /* nearest neighbour of the user vector */
  REC_SRC_ITEM_CF = 1,    /* co-purchase neighbour of a recent or cart item */
  REC_SRC_POPULARITY = 2, /* popularity list */
  REC_SRC_EASE = 3,       /* EASE item-item weights summed over the user's history */
  REC_SRC_COUNT
} rec_source;

/* "ann", "item_cf", "popularity", "ease": the one names table for logs, metrics and explain. */
const char *rec_source_name(rec_source s);

typedef struct rec_candidate {
  uint32_t item;              /* catalog row */
  uint32_t sources;           /* bit (1u << rec_source) per proposing source */
  float raw[REC_SRC_COUNT];   /* raw score per source; valid where the bit is set */
} rec_candidate;

#endif
