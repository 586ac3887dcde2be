/* tools/recctl.h - what recctl's commands share (recctl.c): the admin token,
 * and what to print when a call to recd fails. Exit codes everywhere: 0 ok,
 * 1 the call or the work failed, 2 bad usage, 3 health is not SERVING. */
#ifndef REC_RECCTL_H
#define REC_RECCTL_H
#include <stdbool.h>
#include "server/rpc_client.h"

/* The admin listener's and the serving port's default addresses. */
#define RECCTL_ADMIN_ADDR "127.0.0.1:50052"
#define RECCTL_SERVING_ADDR "127.0.0.1:50051"

/* The token file an admin command uses: 'flag' (--token-file), else
 * $RECCTL_TOKEN_FILE, else NULL. */
const char *recctl_token_file(const char *flag);

/* The first token in 'path' (recd's --admin_token_file format), checked,
 * for an admin call to 'addr' (refused in clear off loopback: 'tls_ca'
 * NULL); malloc'd, or NULL with a message printed. */
char *recctl_admin_token(const char *path, const char *addr, const char *tls_ca);

/* Prints, after "recctl CMD: ", why a call to 'addr' failed and what to do:
 * an address where no recd answers is named with the likely causes and the
 * flag that fixes them (not gRPC's own text); UNAUTHENTICATED names the
 * token flag and variable ('token_file': the one sent, or NULL); anything
 * else is recd's own status and message. 'admin': the call went to the
 * admin listener. Returns 1, the exit code. */
int recctl_call_failed(const char *cmd, const char *addr, bool admin, const char *token_file,
                       const rpc_status *st);
#endif
