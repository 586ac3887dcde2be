/* server/svc_catalog.c - rec.v1.Catalog Upsert and Delete, on the admin
 * listener. The handler checks each row on its own (ids, lengths, ranges,
 * an id twice) and hands the batch to the live catalog's writer, which
 * checks it against the catalog, logs it durably, applies it and completes
 * the call (RPC_PENDING meanwhile). docs/catalog.md. */
#include "server/handlers.h"
#include "common/strmap.h"
#include "rec/v1/catalog.pb-c.h"
#include "server/app.h"
#include "server/convert.h"

#include <math.h>
#include <string.h>

#define MAX_ROWS 10000
#define MAX_PRICE 1e9
#define MAX_NAME 512

/* Off the serving threads, once the writer is done with the batch. */
static void on_applied(void *arg, int rc, uint64_t generation, size_t applied, size_t added, const rec_error *err) {
  rpc_ctx *ctx = arg;
  Rec__V1__CatalogResponse *r = NULL;
  if (rc) {
    ctx->err = *err;
    ctx->err.code = rc;
  } else if (!(r = arena_alloc(ctx->arena, sizeof *r))) {
    rc = REC_ENOMEM; /* applied all the same: the log replays it */
  } else {
    rec__v1__catalog_response__init(r);
    r->generation = generation;
    r->applied = (uint32_t)applied;
    r->added = (uint32_t)added;
  }
  rpc_complete(ctx, rc, rc ? NULL : &r->base);
}

/* The batch's ids, each once. */
static int distinct(rpc_ctx *ctx, const char *row_name, const lc_item *items, size_t n) {
  strmap *seen;
  if (strmap_new(n, &seen) != 0) return REC_ENOMEM;
  int rc = 0;
  for (size_t i = 0; i < n && !rc; i++) {
    uint32_t first;
    if (strmap_get(seen, items[i].id, strlen(items[i].id), &first))
      rc = rpc_fail(ctx, REC_EINVAL, "%s[%zu]: item '%.128s' is also %s[%u]; one change per item per batch",
                    row_name, i, items[i].id, row_name, first);
    else if (strmap_put(seen, items[i].id, strlen(items[i].id), (uint32_t)i) != 0)
      rc = REC_ENOMEM;
  }
  strmap_free(seen);
  return rc;
}

static int submit(rpc_ctx *ctx, const lc_item *items, size_t n, const char *row_name) {
  app *ap = ctx->app;
  int rc = distinct(ctx, row_name, items, n);
  if (rc) return rc;
  rc = live_catalog_submit(ap->live, items, n, row_name, ctx->deadline_ns, on_applied, ctx, &ctx->err);
  return rc ? rc : RPC_PENDING;
}

static int rows_ok(rpc_ctx *ctx, const char *row_name, size_t n) {
  app *ap = ctx->app;
  if (!ap->live)
    return rpc_fail(ctx, REC_EPRECOND, "catalog updates need recd started with --catalog_log=DIR");
  if (n == 0 || n > MAX_ROWS)
    return rpc_fail(ctx, REC_EINVAL, "%s must hold 1 to %d entries, got %zu", row_name, MAX_ROWS, n);
  return 0;
}

static int check_item(rpc_ctx *ctx, size_t i, const Rec__V1__CatalogItem *x, lc_item *it) {
  char field[48];
  int rc;
  snprintf(field, sizeof field, "items[%zu].item_id", i);
  if ((rc = conv_check_id(ctx, field, x->item_id))) return rc;
  *it = (lc_item){.id = x->item_id};
  if (x->in_stock_set_case == REC__V1__CATALOG_ITEM__IN_STOCK_SET_IN_STOCK)
    it->has_stock = true, it->in_stock = x->in_stock;
  if (x->price_set_case == REC__V1__CATALOG_ITEM__PRICE_SET_PRICE) {
    if (!(x->price >= 0 && x->price <= MAX_PRICE))
      return rpc_fail(ctx, REC_EINVAL, "items[%zu].price must be 0 to %g, got %g", i, MAX_PRICE, x->price);
    it->has_price = true, it->price = x->price;
  }
  if (x->margin_set_case == REC__V1__CATALOG_ITEM__MARGIN_SET_MARGIN) {
    if (!(x->margin >= -1 && x->margin <= 1))
      return rpc_fail(ctx, REC_EINVAL, "items[%zu].margin must be -1 to 1, got %g", i, x->margin);
    it->has_margin = true, it->margin = x->margin;
  }
  if (x->category_set_case == REC__V1__CATALOG_ITEM__CATEGORY_SET_CATEGORY) {
    snprintf(field, sizeof field, "items[%zu].category", i);
    if ((rc = conv_check_id(ctx, field, x->category))) return rc;
    it->category = x->category;
  }
  if (x->subcategory_set_case == REC__V1__CATALOG_ITEM__SUBCATEGORY_SET_SUBCATEGORY) {
    snprintf(field, sizeof field, "items[%zu].subcategory", i);
    if ((rc = conv_check_text(ctx, field, x->subcategory, REC_ID_MAX))) return rc;
    it->subcategory = x->subcategory;
  }
  if (x->brand_set_case == REC__V1__CATALOG_ITEM__BRAND_SET_BRAND) {
    snprintf(field, sizeof field, "items[%zu].brand", i);
    if ((rc = conv_check_text(ctx, field, x->brand, REC_ID_MAX))) return rc;
    it->brand = x->brand;
  }
  if (x->name_set_case == REC__V1__CATALOG_ITEM__NAME_SET_NAME) {
    snprintf(field, sizeof field, "items[%zu].name", i);
    if ((rc = conv_check_text(ctx, field, x->name, MAX_NAME))) return rc;
    it->name = x->name;
  }
  return 0;
}

static int upsert(rpc_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **out) {
  const Rec__V1__UpsertRequest *q = (const Rec__V1__UpsertRequest *)in;
  (void)out;
  int rc = rows_ok(ctx, "items", q->n_items);
  if (rc) return rc;
  lc_item *items = arena_calloc(ctx->arena, q->n_items, sizeof *items);
  if (!items) return REC_ENOMEM;
  for (size_t i = 0; i < q->n_items; i++)
    if ((rc = check_item(ctx, i, q->items[i], &items[i]))) return rc;
  return submit(ctx, items, q->n_items, "items");
}

static int delete(rpc_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **out) {
  const Rec__V1__DeleteRequest *q = (const Rec__V1__DeleteRequest *)in;
  (void)out;
  int rc = rows_ok(ctx, "item_ids", q->n_item_ids);
  if (rc) return rc;
  lc_item *items = arena_calloc(ctx->arena, q->n_item_ids, sizeof *items);
  if (!items) return REC_ENOMEM;
  for (size_t i = 0; i < q->n_item_ids; i++) {
    char field[32];
    snprintf(field, sizeof field, "item_ids[%zu]", i);
    if ((rc = conv_check_id(ctx, field, q->item_ids[i]))) return rc;
    items[i] = (lc_item){.id = q->item_ids[i], .deleted = true};
  }
  return submit(ctx, items, q->n_item_ids, "item_ids");
}

const rpc_method h_catalog_upsert = {"/rec.v1.Catalog/Upsert", &rec__v1__upsert_request__descriptor,
                                     &rec__v1__catalog_response__descriptor, upsert};
const rpc_method h_catalog_delete = {"/rec.v1.Catalog/Delete", &rec__v1__delete_request__descriptor,
                                     &rec__v1__catalog_response__descriptor, delete};

/* The serving port's answer: catalog writes live on the admin listener. */
static int elsewhere(rpc_ctx *ctx, const ProtobufCMessage *in, ProtobufCMessage **out) {
  (void)in, (void)out;
  return rpc_fail(ctx, REC_EDENIED, "Catalog writes are served only on recd's admin listener "
                  "(--admin_grpc_listen, loopback by default), with a token");
}

const rpc_method h_catalog_upsert_denied = {"/rec.v1.Catalog/Upsert", &rec__v1__upsert_request__descriptor,
                                            &rec__v1__catalog_response__descriptor, elsewhere};
const rpc_method h_catalog_delete_denied = {"/rec.v1.Catalog/Delete", &rec__v1__delete_request__descriptor,
                                            &rec__v1__catalog_response__descriptor, elsewhere};
