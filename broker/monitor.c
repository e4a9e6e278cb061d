/* The monitoring endpoint over HTTP (monitor.h), on libmicrohttpd.
 *
 * Routes: GET /varz, /connz (?subs=1 lists subscriptions), /topics (also
 * /topicz), /healthz, /metrics. HEAD is GET without the body; any other
 * method is 405 with Allow, any other path 404. Bodies are answered at the
 * first call of the handler: a request body is never read. */
#include "monitor.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "monz.h"

/* Enough for dashboards and a few curls at once; past it new clients wait
 * in the kernel's backlog, then are refused. */
#define MONITOR_CLIENTS 16
#define MONITOR_PER_IP 8
#define MONITOR_IDLE_S 10              /* an idle or stalled HTTP client is closed */
#define MONITOR_CLIENT_MEMORY (32u << 10) /* a request's headers and buffers */

#define MONITOR_LOG_GAP_MS 1000

struct vg_monitor {
    vg_server *srv;
    struct MHD_Daemon *d;
    _Atomic int64_t logged_ms;     /* on_mhd_log's last line; 0: none yet */
    _Atomic uint64_t suppressed;   /* its complaints left out since */
};

typedef enum { R_VARZ, R_CONNZ, R_TOPICS, R_HEALTHZ, R_METRICS, R_NONE } route;

static route route_of(const char *url)
{
    static const struct {
        const char *path;
        route r;
    } table[] = {{"/varz", R_VARZ},       {"/connz", R_CONNZ},     {"/topics", R_TOPICS},
                 {"/topicz", R_TOPICS},   {"/healthz", R_HEALTHZ}, {"/metrics", R_METRICS}};
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (strcmp(url, table[i].path) == 0)
            return table[i].r;
    return R_NONE;
}

/* Queues body (taking its memory) with status and type. */
static enum MHD_Result answer(struct MHD_Connection *conn, unsigned status, const char *type,
                              vg_buf *body)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(body->len, body->data, MHD_RESPMEM_MUST_FREE);
    if (resp == NULL) {
        vg_buf_free(body);
        return MHD_NO; /* the client's connection is closed */
    }
    *body = (vg_buf){0};
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    enum MHD_Result r = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return r;
}

static enum MHD_Result error(struct MHD_Connection *conn, unsigned status, const char *what)
{
    vg_buf b = {0};
    vg_jw w = vg_jw_on(&b);
    vg_jw_fmt(&w, "{\"error\":\"%s\"}\n", what);
    if (vg_jw_status(&w) != VG_OK) {
        vg_buf_free(&b);
        return MHD_NO;
    }
    return answer(conn, status, "application/json", &b);
}

static bool flag(struct MHD_Connection *conn, const char *key)
{
    const char *v = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, key);
    return v != NULL && (strcmp(v, "1") == 0 || strcmp(v, "true") == 0 || strcmp(v, "detail") == 0);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    (void)version, (void)upload_data, (void)upload_data_size, (void)con_cls;
    vg_monitor *m = cls;
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return error(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed: GET or HEAD");
    route r = route_of(url);
    if (r == R_NONE)
        return error(conn, MHD_HTTP_NOT_FOUND,
                     "not found: /varz, /connz, /topics, /healthz or /metrics");
    vg_buf body = {0};
    vg_status st = VG_OK;
    unsigned status = MHD_HTTP_OK;
    const char *type = "application/json";
    int64_t now = vg_now_ms();
    bool ok;
    switch (r) {
    case R_VARZ: st = vg_monz_varz(m->srv, now, &body); break;
    case R_CONNZ: st = vg_monz_connz(m->srv, now, flag(conn, "subs"), &body); break;
    case R_TOPICS: st = vg_monz_topics(m->srv, &body); break;
    case R_HEALTHZ:
        st = vg_monz_health(m->srv, &body, &ok);
        status = ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE;
        break;
    case R_METRICS:
        st = vg_monz_metrics(m->srv, now, &body);
        type = "text/plain; version=0.0.4; charset=utf-8";
        break;
    case R_NONE: break;
    }
    if (st == VG_OK && type[0] == 'a')
        st = vg_buf_append(&body, "\n", 1);
    if (st != VG_OK) {
        vg_buf_free(&body);
        return error(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
    }
    return answer(conn, status, type, &body);
}

/* libmicrohttpd's own complaints, as our log lines: at most one a second
 * (a flood of HTTP clients over the limit is one complaint each), the
 * number left out since the last one in suppressed=. */
static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    vg_monitor *m = cls;
    int64_t now = vg_now_ms();
    int64_t last = atomic_load(&m->logged_ms);
    if (last != 0 && now - last < MONITOR_LOG_GAP_MS) {
        atomic_fetch_add(&m->suppressed, 1);
        return;
    }
    atomic_store(&m->logged_ms, now);
    char msg[256], quoted[300];
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    if (n < 0)
        return;
    size_t len = strlen(msg);
    while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == '\r'))
        len--;
    vg_log(VG_LOG_WARN, "monitor_error", "detail=%s suppressed=%llu",
           vg_log_quote(quoted, sizeof quoted, msg, len),
           (unsigned long long)atomic_exchange(&m->suppressed, 0));
}

vg_status vg_monitor_start(vg_server *srv, const vg_addr *addr, vg_monitor **out)
{
    *out = NULL;
    char want[VG_ADDR_STRLEN];
    vg_addr_format(addr, want);
    vg_monitor *m = calloc(1, sizeof *m);
    if (m == NULL) {
        vg_log(VG_LOG_ERROR, "monitor_failed", "addr=%s error=\"out of memory\"", want);
        return VG_ERR_NOMEM;
    }
    m->srv = srv;
    int fd;
    if (vg_listen(addr, 64, &fd) != VG_OK) {
        vg_log(VG_LOG_ERROR, "monitor_failed", "addr=%s error=\"%s\"", want, strerror(errno));
        goto fail_free;
    }
    vg_sock_name(fd, 0, srv->monitor_str); /* before any thread reads it */
    m->d = MHD_start_daemon(
        MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL, on_request, m,
        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, m, /* first, or some go to stderr raw */
        MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)MONITOR_CLIENTS, MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)MONITOR_PER_IP,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)MONITOR_IDLE_S,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)MONITOR_CLIENT_MEMORY, MHD_OPTION_END);
    if (m->d == NULL) {
        vg_log(VG_LOG_ERROR, "monitor_failed", "addr=%s error=\"libmicrohttpd did not start\"",
               srv->monitor_str);
        close(fd);
        srv->monitor_str[0] = '\0';
        goto fail_free;
    }
    vg_log(VG_LOG_INFO, "monitor_listening", "addr=%s", srv->monitor_str);
    *out = m;
    return VG_OK;

fail_free:
    free(m);
    return VG_ERR_IO;
}

void vg_monitor_stop(vg_monitor *m)
{
    if (m == NULL)
        return;
    MHD_stop_daemon(m->d); /* closes the listening socket it was given */
    free(m);
}
