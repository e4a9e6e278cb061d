#include "client_servers.h"

#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>


typedef struct {
    char host[VG_HOST_MAX + 1];
    char port[8];
    char *name;
} server;

struct vg_servers {
    server *v;
    size_t n;
};

struct vg_resolve {
    atomic_int refs; /* the caller's and, while it runs, the lookup thread's */
    int efd;
    char host[VG_HOST_MAX + 1];
    char port[8];
    vg_addr addrs[VG_RESOLVE_MAX];
    size_t n;
    int gai_err;
    int sys_err; /* errno, for EAI_SYSTEM */
};

/* Parses one "HOST:PORT" without resolving it. */
static vg_status parse_one(const char *s, size_t len, server *out, const char **why)
{
    vg_status st = vg_hostport_split(s, len, 1, out->host, out->port, why);
    if (st != VG_OK)
        return st;
    out->name = strndup(s, len);
    return out->name != NULL ? VG_OK : VG_ERR_NOMEM;
}

vg_status vg_servers_parse(const char *list, vg_servers **out, const char **why)
{
    vg_servers *s = calloc(1, sizeof *s);
    if (s == NULL)
        return VG_ERR_NOMEM;
    size_t n = 1;
    for (const char *p = list; *p; p++)
        n += *p == ',';
    s->v = calloc(n, sizeof *s->v);
    vg_status st = s->v != NULL ? VG_OK : VG_ERR_NOMEM;
    for (const char *p = list; st == VG_OK && *p;) {
        size_t len = strcspn(p, ",");
        if (len > 0)
            st = parse_one(p, len, &s->v[s->n++], why);
        p += len + (p[len] == ',');
    }
    if (st == VG_OK && s->n == 0) {
        *why = "empty server list";
        st = VG_ERR_ARG;
    }
    if (st != VG_OK) {
        vg_servers_destroy(s);
        return st;
    }
    *out = s;
    return VG_OK;
}

void vg_servers_destroy(vg_servers *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i].name);
    free(s->v);
    free(s);
}

size_t vg_servers_count(const vg_servers *s) { return s->n; }

const char *vg_servers_name(const vg_servers *s, size_t i) { return s->v[i].name; }

/* ---- resolution ---- */

static void release(vg_resolve *r)
{
    if (atomic_fetch_sub(&r->refs, 1) != 1)
        return;
    if (r->efd >= 0)
        close(r->efd);
    free(r);
}

static void lookup(vg_resolve *r, int flags)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV | flags};
    struct addrinfo *res = NULL;
    r->gai_err = getaddrinfo(r->host, r->port, &hints, &res);
    r->sys_err = errno;
    r->n = 0;
    for (struct addrinfo *a = res; a != NULL && r->n < VG_RESOLVE_MAX; a = a->ai_next) {
        if (a->ai_addrlen > sizeof r->addrs[0].ss)
            continue;
        memcpy(&r->addrs[r->n].ss, a->ai_addr, a->ai_addrlen);
        r->addrs[r->n++].len = a->ai_addrlen;
    }
    if (res != NULL)
        freeaddrinfo(res);
}

static void done(vg_resolve *r)
{
    uint64_t one = 1;
    ssize_t ignored = write(r->efd, &one, sizeof one);
    (void)ignored;
}

static void *lookup_main(void *arg)
{
    vg_resolve *r = arg;
    lookup(r, 0);
    done(r);
    release(r);
    return NULL;
}

vg_resolve *vg_resolve_start(const vg_servers *s, size_t i)
{
    vg_resolve *r = calloc(1, sizeof *r);
    if (r == NULL)
        return NULL;
    atomic_init(&r->refs, 1);
    r->efd = -1;
    memcpy(r->host, s->v[i].host, sizeof r->host);
    memcpy(r->port, s->v[i].port, sizeof r->port);
    lookup(r, AI_NUMERICHOST); /* an address: no lookup, no thread, no descriptor */
    if (r->gai_err != EAI_NONAME)
        return r;
    r->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (r->efd < 0)
        goto fail_free;
    pthread_attr_t attr;
    pthread_t tid;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    atomic_store(&r->refs, 2);
    int rc = pthread_create(&tid, &attr, lookup_main, r);
    pthread_attr_destroy(&attr);
    if (rc == 0)
        return r;
    close(r->efd);
fail_free:
    free(r);
    return NULL;
}

int vg_resolve_fd(const vg_resolve *r) { return r->efd; }

vg_status vg_resolve_result(const vg_resolve *r, const vg_addr **addrs, size_t *n,
                            const char **why)
{
    if (r->gai_err != 0 || r->n == 0) {
        *why = r->gai_err == EAI_SYSTEM ? strerror(r->sys_err)
               : r->gai_err != 0        ? gai_strerror(r->gai_err)
                                        : "no usable address";
        return VG_ERR_ARG;
    }
    *addrs = r->addrs;
    *n = r->n;
    return VG_OK;
}

void vg_resolve_release(vg_resolve *r)
{
    if (r != NULL)
        release(r);
}
