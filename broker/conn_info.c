/* A snapshot of the registry for the monitor. The registry lock is held
 * for as long as it takes to count the connections and take a reference on
 * each (conn.c: a reference keeps a connection's memory, outbox and
 * subscription index alive after its thread has left); everything else is
 * read holding no lock but a connection's own leaf locks, so a monitor
 * request never waits on, or makes wait, a connection's socket. */
#include "conn_info.h"

#include <stdlib.h>
#include <string.h>

#include "conn_internal.h"
#include "jsonw.h"

/* Appends c's subscriptions as a JSON array; under c->mon.mu. */
static vg_status subs_json(vg_conn *c, vg_buf *out)
{
    vg_jw w = vg_jw_on(out);
    vg_jw_raw(&w, "[");
    size_t n = vg_subindex_count(c->subs);
    for (size_t i = 0; i < n; i++) {
        const conn_sub *s = vg_subindex_at(c->subs, i);
        vg_jw_fmt(&w, "%s{\"sid\":%llu,\"subject\":", i == 0 ? "" : ",", (unsigned long long)s->sid);
        vg_jw_str(&w, s->topic, s->len);
        if (s->queue != NULL) {
            vg_jw_raw(&w, ",\"queue\":");
            vg_jw_str(&w, s->queue, s->queue_len);
        }
        vg_jw_raw(&w, "}");
    }
    vg_jw_raw(&w, "]");
    return vg_jw_status(&w);
}

static uint64_t load(_Atomic uint64_t *v) { return atomic_load_explicit(v, memory_order_relaxed); }

static vg_status fill(vg_conn *c, bool subs_list, vg_conn_info *v)
{
    memset(v, 0, sizeof *v);
    v->id = c->id; /* set before the connection was registered */
    memcpy(v->addr, c->addr, sizeof v->addr);
    v->born_ms = c->born_ms;
    if (atomic_load_explicit(&c->mon.ready, memory_order_acquire)) {
        v->connected = true;
        v->version = c->mon.version;
        v->name_len = c->mon.name_len;
        if (v->name_len > 0) /* at most sizeof v->name: CONNECT checks it */
            memcpy(v->name, c->mon.name, v->name_len);
    }
    v->heard_ms = atomic_load_explicit(&c->mon.heard_ms, memory_order_relaxed);
    v->rtt_us = atomic_load_explicit(&c->mon.rtt_us, memory_order_relaxed);
    v->lag = load(&c->mon.lag);
    v->msgs_in = load(&c->mon.msgs_in);
    v->bytes_in = load(&c->mon.bytes_in);
    v->msgs_out = load(&c->mon.msgs_out);
    v->bytes_out = load(&c->mon.bytes_out);
    v->pending_bytes = vg_outbox_bytes(c->outbox) + atomic_load(&c->qbytes);
    vg_status st = VG_OK;
    pthread_mutex_lock(&c->mon.mu);
    v->subs = vg_subindex_count(c->subs);
    if (subs_list)
        st = subs_json(c, &v->subs_json);
    pthread_mutex_unlock(&c->mon.mu);
    return st;
}

vg_status vg_conn_info_list(vg_server *srv, bool subs_list, vg_conn_info **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    pthread_mutex_lock(&srv->mu);
    size_t count = srv->nconns;
    vg_conn **held = calloc(count > 0 ? count : 1, sizeof *held);
    if (held == NULL) {
        pthread_mutex_unlock(&srv->mu);
        return VG_ERR_NOMEM;
    }
    size_t k = 0;
    for (vg_conn *c = srv->conns; c != NULL && k < count; c = c->next) {
        vg_conn_retain(c);
        held[k++] = c;
    }
    pthread_mutex_unlock(&srv->mu);

    vg_status st = VG_OK;
    vg_conn_info *v = calloc(k > 0 ? k : 1, sizeof *v);
    if (v == NULL)
        st = VG_ERR_NOMEM;
    for (size_t i = 0; i < k; i++) {
        if (st == VG_OK)
            st = fill(held[i], subs_list, &v[i]);
        vg_conn_release(held[i]);
    }
    free(held);
    if (st != VG_OK) {
        vg_conn_info_free(v, k);
        return st;
    }
    *out = v;
    *n = k;
    return VG_OK;
}

void vg_conn_info_free(vg_conn_info *v, size_t n)
{
    if (v == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        vg_buf_free(&v[i].subs_json);
    free(v);
}
