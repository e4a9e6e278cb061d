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
