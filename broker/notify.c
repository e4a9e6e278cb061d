#include "notify.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

bool vg_notify_addr(const char *name, struct sockaddr_un *sa, socklen_t *len)
{
    size_t n = name != NULL ? strlen(name) : 0;
    if (n < 2 || (name[0] != '/' && name[0] != '@') || n >= sizeof sa->sun_path)
        return false;
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    memcpy(sa->sun_path, name, n);
    if (name[0] == '@')
        sa->sun_path[0] = '\0'; /* abstract: the length says where the name ends */
    *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    return true;
}

vg_status vg_notify(const char *state)
{
    const char *name = getenv("NOTIFY_SOCKET");
    if (name == NULL)
        return VG_OK;
    struct sockaddr_un sa;
    socklen_t len;
    if (!vg_notify_addr(name, &sa, &len))
        return VG_ERR_ARG;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return VG_ERR_IO;
    ssize_t sent = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa, len);
    int err = errno;
    close(fd);
    errno = err;
    return sent == (ssize_t)strlen(state) ? VG_OK : VG_ERR_IO;
}
