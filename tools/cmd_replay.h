/* tools/cmd_replay.h - recctl replay: runs Recommend calls from recd's
 * decision log (server/declog.h) again in this process, through recd's own
 * handler, with the logged online state, catalog generation, deadline steps
 * and time put back, and prints where the slates differ. Returns the exit
 * code: 0 every record replayed identical, 1 a difference or a record that
 * could not be replayed, 2 bad usage. */
#ifndef REC_CMD_REPLAY_H
#define REC_CMD_REPLAY_H
int cmd_replay(int argc, char **argv);
#endif
