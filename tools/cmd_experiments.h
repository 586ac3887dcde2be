/* tools/cmd_experiments.h - recctl experiments: the A/B report (each arm
 * against its layer's control, with 95% intervals) and the runtime
 * controls (share, stop, resume), over recd's admin listener. Returns the
 * exit code (0 ok, 1 the call failed, 2 bad usage). */
#ifndef REC_CMD_EXPERIMENTS_H
#define REC_CMD_EXPERIMENTS_H
int cmd_experiments(int argc, char **argv);
#endif
