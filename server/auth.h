/* server/auth.h - who may use the admin surface: named bearer tokens read
 * from a file, and an allow-list of client-certificate identities (mTLS).
 * Read once at start and immutable after, so checks are thread-safe. No
 * function here logs or copies a token anywhere but its own storage, which
 * is wiped on free.
 *
 * The token file holds one credential per line, "NAME TOKEN" (NAME is what
 * the logs call the caller), or a lone TOKEN (named "admin"); blank lines
 * and lines starting with '#' are skipped. A token is 16 to 256 printable
 * ASCII characters without spaces. */
#ifndef REC_AUTH_H
#define REC_AUTH_H
#include <stdbool.h>
#include <stddef.h>
#include "common/err.h"

typedef struct auth auth;

enum { AUTH_NAME_MAX = 255 };

/* Reads 'token_file' ("" for none) and the ';'-separated 'allow' list of
 * certificate identities ("" for none): each entry is a whole subject as
 * gRPC prints it ("CN=ops,O=shop", which holds commas) or "CN=name" alone
 * to match the common name. Two tokens alike, or a name given twice, are
 * refused: the logs name the caller by its token's name. Returns 0 with *out set, or REC_EIO / REC_EINVAL with 'err' naming
 * the file and line (never the token). A token file readable by group or
 * others is refused. */
int  auth_new(const char *token_file, const char *allow, auth **out, rec_error *err);
void auth_free(auth *a);                       /* NULL is a no-op */

/* True when at least one token or allowed identity is configured. */
bool auth_configured(const auth *a);

/* Checks an Authorization header value (not NUL-terminated), which must be
 * "Bearer TOKEN". Compares against every configured token in time that does
 * not depend on where a guess differs. On a match copies the token's name
 * into 'who' and returns true. */
bool auth_bearer(const auth *a, const char *value, size_t len, char who[AUTH_NAME_MAX + 1]);

/* True when a verified client certificate with this subject and common
 * name (either may be NULL) is on the allow-list. */
bool auth_identity_allowed(const auth *a, const char *subject, const char *cn);

/* True when 'addr' ("host:port", "[v6]:port") names a loopback host
 * (127.0.0.0/8, ::1, localhost). */
bool auth_addr_is_loopback(const char *addr);
#endif
