/* tests/fuzz/fuzz_csv.c - the offline pipeline's CSV input: byte 0 picks
 * what the rest of the input is,
 *   0: any CSV, read by csv_read (tools/offline/csvread.h), every field
 *      looked at and columns looked up by name;
 *   1: an interactions file, loaded by dataset_load (validation, cleaning,
 *      strengths) against a fixed catalog (the canonical columns);
 *   2: a catalog file, loaded alone;
 *   3: a column schema file (ds_schema_load).
 * A load that succeeds is freed again; a refusal must leave nothing. */
#include "tests/fuzz/fuzz.h"
#include "tools/offline/csvread.h"
#include "tools/offline/dataset.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char CATALOG[] =
    "item_id,category,subcategory,brand,price,margin,in_stock,name\n"
    "FUR-BO-10001798,Furniture,Bookcases,Bush,108.0585,-0.0446,1,Bush Somerset Collection Bookcase\n"
    "FUR-CH-10000454,Furniture,Chairs,Hon,207.383,0.1812,1,\"Hon Deluxe Fabric Chairs, Rounded Back\"\n"
    "OFF-LA-10000240,Office Supplies,Labels,Self-Adhesive,7.31,0.4195,1,Address Labels\n"
    "FUR-TA-10000577,Furniture,Tables,Bretford,243.747,-0.0736,0,Bretford Slim Table\n";

static char input[1024], catalog[1024];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc; (void)argv;
  fuzz_quiet();
  const char *dir = fuzz_tmpdir("csv");
  snprintf(input, sizeof input, "%s", fuzz_path(dir, "input.csv"));
  snprintf(catalog, sizeof catalog, "%s", fuzz_path(dir, "catalog.csv"));
  fuzz_write(catalog, CATALOG, sizeof CATALOG - 1);
  return 0;
}

static int on_row(void *ctx, const csv_row *row, int is_header, rec_error *err) {
  (void)err;
  size_t *sum = ctx;
  if (is_header) *sum += (size_t)(csv_column(row, "user_id") + csv_column(row, "item_id") + 2);
  for (size_t i = 0; i < row->n; i++) *sum += strlen(row->f[i]);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  fuzz_write(input, data + 1, size - 1);
  rec_error err = {0};
  dataset *d = NULL;
  int rc;
  switch (data[0] % 4) {
  case 0: {
    size_t sum = 0;
    rc = csv_read(input, on_row, &sum, &err);
    break;
  }
  case 1:
    rc = dataset_load(input, catalog, &DS_SCHEMA_DEFAULT, &d, &err);
    break;
  case 2:
    rc = dataset_load(NULL, input, &DS_SCHEMA_DEFAULT, &d, &err);
    break;
  default: {
    ds_schema s = DS_SCHEMA_DEFAULT;
    char *storage = NULL;
    rc = ds_schema_load(input, &s, &storage, &err);
    free(storage);
    break;
  }
  }
  dataset_free(d);
  fuzz_report("csv", rc, err.msg);
  return 0;
}
