/* broker: the vigil message broker. */
#include <dirent.h>
#include <errno.h>
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
#include <time.h>
#include <unistd.h>

#include "args.h"
#include "cli.h"
#include "config.h"
#include "limits_fit.h"
#include "log.h"
#include "memory.h"
#include "monitor.h"
#include "notify.h"
#include "proto.h"
#include "server.h"
#include "sock.h"
#include "options.h"
#include "token.h"
#include "version.h"

static const char usage[] = "broker [--config FILE] [--check-config] [--listen HOST:PORT] [OPTIONS]";

static void help(void)
{
    printf("usage: %s\n\n"
           "The vigil pub/sub broker. Fans MSG_TYPE1/MSG_TYPE2 messages from publishers\n"
           "to the subscribers of their topic; one thread per connection.\n\n"
           "Options:\n"
           "  --config FILE, -c FILE read settings from FILE: one 'key value' a line,\n"
           "                         each key the name of a flag below without '--'\n"
           "                         (vigil-broker.conf(5)); flags given here win\n"
           "  --check-config, -t     check the settings (and the token file) and exit:\n"
           "                         0 if valid, 2 if not; binds nothing\n"
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
           "  --ack-wait SECS        a queue group member's messages not acknowledged\n"
           "                         this long after they went to it go to another\n"
           "                         member (default 30, as JetStream's AckWait; 0: never)\n"
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
           "SIGHUP: reload FILE and the token file: the log level, the token (for new\n"
           "connections), --allow-unauthenticated, --max-connections, --max-subs,\n"
           "--max-topic-length, --max-topic-tokens, --handshake-timeout, --ack-wait and\n"
           "--stats-interval change at once (event=reloaded); the others need a restart\n"
           "(event=reload_skipped); an invalid file changes nothing (event=reload_failed).\n");
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
 * at warn if the operator asked for more, at info for the default. Returns
 * the room found, the most a reload may raise it to: probed again later,
 * with this process's own threads and mappings counted as in use, the
 * room would shrink by what the broker already serves. */
static size_t fit_max_connections(vg_broker_config *cfg, bool explicit_limit)
{
    vg_host_limits h;
    probe_host(&h);
    long cpus = sysconf(_SC_NPROCESSORS_CONF);
    /* glibc makes up to 8 arenas per CPU, each at least two mappings. */
    vg_conn_costs costs = vg_limits_costs(BIG_BUFFER_MAPS + 2 * 8 * (uint64_t)(cpus > 0 ? cpus : 1));
    vg_fit fit, room;
    vg_limits_fit(&h, &costs, cfg->max_connections, &fit);
    vg_limits_fit(&h, &costs, VG_OPT_MAX_CONNECTIONS, &room);
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
    return room.max_connections;
}

/* Check-only mode (--check-config, -t): everything but binding and
 * starting; one line on stderr, exit 0 if valid, 2 if not. */
static _Noreturn void check_only(const vg_cmdline *cl, vg_broker_settings *s)
{
    char q[300];
    const char *file = cl->file != NULL ? cl->file : "none";
    vg_log_quote(q, sizeof q, file, strlen(file));
    vg_config_error e;
    char *token;
    if (!vg_config_auth(s, &s->cfg.listen, &token, &e)) {
        vg_log(VG_LOG_ERROR, "config_invalid", "file=%s %s", q, e.text);
        exit(2);
    }
    if (token != NULL)
        memset(token, 0, strlen(token));
    free(token);
    if (!vg_log_enabled(VG_LOG_INFO))
        vg_log_set_level(VG_LOG_INFO); /* the one line is always said */
    vg_log(VG_LOG_INFO, "config_ok", "file=%s", q);
    vg_opts_free(s);
    exit(0);
}

/* Tells systemd (Type=notify) about the broker's state; a failure is
 * logged and changes nothing else. */
static void tell_manager(const char *state)
{
    vg_status st = vg_notify(state);
    if (st == VG_ERR_ARG)
        vg_log(VG_LOG_WARN, "notify_failed", "detail=\"NOTIFY_SOCKET names no unix socket\"");
    else if (st != VG_OK)
        vg_log(VG_LOG_WARN, "notify_failed", "error=\"%s\"", strerror(errno));
}

/* SIGHUP: the reload, told to systemd as one (RELOADING=1 with the
 * CLOCK_MONOTONIC time it asks for, then READY=1). */
static void reload_told(void *ud, vg_server *srv)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    char state[64];
    snprintf(state, sizeof state, "RELOADING=1\nMONOTONIC_USEC=%llu",
             (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000);
    tell_manager(state);
    vg_config_reload(ud, srv);
    tell_manager("READY=1");
}

int main(int argc, char **argv)
{
    bool tuned = vg_memory_tune(); /* before any thread, any allocation worth the name */
    vg_cmdline cl;
    vg_cmdline_parse(&cl, argc, argv, usage, help);
    vg_broker_settings settings; /* in force for the life of the process (reload.c) */
    vg_config_error e;
    if (!vg_config_build(&cl, &settings, &e)) {
        if (e.flag)
            vg_usage_error("broker", usage, "%s", e.text);
        vg_log(VG_LOG_ERROR, "config_invalid", "%s", e.text);
        exit(2);
    }
    vg_log_set_level(settings.log_level);
    if (cl.check)
        check_only(&cl, &settings);
    if (!tuned) /* not glibc's malloc: a sanitizer's, or one preloaded */
        vg_log(VG_LOG_INFO, "memory_tune_failed",
               "detail=\"mallopt refused: memory freed after a spike may stay resident\"");
    vg_broker_config cfg = settings.cfg;
    char *token;
    if (!vg_config_auth(&settings, &cfg.listen, &token, &e)) {
        vg_log(VG_LOG_ERROR, "refused_to_start", "%s", e.text);
        exit(2);
    }
    cfg.token = token; /* vg_server_open copies it */
    cfg.token_len = token != NULL ? strlen(token) : 0;
    char addr[VG_ADDR_STRLEN];
    if (token == NULL && !vg_addr_is_loopback(&cfg.listen))
        vg_log(VG_LOG_WARN, "unauthenticated", "addr=%s", vg_addr_format(&cfg.listen, addr));
    if (settings.monitor_on && !vg_addr_is_loopback(&settings.monitor))
        vg_log(VG_LOG_WARN, "monitor_unauthenticated", "addr=%s",
               vg_addr_format(&settings.monitor, addr));
    vg_reload_ctx reload = {.cl = &cl, .running = &settings};
    reload.connection_room =
        fit_max_connections(&cfg, settings.source[vg_opts_find("max-connections",
                                                               strlen("max-connections"))] !=
                                      VG_OPT_SRC_DEFAULT);

    /* Every thread inherits this mask; the signals arrive only through the signalfd. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGHUP); /* a reload, not fatal (vg_server_run) */
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
    if (settings.monitor_on && vg_monitor_start(&srv, &settings.monitor, &mon) != VG_OK) {
        vg_server_close(&srv);
        goto fail_signalfd;
    }
    char ready[96];
    snprintf(ready, sizeof ready, "READY=1\nSTATUS=listening on %s", srv.listen_str);
    tell_manager(ready);
    vg_server_run(&srv, stop_fd, 5000, reload_told, &reload);
    tell_manager("STOPPING=1");
    vg_monitor_stop(mon);
    vg_server_close(&srv);
    vg_log(VG_LOG_INFO, "stopped", NULL);
    rc = 0;

fail_signalfd:
    close(stop_fd);
fail:
    if (token != NULL)
        memset(token, 0, strlen(token));
    free(token);
    vg_opts_free(&settings);
    vg_cmdline_free(&cl);
    return rc;
}
