/* The configuration file, check-only mode and SIGHUP reload, end to end
 * (docs/operations.md, "Configuration file" and "Reloading"): a real
 * broker given --config FILE; the file rewritten and SIGHUP sent; raw
 * clients see what changed.
 *
 * Every reload is waited for by its closing line (event=reload_done or
 * event=reload_failed), counted, so that a test never reads the log of the
 * previous one. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "proto.h"

#define WAIT h_ms(10000)

#define TOKEN_A "tok-AAAA-5e1c07b2d9"
#define TOKEN_B "tok-BBBB-93f4a6c810"

static char *conf_file(const char *text) { return h_temp_file(text, strlen(text)); }

/* Replaces path's contents (the broker reads it only on SIGHUP). */
static void rewrite(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert(f != NULL);
    cr_assert_eq(fwrite(text, 1, strlen(text), f), strlen(text));
    cr_assert_eq(fclose(f), 0);
}

static void drop_file(char *path)
{
    unlink(path);
    free(path);
}

/* Sends SIGHUP and waits for the reload it starts to end, done or failed:
 * the n-th such end since the broker started. */
static void reload(h_proc *b, int n)
{
    h_signal(b, SIGHUP);
    int64_t deadline = h_now_ms() + WAIT;
    h_step("waiting for reload %d to end (event=reload_done or reload_failed)", n);
    while (h_count(b->err, "event=reload_done") + h_count(b->err, "event=reload_failed") < n) {
        cr_assert(h_now_ms() < deadline, "reload %d did not end: %s", n, h_tail(b->err));
        cr_assert(!b->exited, "the broker exited on SIGHUP: %s", h_tail(b->err));
        h_pump(b, 50);
    }
    h_step(NULL);
}

/* Runs the broker with args (NULL-terminated) to its exit; returns it, exited. */
static h_proc *run_to_exit(const char *a0, ...)
{
    const char *argv[16] = {h_bin("broker"), a0};
    int n = 2;
    va_list ap;
    va_start(ap, a0);
    for (const char *a = va_arg(ap, const char *); a != NULL; a = va_arg(ap, const char *)) {
        cr_assert_lt(n, 15);
        argv[n++] = a;
    }
    va_end(ap);
    h_proc *p = h_spawn("broker", argv);
    cr_assert(h_wait_exit(p, WAIT), "the broker did not exit: %s", h_tail(p->err));
    return p;
}

/* CONNECT with token (NULL: none); the reply's type, and its code if an ERR. */
static vg_frame_type connect_as(h_raw *r, const char *token, uint64_t *code)
{
    vg_buf b = {0};
    cr_assert(vg_frame_put_connect(&b, VG_PROTO_V1, "cfg-test", token) == VG_OK);
    h_raw_send_buf(r, &b);
    vg_buf_free(&b);
    vg_frame f;
    cr_assert(h_raw_read(r, &f, WAIT), "no reply to CONNECT");
    *code = f.code;
    return f.type;
}

/* SUB sid on topic, then PING; returns the SUB's reply type (OK or ERR,
 * whose code must then be limit) and asserts the PONG: the connection lives. */
static vg_frame_type sub(h_raw *r, uint64_t sid, const char *topic)
{
    vg_buf b = {0};
    vg_frame_put_sub(&b, sid, topic, strlen(topic));
    vg_frame_put_ping(&b);
    h_raw_send_buf(r, &b);
    vg_buf_free(&b);
    vg_frame f;
    cr_assert(h_raw_read(r, &f, WAIT), "no reply to SUB %llu", (unsigned long long)sid);
    vg_frame_type t = f.type;
    if (t == VG_FRAME_ERR)
        cr_assert_eq(f.code, VG_E_LIMIT, "SUB %llu: ERR %s", (unsigned long long)sid,
                     vg_errcode_name(f.code));
    else
        cr_assert_eq(t, VG_FRAME_OK, "SUB %llu got frame type %d", (unsigned long long)sid, (int)t);
    cr_assert(h_raw_read(r, &f, WAIT) && f.type == VG_FRAME_PONG, "the connection should stay open");
    return t;
}

Test(config, file_values_are_applied_and_flags_win_whatever_their_order)
{
    char *path = conf_file("# from the file\n"
                           "max-subs 2\n"
                           "max-payload = 2K\n"
                           "stats-interval 0\n");
    int port;
    /* --max-payload before --config: still wins over the file. */
    h_proc *b = h_broker(&port, "--max-payload", "4K", "--config", path, NULL);
    cr_assert(strstr(b->err, "max_payload=4096") != NULL, "the flag must win: %s", h_tail(b->err));
    h_raw r = h_raw_connect(port);
    h_raw_handshake(&r);
    cr_assert_eq(sub(&r, 1, "a"), VG_FRAME_OK);
    cr_assert_eq(sub(&r, 2, "b"), VG_FRAME_OK);
    cr_assert_eq(sub(&r, 3, "c"), VG_FRAME_ERR, "max-subs 2 from the file");
    h_raw_close(&r);
    h_free(b);
    drop_file(path);
}

Test(config, each_kind_of_error_names_file_line_and_key_and_exits_2)
{
    static const struct {
        const char *text;
        const char *where; /* after "at=FILE" */
        const char *rest;
    } cases[] = {
        {"max-subs 5\nmax-sbus 6\n", ":2 key=max-sbus", "unknown key"},
        {"\n# c\nmax-subs\n", ":3 key=max-subs", "missing value"},
        {"max-subs many\n", ":1 key=max-subs", "must be 1 or more, got 'many'"},
        {"max-subs 5\nmax-subs 6\n", ":2 key=max-subs", "duplicate key (first set at line 1)"},
        {"allow-unauthenticated yes\n", ":1 key=allow-unauthenticated", "must be true or false"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *path = conf_file(cases[i].text);
        char want[256];
        snprintf(want, sizeof want, "level=error event=config_invalid at=%s%s error=", path,
                 cases[i].where);
        for (int check = 0; check < 2; check++) { /* started for real, and with -t */
            h_proc *p = check ? run_to_exit("--config", path, "-t", NULL)
                              : run_to_exit("--listen", "127.0.0.1:0", "--config", path, NULL);
            cr_assert_eq(h_exit_code(p), 2, "case %zu: %s", i, h_tail(p->err));
            cr_assert(strstr(p->err, want) != NULL, "case %zu: want '%s': %s", i, want,
                      h_tail(p->err));
            cr_assert(strstr(p->err, cases[i].rest) != NULL, "case %zu: %s", i, h_tail(p->err));
            cr_assert(strstr(p->err, "event=listening") == NULL, "case %zu started", i);
            h_free(p);
        }
        drop_file(path);
    }
    h_proc *p = run_to_exit("--config", "/nonexistent/vigil.conf", "--check-config", NULL);
    cr_assert_eq(h_exit_code(p), 2);
    cr_assert(strstr(p->err, "at=/nonexistent/vigil.conf error=\"No such file") != NULL, "%s",
              h_tail(p->err));
    h_free(p);
}

Test(config, check_mode_binds_nothing_and_checks_the_token_and_protected_mode)
{
    /* A port in use: -t must not try to bind it. */
    int busy;
    h_proc *other = h_broker(&busy, NULL);
    char listen_at[32];
    snprintf(listen_at, sizeof listen_at, "127.0.0.1:%d", busy);
    char *token = h_temp_file(TOKEN_A "\n", strlen(TOKEN_A) + 1);
    char text[512];
    snprintf(text, sizeof text, "listen %s\nauth-token-file %s\nmax-subs 7\n", listen_at, token);
    char *path = conf_file(text);
    h_proc *p = run_to_exit("-t", "--config", path, NULL);
    char want[300];
    snprintf(want, sizeof want, "level=info event=config_ok file=%s\n", path);
    cr_assert_eq(h_exit_code(p), 0, "%s", h_tail(p->err));
    cr_assert(strstr(p->err, want) != NULL, "%s", h_tail(p->err));
    cr_assert_eq(h_count(p->err, "\n"), 1, "one line: %s", h_tail(p->err));
    h_free(p);

    /* The token file must be readable... */
    unlink(token);
    p = run_to_exit("--check-config", "--config", path, NULL);
    cr_assert_eq(h_exit_code(p), 2, "%s", h_tail(p->err));
    cr_assert(strstr(p->err, "level=error event=config_invalid") && strstr(p->err, "reason=auth_token"),
              "%s", h_tail(p->err));
    h_free(p);
    /* ... and beyond loopback a token is needed, unless allowed. */
    rewrite(path, "listen 0.0.0.0:0\n");
    p = run_to_exit("-t", "--config", path, NULL);
    cr_assert_eq(h_exit_code(p), 2, "%s", h_tail(p->err));
    cr_assert(strstr(p->err, "reason=protected_mode") != NULL, "%s", h_tail(p->err));
    h_free(p);
    rewrite(path, "listen 0.0.0.0:0\nallow-unauthenticated true\n");
    p = run_to_exit("-t", "--config", path, NULL);
    cr_assert_eq(h_exit_code(p), 0, "%s", h_tail(p->err));
    h_free(p);
    /* A bad flag is a usage error, as without -t. */
    p = run_to_exit("-t", "--config", path, "--max-subs", "0", NULL);
    cr_assert_eq(h_exit_code(p), 2, "%s", h_tail(p->err));
    cr_assert(strstr(p->err, "--max-subs must be 1 or more, got '0'") != NULL, "%s", h_tail(p->err));
    h_free(p);
    h_assert_serves(busy);
    h_free(other);
    drop_file(path);
    free(token);
}

Test(config, sighup_lowering_max_subs_refuses_the_next_sub_and_keeps_serving)
{
    char *path = conf_file("max-subs 10\n");
    int port;
    h_proc *b = h_broker(&port, "--config", path, NULL);
    h_raw r = h_raw_connect(port);
    h_raw_handshake(&r);
    for (uint64_t sid = 1; sid <= 3; sid++)
        cr_assert_eq(sub(&r, sid, "t"), VG_FRAME_OK);
    rewrite(path, "max-subs 3\n");
    reload(b, 1);
    cr_assert(strstr(b->err, "level=info event=reloaded key=max-subs old=10 new=3\n") != NULL, "%s",
              h_tail(b->err));
    cr_assert(strstr(b->err, "event=reload_done changed=1 skipped=0") != NULL, "%s", h_tail(b->err));
    cr_assert_eq(sub(&r, 4, "t"), VG_FRAME_ERR, "the 4th SUB is past the reloaded limit");
    h_raw_close(&r);
    h_assert_serves(port);
    h_free(b);
    drop_file(path);
}

Test(config, sighup_new_token_is_required_of_new_connections_and_the_old_one_stays)
{
    char *token = h_temp_file(TOKEN_A "\n", strlen(TOKEN_A) + 1);
    char text[300];
    snprintf(text, sizeof text, "auth-token-file %s\n", token);
    char *path = conf_file(text);
    int port;
    h_proc *b = h_broker(&port, "--config", path, NULL);
    uint64_t code;
    h_raw old = h_raw_connect(port);
    cr_assert_eq(connect_as(&old, TOKEN_A, &code), VG_FRAME_INFO);

    rewrite(token, TOKEN_B "\n");
    reload(b, 1);
    cr_assert(strstr(b->err, "event=reloaded key=auth-token auth=token") != NULL, "%s",
              h_tail(b->err));
    h_raw r = h_raw_connect(port);
    cr_assert_eq(connect_as(&r, TOKEN_A, &code), VG_FRAME_ERR, "the old token must be refused");
    cr_assert_eq(code, VG_E_AUTH);
    h_raw_close(&r);
    r = h_raw_connect(port);
    cr_assert_eq(connect_as(&r, TOKEN_B, &code), VG_FRAME_INFO, "the new token must be taken");
    h_raw_close(&r);
    cr_assert_eq(sub(&old, 1, "still.here"), VG_FRAME_OK, "a connected client stays");
    h_raw_close(&old);
    h_pump(b, 0);
    cr_assert(strstr(b->err, TOKEN_A) == NULL && strstr(b->err, TOKEN_B) == NULL,
              "a token was logged: %s", h_tail(b->err));
    h_free(b);
    drop_file(path);
    drop_file(token);
}

Test(config, sighup_log_level_debug_turns_on_debug_lines)
{
    char *path = conf_file("log-level info\n");
    int port;
    h_proc *b = h_broker(&port, "--config", path, NULL);
    h_raw r = h_raw_connect(port);
    h_raw_handshake(&r);
    cr_assert_eq(sub(&r, 1, "before.reload"), VG_FRAME_OK);
    rewrite(path, "log-level debug\n");
    reload(b, 1);
    cr_assert(strstr(b->err, "event=reloaded key=log-level old=info new=debug") != NULL, "%s",
              h_tail(b->err));
    cr_assert_eq(sub(&r, 2, "after.reload"), VG_FRAME_OK);
    cr_assert(h_wait_err(b, "level=debug event=subscribed", WAIT), "no debug line: %s",
              h_tail(b->err));
    cr_assert(strstr(b->err, "topic=after.reload") != NULL, "%s", h_tail(b->err));
    cr_assert(strstr(b->err, "topic=before.reload") == NULL, "debug before the reload: %s",
              h_tail(b->err));
    h_raw_close(&r);
    h_free(b);
    drop_file(path);
}

Test(config, sighup_change_that_needs_a_restart_is_logged_and_not_applied)
{
    char *path = conf_file("max-payload 2K\nmax-subs 5\n");
    int port;
    h_proc *b = h_broker(&port, "--config", path, NULL);
    rewrite(path, "max-payload 4K\nmax-subs 6\n");
    reload(b, 1);
    cr_assert(strstr(b->err, "level=warn event=reload_skipped key=max-payload reason=restart_needed "
                             "running=2048 file=4096") != NULL,
              "%s", h_tail(b->err));
    cr_assert(strstr(b->err, "event=reloaded key=max-subs old=5 new=6") != NULL, "%s",
              h_tail(b->err));
    cr_assert(strstr(b->err, "event=reload_done changed=1 skipped=1") != NULL, "%s",
              h_tail(b->err));
    /* A new connection is still told the payload limit it started with. */
    h_raw r = h_raw_connect(port);
    vg_buf buf = {0};
    cr_assert(vg_frame_put_connect(&buf, VG_PROTO_V1, "cfg-test", NULL) == VG_OK);
    h_raw_send_buf(&r, &buf);
    vg_buf_free(&buf);
    vg_frame f;
    cr_assert(h_raw_read(&r, &f, WAIT) && f.type == VG_FRAME_INFO);
    cr_assert_eq(f.max_payload, 2048);
    h_raw_close(&r);
    h_free(b);
    drop_file(path);
}

Test(config, sighup_broken_file_or_unreadable_token_changes_nothing)
{
    char *token = h_temp_file(TOKEN_A "\n", strlen(TOKEN_A) + 1);
    char text[300];
    snprintf(text, sizeof text, "auth-token-file %s\nmax-subs 2\n", token);
    char *path = conf_file(text);
    int port;
    h_proc *b = h_broker(&port, "--config", path, NULL);

    /* max-subs 1 on a line before the broken one: all or nothing. */
    snprintf(text, sizeof text, "auth-token-file %s\nmax-subs 1\nbogus 1\n", token);
    rewrite(path, text);
    reload(b, 1);
    char want[300];
    snprintf(want, sizeof want, "level=error event=reload_failed at=%s:3 key=bogus error=", path);
    cr_assert(strstr(b->err, want) != NULL, "%s", h_tail(b->err));
    /* The token file gone: also refused as a whole. */
    snprintf(text, sizeof text, "auth-token-file %s\nmax-subs 1\n", token);
    rewrite(path, text);
    unlink(token);
    reload(b, 2);
    cr_assert(strstr(b->err, "level=error event=reload_failed reason=auth_token") != NULL, "%s",
              h_tail(b->err));
    cr_assert(strstr(b->err, "event=reloaded") == NULL, "something changed: %s", h_tail(b->err));

    uint64_t code;
    h_raw r = h_raw_connect(port);
    cr_assert_eq(connect_as(&r, TOKEN_A, &code), VG_FRAME_INFO, "the token in force stays");
    cr_assert_eq(sub(&r, 1, "a"), VG_FRAME_OK);
    cr_assert_eq(sub(&r, 2, "b"), VG_FRAME_OK, "max-subs is still 2");
    h_raw_close(&r);
    h_free(b);
    drop_file(path);
    free(token);
}

Test(config, sighup_flags_still_win_over_the_file)
{
    char *path = conf_file("max-subs 5\nstats-interval 5\n");
    int port;
    h_proc *b = h_broker(&port, "--config", path, "--max-subs", "2", NULL);
    rewrite(path, "max-subs 1\nstats-interval 0\n");
    reload(b, 1);
    cr_assert(strstr(b->err, "event=reloaded key=stats-interval old=5 new=0") != NULL, "%s",
              h_tail(b->err));
    cr_assert(strstr(b->err, "key=max-subs") == NULL, "the flag's value must stay: %s",
              h_tail(b->err));
    h_raw r = h_raw_connect(port);
    h_raw_handshake(&r);
    cr_assert_eq(sub(&r, 1, "a"), VG_FRAME_OK);
    cr_assert_eq(sub(&r, 2, "b"), VG_FRAME_OK);
    cr_assert_eq(sub(&r, 3, "c"), VG_FRAME_ERR);
    h_raw_close(&r);
    h_free(b);
    drop_file(path);
}
