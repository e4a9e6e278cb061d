/* Shared-secret tokens for client authentication (docs/operations.md).
 *
 * A token comes from a file or an environment variable, never from the
 * command line, where ps would show it. */
#ifndef VG_TOKEN_H
#define VG_TOKEN_H

#include <stdbool.h>
#include <stddef.h>

#include "status.h"

/* Loads a token from path if not NULL, else from the environment variable
 * env_name. One trailing newline (LF or CRLF) is stripped; the result must
 * be 1 to VG_TOKEN_MAX_LEN bytes. On VG_OK *out is a malloc'd NUL-terminated
 * token, or NULL if neither source gives one; VG_ERR_ARG/VG_ERR_IO with
 * *why naming the problem (never the token) otherwise. */
vg_status vg_token_load(const char *path, const char *env_name, char **out, const char **why);

/* Compares in time that depends only on the lengths, not on where the first
 * difference is, so a remote peer cannot learn the token byte by byte. */
bool vg_token_equal(const char *want, size_t want_len, const char *got, size_t got_len);

#endif
