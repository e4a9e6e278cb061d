/* vigil-bench: drives a running broker (vigil, nats-server or mosquitto)
 * with P publishers and S subscribers on one topic and reports rates, loss
 * and end-to-end latency; also idle-connection cost and the loopback ceiling,
 * and the durable cases (durable.h): confirmed publishing and replay beside
 * nats-server JetStream, and the restart of a broker with a large log;
 * and subscriptions at scale (subs.h): wildcards, churn, queue groups,
 * vigil and nats-server side by side in one run.
 *
 * Every message carries its send time (CLOCK_MONOTONIC ns), its publisher
 * and its sequence number in its first 16 bytes, so latency is measured end
 * to end by the receiving thread, and loss by counting. One line of
 * key=value results goes to stdout. */
#include <ctype.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "catchup.h"
#include "ceiling.h"
#include "durable.h"
#include "subs.h"
#include "throughput.h"

/* ---- command line ---- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: vigil-bench [--system vigil|nats|mosquitto|jetstream] [--server HOST:PORT]\n"
            "                   [OPTIONS]\n\n"
            "  --pubs P --subs S      publishers and subscribers on one topic (default 1, 1; at\n"
            "                         most 256 each)\n"
            "  --size BYTES           payload size, at least 16 (default 16)\n"
            "  --count N              messages published in all (default 1000000)\n"
            "  --inflight             one message in flight: latency of N round trips\n"
            "  --idle N               hold N idle subscribed connections; report broker RSS per\n"
            "                         connection and CPU over --idle-secs (needs --broker-pid)\n"
            "  --broker-pid PID       also report the broker's CPU time per published message,\n"
            "                         its RSS before the run (broker_rss_start_kb) and the peak of\n"
            "                         its RSS sampled every 10 ms over the run (broker_rss_kb)\n"
            "  --catchup [N]          vigil only: N messages (default --count) of --size (default\n"
            "                         128) published with no subscriber, then a subscriber from\n"
            "                         the topic's first message while live traffic goes on;\n"
            "                         reports the replay rate (a fresh topic unless --topic)\n"
            "  --live-rate R          catch-up: live messages per second (default 10000)\n"
            "  --live-tail MS         catch-up: live traffic kept up after catching up (default 1000)\n"
            "  --ceiling              loopback ceiling: one process pumping --size frames in\n"
            "                         64 KiB writes over 127.0.0.1 (no broker)\n"
            "  --topic T (default bench), --timeout SECS of silence before giving up (default 5)\n"
            "\nDurable cases (vigil against a broker with --data-dir, or --system jetstream\n"
            "against nats-server -js; the topic is fresh per run unless --topic):\n"
            "  --confirmed            --pubs publishers, each on its own connection, publish\n"
            "                         --count messages of --size in all; rate = count / time\n"
            "                         until the broker confirmed every one (vigil: the PONG\n"
            "                         after them; JetStream: every PubAck)\n"
            "  --replay [N]           N messages (default --count) of --size (default 128)\n"
            "                         published and confirmed, then one reader from the first\n"
            "                         retained message (JetStream: a durable pull consumer)\n"
            "                         times reading all N\n"
            "  --js-max-pending N     JetStream: PublishAsync.MaxPending (default 16384)\n"
            "  --js-batch N           JetStream: messages per Fetch in a replay (default 4096)\n"
            "  --restart              vigil only; starts the broker itself: fills --data-dir\n"
            "                         with --fill-bytes of --size (default 1024) messages,\n"
            "                         kill -9s it, starts it again and reports the time from\n"
            "                         exec to its event=listening line and its VmRSS\n"
            "  --data-dir DIR         restart: the broker's --data-dir (empty or absent)\n"
            "  --fill-bytes BYTES     restart: payload bytes to fill (default 1G; K, M, G)\n"
            "  --broker PATH          restart: the broker program (default: the one next to\n"
            "                         vigil-bench)\n"
            "  --broker-arg ARG       restart: one more broker argument (repeat as needed)\n"
            "  --broker-log PATH      restart: a copy of the broker's stderr\n"
            "\nSubscriptions at scale (issue 12; vigil at --server and, if given, nats-server\n"
            "at --nats-server, one after the other, then both side by side):\n"
            "  --sub-table N          N subscriptions (1/2 literal, 1/4 with *, 1/4 ending in >,\n"
            "                         ~2.6 matching each message) on --sub-conns connections;\n"
            "                         one publisher sends over 1000 topics for --secs S (default\n"
            "                         5), or --count N messages if given; reports setup time,\n"
            "                         publish rate (confirmed) and delivered rate\n"
            "  --churn [RATE]         --sub-table (default 10000), published to twice: without, then\n"
            "                         with one more connection doing SUB/UNSUB at RATE changes/s\n"
            "                         (default 10000) that match nothing published\n"
            "  --queue [M]            M members (default 4) of one queue group on one topic;\n"
            "                         throughput and messages per member\n"
            "  --nats-server H:P      the nats-server to compare with\n"
            "  --broker-pid PID, --nats-pid PID   report the brokers' RSS and CPU per message\n"
            "  --sub-conns C          subscriber connections for the table (default 8)\n"
            "  --literal-only         every subscription a literal topic (a broker without\n"
            "                         wildcards)\n"
            "Results: one line of key=value on stdout.\n");
}

/* BYTES with an optional K, M or G (powers of 1024); 0 when unparsable. */
static uint64_t parse_bytes(const char *s)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    uint64_t mul = 1;
    if (*end == 'K' || *end == 'k')
        mul = 1ull << 10, end++;
    else if (*end == 'M' || *end == 'm')
        mul = 1ull << 20, end++;
    else if (*end == 'G' || *end == 'g')
        mul = 1ull << 30, end++;
    return end == s || *end != '\0' ? 0 : (uint64_t)v * mul;
}

/* The broker program next to this one. */
static char *default_broker(void)
{
    char self[4096];
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

#define MAX_BROKER_ARGS 28

int main(int argc, char **argv)
{
    bench_config cfg = {.be = &bench_vigil, .server = "127.0.0.1:7222", .topic = "bench", .pubs = 1,
                  .subs = 1, .size = 16, .count = 1000000, .timeout_ms = 5000};
    bool inflight = false, ceiling = false, catchup = false, size_set = false, topic_set = false;
    bool confirmed = false, replay = false, restart = false, jetstream = false;
    uint64_t replay_n = 0;
    int idle = 0, idle_secs = 30;
    durable_tuning tuning = {.max_pending = 16384, .fetch_batch = 4096};
    restart_cfg rs = {.fill_bytes = 1ull << 30, .timeout_ms = 5000};
    const char *broker_args[MAX_BROKER_ARGS + 1] = {NULL};
    int nbroker_args = 0;
    enum { O_CONFIRMED = 1000, O_REPLAY, O_JS_PENDING, O_JS_BATCH, O_RESTART, O_DATA_DIR,
           O_FILL, O_BROKER, O_BROKER_ARG, O_BROKER_LOG, O_SUB_TABLE, O_CHURN, O_QUEUE,
           O_NATS_SERVER, O_NATS_PID, O_SUB_CONNS, O_LITERAL, O_SECS };
    subs_cfg sc = {.conns = 8, .churn_rate = 10000, .members = 4, .secs = 5};
    bool subs_run = false, count_set = false;
    catchup_cfg cu = {.live_rate = 10000, .tail_ms = 1000};
    static const struct option opts[] = {
        {"system", required_argument, NULL, 'y'}, {"server", required_argument, NULL, 's'},
        {"pubs", required_argument, NULL, 'p'},   {"subs", required_argument, NULL, 'u'},
        {"size", required_argument, NULL, 'z'},   {"count", required_argument, NULL, 'n'},
        {"inflight", no_argument, NULL, 'i'},     {"idle", required_argument, NULL, 'd'},
        {"idle-secs", required_argument, NULL, 'e'}, {"broker-pid", required_argument, NULL, 'b'},
        {"ceiling", no_argument, NULL, 'c'},      {"topic", required_argument, NULL, 't'},
        {"timeout", required_argument, NULL, 'o'}, {"help", no_argument, NULL, 'h'},
        {"catchup", optional_argument, NULL, 'C'}, {"live-rate", required_argument, NULL, 'R'},
        {"live-tail", required_argument, NULL, 'T'},
        {"confirmed", no_argument, NULL, O_CONFIRMED},
        {"replay", optional_argument, NULL, O_REPLAY},
        {"js-max-pending", required_argument, NULL, O_JS_PENDING},
        {"js-batch", required_argument, NULL, O_JS_BATCH},
        {"restart", no_argument, NULL, O_RESTART},
        {"data-dir", required_argument, NULL, O_DATA_DIR},
        {"fill-bytes", required_argument, NULL, O_FILL},
        {"broker", required_argument, NULL, O_BROKER},
        {"broker-arg", required_argument, NULL, O_BROKER_ARG},
        {"broker-log", required_argument, NULL, O_BROKER_LOG},
        {"sub-table", required_argument, NULL, O_SUB_TABLE},
        {"churn", optional_argument, NULL, O_CHURN},
        {"queue", optional_argument, NULL, O_QUEUE},
        {"nats-server", required_argument, NULL, O_NATS_SERVER},
        {"nats-pid", required_argument, NULL, O_NATS_PID},
        {"sub-conns", required_argument, NULL, O_SUB_CONNS},
        {"literal-only", no_argument, NULL, O_LITERAL},
        {"secs", required_argument, NULL, O_SECS},
        {NULL, 0, NULL, 0},
    };
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'y':
            jetstream = false;
            if (strcmp(optarg, "vigil") == 0)
                cfg.be = &bench_vigil;
#ifdef HAVE_NATS
            else if (strcmp(optarg, "jetstream") == 0)
                jetstream = true;
#endif
#ifdef HAVE_NATS
            else if (strcmp(optarg, "nats") == 0)
                cfg.be = &bench_nats;
#endif
#ifdef HAVE_MOSQUITTO
            else if (strcmp(optarg, "mosquitto") == 0)
                cfg.be = &bench_mosquitto;
#endif
            else {
                fprintf(stderr, "vigil-bench: system '%s' is not built in\n", optarg);
                return 2;
            }
            break;
        case 's': cfg.server = optarg; break;
        case 'p': cfg.pubs = atoi(optarg); break;
        case 'u': cfg.subs = atoi(optarg); break;
        case 'z': cfg.size = (size_t)atol(optarg); size_set = true; break;
        case 'n': cfg.count = (uint64_t)atoll(optarg); count_set = true; break;
        case 'i': inflight = true; break;
        case 'd': idle = atoi(optarg); break;
        case 'e': idle_secs = atoi(optarg); break;
        case 'b': cfg.broker_pid = atoi(optarg); break;
        case 'c': ceiling = true; break;
        case 't': cfg.topic = optarg; topic_set = true; break;
        case 'C': /* --catchup, --catchup=N or --catchup N; without N, --count */
            if (optarg == NULL && optind < argc && isdigit((unsigned char)argv[optind][0]))
                optarg = argv[optind++];
            catchup = true;
            cu.count = optarg != NULL ? (uint64_t)atoll(optarg) : 0;
            break;
        case 'R': cu.live_rate = (uint64_t)atoll(optarg); break;
        case 'T': cu.tail_ms = atoi(optarg); break;
        case 'o': cfg.timeout_ms = atoi(optarg) * 1000; break;
        case O_CONFIRMED: confirmed = true; break;
        case O_REPLAY: /* --replay, --replay=N or --replay N; without N, --count */
            if (optarg == NULL && optind < argc && isdigit((unsigned char)argv[optind][0]))
                optarg = argv[optind++];
            replay = true;
            replay_n = optarg != NULL ? (uint64_t)atoll(optarg) : 0;
            break;
        case O_JS_PENDING: tuning.max_pending = atoi(optarg); break;
        case O_JS_BATCH: tuning.fetch_batch = atoi(optarg); break;
        case O_RESTART: restart = true; break;
        case O_DATA_DIR: rs.data_dir = optarg; break;
        case O_FILL:
            if ((rs.fill_bytes = parse_bytes(optarg)) == 0) {
                fprintf(stderr, "vigil-bench: --fill-bytes: not a size: %s\n", optarg);
                return 2;
            }
            break;
        case O_BROKER: rs.broker = optarg; break;
        case O_BROKER_ARG:
            if (nbroker_args == MAX_BROKER_ARGS) {
                fprintf(stderr, "vigil-bench: more than %d --broker-arg\n", MAX_BROKER_ARGS);
                return 2;
            }
            broker_args[nbroker_args++] = optarg;
            break;
        case O_BROKER_LOG: rs.broker_log = optarg; break;
        case O_SUB_TABLE:
            if (!subs_run)
                sc.mode = SUBS_TABLE;
            subs_run = true;
            sc.subs = atoi(optarg);
            break;
        case O_CHURN: /* --churn, --churn=RATE or --churn RATE */
        case O_QUEUE: /* --queue, --queue=M or --queue M */
            if (optarg == NULL && optind < argc && isdigit((unsigned char)argv[optind][0]))
                optarg = argv[optind++];
            subs_run = true;
            sc.mode = o == O_CHURN ? SUBS_CHURN : SUBS_QUEUE;
            if (optarg != NULL && o == O_CHURN)
                sc.churn_rate = atoi(optarg);
            if (optarg != NULL && o == O_QUEUE)
                sc.members = atoi(optarg);
            break;
        case O_NATS_SERVER: sc.nats_server = optarg; break;
        case O_NATS_PID: sc.nats_pid = atoi(optarg); break;
        case O_SUB_CONNS: sc.conns = atoi(optarg); break;
        case O_LITERAL: sc.literal_only = true; break;
        case O_SECS: sc.secs = atof(optarg); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (cfg.size < 16 || cfg.pubs < 1 || cfg.pubs > MAX_CLIENTS || cfg.subs < 1 ||
        cfg.subs > MAX_CLIENTS || cfg.count == 0 || cu.tail_ms < 0) {
        usage(stderr);
        return 2;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if ((int)confirmed + (int)replay + (int)restart + (int)catchup > 1) {
        fprintf(stderr, "vigil-bench: --confirmed, --replay, --restart and --catchup are separate "
                        "runs: give one\n");
        return 2;
    }
    if (jetstream && !confirmed && !replay) {
        fprintf(stderr, "vigil-bench: --system jetstream runs --confirmed and --replay only (for "
                        "core NATS: --system nats)\n");
        return 2;
    }
    if ((confirmed || replay) && !jetstream && cfg.be != &bench_vigil) {
        fprintf(stderr, "vigil-bench: --%s compares vigil with --system jetstream, not %s\n",
                confirmed ? "confirmed" : "replay", cfg.be->name);
        return 2;
    }
    if (subs_run) {
        if (sc.subs == 0)
            sc.subs = 10000;
        if (sc.subs < 1 || sc.conns < 1 || sc.conns > sc.subs || sc.churn_rate < 1 ||
            sc.members < 1 || sc.members > 64 || sc.secs <= 0) {
            usage(stderr);
            return 2;
        }
#ifndef HAVE_NATS
        if (sc.nats_server != NULL) {
            fprintf(stderr, "vigil-bench: built without libnats: no --nats-server\n");
            return 2;
        }
#endif
        sc.vigil_server = cfg.server;
        sc.vigil_pid = cfg.broker_pid;
        sc.count = count_set ? cfg.count : 0; /* else for --secs */
        sc.size = cfg.size;
        sc.timeout_ms = cfg.timeout_ms;
        return bench_subs(&sc);
    }
    if (confirmed || replay) {
        if (tuning.max_pending < 1 || tuning.fetch_batch < 1) {
            usage(stderr);
            return 2;
        }
        durable_cfg dc = {.server = cfg.server, .topic = topic_set ? cfg.topic : NULL,
                          .pubs = cfg.pubs, .size = cfg.size, .count = cfg.count,
                          .timeout_ms = cfg.timeout_ms, .broker_pid = cfg.broker_pid,
                          .tuning = tuning, .be = &durable_vigil};
#ifdef HAVE_NATS
        if (jetstream)
            dc.be = &durable_jetstream;
#endif
        if (confirmed)
            return bench_confirmed(&dc);
        dc.size = size_set ? cfg.size : 128;
        if (replay_n != 0)
            dc.count = replay_n;
        return bench_replay(&dc);
    }
    if (restart) {
        if (cfg.be != &bench_vigil || jetstream) {
            fprintf(stderr, "vigil-bench: --restart is vigil only\n");
            return 2;
        }
        if (rs.data_dir == NULL || rs.data_dir[0] == '\0') {
            fprintf(stderr, "vigil-bench: --restart needs --data-dir DIR\n");
            return 2;
        }
        char *path = rs.broker != NULL ? strdup(rs.broker) : default_broker();
        if (path == NULL || access(path, X_OK) != 0) {
            fprintf(stderr, "vigil-bench: no broker program at %s (--broker PATH)\n",
                    path != NULL ? path : "?");
            free(path);
            return 2;
        }
        rs.broker = path;
        rs.broker_args = broker_args;
        rs.size = size_set ? cfg.size : 1024;
        rs.timeout_ms = cfg.timeout_ms;
        int rc = bench_restart(&rs);
        free(path);
        return rc;
    }
    if (catchup) {
        if (cfg.be != &bench_vigil) {
            fprintf(stderr, "vigil-bench: --catchup is not supported for %s (vigil only: it "
                            "replays a topic's log)\n", cfg.be->name);
            return 2;
        }
        if (cu.count == 0)
            cu.count = cfg.count;
        cu.server = cfg.server;
        cu.topic = topic_set ? cfg.topic : NULL;
        cu.size = size_set ? cfg.size : 128;
        cu.timeout_ms = cfg.timeout_ms;
        cu.broker_pid = cfg.broker_pid;
        return bench_catchup(&cu);
    }
    if (ceiling)
        return bench_ceiling(cfg.size, cfg.count);
    if (idle > 0)
        return bench_run_idle(&cfg, idle, idle_secs, cfg.broker_pid);
    return inflight ? bench_run_inflight(&cfg) : bench_run_throughput(&cfg);
}
