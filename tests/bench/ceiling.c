#include "ceiling.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CHUNK 65536

typedef struct {
    int fd;
    size_t frame;
    uint64_t frames;
} pump_args;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Writes whole 64 KiB chunks of back-to-back length-prefixed frames. */
static void *writer(void *arg)
{
    pump_args *a = arg;
    uint8_t *buf = malloc(CHUNK + a->frame);
    size_t per = CHUNK / a->frame, len = per * a->frame;
    for (size_t i = 0; i < per; i++) {
        uint32_t body = htonl((uint32_t)(a->frame - 4));
        memcpy(buf + i * a->frame, &body, 4);
        memset(buf + i * a->frame + 4, 'x', a->frame - 4);
    }
    for (uint64_t sent = 0; sent < a->frames; sent += per) {
        for (size_t off = 0; off < len;) {
            ssize_t w = write(a->fd, buf + off, len - off);
            if (w <= 0)
                goto out;
            off += (size_t)w;
        }
    }
out:
    free(buf);
    shutdown(a->fd, SHUT_WR);
    return NULL;
}

int bench_ceiling(size_t frame_size, uint64_t frames)
{
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    if (bind(l, (struct sockaddr *)&a, sizeof a) != 0 || listen(l, 1) != 0 ||
        getsockname(l, (struct sockaddr *)&a, &alen) != 0)
        return 1;
    int w = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(w, (struct sockaddr *)&a, sizeof a) != 0)
        return 1;
    int r = accept(l, NULL, NULL);
    pump_args args = {w, frame_size, frames};
    pthread_t t;
    double t0 = now_s();
    pthread_create(&t, NULL, writer, &args);

    /* The reader walks the length prefixes, as a receiver must. */
    uint8_t *buf = malloc(CHUNK);
    uint64_t got = 0;
    size_t skip = 0; /* bytes left of the current frame */
    uint8_t hdr[4];
    size_t have_hdr = 0;
    for (;;) {
        ssize_t n = read(r, buf, CHUNK);
        if (n <= 0)
            break;
        for (size_t i = 0; i < (size_t)n;) {
            if (skip > 0) {
                size_t k = skip < (size_t)n - i ? skip : (size_t)n - i;
                skip -= k;
                i += k;
                if (skip == 0)
                    got++;
                continue;
            }
            hdr[have_hdr++] = buf[i++];
            if (have_hdr == 4) {
                uint32_t body;
                memcpy(&body, hdr, 4);
                skip = ntohl(body);
                have_hdr = 0;
            }
        }
    }
    double secs = now_s() - t0;
    pthread_join(t, NULL);
    printf("system=loopback mode=ceiling size=%zu frames=%llu rate=%.0f mb_s=%.1f secs=%.2f\n",
           frame_size, (unsigned long long)got, (double)got / secs,
           (double)got * (double)frame_size / secs / 1e6, secs);
    free(buf);
    close(r);
    close(w);
    close(l);
    return 0;
}
