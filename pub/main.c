/* pub: publish messages to a topic and wait until the broker confirms them. */
#include <errno.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "args.h"
#include "cli.h"
#include "clock.h"
#include "log.h"
#include "vigil/vigil.h"

static const char usage[] =
    "pub [--server HOST:PORT] [--type 1|2] [--count N] [--interval SECS] TOPIC MESSAGE";

static void help(void)
{
    printf("usage: %s\n\n"
           "Publishes MESSAGE to TOPIC and exits 0 once the broker has confirmed that it\n"
           "received every message (a PING/PONG round trip after the last one).\n"
           "MESSAGE '-' reads standard input and publishes each line as a message\n"
           "(all lines, or the first N with --count N).\n"
           "In MESSAGE, {n} is replaced by the message's number (1, 2, ...).\n\n"
           "Options:\n"
           "  --type 1|2             MSG_TYPE1 (default) or MSG_TYPE2\n"
           "  --count N              publish N times (default 1); 0: until interrupted\n"
           "  --interval SECS        pause between messages, decimal seconds (default 0)\n"
           "  --timeout SECS         how long to wait for a broker at start, and for the\n"
           "                         final confirmation (default 10)\n",
           usage);
    vg_cli_client_help();
    vg_cli_common_help();
    printf("\nA message is confirmed once the broker has it in its log. One written\n"
           "to a connection that died before the broker confirmed it is sent again\n"
           "on the next connection (the broker drops those it already has), as long\n"
           "as it is among the newest --buffer bytes written; a reconnect does not\n"
           "end the wait for confirmation, --timeout does. Needs a vigil 0.2 broker\n"
           "(protocol version 2).\n"
           "\nEvents go to stderr, one per line (level=... event=... key=value). The\n"
           "last line counts every message: published = confirmed + unconfirmed +\n"
           "unsent (unconfirmed: written, not confirmed, and not sent again: beyond\n"
           "the --buffer bytes kept, or still waiting when pub stopped; unsent: still\n"
           "queued when pub stopped).\n"
           "SIGINT/SIGTERM: stop publishing, wait briefly (60 ms) for confirmations,\n"
           "report and exit.\n"
           "Exit status: 0 when every message published was confirmed (also when\n"
           "interrupted), 1 when some were not (or the broker refused the client),\n"
           "2 on a usage error.\n");
}

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

/* Expands {n} in the template into buf. */
static size_t render(const char *tmpl, uint64_t n, char **buf, size_t *cap)
{
    char num[24];
    int numlen = snprintf(num, sizeof num, "%llu", (unsigned long long)n);
    size_t len = 0;
    for (const char *p = tmpl; *p;) {
        const char *piece = p;
        size_t plen = 1;
        if (strncmp(p, "{n}", 3) == 0) {
            piece = num;
            plen = (size_t)numlen;
            p += 3;
        } else {
            p++;
        }
        if (len + plen + 1 > *cap) {
            size_t ncap = (*cap ? *cap * 2 : 256) + plen;
            char *nb = realloc(*buf, ncap);
            if (nb == NULL)
                return SIZE_MAX;
            *buf = nb;
            *cap = ncap;
        }
        memcpy(*buf + len, piece, plen);
        len += plen;
    }
    return len;
}

/* Waits happen in slices this long, so that a signal is acted on within
 * 100 ms in every state (connecting, waiting for room, confirming). */
#define SLICE_MS 10

/* After SIGINT/SIGTERM, what is already written may still be confirmed for
 * this long before pub reports and exits: with a slice, well inside 100 ms. */
#define GRACE_MS 60

/* Publishes, waiting for room in slices so that a signal is noticed. */
static vigil_status publish(vigil_client *c, unsigned type, const char *topic, const char *p,
                            size_t len)
{
    for (;;) {
        vigil_status st = vigil_publish_type(c, type, topic, p, len, SLICE_MS);
        if (st != VIGIL_ERR_FULL || interrupted)
            return st;
    }
}

/* Calls wait(c, SLICE_MS) until it gives something other than a timeout,
 * timeout_ms passes, or a signal arrives. */
static vigil_status wait_sliced(vigil_client *c, vigil_status (*wait)(vigil_client *, int),
                                int64_t timeout_ms)
{
    int64_t deadline = vg_now_ms() + timeout_ms;
    for (;;) {
        int64_t left = deadline - vg_now_ms();
        vigil_status st = wait(c, (int)(left < SLICE_MS ? (left > 0 ? left : 0) : SLICE_MS));
        if (st != VIGIL_ERR_TIMEOUT || interrupted || left <= SLICE_MS)
            return st;
    }
}

/* Sleeps until the absolute monotonic time, or a signal. */
static void sleep_until(const struct timespec *t)
{
    while (!interrupted && clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, t, NULL) == EINTR)
        ;
}

/* The last line: every message accepted is confirmed, unconfirmed (written,
 * not confirmed, and not sent again) or unsent (still queued at the end). */
static int report(const uint64_t *s, const char *why, bool was_interrupted)
{
    bool ok = s[VIGIL_STAT_CONFIRMED] == s[VIGIL_STAT_PUBLISHED] && why == NULL;
    char reason[96] = "";
    if (why != NULL)
        snprintf(reason, sizeof reason, " reason=\"%s\"", why);
    vg_log(ok ? VG_LOG_INFO : was_interrupted && why == NULL ? VG_LOG_WARN : VG_LOG_ERROR,
           ok ? "done" : "incomplete",
           "published=%llu confirmed=%llu unconfirmed=%llu unsent=%llu%s%s",
           (unsigned long long)s[VIGIL_STAT_PUBLISHED], (unsigned long long)s[VIGIL_STAT_CONFIRMED],
           (unsigned long long)s[VIGIL_STAT_UNCONFIRMED], (unsigned long long)s[VIGIL_STAT_UNSENT],
           was_interrupted ? " interrupted=true" : "", reason);
    return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
    enum { OPT_TYPE = VG_OPT_FIRST_OWN, OPT_COUNT, OPT_INTERVAL, OPT_TIMEOUT };
    static const struct option own[] = {
        {"type", required_argument, NULL, OPT_TYPE},
        {"count", required_argument, NULL, OPT_COUNT},
        {"interval", required_argument, NULL, OPT_INTERVAL},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {NULL, 0, NULL, 0},
    };
    struct option opts[VG_CLI_MAX_OPTIONS];
    vg_cli_merge(opts, own, true);
    vg_cli_client cc;
    if (!vg_cli_client_init(&cc, "pub"))
        return 1;
    vigil_options *co = cc.opts;
    unsigned type = 1;
    int64_t count = -1, interval_ms = 0, timeout_ms = 10000, v; /* count -1: not given */
    int o;
    opterr = 0;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case OPT_TYPE:
            if (!vg_parse_int(optarg, 1, 2, &v))
                vg_usage_error("pub", usage, "--type must be 1 or 2, got '%s'", optarg);
            type = (unsigned)v;
            break;
        case OPT_COUNT:
            if (!vg_parse_int(optarg, 0, INT64_MAX, &count))
                vg_usage_error("pub", usage, "--count must be 0 or more, got '%s'", optarg);
            break;
        case OPT_INTERVAL:
            if (!vg_parse_seconds(optarg, 86400000, &interval_ms))
                vg_usage_error("pub", usage, "--interval must be decimal seconds, got '%s'", optarg);
            break;
        case OPT_TIMEOUT:
            if (!vg_parse_seconds(optarg, 86400000, &timeout_ms))
                vg_usage_error("pub", usage, "--timeout must be decimal seconds, got '%s'", optarg);
            break;
        default:
            if (!vg_cli_client_option(o, optarg, &cc, "pub", usage) &&
                !vg_cli_common_option(o, optarg, &cc.keepalive, "pub", usage, help))
                vg_usage_error("pub", usage, "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    vg_cli_client_finish(&cc, "pub", usage);
    if (argc - optind != 2)
        vg_usage_error("pub", usage, "expected TOPIC and MESSAGE");
    const char *topic = argv[optind], *message = argv[optind + 1];
    const char *why;
    bool from_stdin = strcmp(message, "-") == 0;
    if (count < 0)
        count = from_stdin ? 0 : 1; /* stdin: every line, unless --count limits it */
    if (vigil_topic_check(topic, 0, &why) != VIGIL_OK)
        vg_usage_error("pub", usage, "invalid topic '%s': %s", topic, why);

    struct sigaction sa = {.sa_handler = on_signal}; /* no SA_RESTART: sleeps and reads stop */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);

    vigil_client *c;
    vigil_status st = vigil_client_create(&c, co, &why);
    vigil_options_destroy(co);
    if (st == VIGIL_ERR_ARG)
        vg_usage_error("pub", usage, "--server: %s", why);
    if (st != VIGIL_OK) {
        vg_log(VG_LOG_ERROR, "start_failed", "error=\"%s\"", why);
        return 1;
    }

    /* Publish only once a broker has said how large a payload it takes. */
    st = wait_sliced(c, vigil_wait_connected, timeout_ms);
    if (st != VIGIL_OK) {
        const char *reason = vigil_closed_reason(c);
        if (!interrupted)
            vg_log(VG_LOG_ERROR, "connect_failed", "error=\"%s\" timeout_ms=%lld",
                   st == VIGIL_ERR_CLOSED ? reason ? reason : "connection given up"
                                       : "no broker reachable in time",
                   (long long)timeout_ms);
        vigil_client_destroy(c);
        return interrupted ? 0 : 1; /* nothing was published: nothing is lost */
    }

    char *buf = NULL;
    size_t cap = 0;
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    st = VIGIL_OK;
    for (uint64_t i = 1; st == VIGIL_OK && !interrupted && (count == 0 || i <= (uint64_t)count); i++) {
        size_t len;
        if (from_stdin) {
            ssize_t got = getline(&buf, &cap, stdin);
            if (got < 0)
                break;
            len = (size_t)got;
            if (len > 0 && buf[len - 1] == '\n')
                len--;
        } else {
            len = render(message, i, &buf, &cap);
            if (len == SIZE_MAX) {
                st = VIGIL_ERR_NOMEM;
                break;
            }
        }
        st = publish(c, type, topic, buf, len);
        if (interval_ms > 0) {
            vg_timespec_add_ms(&next, interval_ms);
            sleep_until(&next);
        }
    }
    free(buf);
    why = NULL;
    if (st == VIGIL_ERR_CLOSED)
        why = vigil_closed_reason(c);
    else if (st != VIGIL_OK && !(st == VIGIL_ERR_FULL && interrupted))
        why = vigil_status_str(st);
    if (why != NULL)
        vg_log(VG_LOG_ERROR, "publish_failed", "error=\"%s\"", why);

    /* Confirm what was published: up to --timeout, or a short grace once
     * interrupted (a signal during the wait cuts it short too). */
    bool was_interrupted = interrupted;
    vigil_status fst = was_interrupted ? vigil_flush(c, GRACE_MS)
                                       : wait_sliced(c, vigil_flush, timeout_ms);
    if (fst == VIGIL_ERR_TIMEOUT && !interrupted && why == NULL)
        why = "no_confirmation_in_time";
    else if (fst == VIGIL_ERR_CLOSED && why == NULL)
        why = vigil_closed_reason(c);
    vigil_close(c, -1); /* pub has no handlers: this is quick */
    uint64_t stats[VIGIL_STAT_COUNT];
    vigil_client_stats(c, stats, VIGIL_STAT_COUNT);
    char reason[64] = "";
    if (why != NULL)
        snprintf(reason, sizeof reason, "%s", why);
    vigil_client_destroy(c);
    return report(stats, why != NULL ? reason : NULL, was_interrupted || interrupted);
}
