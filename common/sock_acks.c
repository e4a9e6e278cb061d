/* The peer's acknowledgements of our data, from TCP_INFO. In its own file
 * because glibc's <netinet/tcp.h> predates tcpi_bytes_acked (Linux 4.2) and
 * cannot be included together with <linux/tcp.h>. */
#include <linux/tcp.h>
#include <netinet/in.h>
#include <stddef.h>
#include <sys/socket.h>

#include "sock.h"

/* Whether the kernel filled the field ending at end (older kernels copy a
 * shorter struct). */
static bool has(socklen_t len, size_t end) { return len >= end; }

vg_status vg_sock_acks(int fd, vg_sock_acked *out)
{
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0)
        return VG_ERR_IO;
    if (!has(len, offsetof(struct tcp_info, tcpi_bytes_acked) + sizeof ti.tcpi_bytes_acked))
        return VG_ERR_IO; /* a kernel older than 4.2 */
    out->bytes = ti.tcpi_bytes_acked;
    out->window_known = has(len, offsetof(struct tcp_info, tcpi_snd_wnd) + sizeof ti.tcpi_snd_wnd);
    out->window = out->window_known ? ti.tcpi_snd_wnd : 0;
    return VG_OK;
}
