/* The sub program against the scripted fake broker (fake_broker.h), for
 * what protocol version 2 adds: --since becomes the first SUB's start,
 * --json prints seq and epoch, a gap is one warn line, --no-gaps exits 1 at
 * the first. The program runs as a child process; every wait is bounded. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fake_broker.h"
#include "proto.h"

extern char **environ;

TestSuite(sub_v2, .timeout = 60);

typedef struct {
    pid_t pid;
    char out[64], err[64]; /* paths of its stdout and stderr */
} child;

static void spawn_sub(child *ch, int port, const char *const *args)
{
    char server[32];
    snprintf(server, sizeof server, "127.0.0.1:%d", port);
    const char *argv[16] = {VIGIL_SUB, "--server", server, "--backoff-max", "0.05"};
    int n = 5;
    for (int i = 0; args[i] != NULL && n < 15; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    snprintf(ch->out, sizeof ch->out, "/tmp/vigil-sub-out-XXXXXX");
    snprintf(ch->err, sizeof ch->err, "/tmp/vigil-sub-err-XXXXXX");
    int o = mkstemp(ch->out), e = mkstemp(ch->err);
    cr_assert(o >= 0 && e >= 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, o, 1);
    posix_spawn_file_actions_adddup2(&fa, e, 2);
    cr_assert_eq(posix_spawn(&ch->pid, VIGIL_SUB, &fa, NULL, (char *const *)argv, environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    close(o);
    close(e);
}

/* Waits for the child's exit within timeout_ms; its status, or -1. */
static int wait_exit(child *ch, int timeout_ms)
{
    int64_t deadline = fb_now() + timeout_ms;
    for (;;) {
        int status;
        pid_t r = waitpid(ch->pid, &status, WNOHANG);
        if (r == ch->pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        if (fb_now() >= deadline)
            return -1;
        fb_sleep(5);
    }
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    static char text[8192];
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = '\0';
    fclose(f);
    return text;
}

static void cleanup(child *ch)
{
    if (wait_exit(ch, 0) < 0) {
        kill(ch->pid, SIGKILL);
        wait_exit(ch, 5000);
    }
    unlink(ch->out);
    unlink(ch->err);
}

/* Reads the child's SUB on conn and answers it OK, returning it. */
static vg_frame take_sub(fb_conn *conn)
{
    vg_frame f;
    fb_expect(conn, VG_FRAME_SUB, &f, fb_ms(5000), "sub's SUB");
    vg_frame copy = f;
    fb_send_ok(conn, f.sid);
    return copy;
}

Test(sub_v2, since_json_and_gap_lines)
{
    fb_listener l;
    fb_listen(&l, false, 0);
    child ch;
    spawn_sub(&ch, l.port, (const char *const[]){"--json", "--since", "30s", "--count", "2",
                                                 "news", NULL});
    fb_conn conn;
    fb_accept(&l, &conn, fb_ms(5000), "sub's connection");
    fb_handshake(&conn, VG_DEFAULT_MAX_PAYLOAD);
    vg_frame f = take_sub(&conn);
    cr_assert(f.form == 2 && f.start == VG_SUB_AGO && f.position == 30000,
              "SUB start %d position %llu", (int)f.start, (unsigned long long)f.position);
    fb_send_msg_seq(&conn, "news", "one", 1);
    fb_send_gap(&conn, f.sid, "news", 2, 4, VG_GAP_RETENTION);
    fb_send_msg_seq(&conn, "news", "five", 5);
    cr_assert_eq(wait_exit(&ch, fb_ms(5000)), 0, "sub did not exit 0 after --count 2");
    char want[256];
    snprintf(want, sizeof want,
             "{\"topic\":\"news\",\"type\":\"MSG_TYPE1\",\"payload\":\"one\",\"seq\":1,"
             "\"epoch\":%llu}\n{\"topic\":\"news\",\"type\":\"MSG_TYPE1\",\"payload\":\"five\","
             "\"seq\":5,\"epoch\":%llu}\n",
             (unsigned long long)FB_EPOCH, (unsigned long long)FB_EPOCH);
    cr_assert_str_eq(slurp(ch.out), want);
    cr_assert(strstr(slurp(ch.err), "level=warn event=gap topic=news from=2 to=4 missed=3\n"),
              "no gap line in: %s", slurp(ch.err));
    cleanup(&ch);
    fb_close(&conn);
    fb_unlisten(&l);
}

/* A broker restarted without its log (a new epoch in INFO) is a gap: its
 * line, and with --no-gaps exit status 1. */
Test(sub_v2, no_gaps_exits_1_at_the_first_gap_and_epoch_gap_line)
{
    fb_listener l;
    fb_listen(&l, false, 0);
    child ch;
    spawn_sub(&ch, l.port, (const char *const[]){"--no-gaps", "--since", "7", "news", NULL});
    fb_conn c1, c2;
    fb_accept(&l, &c1, fb_ms(5000), "sub's connection");
    fb_handshake(&c1, VG_DEFAULT_MAX_PAYLOAD);
    vg_frame f = take_sub(&c1);
    cr_assert(f.form == 2 && f.start == VG_SUB_SEQ && f.epoch == 0 && f.position == 7);
    fb_send_msg_seq(&c1, "news", "seven", 7);
    fb_barrier(&c1, fb_ms(5000), NULL);
    fb_close(&c1);
    fb_accept(&l, &c2, fb_ms(5000), "sub's reconnection");
    c2.epoch = FB_EPOCH + 1;
    fb_handshake(&c2, VG_DEFAULT_MAX_PAYLOAD);
    cr_assert_eq(wait_exit(&ch, fb_ms(5000)), 1, "sub did not exit 1 at the gap");
    cr_assert_str_eq(slurp(ch.out), "news MSG_TYPE1 seven\n");
    cr_assert(strstr(slurp(ch.err), "level=warn event=gap topic=news from=8 "
                                    "reason=broker_restarted\n"),
              "no epoch gap line in: %s", slurp(ch.err));
    cleanup(&ch);
    fb_close(&c2);
    fb_unlisten(&l);
}

/* ---- durable subscribers (issue 11) ---- */

/* sub --durable: the seven-element SUB with the name, FIRST unless
 * --since says otherwise; what it printed is acknowledged; its output
 * format is the usual one. */
Test(sub_v2, durable_subscribes_first_and_acknowledges_what_it_printed)
{
    fb_listener l;
    fb_listen(&l, false, 0);
    child ch;
    spawn_sub(&ch, l.port, (const char *const[]){"--durable", "billing", "orders", "audit", NULL});
    fb_conn conn;
    fb_accept(&l, &conn, fb_ms(5000), "sub's connection");
    fb_handshake(&conn, VG_DEFAULT_MAX_PAYLOAD);
    vg_frame a = take_sub(&conn), b = take_sub(&conn);
    cr_assert(a.form == 3 && a.start == VG_SUB_FIRST && b.form == 3 && b.start == VG_SUB_FIRST,
              "SUB forms %d %d starts %d %d", a.form, b.form, (int)a.start, (int)b.start);
    fb_send_msg(&conn, "orders", "one");
    fb_send_msg(&conn, "orders", "two");
    vg_frame f;
    int64_t deadline = fb_now() + fb_ms(5000);
    for (;;) {
        cr_assert_lt(fb_now(), deadline, "no ACK of 2");
        fb_result r = fb_read(&conn, &f, fb_ms(5000));
        cr_assert_eq(r, FB_FRAME, "%s", fb_result_name(r));
        if (f.type == VG_FRAME_ACK && f.seq == 2)
            break;
    }
    cr_assert_eq(f.sid, a.sid);
    cr_assert_str_eq(slurp(ch.out), "orders MSG_TYPE1 one\norders MSG_TYPE1 two\n",
                     "acknowledged before printed");
    kill(ch.pid, SIGTERM);
    cr_assert_eq(wait_exit(&ch, fb_ms(5000)), 0);
    cleanup(&ch);
    fb_close(&conn);

    spawn_sub(&ch, l.port, (const char *const[]){"--durable", "billing", "--since", "new",
                                                 "orders", NULL});
    fb_accept(&l, &conn, fb_ms(5000), "the second sub's connection");
    fb_handshake(&conn, VG_DEFAULT_MAX_PAYLOAD);
    a = take_sub(&conn);
    cr_assert(a.form == 3 && a.start == VG_SUB_NEW, "--since new: start %d", (int)a.start);
    kill(ch.pid, SIGTERM);
    cr_assert_eq(wait_exit(&ch, fb_ms(5000)), 0);
    cleanup(&ch);
    fb_close(&conn);
    fb_unlisten(&l);
}

/* sub --durable NAME --delete: UNSUB with delete after the OK, nothing on
 * stdout, exit 0 once the broker answered, event=durable_deleted. */
Test(sub_v2, durable_delete_exits_0_after_the_ok)
{
    fb_listener l;
    fb_listen(&l, false, 0);
    child ch;
    spawn_sub(&ch, l.port, (const char *const[]){"--durable", "billing", "--delete", "orders",
                                                 NULL});
    fb_conn conn;
    fb_accept(&l, &conn, fb_ms(5000), "sub's connection");
    fb_handshake(&conn, VG_DEFAULT_MAX_PAYLOAD);
    vg_frame a = take_sub(&conn);
    cr_assert(a.form == 3 && a.durable_len == 7);
    fb_send_msg(&conn, "orders", "not printed");
    vg_frame f;
    fb_expect(&conn, VG_FRAME_UNSUB, &f, fb_ms(5000), "UNSUB with delete");
    cr_assert(f.form == 2 && f.delete_durable && f.sid == a.sid);
    cr_assert_eq(wait_exit(&ch, fb_ms(200)), -1, "exited before the answer");
    fb_send_ok(&conn, f.sid);
    cr_assert_eq(wait_exit(&ch, fb_ms(5000)), 0, "%s", slurp(ch.err));
    cr_assert_str_eq(slurp(ch.out), "");
    cr_assert(strstr(slurp(ch.err), "event=durable_deleted topic=orders durable=billing"),
              "%s", slurp(ch.err));
    cleanup(&ch);
    fb_close(&conn);

    /* A refusal is exit 1. */
    spawn_sub(&ch, l.port, (const char *const[]){"--durable", "billing", "--delete", "orders",
                                                 NULL});
    fb_accept(&l, &conn, fb_ms(5000), "the second sub's connection");
    fb_handshake(&conn, VG_DEFAULT_MAX_PAYLOAD);
    a = take_sub(&conn);
    fb_expect(&conn, VG_FRAME_UNSUB, &f, fb_ms(5000), "UNSUB with delete");
    fb_send_err(&conn, VG_E_NO_SUCH_SID, "no such sid", f.sid);
    cr_assert_eq(wait_exit(&ch, fb_ms(5000)), 1);
    cr_assert(strstr(slurp(ch.err), "event=delete_failed"), "%s", slurp(ch.err));
    cleanup(&ch);
    fb_close(&conn);
    fb_unlisten(&l);
}

/* sub --list-durables prints the one JSON message of $SYS.durables. */
Test(sub_v2, list_durables_prints_the_document)
{
    fb_listener l;
    fb_listen(&l, false, 0);
    child ch;
    spawn_sub(&ch, l.port, (const char *const[]){"--list-durables", NULL});
    fb_conn conn;
    fb_accept(&l, &conn, fb_ms(5000), "sub's connection");
    fb_handshake(&conn, VG_DEFAULT_MAX_PAYLOAD);
    vg_frame a = take_sub(&conn);
    cr_assert(a.form == 2 && a.topic_len == 13 && memcmp(a.topic, "$SYS.durables", 13) == 0);
    static const char doc[] = "{\"durables\":[{\"name\":\"billing\",\"topic\":\"orders\","
                              "\"acked\":41,\"next\":57,\"connected\":true}]}";
    fb_send_msg(&conn, "$SYS.durables", doc);
    cr_assert_eq(wait_exit(&ch, fb_ms(5000)), 0);
    char want[256];
    snprintf(want, sizeof want, "%s\n", doc);
    cr_assert_str_eq(slurp(ch.out), want);
    cleanup(&ch);
    fb_close(&conn);
    fb_unlisten(&l);
}

Test(sub_v2, durable_usage_errors)
{
    static const char *const cases[][4] = {
        {"--durable", "bad name", "t", NULL},
        {"--delete", "t", NULL, NULL},
        {"--list-durables", "t", NULL, NULL},
        {"--list-durables", "--durable", "x", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        child ch;
        spawn_sub(&ch, fb_dead_port(), cases[i]);
        cr_assert_eq(wait_exit(&ch, fb_ms(5000)), 2, "case %zu: %s", i, slurp(ch.err));
        cleanup(&ch);
    }
}
