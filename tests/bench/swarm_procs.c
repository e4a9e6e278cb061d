#include "swarm_procs.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "logcap.h"

_Static_assert(ATOMIC_INT_LOCK_FREE == 2 && ATOMIC_LLONG_LOCK_FREE == 2,
               "the shared mapping needs lock-free atomics");

#define POLL_NS 10000000LL   /* children polling the command word; the parent its children */
#define NOTE_NS 2000000000LL /* between two progress lines */
#define GO_WAIT_NS 120000000000LL /* fork to connect: the parent starts the broker (<= 10 s) */
#define STOP_MARGIN_NS 600000000000LL /* beyond what the parent's own bounds add up to */

/* A child's exit status besides 0. */
enum { EXIT_ORPHAN = 3, EXIT_NOMEM = 4, EXIT_NO_WORD = 5 };

enum { CMD_WAIT, CMD_CONNECT, CMD_STOP };
enum { PROC_FORKED, PROC_CONNECTING, PROC_SUBSCRIBED, PROC_STOPPING, PROC_DONE };
enum { CL_NONE, CL_STARTED, CL_SUBSCRIBED, CL_FAILED };

typedef struct {
    _Atomic int64_t first; /* first message of epoch 1, by the client's I/O thread */
    _Atomic int state;     /* CL_* */
} sw_slot;

typedef struct {
    int first, count; /* its clients; written before the fork */
    _Atomic int state; /* PROC_* */
    _Atomic int started, subscribed, refused, timedout, closed;
    _Atomic int64_t started_ns, subscribed_ns, destroy_ns, destroyed_ns;
} sw_proc;

typedef struct {
    _Atomic int cmd; /* CMD_*, advanced by the parent */
    _Atomic int64_t go_ns;
    _Atomic unsigned closed, sub_errors; /* callbacks, every child */
} sw_header;

typedef struct {
    pid_t pid; /* 0 once reaped */
    bool failed; /* died, exited with an error, or killed by sw_fleet_stop */
} sw_kid;

struct sw_fleet {
    const rc_config *cfg;
    void *map;
    size_t map_len;
    sw_header *h;
    sw_proc *procs;
    sw_slot *slots;
    int nprocs;
    pid_t parent;
    sw_kid *kids; /* the parent's only */
    int failed;
};

long sw_fit_per_proc(long nofile)
{
    long fit = (nofile - SW_FD_RESERVE) / SW_FDS_PER_CLIENT;
    return fit > 0 ? fit : 1;
}

int sw_procs_for(int n, long nofile)
{
    long per = sw_fit_per_proc(nofile);
    if (per > SW_MAX_PER_PROC)
        per = SW_MAX_PER_PROC;
    long k = ((long)n + per - 1) / per;
    return k < 1 ? 1 : k > n ? n : (int)k;
}

int sw_fleet_procs(const sw_fleet *f) { return f->nprocs; }

pid_t sw_fleet_pid(const sw_fleet *f, int k) { return f->kids[k].pid; }

/* ---- the child ---- */

typedef struct {
    sw_fleet *f;
    int idx; /* global */
    vg_client *c;
    uint64_t sid;
} kid_client;

static void on_msg(void *ud, const vg_msg *m)
{
    kid_client *kc = ud;
    sw_slot *s = &kc->f->slots[kc->idx];
    rc_stamp st;
    if (atomic_load_explicit(&s->first, memory_order_relaxed) != 0 || !rc_stamp_read(m, &st) ||
        st.epoch != 1)
        return;
    atomic_store_explicit(&s->first, rc_now_ns(), memory_order_relaxed);
}

static void on_closed(void *ud, const char *reason)
{
    kid_client *kc = ud;
    if (atomic_fetch_add(&kc->f->h->closed, 1) < 10) /* the count says the rest */
        lc_progress("client %d gave up: reason=%s", kc->idx, reason);
}

static void on_sub_error(void *ud, uint64_t sid, const char *topic, uint64_t code, const char *reason)
{
    (void)sid;
    kid_client *kc = ud;
    if (atomic_fetch_add(&kc->f->h->sub_errors, 1) < 10)
        lc_progress("client %d: subscription to %s refused: code=%llu reason=%s", kc->idx, topic,
                    (unsigned long long)code, reason);
}

static bool stopping(const sw_fleet *f) { return atomic_load(&f->h->cmd) >= CMD_STOP; }

/* Waits until the command word reaches want; false past deadline_ns. */
static bool wait_cmd(const sw_fleet *f, int want, int64_t deadline_ns)
{
    while (atomic_load(&f->h->cmd) < want) {
        int64_t now = rc_now_ns();
        if (now >= deadline_ns)
            return false;
        rc_sleep_until(now + POLL_NS);
    }
    return true;
}

/* Starts and subscribes the child's clients, one after another as a single
 * process did; returns how many started. */
static int start_share(sw_fleet *f, sw_proc *p, kid_client *kc)
{
    const rc_config *cfg = f->cfg;
    int n = 0;
    for (int j = 0; j < p->count && !stopping(f); j++) {
        kid_client *k = &kc[j];
        k->f = f;
        k->idx = p->first + j;
        vg_client_opts o;
        rc_client_opts(cfg, &o, "swarm", k);
        o.on_msg = on_msg;
        o.on_closed = on_closed;
        o.on_sub_error = on_sub_error;
        const char *why = "";
        vg_status st = vg_client_start(&k->c, &o, &why);
        if (st != VG_OK) {
            lc_progress("client %d cannot start: %s (%s); its process goes on with %d clients",
                        k->idx, vg_strerror(st), why, j);
            atomic_store(&f->slots[k->idx].state, CL_FAILED);
            break;
        }
        n = j + 1;
        atomic_store(&f->slots[k->idx].state, CL_STARTED);
        atomic_store(&p->started, n);
        st = vg_client_subscribe(k->c, cfg->topic, &k->sid);
        if (st != VG_OK) {
            lc_progress("client %d cannot subscribe: %s", k->idx, vg_strerror(st));
            atomic_store(&f->slots[k->idx].state, CL_FAILED);
            break;
        }
    }
    atomic_store(&p->started_ns, rc_now_ns());
    return n;
}

/* Waits for the subscriptions of the n started clients until deadline_ns,
 * or until the parent says stop. */
static void wait_share(sw_fleet *f, sw_proc *p, kid_client *kc, int n, int64_t deadline_ns)
{
    for (int j = 0; j < n; j++) {
        sw_slot *s = &f->slots[kc[j].idx];
        if (atomic_load(&s->state) == CL_FAILED)
            continue;
        vg_status st;
        for (;;) { /* in slices, to hear a stop */
            int64_t left = (deadline_ns - rc_now_ns()) / 1000000;
            int slice = left > 100 ? 100 : left > 0 ? (int)left : 0;
            st = vg_client_wait_subscribed(kc[j].c, kc[j].sid, slice);
            if (st != VG_ERR_TIMEOUT || slice == 0 || stopping(f))
                break;
        }
        if (st == VG_OK) {
            atomic_store(&s->state, CL_SUBSCRIBED);
            atomic_fetch_add(&p->subscribed, 1);
        } else {
            atomic_store(&s->state, CL_FAILED);
            atomic_fetch_add(st == VG_ERR_REFUSED   ? &p->refused
                             : st == VG_ERR_TIMEOUT ? &p->timedout
                                                    : &p->closed,
                             1);
        }
    }
    atomic_store(&p->subscribed_ns, rc_now_ns());
}

static _Noreturn void child_main(sw_fleet *f, int k)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != f->parent)
        _exit(EXIT_ORPHAN); /* the parent died before prctl took effect */
    sw_proc *p = &f->procs[k];
    kid_client *kc = calloc((size_t)p->count, sizeof *kc);
    if (kc == NULL) {
        lc_progress("client process %d: out of memory", k);
        _exit(EXIT_NOMEM);
    }
    if (!wait_cmd(f, CMD_CONNECT, rc_now_ns() + GO_WAIT_NS)) {
        lc_progress("client process %d: no word from the parent in %lld s; exiting", k,
                    GO_WAIT_NS / 1000000000);
        _exit(EXIT_NO_WORD);
    }
    const rc_config *cfg = f->cfg;
    int64_t t0 = atomic_load(&f->h->go_ns);
    atomic_store(&p->state, PROC_CONNECTING);
    int n = start_share(f, p, kc);
    wait_share(f, p, kc, n, t0 + cfg->connect_bound_ms * 1000000);
    atomic_store(&p->state, PROC_SUBSCRIBED);

    /* Clients alone now, until the parent has its figures. */
    int64_t stop_by = t0 + (cfg->connect_bound_ms + cfg->down_ms + 2 * cfg->bound_ms) * 1000000 +
                      STOP_MARGIN_NS;
    bool told = wait_cmd(f, CMD_STOP, stop_by);
    if (!told)
        lc_progress("client process %d: no stop from the parent in time; exiting", k);
    atomic_store(&p->state, PROC_STOPPING);
    atomic_store(&p->destroy_ns, rc_now_ns());
    for (int j = 0; j < n; j++)
        vg_client_destroy(kc[j].c);
    atomic_store(&p->destroyed_ns, rc_now_ns());
    free(kc);
    atomic_store(&p->state, PROC_DONE);
    _exit(told ? 0 : EXIT_NO_WORD);
}

/* ---- the parent ---- */

static void kill_all(sw_fleet *f)
{
    for (int k = 0; k < f->nprocs; k++) {
        if (f->kids[k].pid <= 0)
            continue;
        kill(f->kids[k].pid, SIGKILL);
        while (waitpid(f->kids[k].pid, NULL, 0) < 0 && errno == EINTR)
            ;
        f->kids[k].pid = 0;
    }
}

sw_fleet *sw_fleet_start(const rc_config *cfg, int procs)
{
    int n = cfg->swarm;
    if (procs < 1)
        procs = 1;
    if (procs > n)
        procs = n;
    sw_fleet *f = calloc(1, sizeof *f);
    if (f == NULL)
        return NULL;
    f->cfg = cfg;
    f->nprocs = procs;
    f->parent = getpid();
    size_t procs_off = (sizeof(sw_header) + 63) & ~(size_t)63;
    size_t slots_off = (procs_off + (size_t)procs * sizeof(sw_proc) + 63) & ~(size_t)63;
    f->map_len = slots_off + (size_t)n * sizeof(sw_slot);
    f->map = mmap(NULL, f->map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    f->kids = calloc((size_t)procs, sizeof *f->kids);
    if (f->map == MAP_FAILED || f->kids == NULL) {
        lc_progress("cannot set up the client processes: out of memory");
        sw_fleet_free(f);
        return NULL;
    }
    f->h = f->map; /* zero-filled: CMD_WAIT, PROC_FORKED, CL_NONE */
    f->procs = (sw_proc *)((char *)f->map + procs_off);
    f->slots = (sw_slot *)((char *)f->map + slots_off);
    for (int k = 0, first = 0; k < procs; k++) {
        int count = n / procs + (k < n % procs);
        f->procs[k].first = first;
        f->procs[k].count = count;
        first += count;
    }
    fflush(NULL); /* nothing buffered is written twice */
    for (int k = 0; k < procs; k++) {
        pid_t pid = fork();
        if (pid == 0)
            child_main(f, k);
        if (pid < 0) {
            lc_progress("cannot fork client process %d of %d: %s", k, procs, strerror(errno));
            kill_all(f);
            sw_fleet_free(f);
            return NULL;
        }
        f->kids[k].pid = pid;
    }
    return f;
}

void sw_fleet_connect(sw_fleet *f)
{
    atomic_store(&f->h->go_ns, rc_now_ns());
    atomic_store(&f->h->cmd, CMD_CONNECT);
}

static const char *state_name(int s)
{
    static const char *const names[] = {"waiting to connect", "connecting", "subscribed",
                                        "destroying its clients", "done"};
    return s >= 0 && s <= PROC_DONE ? names[s] : "?";
}

/* Reports the end of child k, reaped with status st. */
static void note_exit(sw_fleet *f, int k, int st)
{
    sw_proc *p = &f->procs[k];
    int state = atomic_load(&p->state);
    bool clean = WIFEXITED(st) && WEXITSTATUS(st) == 0 && state == PROC_DONE;
    if (clean)
        return;
    f->kids[k].failed = true;
    f->failed++;
    char how[96];
    if (WIFSIGNALED(st))
        snprintf(how, sizeof how, "was killed by signal %d (%s)", WTERMSIG(st),
                 strsignal(WTERMSIG(st)));
    else if (WIFEXITED(st))
        snprintf(how, sizeof how, "exited with status %d%s", WEXITSTATUS(st),
                 WEXITSTATUS(st) == EXIT_NO_WORD ? " (no word from the parent in time)"
                 : WEXITSTATUS(st) == EXIT_NOMEM ? " (out of memory)"
                                                  : "");
    else
        snprintf(how, sizeof how, "ended (status 0x%x)", (unsigned)st);
    lc_progress("client process %d (clients %d-%d) %s while %s", k, p->first,
                p->first + p->count - 1, how, state_name(state));
}

/* Reaps every child that has exited, without waiting. */
static void reap(sw_fleet *f)
{
    for (int k = 0; k < f->nprocs; k++) {
        if (f->kids[k].pid <= 0)
            continue;
        int st;
        pid_t r = waitpid(f->kids[k].pid, &st, WNOHANG);
        if (r == f->kids[k].pid) {
            f->kids[k].pid = 0;
            note_exit(f, k, st);
        }
    }
}

void sw_fleet_wait_subscribed(sw_fleet *f, int64_t deadline_ns, bool *ok, sw_connect_result *out)
{
    int64_t t0 = atomic_load(&f->h->go_ns), next_note = rc_now_ns() + NOTE_NS;
    for (;;) {
        reap(f);
        int pending = 0, subscribed = 0;
        for (int k = 0; k < f->nprocs; k++) {
            pending += f->kids[k].pid > 0 && atomic_load(&f->procs[k].state) < PROC_SUBSCRIBED;
            subscribed += atomic_load(&f->procs[k].subscribed);
        }
        int64_t now = rc_now_ns();
        if (pending == 0 || now >= deadline_ns)
            break;
        if (now >= next_note) {
            lc_progress("%d clients subscribed", subscribed);
            next_note += NOTE_NS;
        }
        rc_sleep_until(now + POLL_NS);
    }
    *out = (sw_connect_result){0};
    for (int k = 0; k < f->nprocs; k++) {
        sw_proc *p = &f->procs[k];
        out->started += atomic_load(&p->started);
        out->refused += atomic_load(&p->refused);
        out->timedout += atomic_load(&p->timedout);
        out->closed += atomic_load(&p->closed);
        int64_t s = atomic_load(&p->started_ns), c = atomic_load(&p->subscribed_ns);
        if (s > t0 && s - t0 > out->start_ns)
            out->start_ns = s - t0;
        if (c > t0 && c - t0 > out->connect_ns)
            out->connect_ns = c - t0;
        if (f->kids[k].pid > 0 && atomic_load(&p->state) < PROC_SUBSCRIBED) {
            out->unfinished++;
            lc_progress("client process %d (clients %d-%d) still %s at the deadline", k, p->first,
                        p->first + p->count - 1, state_name(atomic_load(&p->state)));
        }
    }
    for (int i = 0; i < f->cfg->swarm; i++) {
        ok[i] = atomic_load(&f->slots[i].state) == CL_SUBSCRIBED;
        out->subscribed += ok[i];
    }
}

int64_t sw_fleet_first(const sw_fleet *f, int i) { return atomic_load(&f->slots[i].first); }

void sw_fleet_scan(sw_fleet *f, const bool *ok, size_t *delivered, size_t *waiting)
{
    reap(f);
    *delivered = *waiting = 0;
    for (int k = 0; k < f->nprocs; k++) {
        const sw_proc *p = &f->procs[k];
        bool alive = f->kids[k].pid > 0;
        for (int i = p->first; i < p->first + p->count; i++) {
            if (!ok[i])
                continue;
            if (atomic_load_explicit(&f->slots[i].first, memory_order_relaxed) != 0)
                (*delivered)++;
            else if (alive)
                (*waiting)++;
        }
    }
}

void sw_fleet_callbacks(const sw_fleet *f, unsigned *closed, unsigned *sub_errors)
{
    *closed = atomic_load(&f->h->closed);
    *sub_errors = atomic_load(&f->h->sub_errors);
}

int sw_fleet_died(const sw_fleet *f) { return f->failed; }

int sw_fleet_stop(sw_fleet *f, int timeout_ms)
{
    int64_t t0 = rc_now_ns(), deadline = t0 + (int64_t)timeout_ms * 1000000;
    atomic_store(&f->h->cmd, CMD_STOP);
    for (;;) {
        reap(f);
        int running = 0;
        for (int k = 0; k < f->nprocs; k++)
            running += f->kids[k].pid > 0;
        int64_t now = rc_now_ns();
        if (running == 0 || now >= deadline)
            break;
        rc_sleep_until(now + POLL_NS);
    }
    for (int k = 0; k < f->nprocs; k++) {
        if (f->kids[k].pid <= 0)
            continue;
        lc_progress("client process %d still %s %d ms after stop: kill -9", k,
                    state_name(atomic_load(&f->procs[k].state)), timeout_ms);
        f->kids[k].failed = true;
        f->failed++;
    }
    kill_all(f);
    int destroyed = 0, done = 0;
    int64_t longest = 0;
    for (int k = 0; k < f->nprocs; k++) {
        const sw_proc *p = &f->procs[k];
        int64_t a = atomic_load(&p->destroy_ns), b = atomic_load(&p->destroyed_ns);
        if (b == 0)
            continue;
        done++;
        destroyed += atomic_load(&p->started);
        if (b - a > longest)
            longest = b - a;
    }
    lc_progress("%d clients destroyed in %lld ms (the slowest of %d processes; all gone %lld ms "
                "after stop)",
                destroyed, (long long)(longest / 1000000), done,
                (long long)((rc_now_ns() - t0) / 1000000));
    return f->failed;
}

void sw_fleet_free(sw_fleet *f)
{
    if (f == NULL)
        return;
    if (f->kids != NULL)
        kill_all(f);
    if (f->map != MAP_FAILED)
        munmap(f->map, f->map_len);
    free(f->kids);
    free(f);
}
