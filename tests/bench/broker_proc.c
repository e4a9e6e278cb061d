#include "broker_proc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_EXTRA_ARGS 32
#define KEEP_LINES 64
#define LINE_MAX_LEN 2048
#define PIPE_BYTES (1 << 20) /* absorbs a burst of per-connection lines */
#define RETRY_MS 100         /* between starts while the port is busy */
#define CHILD_STACK (64 * 1024)

/* ThreadSanitizer cannot follow a child that shares its memory (its runtime
 * runs in the child's interceptors on the parent's shadow state and reports
 * nonsense), so a TSan build forks. */
#if defined(__SANITIZE_THREAD__)
#define SPAWN_BY_FORK 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SPAWN_BY_FORK 1
#endif
#endif

struct bp_broker {
    char *argv[MAX_EXTRA_ARGS + 4]; /* path --listen ADDR extras... NULL; owned */
    int port;
    int log_fd; /* copy of the log, or -1 */
    pid_t pid;
    int err_rd;
    pthread_t reader;
    bool reader_running;

    pthread_mutex_t mu; /* guards the fields below, written by the reader */
    int64_t log_ns;
    bool eof, listen_failed, addr_in_use;
    long max_connections;
    bp_problems problems;
    char *kept[KEEP_LINES];
    size_t nkept;
    char failure[LINE_MAX_LEN + 1]; /* the line that says why a start failed */
};

/* The child to kill from a signal handler or at exit; one broker per process. */
static volatile pid_t live_pid;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static void kill_child_at_exit(void)
{
    if (live_pid > 0)
        kill(live_pid, SIGKILL);
}

static void kill_child_on_signal(int sig)
{
    if (live_pid > 0)
        kill(live_pid, SIGKILL);
    signal(sig, SIG_DFL);
    raise(sig);
}

static void on_line(bp_broker *b, char *line, size_t len, int64_t t)
{
    line[len] = '\0';
    pthread_mutex_lock(&b->mu);
    if (b->log_ns == 0 && strstr(line, " event=listening ") != NULL) {
        b->log_ns = t;
        const char *mc = strstr(line, " max_connections=");
        b->max_connections = mc != NULL ? strtol(mc + 17, NULL, 10) : -1;
    }
    if (strstr(line, " event=listen_failed ") != NULL) {
        b->listen_failed = true;
        b->addr_in_use = strstr(line, "Address already in use") != NULL;
    }
    bool err = strstr(line, " level=error ") != NULL;
    if (err || strstr(line, " level=warn ") != NULL) {
        if (err)
            b->problems.error++;
        else
            b->problems.warn++;
        if (b->nkept < KEEP_LINES)
            b->kept[b->nkept++] = strdup(line); /* NULL if out of memory: then not printed */
        if (err && b->failure[0] == '\0')
            snprintf(b->failure, sizeof b->failure, "%s", line);
    }
    pthread_mutex_unlock(&b->mu);
}

static void *reader_main(void *arg)
{
    bp_broker *b = arg;
    char *buf = malloc(PIPE_BYTES);
    char line[LINE_MAX_LEN + 1];
    size_t llen = 0;
    for (;;) {
        ssize_t n = buf != NULL ? read(b->err_rd, buf, PIPE_BYTES) : -1;
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        int64_t t = now_ns(); /* one read: one timestamp for its lines */
        if (b->log_fd >= 0) {
            ssize_t ignored = write(b->log_fd, buf, (size_t)n); /* a copy for people */
            (void)ignored;
        }
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] == '\n') {
                on_line(b, line, llen, t);
                llen = 0;
            } else if (llen < LINE_MAX_LEN) {
                line[llen++] = buf[i];
            }
        }
    }
    if (llen > 0)
        on_line(b, line, llen, now_ns());
    free(buf);
    pthread_mutex_lock(&b->mu);
    b->eof = true;
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

bp_broker *bp_create(const char *path, int port, const char *const *extra_args,
                     const char *log_path)
{
    bp_broker *b = calloc(1, sizeof *b);
    if (b == NULL)
        return NULL;
    b->port = port;
    b->log_fd = -1;
    b->err_rd = -1;
    b->max_connections = -1;
    pthread_mutex_init(&b->mu, NULL);
    char listen[32];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
    size_t n = 0;
    b->argv[n++] = strdup(path);
    b->argv[n++] = strdup("--listen");
    b->argv[n++] = strdup(listen);
    for (size_t i = 0; extra_args != NULL && extra_args[i] != NULL; i++) {
        if (i == MAX_EXTRA_ARGS) {
            fprintf(stderr, "%s: more than %d broker arguments\n", program_invocation_short_name,
                    MAX_EXTRA_ARGS);
            goto fail;
        }
        b->argv[n++] = strdup(extra_args[i]);
    }
    for (size_t i = 0; i < n; i++)
        if (b->argv[i] == NULL)
            goto fail;
    if (log_path != NULL) {
        b->log_fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
        if (b->log_fd < 0) {
            fprintf(stderr, "%s: cannot open %s: %s\n", program_invocation_short_name, log_path,
                    strerror(errno));
            goto fail;
        }
    }
    static bool hooked;
    if (!hooked) {
        hooked = true;
        atexit(kill_child_at_exit);
        signal(SIGINT, kill_child_on_signal);
        signal(SIGTERM, kill_child_on_signal);
        signal(SIGHUP, kill_child_on_signal);
    }
    return b;

fail:
    bp_destroy(b);
    return NULL;
}

static void reset_log_state(bp_broker *b)
{
    pthread_mutex_lock(&b->mu);
    b->log_ns = 0;
    b->eof = b->listen_failed = b->addr_in_use = false;
    b->max_connections = -1;
    b->problems = (bp_problems){0, 0};
    for (size_t i = 0; i < b->nkept; i++)
        free(b->kept[i]);
    b->nkept = 0;
    b->failure[0] = '\0';
    pthread_mutex_unlock(&b->mu);
}

typedef struct {
    char **argv;
    int devnull, err_wr;
    pid_t parent;
    sigset_t mask; /* the caller's, restored before exec */
} child_args;

/* The child, until exec: it shares the tool's memory (CLONE_VM) while the
 * calling thread waits (CLONE_VFORK), so it only makes system calls. */
static int child_main(void *arg)
{
    const child_args *a = arg;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != a->parent)
        _exit(127); /* the tool died before prctl took effect */
    for (int sig = 1; sig < NSIG; sig++) /* the tool's handlers are not the broker's */
        signal(sig, SIG_DFL);
    sigprocmask(SIG_SETMASK, &a->mask, NULL);
    dup2(a->devnull, STDIN_FILENO);
    dup2(a->devnull, STDOUT_FILENO);
    dup2(a->err_wr, STDERR_FILENO);
    execv(a->argv[0], a->argv);
    static const char msg[] = "ts=- level=error event=exec_failed\n";
    ssize_t ignored = write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)ignored;
    _exit(127);
}

/* Starts the broker with its stderr on a pipe read by a new reader. Not
 * fork(): with 10,000 client threads here, fork copies their page tables and
 * took 70-400 ms before the broker even ran, lengthening the very downtime
 * being set; clone(CLONE_VM | CLONE_VFORK), as posix_spawn does, takes
 * 0.1 ms. posix_spawn itself cannot set PR_SET_PDEATHSIG. */
static int spawn(bp_broker *b, int err_fd)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) {
        dprintf(err_fd, "%s: pipe: %s\n", program_invocation_short_name, strerror(errno));
        return -1;
    }
    fcntl(p[0], F_SETPIPE_SZ, PIPE_BYTES); /* best effort: a smaller pipe still works */
    child_args a = {.argv = b->argv, .devnull = open("/dev/null", O_RDWR | O_CLOEXEC),
                    .err_wr = p[1], .parent = getpid()};
    char *stack = malloc(CHILD_STACK);
    pid_t pid = -1;
    if (a.devnull >= 0 && stack != NULL) {
        /* No handler of ours may run on the shared memory before exec. */
        sigset_t all;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &a.mask);
#ifdef SPAWN_BY_FORK
        pid = fork();
        if (pid == 0)
            child_main(&a);
#else
        pid = clone(child_main, stack + CHILD_STACK, CLONE_VM | CLONE_VFORK | SIGCHLD, &a);
#endif
        pthread_sigmask(SIG_SETMASK, &a.mask, NULL);
    }
    int saved = errno;
    free(stack); /* the child has exec'd or exited: CLONE_VFORK waited for that */
    close(p[1]);
    if (a.devnull >= 0)
        close(a.devnull);
    if (pid < 0) {
        dprintf(err_fd, "%s: cannot start %s: %s\n", program_invocation_short_name, b->argv[0],
                strerror(saved));
        close(p[0]);
        return -1;
    }
    b->pid = pid;
    live_pid = pid;
    b->err_rd = p[0];
    if (pthread_create(&b->reader, NULL, reader_main, b) != 0) {
        dprintf(err_fd, "%s: cannot start the log reader thread\n", program_invocation_short_name);
        bp_kill(b);
        return -1;
    }
    b->reader_running = true;
    return 0;
}

/* One non-blocking connect to the broker's port, given at most 1 ms. */
static bool probe(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bool ok = false;
    if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) {
        ok = true;
    } else if (errno == EINPROGRESS) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int err = 0;
        socklen_t len = sizeof err;
        ok = poll(&p, 1, 1) == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 &&
             err == 0;
    }
    close(fd);
    return ok;
}

int bp_start(bp_broker *b, int timeout_ms, bp_listen *out, int err_fd)
{
    int64_t deadline = now_ns() + (int64_t)timeout_ms * 1000000;
    for (int tries = 1;; tries++) {
        reset_log_state(b);
        int64_t spawn_ns = now_ns();
        if (spawn(b, err_fd) != 0)
            return -1;
        int64_t connect_ns = 0, log_ns = 0;
        bool died = false, in_use = false;
        for (;;) {
            pthread_mutex_lock(&b->mu);
            log_ns = b->log_ns;
            died = b->eof;
            in_use = b->addr_in_use;
            pthread_mutex_unlock(&b->mu);
            if (log_ns != 0 || died || now_ns() > deadline)
                break;
            if (connect_ns == 0 && probe(b->port))
                connect_ns = now_ns();
            sleep_ms(1);
        }
        if (log_ns != 0) {
            bool probe_first = connect_ns != 0 && connect_ns < log_ns;
            *out = (bp_listen){.spawn_ns = spawn_ns, .log_ns = log_ns,
                               .connect_ns = probe_first ? connect_ns : 0,
                               .listen_ns = probe_first ? connect_ns : log_ns, .tries = tries};
            return 0;
        }
        bool retry = died && in_use && now_ns() < deadline;
        if (!retry) {
            pthread_mutex_lock(&b->mu);
            dprintf(err_fd, "%s: the broker %s: %s\n", program_invocation_short_name,
                    died ? "exited without listening" : "did not listen in time",
                    b->failure[0] ? b->failure : "(no error line)");
            pthread_mutex_unlock(&b->mu);
        }
        bp_kill(b);
        if (!retry)
            return -1;
        if (tries == 1)
            dprintf(err_fd, "%s: port %d busy, retrying every %d ms\n",
                    program_invocation_short_name, b->port, RETRY_MS);
        sleep_ms(RETRY_MS);
    }
}

void bp_kill(bp_broker *b)
{
    if (b->pid > 0) {
        kill(b->pid, SIGKILL);
        int st;
        while (waitpid(b->pid, &st, 0) < 0 && errno == EINTR)
            ;
        b->pid = 0;
        live_pid = 0;
    }
    if (b->reader_running) {
        pthread_join(b->reader, NULL); /* EOF once every broker thread is gone */
        b->reader_running = false;
    }
    if (b->err_rd >= 0) {
        close(b->err_rd);
        b->err_rd = -1;
    }
}

pid_t bp_pid(const bp_broker *b) { return b->pid; }

long bp_max_connections(const bp_broker *b)
{
    pthread_mutex_lock((pthread_mutex_t *)&b->mu);
    long v = b->max_connections;
    pthread_mutex_unlock((pthread_mutex_t *)&b->mu);
    return v;
}

void bp_problems_get(bp_broker *b, bp_problems *out)
{
    pthread_mutex_lock(&b->mu);
    *out = b->problems;
    pthread_mutex_unlock(&b->mu);
}

void bp_problems_print(bp_broker *b, int fd, size_t max)
{
    pthread_mutex_lock(&b->mu);
    for (size_t i = 0; i < b->nkept && i < max; i++)
        if (b->kept[i] != NULL)
            dprintf(fd, "  broker: %s\n", b->kept[i]);
    size_t total = b->problems.warn + b->problems.error;
    if (total > max && total > 0)
        dprintf(fd, "  broker: ... %zu warn/error lines in all\n", total);
    pthread_mutex_unlock(&b->mu);
}

void bp_destroy(bp_broker *b)
{
    if (b == NULL)
        return;
    bp_kill(b);
    reset_log_state(b);
    for (size_t i = 0; i < sizeof b->argv / sizeof b->argv[0]; i++)
        free(b->argv[i]);
    if (b->log_fd >= 0)
        close(b->log_fd);
    pthread_mutex_destroy(&b->mu);
    free(b);
}

/* Whether 127.0.0.1:port can be bound (and so listened on) right now. */
static bool port_free(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one); /* as the broker does */
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bool ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

int bp_pick_port(void)
{
    int low = 32768; /* Linux's default when the range cannot be read */
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    if (f != NULL) {
        if (fscanf(f, "%d", &low) != 1)
            low = 32768;
        fclose(f);
    }
    const int first = 10000;
    if (low - first >= 1000) {
        unsigned span = (unsigned)(low - first);
        unsigned start = (unsigned)getpid() * 2654435761u ^ (unsigned)now_ns();
        for (unsigned i = 0; i < 200; i++) {
            int port = first + (int)((start + i * 7919u) % span);
            if (port_free(port))
                return port;
        }
    }
    /* No room below the ephemeral range: take one the kernel picks. */
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}
