/* The scripted getaddrinfo of fake_resolver.h: our names answered from
 * addrinfo lists allocated here (and freed by our freeaddrinfo), every
 * other call passed to the next definition (libc's, or ASan's). */
#include "fake_resolver.h"

#include <dlfcn.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "fake_broker.h"

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int calls;    /* lookups of our names (numeric-only ones not counted) */
    int port, dead_port;
    int hanging;  /* lookups blocked in hang.test now */
    int inflight; /* lookups of our names not yet returned */
    bool released;
    struct addrinfo *ours[64]; /* results we allocated, for freeaddrinfo */
} gai = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

typedef int (*getaddrinfo_fn)(const char *, const char *, const struct addrinfo *,
                              struct addrinfo **);
typedef void (*freeaddrinfo_fn)(struct addrinfo *);

static getaddrinfo_fn real_getaddrinfo(void)
{
    static _Atomic(getaddrinfo_fn) fn;
    getaddrinfo_fn f = atomic_load(&fn);
    if (f == NULL) {
        f = (getaddrinfo_fn)dlsym(RTLD_NEXT, "getaddrinfo");
        atomic_store(&fn, f);
    }
    return f;
}

static freeaddrinfo_fn real_freeaddrinfo(void)
{
    static _Atomic(freeaddrinfo_fn) fn;
    freeaddrinfo_fn f = atomic_load(&fn);
    if (f == NULL) {
        f = (freeaddrinfo_fn)dlsym(RTLD_NEXT, "freeaddrinfo");
        atomic_store(&fn, f);
    }
    return f;
}

typedef struct {
    struct addrinfo ai;
    struct sockaddr_storage ss;
} fake_ai;

static struct addrinfo *make_ai(int family, int port, struct addrinfo *next)
{
    fake_ai *f = calloc(1, sizeof *f);
    if (f == NULL)
        return next;
    f->ai.ai_family = family;
    f->ai.ai_socktype = SOCK_STREAM;
    f->ai.ai_protocol = IPPROTO_TCP;
    f->ai.ai_addr = (struct sockaddr *)&f->ss;
    f->ai.ai_next = next;
    if (family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&f->ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        f->ai.ai_addrlen = sizeof *a;
    } else {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&f->ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        a->sin6_addr = in6addr_loopback;
        f->ai.ai_addrlen = sizeof *a;
    }
    return &f->ai;
}

static int fake_lookup(const char *node, struct addrinfo **res)
{
    pthread_mutex_lock(&gai.mu);
    int call = ++gai.calls;
    gai.inflight++;
    int port = gai.port, dead = gai.dead_port;
    if (strcmp(node, "hang.test") == 0) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 30;
        gai.hanging++;
        pthread_cond_broadcast(&gai.cv);
        while (!gai.released && pthread_cond_timedwait(&gai.cv, &gai.mu, &until) == 0)
            ;
        gai.hanging--;
        gai.inflight--;
        pthread_cond_broadcast(&gai.cv);
        pthread_mutex_unlock(&gai.mu);
        return EAI_AGAIN;
    }
    struct addrinfo *r = NULL;
    if (strcmp(node, "moving.test") == 0)
        r = make_ai(AF_INET, call == 1 ? dead : port, NULL);
    else /* dual.test */
        r = make_ai(AF_INET6, port, make_ai(AF_INET, port, NULL));
    for (size_t i = 0; i < sizeof gai.ours / sizeof gai.ours[0]; i++) {
        if (gai.ours[i] == NULL) {
            gai.ours[i] = r;
            break;
        }
    }
    gai.inflight--;
    pthread_cond_broadcast(&gai.cv);
    pthread_mutex_unlock(&gai.mu);
    *res = r;
    return r != NULL ? 0 : EAI_MEMORY;
}

static bool our_name(const char *node)
{
    return node != NULL && (strcmp(node, "moving.test") == 0 || strcmp(node, "dual.test") == 0 ||
                            strcmp(node, "hang.test") == 0);
}

/* Our names answered as fake_resolver.h says; any other passed on. */
int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res)
{
    if (!our_name(node))
        return real_getaddrinfo()(node, service, hints, res);
    if (hints != NULL && (hints->ai_flags & AI_NUMERICHOST))
        return EAI_NONAME; /* a name, not an address */
    return fake_lookup(node, res);
}

/* Frees a list fake_lookup made; any other passed on. */
void freeaddrinfo(struct addrinfo *res)
{
    bool ours = false;
    pthread_mutex_lock(&gai.mu);
    for (size_t i = 0; i < sizeof gai.ours / sizeof gai.ours[0] && !ours; i++) {
        if (res != NULL && gai.ours[i] == res) {
            gai.ours[i] = NULL;
            ours = true;
        }
    }
    pthread_mutex_unlock(&gai.mu);
    if (!ours) {
        real_freeaddrinfo()(res);
        return;
    }
    while (res != NULL) {
        struct addrinfo *next = res->ai_next;
        free(res); /* the fake_ai starts with it */
        res = next;
    }
}

void gai_set_ports(int port, int dead_port)
{
    pthread_mutex_lock(&gai.mu);
    gai.port = port;
    gai.dead_port = dead_port;
    pthread_mutex_unlock(&gai.mu);
}

int gai_calls(void)
{
    pthread_mutex_lock(&gai.mu);
    int n = gai.calls;
    pthread_mutex_unlock(&gai.mu);
    return n;
}

bool gai_wait_hanging(int timeout_ms)
{
    int64_t deadline = fb_now() + timeout_ms;
    pthread_mutex_lock(&gai.mu);
    while (gai.hanging == 0 && fb_now() < deadline) {
        pthread_mutex_unlock(&gai.mu);
        fb_sleep(5);
        pthread_mutex_lock(&gai.mu);
    }
    bool hanging = gai.hanging > 0;
    pthread_mutex_unlock(&gai.mu);
    return hanging;
}

bool gai_release(int timeout_ms)
{
    pthread_mutex_lock(&gai.mu);
    gai.released = true;
    pthread_cond_broadcast(&gai.cv);
    pthread_mutex_unlock(&gai.mu);
    int64_t deadline = fb_now() + timeout_ms;
    for (;;) {
        pthread_mutex_lock(&gai.mu);
        int n = gai.inflight;
        pthread_mutex_unlock(&gai.mu);
        if (n == 0)
            break;
        if (fb_now() >= deadline)
            return false;
        fb_sleep(5);
    }
    fb_sleep(50); /* the helper frees its state just after the lookup returns */
    return true;
}
