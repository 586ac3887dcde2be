/* common/purchase.h - one user's history with one item, as the bundle keeps
 * it and the ranking tier's repurchase rules read it. */
#ifndef REC_PURCHASE_H
#define REC_PURCHASE_H
#include <stdint.h>

typedef struct rec_purchase {
  uint32_t item, count;
  int64_t last_time;         /* Unix seconds of the latest interaction */
} rec_purchase;
#endif
