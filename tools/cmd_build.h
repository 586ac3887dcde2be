/* tools/cmd_build.h - the offline recctl commands: build, eval and import. Each
 * parses its own flags and returns the process exit code (0 ok, 1 failed,
 * 2 bad usage). */
#ifndef REC_CMD_BUILD_H
#define REC_CMD_BUILD_H
int cmd_build(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_import(int argc, char **argv);

/* Parses flag value 'v' as an integer in [lo, hi] into *out; on failure
 * prints one line naming the flag and the range and returns 2 (bad usage). */
int flag_long(const char *flag, const char *v, long lo, long hi, long *out);
#endif
