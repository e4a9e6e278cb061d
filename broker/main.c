/* broker: the vigil message broker. */
#include <dirent.h>
#include <getopt.h>
#include <limits.h>
#include <linux/capability.h>
#include <stdbool.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "args.h"
#include "cli.h"
#include "limits_fit.h"
#include "log.h"
#include "memory.h"
#include "monitor.h"
#include "proto.h"
#include "server.h"
#include "sock.h"
#include "token.h"
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
           "  --max-connections N    clients served at once; more get ERR limit (default\n"
           "                         65536; lowered, with a log line, to what descriptors,\n"
           "                         memory mappings and thread limits allow)\n"
           "  --max-subs N           subscriptions per connection (default 10000)\n"
           "  --max-topic-length BYTES\n"
           "                         longest topic accepted (default 256, at most 1024)\n"
           "  --max-topic-tokens N   most '.'-separated tokens in a topic (default 16)\n"
           "  --handshake-timeout SECS\n"
           "                         time a new connection has to send CONNECT (default 5)\n"
           "  --auth-token-file PATH clients must present the token in PATH (default:\n"
           "                         $VIGIL_AUTH_TOKEN, if set; else no authentication)\n"
           "  --allow-unauthenticated\n"
           "                         allow a non-loopback --listen without a token,\n"
           "                         and a non-loopback --monitor\n"
           "  --monitor HOST:PORT    serve monitoring over HTTP there (default: off):\n"
           "                         /varz, /connz, /topics, /healthz, /metrics\n"
           "                         (Prometheus); port 0 picks a free port, named in\n"
           "                         event=monitor_listening. It has no authentication:\n"
           "                         loopback only unless --allow-unauthenticated\n"
           "  --stats-interval SECS  publish statistics as JSON on $SYS.stats this often\n"
           "                         (default 5; 0: never)\n"
           "  --retention-bytes BYTES\n"
           "                         memory kept for the topic logs, all topics together;\n"
           "                         the oldest messages go first (default 512MiB, at\n"
           "                         least 1MiB). Subscribers resume from the logs after\n"
           "                         a reconnect (docs/design.md)\n"
           "  --retention-age SECS   also drop messages older than this (default 0: kept\n"
           "                         until the byte budget needs the room)\n"
           "  --data-dir DIR         keep the topic logs in DIR, so that they survive a\n"
           "                         restart or kill -9 (default: memory only). Retention\n"
           "                         applies to the files too (docs/operations.md)\n"
           "  --fsync POLICY         with --data-dir: always (default: a message is\n"
           "                         confirmed and delivered only after an fdatasync\n"
           "                         covers it, shared by all publishers), interval=MS\n"
           "                         (a sync every MS; a crash of the machine loses up to\n"
           "                         MS of confirmed messages) or never (the kernel's\n"
           "                         writeback decides)\n"
           "  --segment-bytes BYTES  size at which a log file is rolled (default 64MiB,\n"
           "                         at least 64KiB)\n"
           "The broker PINGs every client that falls silent and evicts one that does\n"
           "not answer (event=evict reason=heartbeat), or whose outbound data has not\n"
           "moved for the same bound (reason=slow_consumer):\n",
           usage, VG_DEFAULT_SERVER);
    vg_cli_common_help();
    printf("\nLogs go to stderr, one event per line (level=... event=... key=value).\n"
           "SIGINT or SIGTERM: stop accepting, close clients cleanly, exit 0.\n"
           "SIGHUP: logged (event=sighup); nothing is reloaded yet.\n");
}

/* ---- fitting --max-connections to the machine (limits_fit.h) ---- */

/* Mappings kept for buffers big enough that malloc gives each its own
 * mapping (VG_MEMORY_MMAP_THRESHOLD and up: a busy subscriber's outbox and
 * the batch being written from it), beyond the arenas below: room for 512
 * subscribers behind at once. */
#define BIG_BUFFER_MAPS 1024

/* Raises a resource's soft limit to its hard limit; returns the soft limit
 * in force, VG_UNLIMITED for RLIM_INFINITY or if it cannot be read. */
static uint64_t raise_rlimit(int resource)
{
    struct rlimit rl;
    if (getrlimit(resource, &rl) != 0)
        return VG_UNLIMITED;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(resource, &rl) != 0 && getrlimit(resource, &rl) != 0)
            return VG_UNLIMITED;
    }
    return rl.rlim_cur == RLIM_INFINITY ? VG_UNLIMITED : (uint64_t)rl.rlim_cur;
}

/* The first number in a file, or fallback if there is none ("max" in a
 * cgroup's pids.max, or no such file). */
static uint64_t read_number(const char *path, uint64_t fallback)
{
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return fallback;
    unsigned long long v;
    int ok = fscanf(f, "%llu", &v);
    fclose(f);
    return ok == 1 ? (uint64_t)v : fallback;
}

static uint64_t count_lines(const char *path)
{
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return 0;
    uint64_t n = 0;
    char buf[8192];
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, f)) > 0)
        for (size_t i = 0; i < got; i++)
            n += buf[i] == '\n';
    fclose(f);
    return n;
}

/* Threads in the whole system: the kernel's nr_threads, the count that
 * kernel.threads-max bounds, is the denominator of the fourth field of
 * /proc/loadavg ("1/130"). */
static uint64_t system_threads(void)
{
    FILE *f = fopen("/proc/loadavg", "re");
    if (f == NULL)
        return 0;
    unsigned long long running, total;
    int ok = fscanf(f, "%*s %*s %*s %llu/%llu", &running, &total);
    fclose(f);
    return ok == 2 ? (uint64_t)total : 0;
}

/* The kernel lets a task exceed RLIMIT_NPROC if its real user is root or it
 * has CAP_SYS_RESOURCE or CAP_SYS_ADMIN (kernel/fork.c). Asked of capget
 * rather than guessed from geteuid() == 0: root without CAP_SYS_RESOURCE
 * (a container) and a non-root service granted it both exist. */
static bool nproc_exempt(void)
{
    if (getuid() == 0)
        return true;
    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
    if (syscall(SYS_capget, &hdr, data) != 0)
        return false;
    uint32_t eff = data[0].effective; /* both capabilities are below 32 */
    return (eff & (1u << CAP_SYS_RESOURCE)) || (eff & (1u << CAP_SYS_ADMIN));
}

/* Threads of real user uid in the whole system, which RLIMIT_NPROC counts:
 * the sum of Threads: over /proc/PID/status whose real Uid: is uid. */
static uint64_t user_threads(uid_t uid)
{
    DIR *d = opendir("/proc");
    if (d == NULL)
        return 0;
    uint64_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9')
            continue;
        char path[300], line[256];
        snprintf(path, sizeof path, "/proc/%s/status", e->d_name);
        FILE *f = fopen(path, "re");
        if (f == NULL)
            continue; /* it has exited */
        unsigned long ruid = ULONG_MAX, threads = 0;
        while (fgets(line, sizeof line, f) != NULL)
            if (sscanf(line, "Uid: %lu", &ruid) != 1)
                sscanf(line, "Threads: %lu", &threads);
        fclose(f);
        if (ruid == (unsigned long)uid)
            n += threads;
    }
    closedir(d);
    return n;
}

/* The tightest pids.max (systemd's TasksMax) of this process's cgroup and
 * its parents, with that cgroup's pids.current. cgroup v1's pids hierarchy
 * if there is one, else v2's. Leaves *max VG_UNLIMITED if none is set. */
static void cgroup_pids(uint64_t *max, uint64_t *current)
{
    *max = VG_UNLIMITED;
    *current = 0;
    FILE *f = fopen("/proc/self/cgroup", "re");
    if (f == NULL)
        return;
    char line[PATH_MAX], dir[PATH_MAX + 64] = "";
    while (fgets(line, sizeof line, f) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        char *ctl = strchr(line, ':');
        char *path = ctl != NULL ? strchr(ctl + 1, ':') : NULL;
        if (path == NULL)
            continue;
        *path++ = '\0';
        if (strcmp(ctl + 1, "pids") == 0) {
            snprintf(dir, sizeof dir, "/sys/fs/cgroup/pids%s", path);
            break;
        }
        if (ctl[1] == '\0' && dir[0] == '\0')
            snprintf(dir, sizeof dir, "/sys/fs/cgroup%s", path);
    }
    fclose(f);
    uint64_t best = VG_UNLIMITED;
    for (size_t len = strlen(dir); len > 0; len = strlen(dir)) {
        char file[PATH_MAX + 80];
        snprintf(file, sizeof file, "%s/pids.max", dir);
        uint64_t m = read_number(file, VG_UNLIMITED);
        snprintf(file, sizeof file, "%s/pids.current", dir);
        uint64_t cur = read_number(file, 0);
        if (m != VG_UNLIMITED && (m > cur ? m - cur : 0) < best) {
            best = m > cur ? m - cur : 0;
            *max = m;
            *current = cur;
        }
        char *slash = strrchr(dir, '/');
        if (slash == NULL || strcmp(dir, "/sys/fs/cgroup") == 0)
            break;
        *slash = '\0';
    }
}

/* Reads this machine's limits, after raising the soft RLIMIT_NOFILE and
 * RLIMIT_NPROC to their hard limits. */
static void probe_host(vg_host_limits *h)
{
    h->nofile = raise_rlimit(RLIMIT_NOFILE);
    h->max_map_count = read_number("/proc/sys/vm/max_map_count", VG_UNLIMITED);
    h->maps_in_use = count_lines("/proc/self/maps");
    h->threads_max = read_number("/proc/sys/kernel/threads-max", VG_UNLIMITED);
    h->pid_max = read_number("/proc/sys/kernel/pid_max", VG_UNLIMITED);
    h->threads_now = system_threads();
    h->nproc = raise_rlimit(RLIMIT_NPROC);
    h->nproc_applies = h->nproc != VG_UNLIMITED && !nproc_exempt();
    h->user_threads = h->nproc_applies ? user_threads(getuid()) : 0;
    cgroup_pids(&h->pids_max, &h->pids_current);
}

static const char *room_str(uint64_t room, char *buf, size_t cap)
{
    if (room == VG_UNLIMITED)
        return "unlimited";
    snprintf(buf, cap, "%llu", (unsigned long long)room);
    return buf;
}

/* Lowers cfg->max_connections to what the machine allows, so that a client
 * past it gets ERR limit rather than a close without an answer. Says so once:
 * at warn if the operator asked for more, at info for the default. */
static void fit_max_connections(vg_broker_config *cfg, bool explicit_limit)
{
    vg_host_limits h;
    probe_host(&h);
    long cpus = sysconf(_SC_NPROCESSORS_CONF);
    /* glibc makes up to 8 arenas per CPU, each at least two mappings. */
    vg_conn_costs costs = vg_limits_costs(BIG_BUFFER_MAPS + 2 * 8 * (uint64_t)(cpus > 0 ? cpus : 1));
    vg_fit fit;
    vg_limits_fit(&h, &costs, cfg->max_connections, &fit);
    if (vg_log_enabled(VG_LOG_DEBUG)) {
        char b[VG_LIMIT_COUNT][24];
        const uint64_t *r = fit.room;
        vg_log(VG_LOG_DEBUG, "connection_room",
               "nofile=%s max_map_count=%s threads_max=%s pid_max=%s nproc=%s pids_max=%s "
               "maps_in_use=%llu threads_now=%llu",
               room_str(r[VG_LIMIT_NOFILE], b[0], sizeof b[0]),
               room_str(r[VG_LIMIT_MAX_MAP_COUNT], b[1], sizeof b[1]),
               room_str(r[VG_LIMIT_THREADS_MAX], b[2], sizeof b[2]),
               room_str(r[VG_LIMIT_PID_MAX], b[3], sizeof b[3]),
               room_str(r[VG_LIMIT_NPROC], b[4], sizeof b[4]),
               room_str(r[VG_LIMIT_PIDS_MAX], b[5], sizeof b[5]),
               (unsigned long long)h.maps_in_use, (unsigned long long)h.threads_now);
    }
    if (fit.limited_by != VG_LIMIT_NONE)
        vg_log(explicit_limit ? VG_LOG_WARN : VG_LOG_INFO, "max_connections_lowered",
               "asked=%zu max_connections=%zu limited_by=%s", cfg->max_connections,
               fit.max_connections, vg_limit_name(fit.limited_by));
    cfg->max_connections = fit.max_connections;
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

/* The monitor has no authentication of its own: beyond loopback only if
 * the operator said so, as for the main listener (setup_auth). Exits 2. */
static void check_monitor(const vg_addr *monitor, bool allow_unauth)
{
    char addr[VG_ADDR_STRLEN];
    if (vg_addr_is_loopback(monitor))
        return;
    if (!allow_unauth) {
        vg_log(VG_LOG_ERROR, "refused_to_start",
               "reason=protected_mode addr=%s hint=\"a non-loopback --monitor needs "
               "--allow-unauthenticated: the monitor has no authentication\"",
               vg_addr_format(monitor, addr));
        exit(2);
    }
    vg_log(VG_LOG_WARN, "monitor_unauthenticated", "addr=%s", vg_addr_format(monitor, addr));
}

typedef struct {
    const char *token_file;
    bool allow_unauth;
    bool explicit_max_connections;
    bool monitor_on; /* --monitor given: monitor is where */
    vg_addr monitor;
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
        OPT_RETENTION_BYTES,
        OPT_RETENTION_AGE,
        OPT_DATA_DIR,
        OPT_FSYNC,
        OPT_SEGMENT_BYTES,
        OPT_MONITOR,
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
        {"retention-bytes", required_argument, NULL, OPT_RETENTION_BYTES},
        {"retention-age", required_argument, NULL, OPT_RETENTION_AGE},
        {"data-dir", required_argument, NULL, OPT_DATA_DIR},
        {"fsync", required_argument, NULL, OPT_FSYNC},
        {"segment-bytes", required_argument, NULL, OPT_SEGMENT_BYTES},
        {"monitor", required_argument, NULL, OPT_MONITOR},
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
        case OPT_RETENTION_BYTES:
            if (!vg_parse_bytes(optarg, 1u << 20, 1ull << 44, &bytes))
                vg_usage_error(prog, usage, "--retention-bytes must be at least 1MiB, got '%s'",
                               optarg);
            cfg->retention_bytes = bytes;
            break;
        case OPT_RETENTION_AGE:
            if (!vg_parse_seconds(optarg, 365ll * 86400 * 1000, &v))
                vg_usage_error(prog, usage, "--retention-age must be decimal seconds, got '%s'",
                               optarg);
            cfg->retention_age_ms = v;
            break;
        case OPT_DATA_DIR:
            if (optarg[0] == 0)
                vg_usage_error(prog, usage, "--data-dir must name a directory");
            cfg->data_dir = optarg;
            break;
        case OPT_FSYNC:
            if (strcmp(optarg, "always") == 0) {
                cfg->fsync = VG_FSYNC_ALWAYS;
            } else if (strcmp(optarg, "never") == 0) {
                cfg->fsync = VG_FSYNC_NEVER;
            } else if (strncmp(optarg, "interval=", 9) == 0 &&
                       vg_parse_int(optarg + 9, 1, 3600 * 1000, &v)) {
                cfg->fsync = VG_FSYNC_INTERVAL;
                cfg->fsync_interval_ms = (int)v;
            } else {
                vg_usage_error(prog, usage,
                               "--fsync must be always, interval=MS or never, got '%s'", optarg);
            }
            break;
        case OPT_SEGMENT_BYTES:
            if (!vg_parse_bytes(optarg, VG_STORE_SEGMENT_MIN, 1u << 30, &bytes))
                vg_usage_error(prog, usage, "--segment-bytes must be 64KiB to 1GiB, got '%s'",
                               optarg);
            cfg->segment_bytes = bytes;
            break;
        case OPT_MONITOR:
            if (vg_addr_parse(optarg, &x->monitor, &why) != VG_OK)
                vg_usage_error(prog, usage, "--monitor %s: %s", optarg, why);
            x->monitor_on = true;
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
    bool tuned = vg_memory_tune(); /* before any thread, any allocation worth the name */
    vg_broker_config cfg;
    vg_broker_config_defaults(&cfg);
    extra_args x = {0};
    parse_args(argc, argv, &cfg, &x);
    if (!tuned) /* not glibc's malloc: a sanitizer's, or one preloaded */
        vg_log(VG_LOG_INFO, "memory_tune_failed",
               "detail=\"mallopt refused: memory freed after a spike may stay resident\"");
    setup_auth(&cfg, x.token_file, x.allow_unauth);
    if (x.monitor_on)
        check_monitor(&x.monitor, x.allow_unauth);
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
    vg_monitor *mon = NULL; /* serves through the drain, reporting it (/healthz 503) */
    if (x.monitor_on && vg_monitor_start(&srv, &x.monitor, &mon) != VG_OK) {
        vg_server_close(&srv);
        goto fail_signalfd;
    }
    vg_server_run(&srv, stop_fd, 5000);
    vg_monitor_stop(mon);
    vg_server_close(&srv);
    vg_log(VG_LOG_INFO, "stopped", NULL);
    rc = 0;

fail_signalfd:
    close(stop_fd);
fail:
    free((char *)cfg.token);
    return rc;
}
