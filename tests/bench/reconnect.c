/* vigil-reconnect: measures how long after a broker restart its clients are
 * delivering again, in a crash loop (a few clients, many kill -9s) or a swarm
 * (many clients, one kill -9). Starts and kills a real broker itself; see
 * reconnect.h for the modules and --help for the figures. */
#include "reconnect.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "logcap.h"
#include "swarm_procs.h"
#include "sysprobe.h"

#define MAX_BROKER_ARGS 32

static const char usage_line[] =
    "usage: vigil-reconnect [--restarts N] [--down-min SECS] [--down-max SECS] [--subs S]\n"
    "                       [OPTIONS]\n"
    "       vigil-reconnect --swarm N [--procs K] [--down SECS] [OPTIONS]\n";

static void help(void)
{
    printf("%s\n"
           "Measures how long after a broker restart its clients deliver again. Starts its\n"
           "own broker, kill -9s and restarts it on one fixed 127.0.0.1 port, and drives\n"
           "client-library clients with the library's default options. Times are ms after\n"
           "the restarted broker listens (its event=listening line or a probe connect,\n"
           "whichever is seen first). Downtimes run from the old broker's death (kill -9\n"
           "and reap: seconds for a broker with thousands of threads) to the restart.\n\n"
           "Crash loop (default): a publisher sends a numbered message every --interval\n"
           "throughout; S subscribers. Each round: kill -9, a random downtime, restart; then\n"
           "each subscriber's first message published after the restart and its own\n"
           "resubscription, and the publisher's first message through (received by a\n"
           "subscriber, or confirmed by the broker), are timed.\n"
           "  --restarts N         rounds (default 20)\n"
           "  --down-min SECS      shortest downtime (default 0.5)\n"
           "  --down-max SECS      longest downtime (default 3)\n"
           "  --subs S             subscribers (default 3)\n"
           "  --uptime SECS        wait after every client is back, before the next kill\n"
           "                       (default 1)\n"
           "  --seed N             seeds the downtimes (default: from the clock; printed)\n\n"
           "Swarm: N subscribers, spread over K child processes of this one (a client\n"
           "holds 3 descriptors), all subscribed; one kill -9, --down seconds, restart;\n"
           "a fresh publisher in this process sends every --interval, and each\n"
           "subscriber's first message is timed, and (from the clients' own log lines)\n"
           "when they noticed the loss and when they had resubscribed. Also reports\n"
           "client and broker errors, client processes that died, listen-queue\n"
           "overflows, memory and threads (the tool's: all its processes summed).\n"
           "  --swarm N            subscribers (the open-file limit is raised, up to the\n"
           "                       hard limit, to fit the broker's 2 per connection)\n"
           "  --procs K            client processes (default: enough that each holds at\n"
           "                       most %d clients, and fewer if its open-file limit\n"
           "                       fits fewer at 3 descriptors each)\n"
           "  --down SECS          downtime (default 1)\n"
           "  --connect-timeout SECS\n"
           "                       for all N to be subscribed at the start (default 120)\n\n"
           "Both:\n"
           "  --interval SECS      between publishes (default 0.005; swarm 0.01)\n"
           "  --bound SECS         a client not delivering by then is reported late, not\n"
           "                       waited for (default 30; swarm 60)\n"
           "  --backoff-base SECS, --backoff-max SECS\n"
           "                       the clients' reconnect backoff (default: the library's)\n"
           "  --broker PATH        broker program (default: broker next to this program)\n"
           "  --broker-arg ARG     one more broker argument; repeatable\n"
           "  --broker-log PATH    keep a copy of the broker's stderr\n"
           "  --client-log PATH    keep the client library's log, which is all of the\n"
           "                       stderr of this process and its client processes but\n"
           "                       the progress lines (sanitizer reports too; default:\n"
           "                       an unlinked temporary file)\n"
           "  --port N             (default: a free port below the ephemeral range)\n"
           "  --topic T            (default reconnect)\n\n"
           "Results: key=value lines on stdout, one per round and a summary; progress on\n"
           "stderr. Exit status 0 if every client delivered within the bound without\n"
           "errors, 1 if not, 2 for a usage error.\n",
           usage_line, SW_MAX_PER_PROC);
}

static _Noreturn void usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void usage_error(const char *fmt, ...)
{
    fprintf(stderr, "vigil-reconnect: ");
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n%s", usage_line);
    exit(2);
}

/* Decimal seconds to ms, within [0, 10^6 s]. */
static int64_t secs_arg(const char *s, const char *opt)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*s == '\0' || *end != '\0' || errno != 0 || !isfinite(v) || v < 0 || v > 1e6)
        usage_error("%s needs decimal seconds, got '%s'", opt, s);
    return (int64_t)llround(v * 1000);
}

static long long int_arg(const char *s, const char *opt, long long min, long long max)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*s == '\0' || *end != '\0' || errno != 0 || v < min || v > max)
        usage_error("%s must be %lld to %lld, got '%s'", opt, min, max, s);
    return v;
}

/* ---- helpers shared by the modes ---- */

int64_t rc_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void rc_sleep_until(int64_t t_ns)
{
    struct timespec ts = {(time_t)(t_ns / 1000000000), (long)(t_ns % 1000000000)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

void rc_stamp_write(uint8_t *p, const rc_stamp *s)
{
    memset(p, 0, RC_PAYLOAD_LEN);
    memcpy(p, &s->seq, 8);
    memcpy(p + 8, &s->pub_ns, 8);
    memcpy(p + 16, &s->epoch, 4);
}

bool rc_stamp_read(const vg_msg *m, rc_stamp *out)
{
    if (m->payload_len < RC_PAYLOAD_LEN)
        return false;
    memcpy(&out->seq, m->payload, 8);
    memcpy(&out->pub_ns, m->payload + 8, 8);
    memcpy(&out->epoch, m->payload + 16, 4);
    return true;
}

void rc_client_opts(const rc_config *cfg, vg_client_opts *o, const char *name, void *ud)
{
    vg_client_opts_defaults(o);
    o->servers = cfg->server;
    o->name = name;
    o->ud = ud;
    if (cfg->backoff_base_ms >= 0)
        o->backoff_base_ms = cfg->backoff_base_ms;
    if (cfg->backoff_max_ms >= 0)
        o->backoff_max_ms = cfg->backoff_max_ms;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

void rc_sort(int64_t *v, size_t n) { qsort(v, n, sizeof *v, cmp_i64); }

static double rank_ms(const int64_t *v, size_t n, double q)
{
    if (n == 0)
        return NAN;
    size_t r = (size_t)ceil(q * (double)n); /* nearest rank, 1-based */
    if (r < 1)
        r = 1;
    if (r > n)
        r = n;
    return v[r - 1] == RC_LATE ? INFINITY : (double)v[r - 1] / 1e6;
}

void rc_quantiles_of(int64_t *v, size_t n, rc_quantiles *out)
{
    rc_sort(v, n);
    out->n = n;
    out->late = 0;
    for (size_t i = 0; i < n; i++)
        out->late += v[i] == RC_LATE;
    out->median = rank_ms(v, n, 0.5);
    out->p90 = rank_ms(v, n, 0.9);
    out->p99 = rank_ms(v, n, 0.99);
    out->max = rank_ms(v, n, 1.0);
}

void rc_print_quantiles(const char *name, const rc_quantiles *q)
{
    printf(" %s_n=%zu %s_median_ms=%.1f %s_p90_ms=%.1f %s_p99_ms=%.1f %s_max_ms=%.1f %s_late=%zu",
           name, q->n, name, q->median, name, q->p90, name, q->p99, name, q->max, name, q->late);
}

/* ---- setup ---- */

/* Raises the open-file limit, soft and hard, to at least want (root may
 * raise the hard limit, up to fs.nr_open). The broker inherits it. */
static void raise_nofile(rlim_t want)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    long nr_open = sp_read_long("/proc/sys/fs/nr_open");
    if (nr_open > 0 && want > (rlim_t)nr_open)
        want = (rlim_t)nr_open;
    struct rlimit up = rl;
    if (up.rlim_max < want)
        up.rlim_max = want;
    up.rlim_cur = up.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &up) != 0) { /* not root: the soft limit up to the hard one */
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < want)
        fprintf(stderr, "vigil-reconnect: the open-file limit is %llu, below the %llu wanted\n",
                (unsigned long long)rl.rlim_cur, (unsigned long long)want);
}

/* The broker program next to this one. */
static char *default_broker(void)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        return strdup("broker");
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (slash != NULL)
        *slash = '\0';
    size_t len = strlen(self) + sizeof "/broker";
    char *path = malloc(len);
    if (path != NULL)
        snprintf(path, len, "%s/broker", self);
    return path;
}

int main(int argc, char **argv)
{
    rc_config cfg = {.topic = "reconnect", .bound_ms = -1, .interval_ms = -1,
                     .backoff_base_ms = -1, .backoff_max_ms = -1, .restarts = 20, .subs = 3,
                     .down_min_ms = 500, .down_max_ms = 3000, .uptime_ms = 1000,
                     .down_ms = 1000, .connect_bound_ms = 120000};
    const char *broker = NULL, *broker_log = NULL, *client_log = NULL;
    const char *broker_args[MAX_BROKER_ARGS + 1] = {NULL};
    int nbroker_args = 0;
    enum {
        O_RESTARTS = 1000, O_DOWN_MIN, O_DOWN_MAX, O_SUBS, O_UPTIME, O_SEED, O_SWARM, O_PROCS,
        O_DOWN, O_CONNECT_TIMEOUT, O_INTERVAL, O_BOUND, O_BACKOFF_BASE, O_BACKOFF_MAX, O_BROKER,
        O_BROKER_ARG, O_BROKER_LOG, O_CLIENT_LOG, O_PORT, O_TOPIC, O_HELP,
    };
    static const struct option opts[] = {
        {"restarts", required_argument, NULL, O_RESTARTS},
        {"down-min", required_argument, NULL, O_DOWN_MIN},
        {"down-max", required_argument, NULL, O_DOWN_MAX},
        {"subs", required_argument, NULL, O_SUBS},
        {"uptime", required_argument, NULL, O_UPTIME},
        {"seed", required_argument, NULL, O_SEED},
        {"swarm", required_argument, NULL, O_SWARM},
        {"procs", required_argument, NULL, O_PROCS},
        {"down", required_argument, NULL, O_DOWN},
        {"connect-timeout", required_argument, NULL, O_CONNECT_TIMEOUT},
        {"interval", required_argument, NULL, O_INTERVAL},
        {"bound", required_argument, NULL, O_BOUND},
        {"backoff-base", required_argument, NULL, O_BACKOFF_BASE},
        {"backoff-max", required_argument, NULL, O_BACKOFF_MAX},
        {"broker", required_argument, NULL, O_BROKER},
        {"broker-arg", required_argument, NULL, O_BROKER_ARG},
        {"broker-log", required_argument, NULL, O_BROKER_LOG},
        {"client-log", required_argument, NULL, O_CLIENT_LOG},
        {"port", required_argument, NULL, O_PORT},
        {"topic", required_argument, NULL, O_TOPIC},
        {"help", no_argument, NULL, O_HELP},
        {NULL, 0, NULL, 0},
    };
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case O_RESTARTS: cfg.restarts = (int)int_arg(optarg, "--restarts", 1, 100000); break;
        case O_DOWN_MIN: cfg.down_min_ms = secs_arg(optarg, "--down-min"); break;
        case O_DOWN_MAX: cfg.down_max_ms = secs_arg(optarg, "--down-max"); break;
        case O_SUBS: cfg.subs = (int)int_arg(optarg, "--subs", 1, 1000); break;
        case O_UPTIME: cfg.uptime_ms = secs_arg(optarg, "--uptime"); break;
        case O_SEED: cfg.seed = (uint64_t)int_arg(optarg, "--seed", 1, LLONG_MAX); break;
        case O_SWARM: cfg.swarm = (int)int_arg(optarg, "--swarm", 1, 1000000); break;
        case O_PROCS: cfg.procs = (int)int_arg(optarg, "--procs", 1, 1000); break;
        case O_DOWN: cfg.down_ms = secs_arg(optarg, "--down"); break;
        case O_CONNECT_TIMEOUT: cfg.connect_bound_ms = secs_arg(optarg, "--connect-timeout"); break;
        case O_INTERVAL: cfg.interval_ms = secs_arg(optarg, "--interval"); break;
        case O_BOUND: cfg.bound_ms = secs_arg(optarg, "--bound"); break;
        case O_BACKOFF_BASE: cfg.backoff_base_ms = secs_arg(optarg, "--backoff-base"); break;
        case O_BACKOFF_MAX: cfg.backoff_max_ms = secs_arg(optarg, "--backoff-max"); break;
        case O_BROKER: broker = optarg; break;
        case O_BROKER_ARG:
            if (nbroker_args == MAX_BROKER_ARGS)
                usage_error("too many --broker-arg (at most %d)", MAX_BROKER_ARGS);
            broker_args[nbroker_args++] = optarg;
            break;
        case O_BROKER_LOG: broker_log = optarg; break;
        case O_CLIENT_LOG: client_log = optarg; break;
        case O_PORT: cfg.port = (int)int_arg(optarg, "--port", 1, 65535); break;
        case O_TOPIC: cfg.topic = optarg; break;
        case O_HELP: help(); return 0;
        default: fprintf(stderr, "%s", usage_line); return 2;
        }
    }
    if (optind < argc)
        usage_error("unexpected argument '%s'", argv[optind]);
    if (cfg.down_max_ms < cfg.down_min_ms)
        usage_error("--down-max is below --down-min");
    if (cfg.interval_ms == 0)
        usage_error("--interval must be at least 0.001");
    if (cfg.bound_ms < 0)
        cfg.bound_ms = cfg.swarm > 0 ? 60000 : 30000;
    if (cfg.interval_ms < 0)
        cfg.interval_ms = cfg.swarm > 0 ? 10 : 5;
    if (cfg.seed == 0)
        cfg.seed = ((uint64_t)rc_now_ns() ^ ((uint64_t)getpid() << 32)) & 0x3fffffffffffffffull;
    if (cfg.seed == 0) /* fits --seed, and xorshift needs a non-zero state */
        cfg.seed = 1;

    /* The broker, which inherits the limit, needs 2 descriptors per
     * connection (the swarm, the publisher, the listen probe) and keeps 64;
     * the swarm's client processes are as many as the limit makes them. */
    raise_nofile(cfg.swarm > 0 ? (rlim_t)(cfg.swarm + 2) * 2 + 64 : 4096);

    char *broker_path = broker != NULL ? strdup(broker) : default_broker();
    if (broker_path == NULL || access(broker_path, X_OK) != 0) {
        fprintf(stderr, "vigil-reconnect: no broker program at %s (--broker PATH)\n",
                broker_path != NULL ? broker_path : "?");
        free(broker_path);
        return 2;
    }
    if (cfg.port == 0)
        cfg.port = bp_pick_port();
    if (cfg.port <= 0) {
        fprintf(stderr, "vigil-reconnect: cannot find a free port\n");
        free(broker_path);
        return 1;
    }
    snprintf(cfg.server, sizeof cfg.server, "127.0.0.1:%d", cfg.port);
    setvbuf(stdout, NULL, _IOLBF, 0); /* result lines appear as they are made */

    int rc = 1;
    bp_broker *b = bp_create(broker_path, cfg.port, broker_args, broker_log);
    if (b == NULL)
        goto out;
    if (lc_open(client_log) != 0)
        goto out_broker;
    lc_progress("broker %s on %s; client library log in %s", broker_path, cfg.server,
                client_log != NULL ? client_log : "a temporary file");
    rc = cfg.swarm > 0 ? rc_swarm(&cfg, b) : rc_crash_loop(&cfg, b);
    lc_close();
out_broker:
    bp_destroy(b);
out:
    free(broker_path);
    return rc;
}
