/* Token authentication and protected mode end to end (issue 5).
 *
 * The broker takes its token from --auth-token-file or VIGIL_AUTH_TOKEN
 * (the file wins); pub and sub from --token-file or VIGIL_TOKEN. A missing
 * or wrong token gets ERR auth and a closed connection, the clients give up
 * at once (exit 1, no reconnect loop), and no token's value ever reaches a
 * log line. A non-loopback --listen without a token refuses to start. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "proto.h"

#define WAIT h_ms(10000)
/* A client refused for its token must give up well before this; its own
 * --timeout is set far longer, so a prompt exit cannot be a timeout. */
#define PROMPT_MS h_ms(5000)

#define RIGHT "tok-RIGHT-7f3a9c51e2"
#define WRONG "tok-WRONG-1b2d4e68a0"

/* Every process whose stderr must be checked for tokens before it is freed. */
typedef struct {
    h_proc *p[32];
    int n;
} seen;

static void keep(seen *s, h_proc *p)
{
    cr_assert(s->n < 32);
    s->p[s->n++] = p;
}

/* No token value in any captured line of any process, then frees them all. */
static void assert_no_token_logged(seen *s, const char *const tokens[])
{
    for (int i = 0; i < s->n; i++) {
        h_proc *p = s->p[i];
        if (!p->exited)
            h_pump(p, 0);
        for (const char *const *t = tokens; *t != NULL; t++) {
            cr_assert(strstr(p->err, *t) == NULL, "%s logged a token: %s", p->name, p->err);
            cr_assert(strstr(p->out, *t) == NULL, "%s printed a token: %s", p->name, p->out);
        }
    }
}

static void free_all(seen *s)
{
    for (int i = s->n - 1; i >= 0; i--)
        h_free(s->p[i]);
    s->n = 0;
}

static char *token_file(const char *contents) { return h_temp_file(contents, strlen(contents)); }

static void drop_file(char *path)
{
    unlink(path);
    free(path);
}

/* Runs pub with up to two extra arguments (NULL: none) and a long
 * --timeout; expects it to give up promptly with exit 1 and reason=auth. */
static h_proc *pub_refused(int port, const char *a0, const char *a1)
{
    char server[32];
    snprintf(server, sizeof server, "127.0.0.1:%d", port);
    const char *argv[] = {h_bin("pub"), "--server", server, "--timeout", "60", "auth.topic",
                          "payload", NULL, NULL, NULL};
    if (a0 != NULL) { /* options before the operands */
        argv[5] = a0, argv[6] = a1, argv[7] = "auth.topic", argv[8] = "payload";
    }
    int64_t t0 = h_now_ms();
    h_proc *p = h_spawn("pub", argv);
    cr_assert(h_wait_exit(p, PROMPT_MS), "pub refused by the broker kept trying: %s", p->err);
    cr_log_info("pub gave up after %lld ms", (long long)(h_now_ms() - t0));
    cr_assert_eq(h_exit_code(p), 1, "%s", p->err);
    cr_assert(strstr(p->err, "level=error") && strstr(p->err, "reason=auth"), "%s", p->err);
    cr_assert_eq(h_count(p->err, "event=connect_failed reason=auth"), 1, "one attempt only: %s", p->err);
    return p;
}

/* The same for sub. */
static h_proc *sub_refused(int port, const char *a0, const char *a1)
{
    char server[32];
    snprintf(server, sizeof server, "127.0.0.1:%d", port);
    const char *argv[] = {h_bin("sub"), "--server", server, a0, a1, "auth.topic", NULL};
    if (a0 == NULL) /* no extra arguments: close the gap */
        argv[3] = "auth.topic", argv[4] = NULL;
    h_proc *s = h_spawn("sub", argv);
    cr_assert(h_wait_exit(s, PROMPT_MS), "sub refused by the broker kept trying: %s", s->err);
    cr_assert_eq(h_exit_code(s), 1, "%s", s->err);
    cr_assert(strstr(s->err, "level=error") && strstr(s->err, "reason=auth"), "%s", s->err);
    cr_assert_eq(h_count(s->err, "event=connect_failed reason=auth"), 1, "one attempt only: %s", s->err);
    cr_assert(strstr(s->err, "event=subscribed") == NULL, "%s", s->err);
    return s;
}

/* A raw CONNECT with token (NULL: none) is refused with ERR auth, no INFO. */
static void raw_refused(int port, const char *token)
{
    h_raw r = h_raw_connect(port);
    vg_buf b = {0};
    vg_frame_put_connect(&b, VG_PROTO_V1, "raw-auth", token);
    /* Anything after CONNECT must not be acted on either. */
    vg_frame_put_sub(&b, 1, "auth.topic", 10);
    h_raw_send_buf(&r, &b);
    vg_buf_free(&b);
    vg_frame f;
    cr_assert(h_raw_read(&r, &f, WAIT), "no answer to CONNECT");
    cr_assert_eq(f.type, VG_FRAME_ERR, "a CONNECT with %s token got type %d", token ? "a wrong" : "no",
                 (int)f.type);
    cr_assert_eq(f.code, VG_E_AUTH, "ERR %s", vg_errcode_name(f.code));
    cr_assert(f.reason_len == strlen("authentication failed") &&
              memcmp(f.reason, "authentication failed", f.reason_len) == 0,
              "reason: %.*s", (int)f.reason_len, f.reason);
    /* Then nothing (the SUB was not acted on), then the close. */
    while (h_raw_read(&r, &f, WAIT))
        cr_assert_fail("a refused client got type %d after ERR auth", (int)f.type);
    cr_assert(h_raw_wait_eof(&r, 1), "not closed after ERR auth");
    h_raw_close(&r);
}

/* With a token in force: the right one works, wrong and missing ones are
 * refused everywhere, the resources come back, and it still serves. The
 * right token reaches the clients as right_arg0 right_arg1 (e.g.
 * --token-file PATH), or, if right_arg0 is NULL, through VIGIL_TOKEN. */
static void check_auth(h_proc *b, int port, const char *right_arg0, const char *right_arg1,
                       const char *wrong_path)
{
    seen s = {0};
    h_usage base = h_usage_of(b);
    int evicted0 = h_count(b->err, "event=evict reason=auth");
    int connected0 = h_count(b->err, "event=client_connected");

    /* Right token: a pair works end to end. */
    if (right_arg0 == NULL)
        setenv("VIGIL_TOKEN", RIGHT, 1), right_arg0 = "--name", right_arg1 = "env-client";
    h_proc *ok_sub = h_sub(port, right_arg0, right_arg1, "--count", "1", "auth.topic", NULL);
    keep(&s, ok_sub);
    h_proc *ok_pub = h_pub_start(port, right_arg0, right_arg1, "auth.topic", "authorised", NULL);
    keep(&s, ok_pub);
    cr_assert(h_wait_exit(ok_pub, WAIT) && h_exit_code(ok_pub) == 0, "%s", ok_pub->err);
    cr_assert(h_wait_exit(ok_sub, WAIT) && h_exit_code(ok_sub) == 0, "%s", ok_sub->err);
    cr_assert_str_eq(ok_sub->out, "auth.topic MSG_TYPE1 authorised\n");
    cr_assert_eq(h_count(b->err, "event=evict reason=auth"), evicted0, "%s", b->err);

    /* Wrong token (file, then environment) and no token at all. */
    setenv("VIGIL_TOKEN", WRONG, 1);
    keep(&s, pub_refused(port, NULL, NULL));
    keep(&s, sub_refused(port, NULL, NULL));
    unsetenv("VIGIL_TOKEN");
    keep(&s, pub_refused(port, "--token-file", wrong_path));
    keep(&s, sub_refused(port, "--token-file", wrong_path));
    keep(&s, pub_refused(port, NULL, NULL));
    keep(&s, sub_refused(port, NULL, NULL));
    raw_refused(port, NULL);
    raw_refused(port, WRONG);
    raw_refused(port, "");

    /* One eviction per attempt: no client retried. */
    cr_assert(h_wait_err_count(b, "level=warn event=evict reason=auth client=", evicted0 + 9, WAIT),
              "%s", b->err);
    h_pump(b, 200);
    cr_assert_eq(h_count(b->err, "event=evict reason=auth"), evicted0 + 9, "%s", b->err);
    cr_assert(strstr(b->err, "name=pub") && strstr(b->err, "name=sub") && strstr(b->err, "name=raw-auth"),
              "the eviction lines name the clients: %s", b->err);
    cr_assert_eq(h_count(b->err, "event=client_connected"), connected0 + 2,
                 "only the two authorised clients were served: %s", b->err);

    keep(&s, b);
    assert_no_token_logged(&s, (const char *const[]){RIGHT, WRONG, NULL});
    s.n--; /* the broker is the caller's */
    free_all(&s);

    h_assert_usage_back(b, base, 0, 8 * 1024, WAIT);
    setenv("VIGIL_TOKEN", RIGHT, 1); /* h_assert_serves's clients take it from here */
    h_assert_serves(port);
    unsetenv("VIGIL_TOKEN");
    seen last = {.p = {b}, .n = 1};
    assert_no_token_logged(&last, (const char *const[]){RIGHT, WRONG, NULL});
}

Test(auth, token_file_on_broker_and_clients)
{
    unsetenv("VIGIL_TOKEN");
    unsetenv("VIGIL_AUTH_TOKEN");
    char *bfile = token_file(RIGHT "\n"); /* one trailing newline is not part of it */
    char *cfile = token_file(RIGHT);
    char *wfile = token_file(WRONG "\n");
    int port;
    h_proc *b = h_broker(&port, "--auth-token-file", bfile, NULL);
    check_auth(b, port, "--token-file", cfile, wfile);
    h_free(b);
    drop_file(bfile), drop_file(cfile), drop_file(wfile);
}

Test(auth, token_from_the_environment)
{
    unsetenv("VIGIL_TOKEN");
    setenv("VIGIL_AUTH_TOKEN", RIGHT, 1);
    int port;
    h_proc *b = h_broker(&port, NULL);
    unsetenv("VIGIL_AUTH_TOKEN");
    char *wfile = token_file(WRONG);
    /* The right token reaches the clients through VIGIL_TOKEN. */
    setenv("VIGIL_TOKEN", RIGHT, 1);
    h_proc *s = h_sub(port, "--count", "1", "env.topic", NULL);
    cr_assert_eq(h_pub(port, "env.topic", "via-env", NULL), 0);
    cr_assert(h_wait_exit(s, WAIT) && h_exit_code(s) == 0, "%s", s->err);
    cr_assert_str_eq(s->out, "env.topic MSG_TYPE1 via-env\n");
    /* A --token-file wins over VIGIL_TOKEN. */
    h_proc *p = pub_refused(port, "--token-file", wfile);
    unsetenv("VIGIL_TOKEN");
    cr_assert(strstr(s->err, RIGHT) == NULL && strstr(p->err, WRONG) == NULL);
    /* check_auth counts connections and evictions from here: the broker's
     * lines about these three clients must be read first. */
    cr_assert(h_wait_err_count(b, "event=client_closed", 2, WAIT) &&
                  h_wait_err_count(b, "event=evict reason=auth", 1, WAIT),
              "waiting for the broker to log the pair's close and the refused pub: %s", b->err);
    h_free(p), h_free(s);
    check_auth(b, port, NULL, NULL, wfile);
    h_free(b);
    drop_file(wfile);
}

Test(auth, file_wins_over_environment_on_the_broker)
{
    unsetenv("VIGIL_TOKEN");
    char *bfile = token_file(RIGHT "\n");
    setenv("VIGIL_AUTH_TOKEN", WRONG, 1);
    int port;
    h_proc *b = h_broker(&port, "--auth-token-file", bfile, NULL);
    unsetenv("VIGIL_AUTH_TOKEN");
    char *rfile = token_file(RIGHT), *wfile = token_file(WRONG);
    h_proc *s = h_sub(port, "--token-file", rfile, "--count", "1", "both", NULL);
    h_proc *p = pub_refused(port, "--token-file", wfile);
    cr_assert_eq(h_pub(port, "--token-file", rfile, "both", "file-token", NULL), 0);
    cr_assert(h_wait_exit(s, WAIT) && h_exit_code(s) == 0, "%s", s->err);
    cr_assert(strstr(b->err, RIGHT) == NULL && strstr(b->err, WRONG) == NULL, "%s", b->err);
    h_free(p), h_free(s), h_free(b);
    drop_file(bfile), drop_file(rfile), drop_file(wfile);
}

/* Starts a broker expected to refuse: exit 2, one error line, no listener. */
static void expect_refusal(const char *const argv[], const char *needle, const char *secret)
{
    h_proc *b = h_spawn("broker", argv);
    cr_assert(h_wait_exit(b, WAIT), "broker did not exit: %s", b->err);
    cr_assert_eq(h_exit_code(b), 2, "%s", b->err);
    cr_assert(strstr(b->err, "level=error event=refused_to_start") != NULL, "%s", b->err);
    cr_assert(strstr(b->err, needle) != NULL, "expected '%s' in: %s", needle, b->err);
    cr_assert(strstr(b->err, "event=listening") == NULL, "%s", b->err);
    if (secret != NULL)
        cr_assert(strstr(b->err, secret) == NULL, "the token was logged: %s", b->err);
    h_free(b);
}

Test(auth, unusable_token_file_refuses_to_start)
{
    unsetenv("VIGIL_AUTH_TOKEN");
    const char *bin = h_bin("broker");
    expect_refusal((const char *[]){bin, "--listen", "127.0.0.1:0", "--auth-token-file",
                                    "/nonexistent/vigil-token", NULL},
                   "reason=", NULL);
    char *empty = token_file("");
    char *newline = token_file("\n");
    expect_refusal((const char *[]){bin, "--listen", "127.0.0.1:0", "--auth-token-file", empty, NULL},
                   "reason=", NULL);
    expect_refusal((const char *[]){bin, "--listen", "127.0.0.1:0", "--auth-token-file", newline, NULL},
                   "reason=", NULL);
    /* 1024 bytes is the most; 1025 is refused. */
    static char tok[1027];
    memset(tok, 'k', 1025);
    tok[1025] = '\0';
    char *too_long = token_file(tok);
    expect_refusal((const char *[]){bin, "--listen", "127.0.0.1:0", "--auth-token-file", too_long, NULL},
                   "reason=", tok + 1);
    tok[1024] = '\n';
    char *longest = token_file(tok); /* 1024 bytes and a newline */
    tok[1024] = '\0';
    char *client = token_file(tok);
    int port;
    h_proc *b = h_broker(&port, "--auth-token-file", longest, NULL);
    h_proc *s = h_sub(port, "--token-file", client, "--count", "1", "long", NULL);
    cr_assert_eq(h_pub(port, "--token-file", client, "long", "1024", NULL), 0);
    cr_assert(h_wait_exit(s, WAIT) && h_exit_code(s) == 0);
    cr_assert(strstr(b->err, tok + 900) == NULL, "%s", b->err);
    h_free(s), h_free(b);
    drop_file(empty), drop_file(newline), drop_file(too_long), drop_file(longest), drop_file(client);
}

/* The port from a broker's event=listening line, for any listen address. */
static int listening_port(const h_proc *b)
{
    const char *line = strstr(b->err, "event=listening addr=");
    cr_assert(line != NULL, "%s", b->err);
    const char *colon = strchr(line + strlen("event=listening addr="), ' ');
    cr_assert(colon != NULL);
    while (colon[-1] != ':')
        colon--;
    return atoi(colon);
}

Test(auth, protected_mode_refuses_an_open_listener_without_a_token)
{
    unsetenv("VIGIL_AUTH_TOKEN");
    unsetenv("VIGIL_TOKEN");
    const char *bin = h_bin("broker");
    expect_refusal((const char *[]){bin, "--listen", "0.0.0.0:0", NULL}, "reason=protected_mode", NULL);

    /* Said explicitly: it starts, warns, and serves (over loopback here). */
    h_proc *b = h_spawn("broker", (const char *[]){bin, "--listen", "0.0.0.0:0", "--allow-unauthenticated", NULL});
    cr_assert(h_wait_err(b, "event=listening", WAIT), "%s", b->err);
    cr_assert(strstr(b->err, "level=warn event=unauthenticated addr=") != NULL, "%s", b->err);
    h_assert_serves(listening_port(b));
    h_free(b);

    /* With a token it needs no such flag, and the token is enforced. */
    setenv("VIGIL_AUTH_TOKEN", RIGHT, 1);
    b = h_spawn("broker", (const char *[]){bin, "--listen", "0.0.0.0:0", NULL});
    unsetenv("VIGIL_AUTH_TOKEN");
    cr_assert(h_wait_err(b, "event=listening", WAIT), "%s", b->err);
    cr_assert(strstr(b->err, "event=unauthenticated") == NULL, "%s", b->err);
    int port = listening_port(b);
    raw_refused(port, NULL);
    setenv("VIGIL_TOKEN", RIGHT, 1);
    h_assert_serves(port);
    unsetenv("VIGIL_TOKEN");
    cr_assert(strstr(b->err, RIGHT) == NULL, "%s", b->err);
    h_free(b);
}
