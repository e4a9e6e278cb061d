/* sub: print the messages published to one or more topics. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "args.h"
#include "cli.h"
#include "client.h"
#include "format.h"
#include "log.h"

/* How long a stop waits for the I/O thread: every program stops within
 * 100 ms of SIGINT/SIGTERM. */
#define STOP_WAIT_MS 80

static const char usage[] =
    "sub [--server HOST:PORT] [--count N] [--raw | --json] [--since WHEN] [OPTIONS] TOPIC...";

static void help(void)
{
    printf("usage: %s\n\n"
           "Subscribes to each TOPIC and prints every message received, one per line:\n"
           "  TOPIC TYPE PAYLOAD\n"
           "where TYPE is MSG_TYPE1 or MSG_TYPE2. Bytes of the topic and the payload\n"
           "below 0x20, 0x7f and backslash are escaped (\\n, \\t, \\r, \\\\, \\xNN);\n"
           "other bytes are written as they are. stdout is flushed after each read\n"
           "from the socket.\n\n"
           "Options:\n"
           "  --count N              exit 0 after N messages printed (default: run\n"
           "                         until interrupted)\n"
           "  --raw                  print only each payload, byte for byte, then a\n"
           "                         newline. A payload that holds a newline byte is\n"
           "                         not printed, so that each line is one whole\n"
           "                         payload: the first one skipped is logged, the\n"
           "                         total at exit (event=skipped)\n"
           "  --json                 print one JSON object per line:\n"
           "                         {\"topic\":...,\"type\":...,\"payload\":...,\"seq\":N,\n"
           "                         \"epoch\":N}; a payload that is not valid UTF-8 is\n"
           "                         base64, with \"base64\":true added before seq. seq\n"
           "                         is the message's number in its topic's log, epoch\n"
           "                         the log's identity (a broker restarted without\n"
           "                         its log has a new one)\n"
           "  --since WHEN           where new subscriptions start: new (default: what\n"
           "                         is published from now on), first (the oldest\n"
           "                         message the broker retains), SEQ (a number: from\n"
           "                         that seq of the broker's current log) or a\n"
           "                         duration such as 500ms, 30s, 2m, 1h (what was\n"
           "                         published that long ago or later). After a\n"
           "                         reconnect each subscription resumes after the\n"
           "                         last message printed, whatever WHEN\n"
           "  --no-gaps              exit 1 at the first gap (after logging it)\n",
           usage);
    vg_cli_client_help();
    vg_cli_common_help();
    printf("\nEvents go to stderr, one per line (level=... event=... key=value).\n"
           "Messages that will never be printed are a gap, logged once each:\n"
           "  level=warn event=gap topic=T from=F to=T missed=N (the broker's\n"
           "  retention dropped them; reason=unannounced added if the broker did not\n"
           "  say so)\n"
           "  level=warn event=gap topic=T from=F reason=broker_restarted (the broker\n"
           "  lost its log: what followed F-1 in it is unknown)\n"
           "A message the broker sends again after a reconnect is not printed twice.\n"
           "Needs a vigil 0.2 broker (protocol version 2).\n"
           "Exit status: 0 on --count reached or SIGINT/SIGTERM/SIGHUP, 1 if a\n"
           "subscription is refused, the connection is given up, stdout cannot be\n"
           "written or (with --no-gaps) a gap, 2 on a usage error.\n");
}

typedef struct {
    uint64_t limit; /* 0: none */
    uint64_t seen;
    bool no_gaps;
    sub_fmt fmt;
    int done_fd;
    atomic_int exit_code; /* -1 while running */
} sub_state;

static void finish(sub_state *s, int code)
{
    int expected = -1;
    if (atomic_compare_exchange_strong(&s->exit_code, &expected, code)) {
        uint64_t one = 1;
        ssize_t ignored = write(s->done_fd, &one, sizeof one);
        (void)ignored;
    }
}

static void on_msg(void *ud, const vg_msg *m)
{
    sub_state *s = ud;
    if (s->limit != 0 && s->seen >= s->limit)
        return;
    if (atomic_load(&s->exit_code) >= 0)
        return; /* stopping (--no-gaps after a gap, a signal): nothing more */
    if (!sub_fmt_write(&s->fmt, stdout, m->type, m->topic, m->topic_len, m->payload,
                       m->payload_len, m->seq, m->epoch))
        return;
    if (++s->seen == s->limit) {
        fflush(stdout);
        finish(s, 0);
    }
}

static void on_batch_end(void *ud)
{
    sub_state *s = ud;
    if (fflush(stdout) != 0 && atomic_load(&s->exit_code) < 0) {
        /* A full disk or a broken pipe: messages would vanish silently. */
        vg_log(VG_LOG_ERROR, "output_failed", "error=\"%s\"", strerror(errno));
        finish(s, 1);
    }
}

static void on_gap(void *ud, const char *topic, size_t topic_len, const vg_gap *g)
{
    sub_state *s = ud;
    char q[96];
    vg_log_quote(q, sizeof q, topic, topic_len);
    if (g->reason == VG_GAP_EPOCH)
        vg_log(VG_LOG_WARN, "gap", "topic=%s from=%llu reason=broker_restarted", q,
               (unsigned long long)g->from);
    else
        vg_log(VG_LOG_WARN, "gap", "topic=%s from=%llu to=%llu missed=%llu%s", q,
               (unsigned long long)g->from, (unsigned long long)g->to,
               (unsigned long long)(g->to - g->from + 1),
               g->reason == VG_GAP_UNANNOUNCED ? " reason=unannounced" : "");
    if (s->no_gaps) {
        fflush(stdout); /* what came before the gap is printed */
        finish(s, 1);
    }
}

/* --since: new, first, a sequence number, or a duration with its unit (ms,
 * s, m, h). False if arg is none of them. */
static bool parse_since(const char *arg, vg_sub_start *start, uint64_t *position)
{
    if (strcmp(arg, "new") == 0 || strcmp(arg, "first") == 0) {
        *start = arg[0] == 'n' ? VG_SUB_NEW : VG_SUB_FIRST;
        *position = 0;
        return true;
    }
    int64_t n;
    if (vg_parse_int(arg, 1, INT64_MAX, &n)) {
        *start = VG_SUB_SEQ;
        *position = (uint64_t)n;
        return true;
    }
    static const struct {
        const char *unit;
        int64_t ms;
    } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}};
    size_t len = strlen(arg), digits = strspn(arg, "0123456789");
    if (digits == 0 || digits > 12)
        return false;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcmp(arg + digits, units[i].unit) != 0 || len != digits + strlen(units[i].unit))
            continue;
        char num[16];
        memcpy(num, arg, digits);
        num[digits] = '\0';
        if (!vg_parse_int(num, 0, INT64_MAX / units[i].ms, &n))
            return false;
        *start = VG_SUB_AGO;
        *position = (uint64_t)(n * units[i].ms);
        return true;
    }
    return false;
}

static void on_sub_error(void *ud, const char *topic, uint64_t code, const char *reason)
{
    (void)topic, (void)code, (void)reason; /* the client library has logged it */
    finish(ud, 1);
}

static void on_closed(void *ud, const char *reason)
{
    (void)reason;
    finish(ud, 1);
}

int main(int argc, char **argv)
{
    enum { OPT_COUNT = VG_OPT_FIRST_OWN, OPT_RAW, OPT_JSON, OPT_SINCE, OPT_NO_GAPS };
    static const struct option own[] = {
        {"count", required_argument, NULL, OPT_COUNT},
        {"raw", no_argument, NULL, OPT_RAW},
        {"json", no_argument, NULL, OPT_JSON},
        {"since", required_argument, NULL, OPT_SINCE},
        {"no-gaps", no_argument, NULL, OPT_NO_GAPS},
        {NULL, 0, NULL, 0},
    };
    struct option opts[VG_CLI_MAX_OPTIONS];
    vg_cli_merge(opts, own, true);
    sub_state s = {.done_fd = -1};
    atomic_init(&s.exit_code, -1);
    vg_client_opts co;
    vg_client_opts_defaults(&co);
    co.name = "sub";
    sub_format format = SUB_FMT_TEXT;
    vg_sub_start since = VG_SUB_NEW;
    uint64_t since_position = 0;
    int64_t n;
    int o;
    opterr = 0;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (o == OPT_RAW || o == OPT_JSON) {
            sub_format f = o == OPT_RAW ? SUB_FMT_RAW : SUB_FMT_JSON;
            if (format != SUB_FMT_TEXT && format != f)
                vg_usage_error("sub", usage, "--raw and --json cannot be used together");
            format = f;
        } else if (o == OPT_SINCE) {
            if (!parse_since(optarg, &since, &since_position))
                vg_usage_error("sub", usage, "--since must be new, first, a sequence number or a "
                               "duration such as 30s, got '%s'", optarg);
        } else if (o == OPT_NO_GAPS) {
            s.no_gaps = true;
        } else if (o == OPT_COUNT) {
            if (!vg_parse_int(optarg, 1, INT64_MAX, &n))
                vg_usage_error("sub", usage, "--count must be a positive integer, got '%s'", optarg);
            s.limit = (uint64_t)n;
        } else if (!vg_cli_client_option(o, optarg, &co, "sub", usage) &&
                   !vg_cli_common_option(o, optarg, &co.keepalive, "sub", usage, help)) {
            vg_usage_error("sub", usage, "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    vg_cli_check_keepalive(&co.keepalive, "sub", usage);
    if (optind >= argc)
        vg_usage_error("sub", usage, "missing TOPIC");
    sub_fmt_init(&s.fmt, format);

    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGHUP); /* the terminal went away: stop cleanly too */
    pthread_sigmask(SIG_BLOCK, &stop, NULL); /* before the I/O thread exists */
    int sig_fd = signalfd(-1, &stop, SFD_CLOEXEC);
    s.done_fd = eventfd(0, EFD_CLOEXEC);
    if (sig_fd < 0 || s.done_fd < 0) {
        vg_log(VG_LOG_ERROR, "start_failed", "error=\"%s\"", strerror(errno));
        return 1;
    }
    static char outbuf[64 * 1024];
    setvbuf(stdout, outbuf, _IOFBF, sizeof outbuf);

    co.ud = &s;
    co.on_msg = on_msg;
    co.on_batch_end = on_batch_end;
    co.on_sub_error = on_sub_error;
    co.on_closed = on_closed;
    co.on_gap = on_gap;
    vg_client *c;
    const char *why;
    vg_status st = vg_client_start(&c, &co, &why);
    if (st == VG_ERR_ARG)
        vg_usage_error("sub", usage, "--server %s: %s", co.servers, why);
    if (st != VG_OK) {
        vg_log(VG_LOG_ERROR, "start_failed", "error=\"%s\"", why);
        return 1;
    }
    for (int i = optind; i < argc; i++) {
        st = vg_client_subscribe_from(c, argv[i], since, 0, since_position, NULL);
        if (st == VG_ERR_CLOSED) {
            finish(&s, 1); /* refused already (e.g. ERR auth): the library said why */
            break;
        }
        if (st != VG_OK) {
            char q[80];
            vg_log(VG_LOG_ERROR, "subscribe_failed", "topic=%s reason=\"%s\"",
                   vg_log_quote(q, sizeof q, argv[i], strlen(argv[i])), vg_strerror(st));
            vg_client_destroy(c);
            return 2;
        }
    }

    struct pollfd p[2] = {{.fd = sig_fd, .events = POLLIN}, {.fd = s.done_fd, .events = POLLIN}};
    while (poll(p, 2, -1) < 0 && errno == EINTR)
        ;
    if (p[0].revents & POLLIN)
        finish(&s, 0);
    if (vg_client_close(c, STOP_WAIT_MS) != VG_OK) {
        /* The I/O thread is blocked writing our stdout (a reader that
         * stopped reading): stdout is locked, so leave without it. */
        vg_log(VG_LOG_WARN, "stopped", "detail=\"output blocked; unwritten output dropped\"");
        /* exit_group directly: _exit may be wrapped (sanitizers flush
         * stdio there) and would wait for that same lock. */
        syscall(SYS_exit_group, atomic_load(&s.exit_code));
    }
    vg_client_destroy(c);
    if (fflush(stdout) != 0 && atomic_load(&s.exit_code) == 0) {
        vg_log(VG_LOG_ERROR, "output_failed", "error=\"%s\"", strerror(errno));
        s.exit_code = 1;
    }
    sub_fmt_log_skipped(&s.fmt); /* the I/O thread, which counts, has ended */
    return atomic_load(&s.exit_code);
}
