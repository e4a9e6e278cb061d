#include "sock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

vg_status vg_hostport_split(const char *s, size_t len, unsigned min_port, char *host, char *port,
                            const char **why)
{
    const char *colon = NULL;
    for (size_t i = len; i > 0 && colon == NULL; i--)
        if (s[i - 1] == ':')
            colon = s + i - 1;
    if (colon == NULL) {
        *why = "expected HOST:PORT";
        return VG_ERR_ARG;
    }
    const char *h = s;
    size_t hlen = (size_t)(colon - s);
    if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']') {
        h++;
        hlen -= 2;
    }
    if (hlen == 0 || hlen > VG_HOST_MAX) {
        *why = "missing or overlong host";
        return VG_ERR_ARG;
    }
    const char *p = colon + 1;
    size_t plen = len - (size_t)(p - s);
    unsigned long n = 0;
    for (size_t i = 0; i < plen && n <= 65535; i++)
        n = p[i] >= '0' && p[i] <= '9' ? n * 10 + (unsigned long)(p[i] - '0') : 65536;
    if (plen == 0 || plen > 5 || n < min_port || n > 65535) {
        *why = min_port == 0 ? "port must be a number from 0 to 65535"
                             : "port must be a number from 1 to 65535";
        return VG_ERR_ARG;
    }
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    memcpy(port, p, plen);
    port[plen] = '\0';
    return VG_OK;
}

vg_status vg_addr_parse(const char *hostport, vg_addr *out, const char **why)
{
    static const char *unused;
    if (why == NULL)
        why = &unused;
    char host[VG_HOST_MAX + 1], port[8];
    vg_status st = vg_hostport_split(hostport, strlen(hostport), 0, host, port, why);
    if (st != VG_OK)
        return st;

    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    if (getaddrinfo(host, port, &hints, &res) != 0 || res == NULL) {
        *why = "cannot resolve host";
        return VG_ERR_ARG;
    }
    memcpy(&out->ss, res->ai_addr, res->ai_addrlen);
    out->len = res->ai_addrlen;
    freeaddrinfo(res);
    return VG_OK;
}

const char *vg_addr_format(const vg_addr *a, char *buf)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (a->ss.ss_family == AF_INET) {
        const struct sockaddr_in *s = (const struct sockaddr_in *)&a->ss;
        inet_ntop(AF_INET, &s->sin_addr, ip, sizeof ip);
        port = ntohs(s->sin_port);
        snprintf(buf, VG_ADDR_STRLEN, "%s:%u", ip, port);
    } else if (a->ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)&a->ss;
        inet_ntop(AF_INET6, &s->sin6_addr, ip, sizeof ip);
        port = ntohs(s->sin6_port);
        snprintf(buf, VG_ADDR_STRLEN, "[%s]:%u", ip, port);
    } else {
        snprintf(buf, VG_ADDR_STRLEN, "unknown");
    }
    return buf;
}

const char *vg_sock_name(int fd, int want_peer, char *buf)
{
    vg_addr a = {.len = sizeof a.ss};
    int rc = want_peer ? getpeername(fd, (struct sockaddr *)&a.ss, &a.len)
                       : getsockname(fd, (struct sockaddr *)&a.ss, &a.len);
    if (rc != 0) {
        snprintf(buf, VG_ADDR_STRLEN, "unknown");
        return buf;
    }
    return vg_addr_format(&a, buf);
}

bool vg_addr_is_loopback(const vg_addr *a)
{
    if (a->ss.ss_family == AF_INET) {
        const struct sockaddr_in *s = (const struct sockaddr_in *)&a->ss;
        return (ntohl(s->sin_addr.s_addr) >> 24) == 127;
    }
    if (a->ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)&a->ss;
        if (IN6_IS_ADDR_V4MAPPED(&s->sin6_addr))
            return s->sin6_addr.s6_addr[12] == 127;
        return IN6_IS_ADDR_LOOPBACK(&s->sin6_addr);
    }
    return false;
}

vg_status vg_listen(const vg_addr *a, int backlog, int *fd_out)
{
    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return VG_ERR_IO;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (const struct sockaddr *)&a->ss, a->len) != 0 || listen(fd, backlog) != 0)
        goto fail_close;
    *fd_out = fd;
    return VG_OK;

fail_close:;
    int saved = errno;
    close(fd);
    errno = saved;
    return VG_ERR_IO;
}

void vg_sock_tune(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0 && !(fl & O_NONBLOCK))
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

vg_status vg_connect_start(const vg_addr *a, int *fd_out)
{
    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return VG_ERR_IO;
    vg_sock_tune(fd);
    *fd_out = fd;
    if (connect(fd, (const struct sockaddr *)&a->ss, a->len) == 0)
        return VG_OK;
    if (errno == EINPROGRESS)
        return VG_AGAIN;
    int saved = errno;
    close(fd);
    *fd_out = -1;
    errno = saved;
    return VG_ERR_IO;
}

vg_status vg_connect_finish(int fd)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        return VG_ERR_IO;
    if (err != 0) {
        errno = err;
        return VG_ERR_IO;
    }
    return VG_OK;
}

void vg_sock_keepalive(int fd, int64_t idle_ms, int64_t interval_ms, int count,
                       int64_t user_timeout_ms)
{
    if (idle_ms > 0 && interval_ms > 0 && count > 0) {
        int one = 1;
        int idle = (int)((idle_ms + 999) / 1000);
        int intvl = (int)((interval_ms + 999) / 1000);
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count);
    }
    if (user_timeout_ms > 0) {
        unsigned int ut = user_timeout_ms > 0x7fffffff ? 0x7fffffffu : (unsigned int)user_timeout_ms;
        setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ut, sizeof ut);
    }
}
