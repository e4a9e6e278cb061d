/* The connections as the monitor sees them (monz.c): a copy of what each
 * one's thread publishes for other threads (conn_mon in conn_internal.h),
 * taken without stopping any of them. */
#ifndef VG_CONN_INFO_H
#define VG_CONN_INFO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "proto.h"
#include "server.h"
#include "sock.h"
#include "status.h"

typedef struct {
    uint64_t id;
    char addr[VG_ADDR_STRLEN];  /* the client's address:port */
    bool connected;             /* CONNECT accepted; name and version below are its */
    uint8_t version;            /* negotiated protocol version; 0 before CONNECT */
    uint32_t name_len;
    char name[VG_NAME_MAX_LEN]; /* any bytes the client chose: escape them */
    int64_t born_ms;            /* accepted at (vg_now_ms) */
    int64_t heard_ms;           /* last byte from the client (vg_now_ms) */
    int64_t rtt_us;             /* last PING -> PONG; -1: not measured yet */
    uint64_t subs;              /* subscriptions (sids) */
    uint64_t pending_bytes;     /* queued to it and not yet written: its outbox,
                                   in flight included, and its queue-group inbox */
    uint64_t lag;               /* records the logs hold past its cursors */
    uint64_t msgs_in, bytes_in, msgs_out, bytes_out;
    vg_buf subs_json;           /* with subs_list: a JSON array of its
                                   subscriptions; else empty */
} vg_conn_info;

/* Every connection registered now, in *out (malloc'd; free with
 * vg_conn_info_free), *n of them, newest first. The registry's lock is held
 * only to take a reference on each; each connection's subscription lock
 * (a leaf) only while its subscriptions are read. With subs_list, each
 * entry's subs_json lists them ([{"sid":N,"subject":"...","queue":"..."}],
 * queue only for a queue group member). VG_OK or VG_ERR_NOMEM. */
vg_status vg_conn_info_list(vg_server *srv, bool subs_list, vg_conn_info **out, size_t *n);

void vg_conn_info_free(vg_conn_info *v, size_t n);

#endif
