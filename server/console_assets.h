/* server/console_assets.h - the web console's files (server/console/),
 * compiled into recd as byte arrays by server/console/embed.cmake at build
 * time: no file is read at run time. */
#ifndef REC_CONSOLE_ASSETS_H
#define REC_CONSOLE_ASSETS_H
#include <stddef.h>

typedef struct console_asset {
  const char *name;                /* the file's name in server/console/ */
  const unsigned char *data;
  size_t len;
} console_asset;

extern const console_asset console_assets[];
extern const size_t console_asset_count;
#endif
