/* Tokens: loading from a file or the environment, and comparison. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto.h"
#include "token.h"

/* Writes n bytes to a fresh temporary file; returns its path (static). */
static const char *temp_file(const char *bytes, size_t n)
{
    static char path[64];
    strcpy(path, "/tmp/vigil-token-XXXXXX");
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, bytes, n), (ssize_t)n);
    close(fd);
    return path;
}

Test(token, file_with_trailing_newline)
{
    const char *path = temp_file("s3cret\n", 7);
    char *t = NULL;
    const char *why = NULL;
    cr_assert_eq(vg_token_load(path, "VIGIL_TEST_UNSET", &t, &why), VG_OK);
    cr_assert_str_eq(t, "s3cret");
    free(t);
    unlink(path);
}

Test(token, file_wins_over_environment_and_crlf_is_stripped)
{
    setenv("VIGIL_TEST_TOKEN", "from-env", 1);
    const char *path = temp_file("from-file\r\n", 11);
    char *t = NULL;
    const char *why = NULL;
    cr_assert_eq(vg_token_load(path, "VIGIL_TEST_TOKEN", &t, &why), VG_OK);
    cr_assert_str_eq(t, "from-file");
    free(t);
    unlink(path);
    cr_assert_eq(vg_token_load(NULL, "VIGIL_TEST_TOKEN", &t, &why), VG_OK);
    cr_assert_str_eq(t, "from-env");
    free(t);
}

Test(token, none_configured_is_not_an_error)
{
    unsetenv("VIGIL_TEST_TOKEN");
    char *t = (char *)1;
    const char *why = NULL;
    cr_assert_eq(vg_token_load(NULL, "VIGIL_TEST_TOKEN", &t, &why), VG_OK);
    cr_assert_null(t);
}

Test(token, empty_long_missing_and_nul_are_refused)
{
    char *t = NULL;
    const char *why = NULL;
    const char *path = temp_file("\n", 1);
    cr_assert_eq(vg_token_load(path, NULL, &t, &why), VG_ERR_ARG);
    cr_assert_str_eq(why, "the token is empty");
    unlink(path);

    char big[VG_TOKEN_MAX_LEN + 2];
    memset(big, 'a', sizeof big);
    path = temp_file(big, sizeof big);
    cr_assert_eq(vg_token_load(path, NULL, &t, &why), VG_ERR_ARG);
    unlink(path);
    path = temp_file(big, VG_TOKEN_MAX_LEN); /* exactly the maximum is fine */
    cr_assert_eq(vg_token_load(path, NULL, &t, &why), VG_OK);
    cr_assert_eq(strlen(t), VG_TOKEN_MAX_LEN);
    free(t);
    unlink(path);

    path = temp_file("a\0b", 3);
    cr_assert_eq(vg_token_load(path, NULL, &t, &why), VG_ERR_ARG);
    unlink(path);

    cr_assert_eq(vg_token_load("/nonexistent/vigil-token", NULL, &t, &why), VG_ERR_IO);
    cr_assert_not_null(why);
}

Test(token, equal_only_for_same_bytes_and_length)
{
    cr_assert(vg_token_equal("abc", 3, "abc", 3));
    cr_assert_not(vg_token_equal("abc", 3, "abd", 3));
    cr_assert_not(vg_token_equal("abc", 3, "ab", 2));
    cr_assert_not(vg_token_equal("abc", 3, "abcd", 4));
    cr_assert_not(vg_token_equal("abc", 3, NULL, 0));
    cr_assert_not(vg_token_equal("a", 1, "", 0));
}
