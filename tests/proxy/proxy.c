/* vigil-proxy: a TCP proxy that can black-hole the connections it holds.
 *
 * It forwards every accepted connection to the upstream address. On SIGUSR1
 * it stops forwarding, in both directions, on every connection it holds at
 * that moment, and closes nothing: no byte and no FIN gets through, exactly
 * what a crashed host or a dead network path looks like from either end.
 * Connections accepted afterwards are forwarded normally. Single-threaded. */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "sock.h"

#define MAX_PAIRS 1024
#define BUF 65536

typedef struct {
    int fd[2];     /* 0: client side, 1: upstream side */
    char *buf[2];  /* bytes read from fd[i], waiting to be written to fd[1-i] */
    size_t len[2];
    bool eof[2];   /* fd[i] said EOF: shut down writing on fd[1-i] once drained */
    bool holed;
    int id;
} pair;

static pair pairs[MAX_PAIRS];
static int npairs;

static void usage(FILE *f)
{
    fprintf(f, "usage: vigil-proxy --listen HOST:PORT --upstream HOST:PORT\n\n"
               "Forwards TCP connections to the upstream. On SIGUSR1, every connection held\n"
               "at that moment is black-holed: nothing more is forwarded either way and\n"
               "nothing is closed. Later connections are forwarded normally. The first\n"
               "stderr line names the bound address (event=listening addr=...).\n");
}

static void drop(int i)
{
    for (int s = 0; s < 2; s++) {
        close(pairs[i].fd[s]);
        free(pairs[i].buf[s]);
    }
    pairs[i] = pairs[--npairs];
}

/* Moves bytes for one direction; returns false when the pair is finished. */
static bool pump(pair *p, int from, short revents_from)
{
    int to = 1 - from;
    if ((revents_from & (POLLIN | POLLHUP | POLLERR)) && p->len[from] == 0 && !p->eof[from]) {
        ssize_t n = recv(p->fd[from], p->buf[from], BUF, 0);
        if (n > 0)
            p->len[from] = (size_t)n;
        else if (n == 0 || (errno != EAGAIN && errno != EINTR))
            p->eof[from] = true;
    }
    if (p->len[from] > 0) { /* non-blocking: EAGAIN just leaves it for POLLOUT */
        ssize_t n = send(p->fd[to], p->buf[from], p->len[from], MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            memmove(p->buf[from], p->buf[from] + n, p->len[from] - (size_t)n);
            p->len[from] -= (size_t)n;
        } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
            return false;
        }
    }
    if (p->eof[from] && p->len[from] == 0)
        shutdown(p->fd[to], SHUT_WR);
    return !(p->eof[0] && p->eof[1] && p->len[0] == 0 && p->len[1] == 0);
}

static void accept_one(int lfd, const vg_addr *upstream, int *next_id)
{
    int cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (cfd < 0)
        return;
    int ufd;
    vg_status st = vg_connect_start(upstream, &ufd);
    if (st == VG_AGAIN) { /* loopback: wait briefly for the connect to finish */
        struct pollfd p = {.fd = ufd, .events = POLLOUT};
        st = poll(&p, 1, 2000) == 1 ? vg_connect_finish(ufd) : VG_ERR_IO;
        if (st != VG_OK)
            close(ufd);
    }
    if (st != VG_OK || npairs == MAX_PAIRS) {
        vg_log(VG_LOG_WARN, "upstream_failed", "error=\"%s\"", strerror(errno));
        close(cfd);
        if (st == VG_OK)
            close(ufd);
        return;
    }
    vg_sock_tune(cfd);
    pair *p = &pairs[npairs++];
    *p = (pair){.fd = {cfd, ufd}, .id = ++*next_id};
    p->buf[0] = malloc(BUF);
    p->buf[1] = malloc(BUF);
    if (p->buf[0] == NULL || p->buf[1] == NULL) {
        drop(npairs - 1);
        return;
    }
    vg_log(VG_LOG_INFO, "forwarding", "conn=%d", p->id);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"listen", required_argument, NULL, 'l'},
        {"upstream", required_argument, NULL, 'u'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    vg_addr listen_at, upstream;
    bool have_listen = false, have_upstream = false;
    const char *why;
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (o == 'h') {
            usage(stdout);
            return 0;
        } else if (o == 'l' && vg_addr_parse(optarg, &listen_at, &why) == VG_OK) {
            have_listen = true;
        } else if (o == 'u' && vg_addr_parse(optarg, &upstream, &why) == VG_OK) {
            have_upstream = true;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (!have_listen || !have_upstream) {
        usage(stderr);
        return 2;
    }

    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGUSR1);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigprocmask(SIG_BLOCK, &sigs, NULL);
    int sfd = signalfd(-1, &sigs, SFD_CLOEXEC);
    int lfd;
    if (sfd < 0 || vg_listen(&listen_at, 128, &lfd) != VG_OK) {
        vg_log(VG_LOG_ERROR, "listen_failed", "error=\"%s\"", strerror(errno));
        return 1;
    }
    char name[VG_ADDR_STRLEN];
    vg_log(VG_LOG_INFO, "listening", "addr=%s", vg_sock_name(lfd, 0, name));

    int next_id = 0;
    static struct pollfd fds[2 + 2 * MAX_PAIRS];
    for (;;) {
        int nfds = 0;
        fds[nfds++] = (struct pollfd){.fd = sfd, .events = POLLIN};
        fds[nfds++] = (struct pollfd){.fd = lfd, .events = POLLIN};
        for (int i = 0; i < npairs; i++) {
            for (int s = 0; s < 2; s++) {
                short ev = 0;
                if (!pairs[i].holed) {
                    ev |= pairs[i].len[s] == 0 && !pairs[i].eof[s] ? POLLIN : 0;
                    ev |= pairs[i].len[1 - s] > 0 ? POLLOUT : 0;
                }
                fds[nfds++] = (struct pollfd){.fd = ev ? pairs[i].fd[s] : -1, .events = ev};
            }
        }
        if (poll(fds, (nfds_t)nfds, -1) < 0 && errno != EINTR)
            return 1;
        if (fds[0].revents & POLLIN) {
            struct signalfd_siginfo si;
            if (read(sfd, &si, sizeof si) == sizeof si && si.ssi_signo == SIGUSR1) {
                for (int i = 0; i < npairs; i++)
                    pairs[i].holed = true;
                vg_log(VG_LOG_INFO, "blackholed", "connections=%d", npairs);
            } else {
                return 0;
            }
        }
        /* Pairs first: their pollfd slots are positional. */
        for (int i = npairs - 1; i >= 0; i--) {
            if (pairs[i].holed)
                continue;
            short r0 = fds[2 + 2 * i].revents, r1 = fds[3 + 2 * i].revents;
            if (!(r0 | r1))
                continue;
            if (!pump(&pairs[i], 0, r0) || !pump(&pairs[i], 1, r1)) {
                vg_log(VG_LOG_INFO, "closed", "conn=%d", pairs[i].id);
                drop(i);
            }
        }
        if (fds[1].revents & POLLIN)
            accept_one(lfd, &upstream, &next_id);
    }
}
