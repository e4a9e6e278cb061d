#include "netns.h"

#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_ARGS 64
#define DEV "vgt0"
#define TABLE "vgt_cut"
#define CMD_TIMEOUT_MS 10000 /* one ip or nft command; they take milliseconds */

static h_netns the_pair;
static bool made;
static char ip_path[256], nft_path[256];

/* Finds an executable in $PATH, then in the sbin directories that a
 * non-login root shell may lack; false if it is nowhere. */
static bool find_tool(const char *tool, char *path, size_t cap)
{
    const char *env = getenv("PATH");
    char dirs[4096];
    snprintf(dirs, sizeof dirs, "%s:/usr/sbin:/sbin:/usr/bin:/bin", env != NULL ? env : "");
    char *save = NULL;
    for (char *d = strtok_r(dirs, ":", &save); d != NULL; d = strtok_r(NULL, ":", &save)) {
        if (d[0] == '\0')
            continue;
        snprintf(path, cap, "%s/%s", d, tool);
        if (access(path, X_OK) == 0)
            return true;
    }
    return false;
}

/* Runs argv (argv[0] a path) with stdin on /dev/null, its stdout and
 * stderr captured in out (NUL-terminated, truncated to cap). Returns the
 * exit status, or -1 if it could not start, died of a signal, or was still
 * running after timeout_ms (it is then killed). */
static int run(char *out, size_t cap, int timeout_ms, const char *const argv[])
{
    out[0] = '\0';
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) != 0) {
        snprintf(out, cap, "pipe: %s", strerror(errno));
        return -1;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(out, cap, "fork: %s", strerror(errno));
        close(pipefd[0]);
        close(pipefd[1]);
        return -1;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        int null = open("/dev/null", O_RDONLY);
        if (null >= 0)
            dup2(null, 0);
        dup2(pipefd[1], 1);
        dup2(pipefd[1], 2);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execv(argv[0], (char *const *)argv);
        dprintf(2, "exec %s: %s", argv[0], strerror(errno));
        _exit(127);
    }
    close(pipefd[1]);
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    int64_t deadline = h_now_ms() + timeout_ms;
    size_t len = 0;
    bool eof = false, exited = false;
    int status = 0;
    while (!(eof && exited)) {
        int64_t left = deadline - h_now_ms();
        if (left <= 0)
            break;
        struct pollfd p[2] = {{.fd = eof ? -1 : pipefd[0], .events = POLLIN},
                              {.fd = exited ? -1 : pidfd, .events = POLLIN}};
        /* Without a pidfd, look at the child every 10 ms. */
        poll(p, 2, pidfd < 0 && left > 10 ? 10 : (int)left);
        if (!eof && (p[0].revents & (POLLIN | POLLHUP | POLLERR))) {
            char chunk[1024];
            ssize_t n = read(pipefd[0], chunk, sizeof chunk);
            if (n <= 0) {
                eof = true;
            } else if (len + 1 < cap) {
                size_t k = (size_t)n < cap - 1 - len ? (size_t)n : cap - 1 - len;
                memcpy(out + len, chunk, k);
                len += k;
                out[len] = '\0';
            }
        }
        if (!exited && waitpid(pid, &status, WNOHANG) == pid)
            exited = true;
    }
    if (!exited) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        snprintf(out + len, cap - len, "%s(killed: still running after %d ms)", len ? " " : "",
                 timeout_ms);
    }
    close(pipefd[0]);
    if (pidfd >= 0)
        close(pidfd);
    if (!exited || !WIFEXITED(status))
        return -1;
    /* One line in messages: the tools end theirs with a newline. */
    while (len > 0 && (out[len - 1] == '\n' || out[len - 1] == ' '))
        out[--len] = '\0';
    return WEXITSTATUS(status);
}

/* run() of ip with the given arguments (NULL-terminated). */
static int ip(char *out, size_t cap, ...)
{
    const char *argv[MAX_ARGS] = {ip_path};
    size_t n = 1;
    va_list ap;
    va_start(ap, cap);
    for (const char *a; (a = va_arg(ap, const char *)) != NULL && n < MAX_ARGS - 1;)
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    return run(out, cap, CMD_TIMEOUT_MS, argv);
}

/* Runs one nft script (commands separated by ';') inside namespace ns. */
static int nft_in(const char *ns, const char *script, char *out, size_t cap)
{
    const char *argv[] = {ip_path, "netns", "exec", ns, nft_path, script, NULL};
    return run(out, cap, CMD_TIMEOUT_MS, argv);
}

/* Deletes the namespaces vgt<pid>a/b whose test process is gone: a worker
 * killed by a timeout or a crash never ran its .fini. A pid now reused by
 * some other process keeps its pair until that one ends too. */
static void delete_stale(void)
{
    DIR *d = opendir("/run/netns");
    if (d == NULL)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        unsigned pid;
        char side, rest;
        if (sscanf(e->d_name, "vgt%u%c%c", &pid, &side, &rest) != 2 || (side != 'a' && side != 'b'))
            continue;
        if ((pid_t)pid != getpid() && (kill((pid_t)pid, 0) == 0 || errno != ESRCH))
            continue;
        char out[512];
        if (ip(out, sizeof out, "netns", "delete", e->d_name, NULL) != 0)
            cr_log_warn("could not delete stale namespace %s: %s", e->d_name, out);
    }
    closedir(d);
}

/* Deletes what was made so far, then skips the test with why. */
#define SKIP(...)                                                                                  \
    do {                                                                                           \
        h_netns_down();                                                                            \
        cr_skip_test(H_NETNS_SKIP __VA_ARGS__);                                                    \
    } while (0)

h_netns *h_netns_up(void)
{
    cr_assert(!made, "h_netns_up: this process already has its pair");
    if (geteuid() != 0)
        cr_skip_test(H_NETNS_SKIP "needs root to create network namespaces (running as uid %u)",
                     (unsigned)geteuid());
    if (!find_tool("ip", ip_path, sizeof ip_path))
        cr_skip_test(H_NETNS_SKIP "needs the ip command (package iproute2) to create network namespaces: "
                     "not in PATH, /usr/sbin or /sbin");
    if (!find_tool("nft", nft_path, sizeof nft_path))
        cr_skip_test(H_NETNS_SKIP "needs the nft command (package nftables) to cut the path: "
                     "not in PATH, /usr/sbin or /sbin");
    delete_stale();

    h_netns *n = &the_pair;
    memset(n, 0, sizeof *n);
    unsigned idx = (unsigned)getpid() & 0x3fffff; /* 2^22 /30 networks in 10.0.0.0/8 */
    for (int s = 0; s < 2; s++) {
        snprintf(n->name[s], sizeof n->name[s], "vgt%u%c", (unsigned)getpid(), 'a' + s);
        snprintf(n->addr[s], sizeof n->addr[s], "10.%u.%u.%u", idx >> 14, (idx >> 6) & 0xff,
                 ((idx & 0x3f) << 2) + 1 + (unsigned)s);
    }
    made = true;

    char out[1024], cidr[24];
    for (int s = 0; s < 2; s++)
        if (ip(out, sizeof out, "netns", "add", n->name[s], NULL) != 0)
            SKIP("cannot create network namespace %s (ip netns add): %s", n->name[s], out);
    if (ip(out, sizeof out, "-n", n->name[0], "link", "add", DEV, "type", "veth", "peer", "name",
           DEV, "netns", n->name[1], NULL) != 0)
        SKIP("cannot create a veth pair between %s and %s: %s", n->name[0], n->name[1], out);
    for (int s = 0; s < 2; s++) {
        snprintf(cidr, sizeof cidr, "%s/30", n->addr[s]);
        if (ip(out, sizeof out, "-n", n->name[s], "addr", "add", cidr, "dev", DEV, NULL) != 0 ||
            ip(out, sizeof out, "-n", n->name[s], "link", "set", DEV, "up", NULL) != 0 ||
            ip(out, sizeof out, "-n", n->name[s], "link", "set", "lo", "up", NULL) != 0)
            SKIP("cannot configure %s in namespace %s: %s", DEV, n->name[s], out);
    }
    /* The kernel may lack nf_tables: find out now, not at the cut. */
    if (nft_in(n->name[0], "add table inet " TABLE "; delete table inet " TABLE, out, sizeof out) != 0)
        SKIP("nftables does not work in a network namespace here (nft add table): %s", out);
    return n;
}

void h_netns_down(void)
{
    if (!made)
        return;
    made = false;
    for (int s = 0; s < 2; s++) {
        char path[64], out[512];
        snprintf(path, sizeof path, "/run/netns/%s", the_pair.name[s]);
        if (access(path, F_OK) != 0)
            continue;
        if (ip(out, sizeof out, "netns", "delete", the_pair.name[s], NULL) != 0)
            cr_log_warn("could not delete namespace %s: %s", the_pair.name[s], out);
    }
}

h_proc *h_netns_spawn(const h_netns *n, int side, const char *name, const char *const argv[])
{
    const char *full[MAX_ARGS] = {ip_path, "netns", "exec", n->name[side]};
    size_t k = 4;
    for (size_t i = 0; argv[i] != NULL; i++) {
        cr_assert(k < MAX_ARGS - 1, "h_netns_spawn: too many arguments");
        full[k++] = argv[i];
    }
    full[k] = NULL;
    return h_spawn(name, full);
}

/* Appends a NULL-terminated vararg list to argv from index n; returns the count. */
static size_t collect(const char **argv, size_t n, va_list ap)
{
    for (const char *a; (a = va_arg(ap, const char *)) != NULL;) {
        cr_assert(n < MAX_ARGS - 1, "too many arguments");
        argv[n++] = a;
    }
    argv[n] = NULL;
    return n;
}

h_proc *h_netns_broker(const h_netns *n, int *port, ...)
{
    char listen_at[32];
    snprintf(listen_at, sizeof listen_at, "%s:0", n->addr[H_NS_A]);
    const char *argv[MAX_ARGS] = {h_bin("broker"), "--listen", listen_at, "--allow-unauthenticated"};
    va_list ap;
    va_start(ap, port);
    collect(argv, 4, ap);
    va_end(ap);
    h_proc *b = h_netns_spawn(n, H_NS_A, "broker", argv);
    cr_assert(h_wait_err(b, "event=listening", h_ms(10000)), "broker did not start in %s: %s",
              n->name[H_NS_A], b->err);
    char key[32];
    snprintf(key, sizeof key, "addr=%s:", n->addr[H_NS_A]);
    const char *at = strstr(strstr(b->err, "event=listening"), key);
    cr_assert(at != NULL, "no %s in the broker's first line: %s", key, b->err);
    *port = atoi(at + strlen(key));
    cr_assert(*port > 0, "%s", b->err);
    return b;
}

h_proc *h_netns_sub(const h_netns *n, int side, int port, ...)
{
    char server[32];
    snprintf(server, sizeof server, "%s:%d", n->addr[H_NS_A], port);
    const char *argv[MAX_ARGS] = {h_bin("sub"), "--server", server};
    va_list ap;
    va_start(ap, port);
    size_t argc = collect(argv, 3, ap);
    va_end(ap);
    int topics = 0;
    for (size_t i = 3; i < argc; i++) {
        if (strncmp(argv[i], "--", 2) == 0) {
            if (strchr(argv[i], '=') == NULL && i + 1 < argc)
                i++; /* the option's value */
            continue;
        }
        topics++;
    }
    h_proc *s = h_netns_spawn(n, side, "sub", argv);
    cr_assert(h_wait_err_count(s, "event=subscribed", topics, h_ms(10000)),
              "sub in %s did not subscribe: %s", n->name[side], s->err);
    return s;
}

h_proc *h_netns_pub_start(const h_netns *n, int side, int port, ...)
{
    char server[32];
    snprintf(server, sizeof server, "%s:%d", n->addr[H_NS_A], port);
    const char *argv[MAX_ARGS] = {h_bin("pub"), "--server", server};
    va_list ap;
    va_start(ap, port);
    collect(argv, 3, ap);
    va_end(ap);
    return h_netns_spawn(n, side, "pub", argv);
}

void h_netns_cut(h_netns *n)
{
    /* B's packets die entering A, then A's entering B. */
    static const char script[] =
        "add table inet " TABLE "; "
        "add chain inet " TABLE " input { type filter hook input priority -400; policy accept; }; "
        "add rule inet " TABLE " input iifname \"" DEV "\" drop";
    char out[1024];
    for (int s = 0; s < 2; s++)
        cr_assert(nft_in(n->name[s], script, out, sizeof out) == 0,
                  "could not cut the path in %s: %s", n->name[s], out);
    n->cut = true;
}

void h_netns_restore(h_netns *n)
{
    char out[1024];
    for (int s = 0; s < 2; s++)
        cr_assert(nft_in(n->name[s], "delete table inet " TABLE, out, sizeof out) == 0,
                  "could not restore the path in %s: %s", n->name[s], out);
    n->cut = false;
}

/* ---- making a skip visible to ctest ---- */

static size_t skipped;
static char skip_reason[256];

/* Runs in the runner process, after every worker: counts the tests that
 * h_netns_up skipped (their message carries H_NETNS_SKIP) and says so. */
ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
    for (struct criterion_suite_stats *s = stats->suites; s != NULL; s = s->next) {
        for (struct criterion_test_stats *t = s->tests; t != NULL; t = t->next) {
            if (t->test_status != CR_STATUS_SKIPPED || t->message == NULL ||
                strncmp(t->message, H_NETNS_SKIP, strlen(H_NETNS_SKIP)) != 0)
                continue;
            if (skipped++ == 0)
                snprintf(skip_reason, sizeof skip_reason, "%s", t->message);
        }
    }
    if (skipped > 0)
        fprintf(stderr, "%zu test(s) skipped: %s\n", skipped, skip_reason);
}

int h_netns_main(int argc, char *argv[])
{
    struct criterion_test_set *tests = criterion_initialize();
    int result = 0;
    if (criterion_handle_args(argc, argv, true))
        result = !criterion_run_all_tests(tests);
    criterion_finalize(tests);
    return result == 0 && skipped > 0 ? H_NETNS_SKIPPED_EXIT : result;
}
