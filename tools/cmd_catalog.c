/* tools/cmd_catalog.c - recctl catalog: send live catalog changes to recd's
 * admin listener (rec.v1.Catalog).
 *   recctl catalog upsert --csv FILE    rows in the catalog CSV's own columns
 *   recctl catalog delete --id ID ...   (or --csv FILE with an item_id column)
 * A CSV row sets the fields whose cells are not empty; columns it lacks are
 * left as they are, so "item_id,in_stock" is a stock update. Rows go in
 * batches of up to --batch (10000) rows, each applied atomically; a bad
 * row stops the command with file:line before anything is sent. */
#include "tools/cmd_catalog.h"
#include "rec/v1/catalog.pb-c.h"
#include "server/rpc_client.h"
#include "tools/offline/csvread.h"
#include "tools/recctl.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_BATCH 10000

/* The catalog CSV's columns (docs/offline.md), in CatalogItem's terms. */
enum { C_ITEM, C_CATEGORY, C_SUB, C_BRAND, C_PRICE, C_MARGIN, C_STOCK, C_NAME, NCOLS };
static const char *const COLUMN[NCOLS] = {"item_id", "category", "subcategory", "brand",
                                          "price", "margin", "in_stock", "name"};

typedef struct rows {
  int col[NCOLS];
  Rec__V1__CatalogItem *items; /* a Delete sends their item_id only */
  size_t n, cap;
  bool deleting;
} rows;

static char *dup_field(const char *s, rec_error *err) {
  char *d = strdup(s);
  if (!d) rec_fail(err, REC_ENOMEM, "out of memory");
  return d;
}

static int parse_number(const csv_row *r, const char *col, const char *v, double lo, double hi, double *out,
                        rec_error *err) {
  char *end;
  errno = 0;
  double d = strtod(v, &end);
  if (end == v || *end || errno || !isfinite(d) || d < lo || d > hi)
    return rec_fail(err, REC_EINVAL, "%s:%zu: %s '%s' must be a number from %g to %g", r->path, r->line, col, v,
                    lo, hi);
  *out = d;
  return 0;
}

static int parse_stock(const csv_row *r, const char *v, bool *out, rec_error *err) {
  static const char *const yes[] = {"1", "true", "yes", "y"}, *const no[] = {"0", "false", "no", "n"};
  for (int i = 0; i < 4; i++) {
    if (strcasecmp(v, yes[i]) == 0) return *out = true, 0;
    if (strcasecmp(v, no[i]) == 0) return *out = false, 0;
  }
  return rec_fail(err, REC_EINVAL, "%s:%zu: in_stock '%s' must be 1/0/true/false/yes/no", r->path, r->line, v);
}

static int on_row(void *ctx, const csv_row *r, int is_header, rec_error *err) {
  rows *rs = ctx;
  if (is_header) {
    for (int c = 0; c < NCOLS; c++) rs->col[c] = csv_column(r, COLUMN[c]);
    if (rs->col[C_ITEM] < 0) return rec_fail(err, REC_EINVAL, "%s:1: no item_id column", r->path);
    return 0;
  }
  if (rs->n == rs->cap) {
    size_t cap = rs->cap ? 2 * rs->cap : 1024;
    Rec__V1__CatalogItem *items = realloc(rs->items, cap * sizeof *items);
    if (!items) return rec_fail(err, REC_ENOMEM, "out of memory");
    rs->items = items;
    rs->cap = cap;
  }
  const char *v[NCOLS];
  for (int c = 0; c < NCOLS; c++) v[c] = rs->col[c] >= 0 && (size_t)rs->col[c] < r->n ? r->f[rs->col[c]] : "";
  if (!*v[C_ITEM]) return rec_fail(err, REC_EINVAL, "%s:%zu: item_id is empty", r->path, r->line);
  Rec__V1__CatalogItem *it = &rs->items[rs->n];
  rec__v1__catalog_item__init(it);
  if (!(it->item_id = dup_field(v[C_ITEM], err))) return REC_ENOMEM;
  rs->n++;
  if (rs->deleting) return 0;
  double d;
  int rc;
  if (*v[C_PRICE]) {
    if ((rc = parse_number(r, "price", v[C_PRICE], 0, 1e9, &d, err))) return rc;
    it->price_set_case = REC__V1__CATALOG_ITEM__PRICE_SET_PRICE, it->price = d;
  }
  if (*v[C_MARGIN]) {
    if ((rc = parse_number(r, "margin", v[C_MARGIN], -1, 1, &d, err))) return rc;
    it->margin_set_case = REC__V1__CATALOG_ITEM__MARGIN_SET_MARGIN, it->margin = d;
  }
  if (*v[C_STOCK]) {
    bool b = false;
    if ((rc = parse_stock(r, v[C_STOCK], &b, err))) return rc;
    it->in_stock_set_case = REC__V1__CATALOG_ITEM__IN_STOCK_SET_IN_STOCK, it->in_stock = b;
  }
  if (*v[C_CATEGORY]) {
    if (!(it->category = dup_field(v[C_CATEGORY], err))) return REC_ENOMEM;
    it->category_set_case = REC__V1__CATALOG_ITEM__CATEGORY_SET_CATEGORY;
  }
  if (*v[C_SUB]) {
    if (!(it->subcategory = dup_field(v[C_SUB], err))) return REC_ENOMEM;
    it->subcategory_set_case = REC__V1__CATALOG_ITEM__SUBCATEGORY_SET_SUBCATEGORY;
  }
  if (*v[C_BRAND]) {
    if (!(it->brand = dup_field(v[C_BRAND], err))) return REC_ENOMEM;
    it->brand_set_case = REC__V1__CATALOG_ITEM__BRAND_SET_BRAND;
  }
  if (*v[C_NAME]) {
    if (!(it->name = dup_field(v[C_NAME], err))) return REC_ENOMEM;
    it->name_set_case = REC__V1__CATALOG_ITEM__NAME_SET_NAME;
  }
  return 0;
}

static void rows_free(rows *rs) {
  for (size_t i = 0; i < rs->n; i++) {
    Rec__V1__CatalogItem *it = &rs->items[i];
    free(it->item_id);
    if (it->category_set_case) free(it->category);
    if (it->subcategory_set_case) free(it->subcategory);
    if (it->brand_set_case) free(it->brand);
    if (it->name_set_case) free(it->name);
  }
  free(rs->items);
}

/* On stdout with exit 0 when asked for (--help), else on stderr with 2. */
static int usage(bool asked) {
  fputs("usage: recctl catalog upsert --csv FILE [options]\n"
        "       recctl catalog delete (--id ID ... | --csv FILE) [options]\n"
        "options: --addr HOST:PORT (recd's admin listener, default 127.0.0.1:50052), --token-file F\n"
        "         (default: $RECCTL_TOKEN_FILE),\n"
        "         --tls-ca F [--tls-cert F --tls-key F] [--tls-name N], --batch N (rows per atomic\n"
        "         batch, 1..10000, default 10000), --timeout-ms N (default 30000)\n"
        "CSV columns (header names): item_id (required), category, subcategory, brand, price, margin,\n"
        "in_stock, name; an empty cell or a missing column leaves that field as it is.\n",
        asked ? stdout : stderr);
  return asked ? 0 : 2;
}

int cmd_catalog(int argc, char **argv) {
  for (int i = 2; i < argc; i++)
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) return usage(true);
  if (argc < 3 || (strcmp(argv[2], "upsert") && strcmp(argv[2], "delete"))) {
    if (argc >= 3) fprintf(stderr, "recctl catalog: '%s' is not upsert or delete\n", argv[2]);
    return usage(false);
  }
  bool deleting = strcmp(argv[2], "delete") == 0;
  const char *addr = "127.0.0.1:50052", *csv = NULL, *token_file = NULL;
  rpc_client_tls tls = {0};
  long batch = MAX_BATCH, timeout_ms = 30000;
  rows rs = {.deleting = deleting};
  rec_error err = {0};
  int code = 0;
  for (int i = 3; i < argc && !code; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v) {
      fprintf(stderr, "recctl catalog: %s needs a value (see recctl catalog --help)\n", a);
      code = 2;
      break;
    }
    i++;
    if (strcmp(a, "--addr") == 0) addr = v;
    else if (strcmp(a, "--csv") == 0) csv = v;
    else if (strcmp(a, "--token-file") == 0) token_file = v;
    else if (strcmp(a, "--tls-ca") == 0) tls.ca_file = v;
    else if (strcmp(a, "--tls-cert") == 0) tls.cert_file = v;
    else if (strcmp(a, "--tls-key") == 0) tls.key_file = v;
    else if (strcmp(a, "--tls-name") == 0) tls.server_name = v;
    else if (strcmp(a, "--batch") == 0) code = flag_long(a, v, 1, MAX_BATCH, &batch);
    else if (strcmp(a, "--timeout-ms") == 0) code = flag_long(a, v, 1, 3600000, &timeout_ms);
    else if (strcmp(a, "--id") == 0 && deleting) {
      csv_row fake = {.path = "--id", .line = (size_t)i, .f = (char **)&v, .n = 1};
      rs.col[C_ITEM] = 0;
      for (int c = 1; c < NCOLS; c++) rs.col[c] = -1;
      if (on_row(&rs, &fake, 0, &err)) code = 1;
    } else {
      fprintf(stderr, "recctl catalog: unknown option %s (see recctl catalog --help)\n", a);
      code = 2;
    }
  }
  if (!code && !csv && !rs.n) code = usage(false);
  if (!code && csv && csv_read(csv, on_row, &rs, &err) != 0) code = 1;
  if (code == 1) fprintf(stderr, "recctl catalog: %s\n", err.msg);
  char *token = NULL;
  token_file = recctl_token_file(token_file);
  if (!code && token_file && !(token = recctl_admin_token(token_file, addr, tls.ca_file))) code = 2;
  rpc_client *c = NULL;
  if (!code && rpc_client_new(addr, &tls, token, &c, &err) != 0) {
    fprintf(stderr, "recctl catalog: %s\n", err.msg);
    code = 2;
  }
  if (token) {
    memset(token, 0, strlen(token));
    free(token);
  }
  for (size_t at = 0; !code && at < rs.n; at += (size_t)batch) {
    size_t n = rs.n - at < (size_t)batch ? rs.n - at : (size_t)batch;
    Rec__V1__UpsertRequest up = REC__V1__UPSERT_REQUEST__INIT;
    Rec__V1__DeleteRequest del = REC__V1__DELETE_REQUEST__INIT;
    Rec__V1__CatalogItem **ptrs = malloc(n * sizeof *ptrs);
    char **ids = malloc(n * sizeof *ids);
    if (!ptrs || !ids) {
      free(ptrs);
      free(ids);
      code = 1;
      break;
    }
    for (size_t i = 0; i < n; i++) ptrs[i] = &rs.items[at + i], ids[i] = rs.items[at + i].item_id;
    up.items = ptrs, up.n_items = n;
    del.item_ids = ids, del.n_item_ids = n;
    arena a;
    arena_init(&a, 0);
    ProtobufCMessage *resp;
    rpc_status st;
    if (rpc_client_call(c, deleting ? "/rec.v1.Catalog/Delete" : "/rec.v1.Catalog/Upsert",
                        deleting ? &del.base : &up.base, &rec__v1__catalog_response__descriptor, timeout_ms, &a,
                        &resp, &st) != 0) {
      if (at) fprintf(stderr, "recctl catalog: rows 1..%zu were applied; rows from %zu on were not\n", at, at + 1);
      recctl_call_failed("catalog", addr, true, token_file, &st);
      code = 1;
    } else {
      const Rec__V1__CatalogResponse *r = (const Rec__V1__CatalogResponse *)resp;
      printf("generation %llu: %u %s (%u new)\n", (unsigned long long)r->generation, r->applied,
             deleting ? "deleted" : "applied", r->added);
    }
    arena_destroy(&a);
    free(ptrs);
    free(ids);
  }
  rpc_client_free(c);
  rows_free(&rs);
  return code;
}
