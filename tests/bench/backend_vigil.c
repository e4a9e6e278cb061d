/* The vigil backend: the project's own client library, as pub and sub use it,
 * and a raw-protocol pool for idle connections. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "backend.h"
#include "client.h"
#include "decoder.h"
#include "frame.h"
#include "proto.h"
#include "sock.h"

struct bench_conn {
    vg_client *client;
    bench_on_msg on_msg;
    void *ud;
};

static void adapt(void *ud, const vg_msg *m)
{
    bench_conn *c = ud;
    c->on_msg(c->ud, m->payload, m->payload_len);
}

static bench_conn *v_connect(const char *server, bench_on_msg on_msg, void *ud)
{
    bench_conn *c = calloc(1, sizeof *c);
    c->on_msg = on_msg;
    c->ud = ud;
    vg_client_opts o;
    vg_client_opts_defaults(&o);
    o.servers = server;
    o.name = "bench";
    o.ud = c;
    o.on_msg = on_msg ? adapt : NULL;
    const char *why;
    if (vg_client_start(&c->client, &o, &why) != VG_OK ||
        vg_client_wait_connected(c->client, 5000) != VG_OK) {
        fprintf(stderr, "vigil: cannot connect to %s\n", server);
        free(c);
        return NULL;
    }
    return c;
}

static int v_subscribe(bench_conn *c, const char *topic)
{
    uint64_t sid;
    if (vg_client_subscribe(c->client, topic, &sid) != VG_OK ||
        vg_client_wait_subscribed(c->client, sid, 5000) != VG_OK) {
        fprintf(stderr, "vigil: subscribe failed\n");
        return -1;
    }
    return 0;
}

static int v_publish(bench_conn *c, const char *topic, const void *p, size_t n)
{
    return vg_client_publish(c->client, VG_FRAME_MSG_TYPE1, topic, strlen(topic), p, n, -1) == VG_OK
               ? 0
               : -1;
}

static int v_flush(bench_conn *c, int timeout_ms)
{
    return vg_client_flush(c->client, timeout_ms < 0 ? 60000 : timeout_ms) == VG_OK ? 0 : -1;
}

static void v_close(bench_conn *c)
{
    vg_client_destroy(c->client);
    free(c);
}

/* ---- idle pool: raw sockets that answer PINGs, one epoll thread ---- */

typedef struct {
    int n;
    int *fds;
    vg_decoder **dec;
    int ep;
    atomic_bool stop;
    pthread_t thread;
} idle_pool;

static void *idle_loop(void *arg)
{
    idle_pool *p = arg;
    struct epoll_event ev[256];
    vg_buf pong = {0};
    vg_frame_put_pong(&pong);
    while (!atomic_load(&p->stop)) {
        int k = epoll_wait(p->ep, ev, 256, 200);
        for (int i = 0; i < k; i++) {
            int idx = (int)ev[i].data.u32;
            uint8_t *space;
            size_t avail;
            if (vg_decoder_space(p->dec[idx], &space, &avail) != VG_OK)
                continue;
            ssize_t r = recv(p->fds[idx], space, avail, 0);
            if (r <= 0) {
                epoll_ctl(p->ep, EPOLL_CTL_DEL, p->fds[idx], NULL);
                continue;
            }
            vg_decoder_commit(p->dec[idx], (size_t)r);
            vg_frame f;
            const char *why;
            while (vg_decoder_next(p->dec[idx], &f, &why) == VG_OK)
                if (f.type == VG_FRAME_PING)
                    send(p->fds[idx], pong.data, pong.len, MSG_NOSIGNAL);
        }
    }
    vg_buf_free(&pong);
    return NULL;
}

static void v_idle_close(void *arg);

static void *v_idle_open(const char *server, int n, const char *topic)
{
    vg_addr a;
    if (vg_addr_parse(server, &a, NULL) != VG_OK)
        return NULL;
    idle_pool *p = calloc(1, sizeof *p);
    p->fds = calloc((size_t)n, sizeof *p->fds);
    p->dec = calloc((size_t)n, sizeof *p->dec);
    p->ep = epoll_create1(0);
    vg_buf hello = {0};
    vg_frame_put_connect(&hello, VG_PROTO_V1, "idle", NULL);
    vg_frame_put_sub(&hello, 1, topic, strlen(topic));
    for (int i = 0; i < n; i++) {
        p->fds[i] = socket(a.ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (p->fds[i] < 0 || connect(p->fds[i], (struct sockaddr *)&a.ss, a.len) != 0 ||
            send(p->fds[i], hello.data, hello.len, MSG_NOSIGNAL) != (ssize_t)hello.len) {
            fprintf(stderr, "vigil: idle connection %d failed: %s\n", i, strerror(errno));
            p->n = i + 1;
            vg_buf_free(&hello);
            v_idle_close(p);
            return NULL;
        }
        p->dec[i] = vg_decoder_create(4096, 1 << 20);
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(p->ep, EPOLL_CTL_ADD, p->fds[i], &ev);
        p->n = i + 1;
    }
    vg_buf_free(&hello);
    pthread_create(&p->thread, NULL, idle_loop, p);
    return p;
}

static void v_idle_close(void *arg)
{
    idle_pool *p = arg;
    if (p->thread) {
        atomic_store(&p->stop, true);
        pthread_join(p->thread, NULL);
    }
    for (int i = 0; i < p->n; i++) {
        close(p->fds[i]);
        vg_decoder_destroy(p->dec[i]);
    }
    close(p->ep);
    free(p->fds);
    free(p->dec);
    free(p);
}

const bench_backend bench_vigil = {"vigil", v_connect, v_subscribe, v_publish, v_flush, v_close,
                                   v_idle_open, v_idle_close};
