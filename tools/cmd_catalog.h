/* tools/cmd_catalog.h - recctl catalog upsert|delete: live catalog changes
 * sent to recd's admin listener. Returns the exit code (0 ok, 1 failed,
 * 2 bad usage). */
#ifndef REC_CMD_CATALOG_H
#define REC_CMD_CATALOG_H
int cmd_catalog(int argc, char **argv);

/* flag_long, from cmd_build.h. */
int flag_long(const char *flag, const char *v, long lo, long hi, long *out);
#endif
