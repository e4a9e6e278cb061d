#include "token.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

/* Checks and copies a token of n bytes; strips one trailing newline first. */
static vg_status take(const char *s, size_t n, char **out, const char **why)
{
    if (n > 0 && s[n - 1] == '\n')
        n--;
    if (n > 0 && s[n - 1] == '\r')
        n--;
    if (n == 0) {
        *why = "the token is empty";
        return VG_ERR_ARG;
    }
    if (n > VG_TOKEN_MAX_LEN) {
        *why = "the token is longer than 1024 bytes";
        return VG_ERR_ARG;
    }
    if (memchr(s, '\0', n) != NULL) {
        *why = "the token contains a NUL byte";
        return VG_ERR_ARG;
    }
    char *t = malloc(n + 1);
    if (t == NULL) {
        *why = "out of memory";
        return VG_ERR_NOMEM;
    }
    memcpy(t, s, n);
    t[n] = '\0';
    *out = t;
    return VG_OK;
}

vg_status vg_token_load(const char *path, const char *env_name, char **out, const char **why)
{
    *out = NULL;
    if (path == NULL) {
        const char *v = env_name != NULL ? getenv(env_name) : NULL;
        return v == NULL ? VG_OK : take(v, strlen(v), out, why);
    }
    char buf[VG_TOKEN_MAX_LEN + 3]; /* room to notice a token that is too long */
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        *why = strerror(errno);
        return VG_ERR_IO;
    }
    size_t n = fread(buf, 1, sizeof buf, f);
    int failed = ferror(f);
    fclose(f);
    if (failed) {
        *why = "read error";
        return VG_ERR_IO;
    }
    vg_status st = take(buf, n, out, why);
    memset(buf, 0, sizeof buf);
    return st;
}

bool vg_token_equal(const char *want, size_t want_len, const char *got, size_t got_len)
{
    if (got == NULL)
        return false;
    unsigned char diff = want_len != got_len;
    for (size_t i = 0; i < want_len; i++)
        diff |= (unsigned char)(want[i] ^ (i < got_len ? got[i] : 0));
    return diff == 0;
}
