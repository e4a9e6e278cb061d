/* broker: the vigil message broker. */
#include <getopt.h>
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
#include "version.h"

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
           "The broker PINGs every client that falls silent and evicts one that does\n"
           "not answer (event=evict reason=heartbeat), or whose outbound data has not\n"
           "moved for the same bound (reason=slow_consumer):\n",
           usage, VG_DEFAULT_SERVER);
    vg_cli_common_help();
    printf("\nLogs go to stderr, one event per line (level=... event=... key=value).\n"
           "SIGINT or SIGTERM: stop accepting, close clients cleanly, exit 0.\n");
}

/* Thousands of connections each need a socket and an eventfd; the default
 * soft limit of 1024 descriptors is far too low, so raise it to the hard limit. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static void parse_args(int argc, char **argv, vg_broker_config *cfg)
{
    enum { OPT_LISTEN = VG_OPT_FIRST_OWN, OPT_MAX_PAYLOAD, OPT_MAX_OUTBOX };
    static const struct option own[] = {
        {"listen", required_argument, NULL, OPT_LISTEN},
        {"max-payload", required_argument, NULL, OPT_MAX_PAYLOAD},
        {"max-outbox", required_argument, NULL, OPT_MAX_OUTBOX},
        {NULL, 0, NULL, 0},
    };
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
    parse_args(argc, argv, &cfg);
    raise_fd_limit();

    /* Every thread inherits this mask; the signals arrive only through the signalfd. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);
    int stop_fd = signalfd(-1, &stop, SFD_CLOEXEC);
    if (stop_fd < 0) {
        vg_log(VG_LOG_ERROR, "start_failed", "error=\"signalfd failed\"");
        return 1;
    }

    vg_server srv;
    if (vg_server_open(&srv, &cfg) != VG_OK)
        return 1;
    vg_server_run(&srv, stop_fd, 5000);
    vg_server_close(&srv);
    vg_log(VG_LOG_INFO, "stopped", NULL);
    close(stop_fd);
    return 0;
}
