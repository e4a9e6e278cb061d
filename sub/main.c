/* sub: print the messages published to one or more topics or patterns. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
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
#include "format.h"
#include "log.h"
#include "vigil/vigil.h"

/* How long a stop waits for the I/O thread: every program stops within
 * 100 ms of SIGINT/SIGTERM. */
#define STOP_WAIT_MS 80
/* How long --delete and --list-durables wait for the broker's answers. */
#define ANSWER_WAIT_MS 10000
#define DURABLES_TOPIC "$SYS.durables"

static const char usage[] =
    "sub [--server HOST:PORT] [--count N] [--raw | --json] [--since WHEN] [--durable NAME\n"
    "           [--delete]] [--queue NAME] [OPTIONS] SUBJECT...\n"
    "       sub --list-durables [OPTIONS]";

static void help(void)
{
    printf("usage: %s\n\n"
           "Subscribes to each SUBJECT and prints every message received, one per line:\n"
           "  TOPIC TYPE PAYLOAD\n"
           "where TOPIC is the topic it was published on and TYPE is MSG_TYPE1 or\n"
           "MSG_TYPE2. A SUBJECT is a topic or a pattern (quote it for the shell):\n"
           "'*' as a whole token matches one token ('orders.*': orders.eu, not\n"
           "orders.eu.paris), '>' as the last token one or more ('orders.>': both);\n"
           "a pattern that begins with either does not match $SYS topics. A message\n"
           "that several SUBJECTs match is printed once. Bytes of the topic and the\n"
           "payload below 0x20, 0x7f and backslash are escaped (\\n, \\t, \\r, \\\\,\n"
           "\\xNN); other bytes are written as they are. stdout is flushed after each\n"
           "read from the socket.\n\n"
           "Options:\n"
           "  --count N              exit 0 after N messages printed (default: run\n"
           "                         until interrupted)\n"
           "  --raw                  print only each payload (not its topic), byte for\n"
           "                         byte, then a newline. A payload that holds a newline byte is\n"
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
           "                         that seq of the broker's current log; not with a\n"
           "                         pattern, as each topic has its own seqs) or a\n"
           "                         duration such as 500ms, 30s, 2m, 1h (what was\n"
           "                         published that long ago or later). After a\n"
           "                         reconnect each subscription resumes after the\n"
           "                         last message printed, whatever WHEN (a pattern:\n"
           "                         each of its topics; one first seen later starts at\n"
           "                         the oldest message the broker retains)\n"
           "  --no-gaps              exit 1 at the first gap (after logging it)\n"
           "  --durable NAME         durable subscriptions named NAME (1 to 64 of\n"
           "                         A-Z a-z 0-9 _ . -), one per SUBJECT: the broker\n"
           "                         keeps each one's position (a pattern's: per topic), and a later sub --durable NAME\n"
           "                         resumes after the last message this one printed.\n"
           "                         A new durable starts at --since (default: first).\n"
           "                         A message is done once printed and flushed; sub\n"
           "                         tells the broker within 20 ms and at exit. If\n"
           "                         another sub takes NAME over for a topic, this one\n"
           "                         logs event=durable_taken and exits 1\n"
           "  --delete               with --durable: delete NAME's durable on each\n"
           "                         SUBJECT\n"
           "                         (print nothing; exit 0 once the broker agreed,\n"
           "                         logging event=durable_deleted for each)\n"
           "  --queue NAME           join queue group NAME (as --durable's names) on each\n"
           "                         SUBJECT: the broker gives each message to one\n"
           "                         member of the group, so several subs with the same\n"
           "                         --queue share the work and each prints its part\n"
           "                         (its seqs are sparse: not a gap). With --durable,\n"
           "                         a durable group: the broker keeps the group's\n"
           "                         position, as it keeps a durable's. A message is\n"
           "                         done once printed and flushed, as for --durable\n"
           "  --list-durables        print the broker's durables, one JSON document\n"
           "                         ({\"durables\":[{\"name\":...,\"topic\":...,\"acked\":N,\n"
           "                         \"next\":N,\"connected\":true}]}), then exit 0; exit 1\n"
           "                         if it does not come within 10 s\n",
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
           "A gap on a topic that several SUBJECTs match is logged once.\n"
           "Needs a vigil 0.2 broker (protocol version 2).\n"
           "Exit status: 0 on --count reached or SIGINT/SIGTERM/SIGHUP, 1 if a\n"
           "subscription is refused, the connection is given up, stdout cannot be\n"
           "written or (with --no-gaps) a gap, 2 on a usage error.\n");
}

typedef struct {
    uint64_t limit; /* 0: none */
    uint64_t seen;
    bool no_gaps;
    bool list;      /* --list-durables: the one message's payload, as it is */
    sub_fmt fmt;
    vigil_client *client; /* set before the first subscription */
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

static void on_msg(void *ud, const vigil_msg *m)
{
    sub_state *s = ud;
    if (vigil_msg_copy(m) > 0)
        return; /* printed already, for the first SUBJECT it matches */
    if ((s->limit != 0 && s->seen >= s->limit) || atomic_load(&s->exit_code) >= 0) {
        /* Stopping (--count reached, --no-gaps after a gap, a signal):
         * not printed, so not processed: a durable's successor gets it. */
        vigil_stop_delivery(s->client);
        return;
    }
    size_t topic_len, payload_len;
    const char *topic = vigil_msg_topic(m, &topic_len);
    const uint8_t *payload = vigil_msg_payload(m, &payload_len);
    if (s->list) {
        if (fwrite(payload, 1, payload_len, stdout) != payload_len ||
            putchar('\n') == EOF || fflush(stdout) != 0) {
            vg_log(VG_LOG_ERROR, "output_failed", "error=\"%s\"", strerror(errno));
            finish(s, 1);
            return;
        }
        finish(s, 0);
        return;
    }
    if (!sub_fmt_write(&s->fmt, stdout, vigil_msg_type(m), topic, topic_len, payload, payload_len,
                       vigil_msg_seq(m), vigil_msg_epoch(m)))
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

static void on_gap(void *ud, const vigil_gap *g)
{
    sub_state *s = ud;
    if (vigil_gap_copy(g) > 0)
        return; /* logged already, for the first SUBJECT it concerns */
    size_t topic_len;
    const char *topic = vigil_gap_topic(g, &topic_len);
    uint64_t from = vigil_gap_from(g), to = vigil_gap_to(g);
    char q[96];
    vg_log_quote(q, sizeof q, topic, topic_len);
    if (vigil_gap_reason_of(g) == VIGIL_GAP_EPOCH)
        vg_log(VG_LOG_WARN, "gap", "topic=%s from=%llu reason=broker_restarted", q,
               (unsigned long long)from);
    else
        vg_log(VG_LOG_WARN, "gap", "topic=%s from=%llu to=%llu missed=%llu%s", q,
               (unsigned long long)from, (unsigned long long)to,
               (unsigned long long)(to - from + 1),
               vigil_gap_reason_of(g) == VIGIL_GAP_UNANNOUNCED ? " reason=unannounced" : "");
    if (s->no_gaps) {
        fflush(stdout); /* what came before the gap is printed */
        finish(s, 1);
    }
}

/* --since: new, first, a sequence number, or a duration with its unit (ms,
 * s, m, h). False if arg is none of them. */
static bool parse_since(const char *arg, vigil_start *start, uint64_t *position)
{
    if (strcmp(arg, "new") == 0 || strcmp(arg, "first") == 0) {
        *start = arg[0] == 'n' ? VIGIL_START_NEW : VIGIL_START_FIRST;
        *position = 0;
        return true;
    }
    int64_t n;
    if (vg_parse_int(arg, 1, INT64_MAX, &n)) {
        *start = VIGIL_START_SEQ;
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
        *start = VIGIL_START_AGO;
        *position = (uint64_t)(n * units[i].ms);
        return true;
    }
    return false;
}

static void on_sub_error(void *ud, uint64_t sid, const char *topic, int code, const char *reason)
{
    (void)sid, (void)topic, (void)code, (void)reason; /* the client library has logged it */
    finish(ud, 1);
}

static void on_closed(void *ud, const char *reason)
{
    (void)reason;
    finish(ud, 1);
}

#define MAX_DELETES 64

typedef struct {
    sub_state *s;
    vigil_client *c;
    const char *durable;
    char **topics;
    uint64_t sids[MAX_DELETES];
    int n;
} deletion;

/* --delete, on its own thread (the main one keeps answering signals):
 * waits for each subscription, then deletes its durable; finishes with 0
 * once the broker answered OK for every topic. A stop ends the waits. */
static int delete_all(const deletion *d)
{
    for (int i = 0; i < d->n; i++) {
        vigil_client *c = d->c;
        const uint64_t *sids = d->sids;
        const char *durable = d->durable;
        char **topics = d->topics;
        char q[80];
        vg_log_quote(q, sizeof q, topics[i], strlen(topics[i]));
        vigil_status st = vigil_wait_subscribed(c, sids[i], ANSWER_WAIT_MS);
        if (st == VIGIL_OK)
            st = vigil_delete_durable(c, sids[i], ANSWER_WAIT_MS);
        if (st != VIGIL_OK) {
            /* A refusal from the broker is logged by the library as well. */
            vg_log(VG_LOG_ERROR, "delete_failed", "topic=%s durable=%s reason=\"%s\"", q, durable,
                   vigil_status_str(st));
            return 1;
        }
    }
    return 0;
}

static void *delete_main(void *arg)
{
    deletion *d = arg;
    finish(d->s, delete_all(d));
    return NULL;
}

int main(int argc, char **argv)
{
    enum {
        OPT_COUNT = VG_OPT_FIRST_OWN,
        OPT_RAW,
        OPT_JSON,
        OPT_SINCE,
        OPT_NO_GAPS,
        OPT_DURABLE,
        OPT_DELETE,
        OPT_LIST_DURABLES,
        OPT_QUEUE,
    };
    static const struct option own[] = {
        {"count", required_argument, NULL, OPT_COUNT},
        {"raw", no_argument, NULL, OPT_RAW},
        {"json", no_argument, NULL, OPT_JSON},
        {"since", required_argument, NULL, OPT_SINCE},
        {"no-gaps", no_argument, NULL, OPT_NO_GAPS},
        {"durable", required_argument, NULL, OPT_DURABLE},
        {"delete", no_argument, NULL, OPT_DELETE},
        {"list-durables", no_argument, NULL, OPT_LIST_DURABLES},
        {"queue", required_argument, NULL, OPT_QUEUE},
        {NULL, 0, NULL, 0},
    };
    struct option opts[VG_CLI_MAX_OPTIONS];
    vg_cli_merge(opts, own, true);
    sub_state s = {.done_fd = -1};
    atomic_init(&s.exit_code, -1);
    vg_cli_client cc;
    if (!vg_cli_client_init(&cc, "sub"))
        return 1;
    vigil_options *co = cc.opts;
    sub_format format = SUB_FMT_TEXT;
    vigil_start since = VIGIL_START_NEW;
    uint64_t since_position = 0;
    bool since_given = false, delete = false;
    const char *durable = NULL, *queue = NULL;
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
            since_given = true;
        } else if (o == OPT_DURABLE) {
            if (!vigil_name_valid(optarg))
                vg_usage_error("sub", usage, "--durable NAME must be 1 to 64 of A-Z a-z 0-9 _ . -, "
                               "got '%s'", optarg);
            durable = optarg;
        } else if (o == OPT_QUEUE) {
            if (!vigil_name_valid(optarg))
                vg_usage_error("sub", usage, "--queue NAME must be 1 to 64 of A-Z a-z 0-9 _ . -, "
                               "got '%s'", optarg);
            queue = optarg;
        } else if (o == OPT_DELETE) {
            delete = true;
        } else if (o == OPT_LIST_DURABLES) {
            s.list = true;
        } else if (o == OPT_NO_GAPS) {
            s.no_gaps = true;
        } else if (o == OPT_COUNT) {
            if (!vg_parse_int(optarg, 1, INT64_MAX, &n))
                vg_usage_error("sub", usage, "--count must be a positive integer, got '%s'", optarg);
            s.limit = (uint64_t)n;
        } else if (!vg_cli_client_option(o, optarg, &cc, "sub", usage) &&
                   !vg_cli_common_option(o, optarg, &cc.keepalive, "sub", usage, help)) {
            vg_usage_error("sub", usage, "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    vg_cli_client_finish(&cc, "sub", usage);
    if (delete && durable == NULL)
        vg_usage_error("sub", usage, "--delete needs --durable NAME");
    if (delete && argc - optind > MAX_DELETES)
        vg_usage_error("sub", usage, "--delete takes at most %d SUBJECTs", MAX_DELETES);
    if (s.list && (durable != NULL || queue != NULL || optind < argc))
        vg_usage_error("sub", usage, "--list-durables takes no SUBJECT, --durable or --queue");
    if (!s.list && optind >= argc)
        vg_usage_error("sub", usage, "missing SUBJECT (a topic or a pattern)");
    for (int i = optind; i < argc && since == VIGIL_START_SEQ; i++)
        if (strchr(argv[i], '*') != NULL || strchr(argv[i], '>') != NULL)
            vg_usage_error("sub", usage, "--since SEQ names a place in one topic's log: not for "
                           "the pattern '%s'", argv[i]);
    if (durable != NULL && !since_given)
        since = VIGIL_START_FIRST; /* a new durable gets everything retained (JetStream's "all") */
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

    vigil_options_set_user_data(co, &s);
    vigil_options_on_msg(co, delete ? NULL : on_msg); /* deleting: nothing printed nor acknowledged */
    vigil_options_on_batch_end(co, on_batch_end);
    vigil_options_on_sub_error(co, on_sub_error);
    vigil_options_on_closed(co, on_closed);
    vigil_options_on_gap(co, on_gap);
    vigil_client *c;
    const char *why;
    vigil_status st = vigil_client_create(&c, co, &why);
    vigil_options_destroy(co);
    if (st == VIGIL_ERR_ARG)
        vg_usage_error("sub", usage, "--server: %s", why);
    if (st != VIGIL_OK) {
        vg_log(VG_LOG_ERROR, "start_failed", "error=\"%s\"", why);
        return 1;
    }
    s.client = c;
    if (s.list && vigil_subscribe(c, DURABLES_TOPIC, NULL) != VIGIL_OK)
        finish(&s, 1); /* refused already (e.g. ERR auth): the library said why */
    static deletion del;
    del = (deletion){.s = &s, .c = c, .durable = durable, .topics = argv + optind};
    for (int i = optind; i < argc; i++) {
        uint64_t sid = 0;
        /* A deletion starts where the broker is: nothing old is sent for it. */
        vigil_start start = delete ? VIGIL_START_NEW : since;
        uint64_t position = delete ? 0 : since_position;
        if (queue != NULL)
            st = vigil_subscribe_queue(c, argv[i], queue, durable, start, 0, position, &sid);
        else if (durable != NULL)
            st = vigil_subscribe_durable(c, argv[i], durable, start, 0, position, &sid);
        else
            st = vigil_subscribe_from(c, argv[i], since, 0, since_position, NULL);
        if (st == VIGIL_OK && delete)
            del.sids[del.n++] = sid;
        if (st == VIGIL_ERR_CLOSED) {
            finish(&s, 1); /* refused already (e.g. ERR auth): the library said why */
            break;
        }
        if (st != VIGIL_OK) {
            char q[80];
            vg_log(VG_LOG_ERROR, "subscribe_failed", "topic=%s reason=\"%s\"",
                   vg_log_quote(q, sizeof q, argv[i], strlen(argv[i])), vigil_status_str(st));
            vigil_client_destroy(c);
            return 2;
        }
    }

    pthread_t deleter;
    bool deleting = delete && atomic_load(&s.exit_code) < 0 &&
                    pthread_create(&deleter, NULL, delete_main, &del) == 0;
    if (delete && !deleting)
        finish(&s, 1);

    struct pollfd p[2] = {{.fd = sig_fd, .events = POLLIN}, {.fd = s.done_fd, .events = POLLIN}};
    int r;
    while ((r = poll(p, 2, s.list ? ANSWER_WAIT_MS : -1)) < 0 && errno == EINTR)
        ;
    if (p[0].revents & POLLIN)
        finish(&s, 0);
    if (r == 0) {
        vg_log(VG_LOG_ERROR, "list_failed", "detail=\"no answer on " DURABLES_TOPIC " within "
               "%d s: a broker without durable subscribers, or none reachable\"",
               ANSWER_WAIT_MS / 1000);
        finish(&s, 1);
    }
    if (vigil_close(c, STOP_WAIT_MS) != VIGIL_OK) {
        /* The I/O thread is blocked writing our stdout (a reader that
         * stopped reading): stdout is locked, so leave without it. */
        vg_log(VG_LOG_WARN, "stopped", "detail=\"output blocked; unwritten output dropped\"");
        /* exit_group directly: _exit may be wrapped (sanitizers flush
         * stdio there) and would wait for that same lock. */
        syscall(SYS_exit_group, atomic_load(&s.exit_code));
    }
    if (deleting) /* its waits end with the client's I/O thread, stopped now */
        pthread_join(deleter, NULL);
    vigil_client_destroy(c);
    if (fflush(stdout) != 0 && atomic_load(&s.exit_code) == 0) {
        vg_log(VG_LOG_ERROR, "output_failed", "error=\"%s\"", strerror(errno));
        s.exit_code = 1;
    }
    sub_fmt_log_skipped(&s.fmt); /* the I/O thread, which counts, has ended */
    return atomic_load(&s.exit_code);
}
