/* How many connections this machine lets the broker serve. Pure: the host's
 * limits and what one connection costs are arguments; main.c reads them.
 *
 * A connection costs two descriptors (socket, eventfd), one thread, and two
 * memory mappings (its stack and the guard page below it). Whichever of the
 * host's limits runs out first decides: past it, accept, eventfd or
 * pthread_create fails and the client gets no answer. Fitted below all of
 * them, the broker refuses the next client with ERR limit instead.
 *
 * Each limit's room is what is left of it after what the process (or the
 * system) already uses and a reserve:
 *   nofile         (RLIMIT_NOFILE - fd_reserve) / fds per connection
 *   max_map_count  (vm.max_map_count - mappings in use - map_reserve) / maps per connection
 *   threads_max    kernel.threads-max - threads in the system - task_reserve
 *   pid_max        kernel.pid_max - 300 (never reused) - threads in the system - task_reserve
 *   nproc          RLIMIT_NPROC - this user's threads, unless privileged
 *   pids_max       the cgroup's pids.max - pids.current (systemd's TasksMax)
 * task_reserve applies to the two system-wide limits only: a broker that took
 * every thread of the machine would leave none for the shell an operator
 * needs to look at it. */
#ifndef VG_LIMITS_FIT_H
#define VG_LIMITS_FIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A limit that does not exist or could not be read. */
#define VG_UNLIMITED UINT64_MAX

/* PIDs below this are not reused once pid_max has wrapped (the kernel's RESERVED_PIDS). */
#define VG_PIDS_RESERVED 300

typedef enum {
    VG_LIMIT_NONE, /* nothing lowered the value asked for */
    VG_LIMIT_NOFILE,
    VG_LIMIT_MAX_MAP_COUNT,
    VG_LIMIT_THREADS_MAX,
    VG_LIMIT_PID_MAX,
    VG_LIMIT_NPROC,
    VG_LIMIT_PIDS_MAX,
    VG_LIMIT_COUNT,
} vg_limit;

/* What the host allows and what is used now. A limit is VG_UNLIMITED when
 * there is none (RLIM_INFINITY, "max") or it could not be read; a count of
 * what is used is 0 when it could not be read. */
typedef struct {
    uint64_t nofile;        /* RLIMIT_NOFILE soft limit, after raising it to the hard one */
    uint64_t max_map_count; /* vm.max_map_count */
    uint64_t maps_in_use;   /* lines of /proc/self/maps now */
    uint64_t threads_max;   /* kernel.threads-max */
    uint64_t pid_max;       /* kernel.pid_max */
    uint64_t threads_now;   /* threads in the whole system now (/proc/loadavg) */
    uint64_t nproc;         /* RLIMIT_NPROC soft limit, after raising it to the hard one */
    uint64_t user_threads;  /* threads of this process's real user now */
    bool nproc_applies;     /* false for real uid 0, CAP_SYS_RESOURCE or CAP_SYS_ADMIN */
    uint64_t pids_max;      /* the tightest pids.max of this process's cgroup and its parents */
    uint64_t pids_current;  /* ... and that cgroup's pids.current */
} vg_host_limits;

/* What one connection costs, and what the process keeps for itself. */
typedef struct {
    unsigned fds;          /* descriptors per connection */
    unsigned maps;         /* mappings per connection */
    uint64_t fd_reserve;   /* the listener, signalfd, logs, a few files */
    uint64_t map_reserve;  /* malloc's arenas and buffers large enough to get their own mapping */
    uint64_t task_reserve; /* threads left to the rest of the system */
} vg_conn_costs;

typedef struct {
    size_t max_connections; /* at least 1 */
    vg_limit limited_by;    /* VG_LIMIT_NONE when max_connections is what was asked */
    uint64_t room[VG_LIMIT_COUNT]; /* connections each limit allows; VG_UNLIMITED if none */
} vg_fit;

/* The broker's costs: 2 descriptors, 2 mappings, 64 descriptors kept,
 * map_reserve as given (it depends on the allocator's settings: main.c). */
vg_conn_costs vg_limits_costs(uint64_t map_reserve);

/* Fits asked (--max-connections or its default) below every limit in h.
 * Ties name the first limit in the enum's order. A host that allows no
 * connection at all still gets 1, so that the broker starts and refuses with
 * ERR limit rather than not at all. */
void vg_limits_fit(const vg_host_limits *h, const vg_conn_costs *c, size_t asked, vg_fit *out);

/* "nofile", "max_map_count", "threads_max", "pid_max", "nproc", "pids_max";
 * "none" for VG_LIMIT_NONE. Static. */
const char *vg_limit_name(vg_limit l);

#endif
