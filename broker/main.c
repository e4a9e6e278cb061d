/* broker: the vigil message broker. */
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "args.h"
#include "cli.h"
#include "log.h"
#include "proto.h"
#include "server.h"
#include "sock.h"
#include "token.h"
#include "version.h"

/* Descriptors kept for the listener, logs and everything but connections. */
#define FDS_RESERVED 64

static const char usage[] = "broker [--listen HOST:PORT] [--max-payload BYTES] [OPTIONS]";

static void help(void)
{
    printf("usage: %s\n\n"
           "The vigil pub/sub broker. Fans MSG_TYPE1/MSG_TYPE2 messages from publishers\n"
           "to the subscribers of their topic; one thread per connection.\n\n"
           "Options:\n"
           "  --listen HOST:PORT     address to listen on (default %s; port 0 picks a\n"
           "                         free port, named in the first log line)\n"
           "  --max-payload BYTES    largest message payload accepted (default 1MiB;\n"
           "                         suffixes K, M, G)\n"
           "  --max-outbox BYTES     bytes queued to one client before messages to it\n"
           "                         are dropped (default 64MiB)\n"
           "  --max-connections N    clients served at once; more get ERR limit (default\n"
           "                         65536, lowered to what the open-file limit allows)\n"
           "  --max-subs N           subscriptions per connection (default 10000)\n"
           "  --max-topic-length BYTES\n"
           "                         longest topic accepted (default 256, at most 1024)\n"
           "  --max-topic-tokens N   most '.'-separated tokens in a topic (default 16)\n"
           "  --handshake-timeout SECS\n"
           "                         time a new connection has to send CONNECT (default 5)\n"
           "  --auth-token-file PATH clients must present the token in PATH (default:\n"
           "                         $VIGIL_AUTH_TOKEN, if set; else no authentication)\n"
           "  --allow-unauthenticated\n"
           "                         allow a non-loopback --listen without a token\n"
           "  --stats-interval SECS  publish statistics as JSON on $SYS.stats this often\n"
           "                         (default 5; 0: never)\n"
           "The broker PINGs every client that falls silent and evicts one that does\n"
           "not answer (event=evict reason=heartbeat), or whose outbound data has not\n"
           "moved for the same bound (reason=slow_consumer):\n",
           usage, VG_DEFAULT_SERVER);
    vg_cli_common_help();
    printf("\nLogs go to stderr, one event per line (level=... event=... key=value).\n"
           "SIGINT or SIGTERM: stop accepting, close clients cleanly, exit 0.\n"
           "SIGHUP: logged (event=sighup); nothing is reloaded yet.\n");
}

/* Thousands of connections each need a socket and an eventfd; the default
 * soft limit of 1024 descriptors is far too low, so raise it to the hard
 * limit. Returns how many connections the descriptors allow. */
static size_t raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 1;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur == RLIM_INFINITY)
        return SIZE_MAX;
    return rl.rlim_cur > 2 * FDS_RESERVED ? (rl.rlim_cur - FDS_RESERVED) / 2 : 1;
}

/* Fits max_connections to the descriptors there are; says so if it must. */
static void fit_max_connections(vg_broker_config *cfg, bool explicit_limit)
{
    size_t fit = raise_fd_limit();
    if (cfg->max_connections <= fit)
        return;
    if (explicit_limit)
        vg_log(VG_LOG_WARN, "max_connections_lowered",
               "asked=%zu max_connections=%zu reason=\"open-file limit (ulimit -n)\"",
               cfg->max_connections, fit);
    cfg->max_connections = fit;
}

/* Loads the token (file, else $VIGIL_AUTH_TOKEN) and applies protected mode:
 * like redis, refuse to serve the network without authentication unless the
 * operator said so. Exits 2 on any problem. */
static void setup_auth(vg_broker_config *cfg, const char *token_file, bool allow_unauth)
{
    char *token;
    const char *why;
    if (vg_token_load(token_file, "VIGIL_AUTH_TOKEN", &token, &why) != VG_OK) {
        vg_log(VG_LOG_ERROR, "refused_to_start", "reason=auth_token source=%s error=\"%s\"",
               token_file != NULL ? "--auth-token-file" : "VIGIL_AUTH_TOKEN", why);
        exit(2);
    }
    cfg->token = token; /* lives as long as the process */
    cfg->token_len = token != NULL ? strlen(token) : 0;
    char addr[VG_ADDR_STRLEN];
    if (token != NULL || vg_addr_is_loopback(&cfg->listen))
        return;
    if (!allow_unauth) {
        vg_log(VG_LOG_ERROR, "refused_to_start",
               "reason=protected_mode addr=%s hint=\"listening beyond loopback needs "
               "--auth-token-file (or VIGIL_AUTH_TOKEN), or --allow-unauthenticated\"",
               vg_addr_format(&cfg->listen, addr));
        exit(2);
    }
    vg_log(VG_LOG_WARN, "unauthenticated", "addr=%s", vg_addr_format(&cfg->listen, addr));
}

typedef struct {
    const char *token_file;
    bool allow_unauth;
    bool explicit_max_connections;
} extra_args;

static void parse_args(int argc, char **argv, vg_broker_config *cfg, extra_args *x)
{
    enum {
        OPT_LISTEN = VG_OPT_FIRST_OWN,
        OPT_MAX_PAYLOAD,
        OPT_MAX_OUTBOX,
        OPT_MAX_CONNECTIONS,
        OPT_MAX_SUBS,
        OPT_MAX_TOPIC_LENGTH,
        OPT_MAX_TOPIC_TOKENS,
        OPT_HANDSHAKE_TIMEOUT,
        OPT_AUTH_TOKEN_FILE,
        OPT_ALLOW_UNAUTH,
        OPT_STATS_INTERVAL,
    };
    static const struct option own[] = {
        {"listen", required_argument, NULL, OPT_LISTEN},
        {"max-payload", required_argument, NULL, OPT_MAX_PAYLOAD},
        {"max-outbox", required_argument, NULL, OPT_MAX_OUTBOX},
        {"max-connections", required_argument, NULL, OPT_MAX_CONNECTIONS},
        {"max-subs", required_argument, NULL, OPT_MAX_SUBS},
        {"max-topic-length", required_argument, NULL, OPT_MAX_TOPIC_LENGTH},
        {"max-topic-tokens", required_argument, NULL, OPT_MAX_TOPIC_TOKENS},
        {"handshake-timeout", required_argument, NULL, OPT_HANDSHAKE_TIMEOUT},
        {"auth-token-file", required_argument, NULL, OPT_AUTH_TOKEN_FILE},
        {"allow-unauthenticated", no_argument, NULL, OPT_ALLOW_UNAUTH},
        {"stats-interval", required_argument, NULL, OPT_STATS_INTERVAL},
        {NULL, 0, NULL, 0},
    };
    int64_t v;
    struct option opts[VG_CLI_MAX_OPTIONS];
    vg_cli_merge(opts, own, false);
    const char *prog = "broker";
    const char *why;
    uint64_t bytes;
    opterr = 0;
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case OPT_LISTEN:
            if (vg_addr_parse(optarg, &cfg->listen, &why) != VG_OK)
                vg_usage_error(prog, usage, "--listen %s: %s", optarg, why);
            break;
        case OPT_MAX_PAYLOAD:
            if (!vg_parse_bytes(optarg, 1, 64u << 20, &bytes))
                vg_usage_error(prog, usage, "--max-payload must be 1 to 64MiB, got '%s'", optarg);
            cfg->max_payload = bytes;
            break;
        case OPT_MAX_OUTBOX:
            if (!vg_parse_bytes(optarg, 64u << 10, 1ull << 40, &bytes))
                vg_usage_error(prog, usage, "--max-outbox must be at least 64KiB, got '%s'", optarg);
            cfg->max_outbox = bytes;
            break;
        case OPT_MAX_CONNECTIONS:
            if (!vg_parse_int(optarg, 1, 1 << 24, &v))
                vg_usage_error(prog, usage, "--max-connections must be 1 or more, got '%s'", optarg);
            cfg->max_connections = (size_t)v;
            x->explicit_max_connections = true;
            break;
        case OPT_MAX_SUBS:
            if (!vg_parse_int(optarg, 1, 1 << 24, &v))
                vg_usage_error(prog, usage, "--max-subs must be 1 or more, got '%s'", optarg);
            cfg->max_subs = (size_t)v;
            break;
        case OPT_MAX_TOPIC_LENGTH:
            if (!vg_parse_int(optarg, 1, VG_TOPIC_MAX_LEN, &v))
                vg_usage_error(prog, usage, "--max-topic-length must be 1 to %d, got '%s'",
                               VG_TOPIC_MAX_LEN, optarg);
            cfg->topic_max_len = (size_t)v;
            break;
        case OPT_MAX_TOPIC_TOKENS:
            if (!vg_parse_int(optarg, 1, VG_TOPIC_MAX_LEN, &v))
                vg_usage_error(prog, usage, "--max-topic-tokens must be 1 or more, got '%s'", optarg);
            cfg->topic_max_tokens = (size_t)v;
            break;
        case OPT_HANDSHAKE_TIMEOUT:
            if (!vg_parse_seconds(optarg, 3600 * 1000, &v) || v == 0)
                vg_usage_error(prog, usage, "--handshake-timeout must be positive seconds, got '%s'",
                               optarg);
            cfg->handshake_timeout_ms = v;
            break;
        case OPT_AUTH_TOKEN_FILE:
            x->token_file = optarg;
            break;
        case OPT_ALLOW_UNAUTH:
            x->allow_unauth = true;
            break;
        case OPT_STATS_INTERVAL:
            if (!vg_parse_seconds(optarg, 86400 * 1000, &v))
                vg_usage_error(prog, usage, "--stats-interval must be decimal seconds, got '%s'",
                               optarg);
            cfg->stats_interval_ms = v;
            break;
        default:
            if (!vg_cli_common_option(o, optarg, &cfg->keepalive, prog, usage, help))
                vg_usage_error(prog, usage, "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    vg_cli_check_keepalive(&cfg->keepalive, prog, usage);
    if (optind < argc)
        vg_usage_error(prog, usage, "unexpected argument '%s'", argv[optind]);
}

int main(int argc, char **argv)
{
    vg_broker_config cfg;
    vg_broker_config_defaults(&cfg);
    extra_args x = {0};
    parse_args(argc, argv, &cfg, &x);
    setup_auth(&cfg, x.token_file, x.allow_unauth);
    fit_max_connections(&cfg, x.explicit_max_connections);

    /* Every thread inherits this mask; the signals arrive only through the signalfd. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGHUP); /* logged, not fatal (vg_server_run) */
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);
    int rc = 1;
    int stop_fd = signalfd(-1, &stop, SFD_CLOEXEC);
    if (stop_fd < 0) {
        vg_log(VG_LOG_ERROR, "start_failed", "error=\"signalfd failed\"");
        goto fail;
    }

    vg_server srv;
    if (vg_server_open(&srv, &cfg) != VG_OK)
        goto fail_signalfd;
    vg_server_run(&srv, stop_fd, 5000);
    vg_server_close(&srv);
    vg_log(VG_LOG_INFO, "stopped", NULL);
    rc = 0;

fail_signalfd:
    close(stop_fd);
fail:
    free((char *)cfg.token);
    return rc;
}
