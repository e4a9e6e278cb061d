/* The broker: a listening socket, the subscription table, and a registry of
 * connections, each served by its own thread (conn.c).
 *
 * Lock order: server.mu (registry) may be held while calling
 * vg_outbox_close() on a connection's outbox (which takes the outbox lock);
 * never the other way round. The subscription table's lock is a leaf.
 * A topic log is created (vg_logs_get) holding no lock, or only the
 * durable table's: its hook takes the subscription table's lock and
 * connections' fresh_mu, both leaves.
 * dedupe_mu may be held while appending to a topic log (whose locks are
 * leaves below it: topiclog.h) and while writing to the store (store.h:
 * dedupe_mu, then the store's write lock, then a log's). Queue groups
 * (qgroup.h): the registry's lock, then a group's mutex, then a topic
 * log's lock, a connection's inbox mutex and the durable table's (leaves);
 * a group's mutex is never taken under dedupe_mu, a log's lock, an
 * outbox's, the subscription table's or the store's. token_mu is a leaf,
 * held only to compare or swap the token. A connection's mon.mu
 * (conn_internal.h: its subscriptions, for the monitor) is a leaf. */
#ifndef VG_SERVER_H
#define VG_SERVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "liveness.h"
#include "sock.h"
#include "status.h"
#include "sublist.h"
#include "dedupe.h"
#include "durable.h"
#include "qgroup.h"
#include "store.h"
#include "topiclog.h"

typedef struct {
    vg_addr listen;
    uint64_t max_payload;
    size_t max_outbox; /* bytes queued to one client before messages to it are dropped */
    size_t topic_max_len;
    size_t topic_max_tokens;
    size_t thread_stack;
    vg_keepalive keepalive;
    size_t max_connections;       /* beyond this, new connections get ERR limit */
    size_t max_subs;              /* subscriptions per connection */
    int64_t handshake_timeout_ms; /* CONNECT must arrive within this */
    int64_t ack_wait_ms;          /* a queue member's unacknowledged messages go to
                                     another member after this; 0: never */
    const char *token;            /* NULL: no authentication */
    size_t token_len;
    int64_t stats_interval_ms;    /* $SYS.stats publication period; 0: none */
    uint64_t retention_bytes;     /* the topic logs' byte budget (topiclog.h) */
    int64_t retention_age_ms;     /* drop log chunks older than this; 0: no age limit */
    const char *data_dir;         /* NULL: the log is in memory only */
    vg_fsync_policy fsync;        /* with data_dir (store.h) */
    int fsync_interval_ms;        /* VG_FSYNC_INTERVAL */
    uint64_t segment_bytes;       /* segment files roll before this size */
} vg_broker_config;

/* Why connections were ended by the broker, for $SYS.stats. */
typedef enum {
    VG_EVICT_HEARTBEAT,
    VG_EVICT_SLOW_CONSUMER,
    VG_EVICT_LIMIT, /* refused: too many connections */
    VG_EVICT_PROTOCOL,
    VG_EVICT_AUTH,
    VG_EVICT_TIMEOUT,
    VG_EVICT_INTERNAL,
    VG_EVICT_COUNT,
} vg_evict_reason;

/* Counters kept by every connection thread, read by the stats publisher.
 * Updated once per read or per delivery, never per byte. */
typedef struct {
    _Atomic uint64_t msgs_in, bytes_in;   /* MSG frames / their payload bytes from clients */
    _Atomic uint64_t msgs_out, bytes_out; /* ... queued to subscribers (one per subscriber) */
    _Atomic uint64_t dropped;             /* messages dropped for slow version-1 subscribers,
                                             or not appended for want of memory */
    _Atomic uint64_t duplicates;          /* resent messages dropped as already appended */
    _Atomic uint64_t sub_changes;         /* SUB and UNSUB frames handled */
    _Atomic uint64_t pings_sent, pongs_received;
    _Atomic uint64_t evictions[VG_EVICT_COUNT];
} vg_server_stats;

struct vg_conn;
struct vg_server;

/* The limits a SIGHUP may change while connection threads read them
 * (reload.c): read them here, with relaxed loads, never from cfg, which
 * keeps the values at start. Each is read once per check, so a reload
 * between two reads of a pair (topic length and tokens) gives two valid
 * limits, each old or new. */
typedef struct {
    _Atomic size_t max_connections; /* accept thread */
    _Atomic size_t max_subs;        /* at each SUB */
    _Atomic size_t topic_max_len;   /* at each SUB and MSG */
    _Atomic size_t topic_max_tokens;
    _Atomic int64_t handshake_timeout_ms; /* while a connection waits for CONNECT */
    _Atomic int64_t ack_wait_ms;          /* queue members' (vg_queue_tick) */
    _Atomic int64_t stats_interval_ms;    /* accept thread, at the next publication */
} vg_server_live;

/* Called by vg_server_run on its own thread for each SIGHUP. */
typedef void vg_server_hup_fn(void *ud, struct vg_server *srv);

typedef struct vg_server {
    vg_broker_config cfg; /* as at start, but cfg.token is NULL: see token */
    vg_server_live live;
    pthread_mutex_t token_mu; /* guards token, token_len: a leaf */
    char *token;              /* owned; NULL: no authentication */
    size_t token_len;
    int listen_fd;
    char listen_str[VG_ADDR_STRLEN];
    char monitor_str[VG_ADDR_STRLEN]; /* the monitor's address (monitor.c); "" if off */
    vg_sublist *subs;     /* who subscribes to what (sublist.h) */
    vg_logs *logs;        /* every accepted message, per topic (topiclog.h) */
    vg_dedupe *dedupe;    /* version-2 publishers' high-water marks, under dedupe_mu */
    pthread_mutex_t dedupe_mu; /* held across check, append and record: before any log lock */
    vg_store *store;      /* with --data-dir: the log's files (store.h); else NULL */
    vg_durables *durables; /* named subscribers' positions */
    struct vg_sublist_cache *commit_match; /* the store's commit thread's matches */
    vg_qgroups *qgroups;   /* queue groups (qgroup.h) */
    vg_qgroup **commit_qscratch; /* the store's commit thread's group list */
    size_t commit_qscratch_cap;
    pthread_attr_t thread_attr;

    pthread_mutex_t mu; /* guards the registry below; conn.c maintains it */
    pthread_cond_t drained; /* signalled when nconns reaches 0 */
    struct vg_conn *conns;
    size_t nconns;
    uint64_t next_client_id;
    atomic_bool stopping;
    vg_server_stats stats;
    int64_t started_ms;
    bool at_limit;         /* accept thread only: refusing connections */
    uint64_t refused;      /* accept thread only: refusals in this episode */
    bool threads_failing;  /* accept thread only: no thread could be started */
    uint64_t thread_refusals; /* accept thread only: refusals in that episode */
} vg_server;

/* Fills cfg with defaults (127.0.0.1:7222, 1 MiB payloads, ...). */
void vg_broker_config_defaults(vg_broker_config *cfg);

/* Binds and listens; logs event=listening with the bound address. Copies
 * cfg->token. On failure logs the reason and returns VG_ERR_IO (or
 * VG_ERR_NOMEM). */
vg_status vg_server_open(vg_server *srv, const vg_broker_config *cfg);

/* Accepts connections until sig_fd, a signalfd for SIGINT, SIGTERM and
 * SIGHUP (or a pipe, which counts as a stop when readable), says stop;
 * then closes every client cleanly (waiting up to drain_ms) and returns.
 * A SIGHUP calls hup(ud, srv) on this thread (reload.c); with hup NULL it is
 * logged and changes nothing. */
void vg_server_run(vg_server *srv, int sig_fd, int drain_ms, vg_server_hup_fn *hup, void *ud);

/* Whether a client that presented got (len bytes; NULL: none) may connect:
 * true without a token, else if it matches, compared under token_mu so that
 * a reload cannot free the token mid-comparison. */
bool vg_server_token_ok(vg_server *srv, const char *got, size_t len);

/* Replaces the token (NULL: no authentication) for connections that
 * authenticate from now on; takes ownership of token (malloc'd) and frees
 * the old one, wiped. Connected clients are not asked again. */
void vg_server_set_token(vg_server *srv, char *token);

/* Stores the reloadable limits of cfg (the fields of vg_server_live) for
 * the threads to read from now on. */
void vg_server_set_limits(vg_server *srv, const vg_broker_config *cfg);

/* Frees what vg_server_open made. Every connection must have ended. */
void vg_server_close(vg_server *srv);

#endif
