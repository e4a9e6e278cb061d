/* systemd's readiness protocol without libsystemd (broker/notify.c): the
 * address $NOTIFY_SOCKET names (a path, @abstract, and what is refused),
 * and a datagram really sent to a bound socket of each kind. */
#include <criterion/criterion.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "notify.h"

Test(notify, addresses_are_paths_or_abstract_names_that_fit)
{
    struct sockaddr_un sa;
    socklen_t len;
    cr_assert(vg_notify_addr("/run/systemd/notify", &sa, &len));
    cr_assert_str_eq(sa.sun_path, "/run/systemd/notify");
    cr_assert_eq(len, offsetof(struct sockaddr_un, sun_path) + strlen("/run/systemd/notify"));
    cr_assert(vg_notify_addr("@vigil/x", &sa, &len));
    cr_assert_eq(sa.sun_path[0], '\0', "abstract: a leading NUL");
    cr_assert_eq(memcmp(sa.sun_path + 1, "vigil/x", 7), 0);
    cr_assert_eq(len, offsetof(struct sockaddr_un, sun_path) + 8);
    const char *bad[] = {"", "/", "@", "relative/path", "vsock:2:1234", NULL};
    for (int i = 0; bad[i] != NULL; i++)
        cr_assert_not(vg_notify_addr(bad[i], &sa, &len), "'%s' taken", bad[i]);
    cr_assert_not(vg_notify_addr(NULL, &sa, &len));
    char longest[sizeof sa.sun_path + 1];
    memset(longest, 'a', sizeof longest - 1);
    longest[0] = '/';
    longest[sizeof longest - 1] = '\0';
    cr_assert_not(vg_notify_addr(longest, &sa, &len), "a path that does not fit");
    longest[sizeof sa.sun_path - 1] = '\0';
    cr_assert(vg_notify_addr(longest, &sa, &len), "the longest that fits");
}

/* A datagram socket bound at name (as NOTIFY_SOCKET says it). */
static int bound(const char *name)
{
    struct sockaddr_un sa;
    socklen_t len;
    cr_assert(vg_notify_addr(name, &sa, &len));
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    cr_assert(fd >= 0);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, len), 0, "bind %s", name);
    return fd;
}

static void expect(int fd, const char *want)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    cr_assert_eq(poll(&p, 1, 5000), 1, "waiting for '%s'", want);
    char got[256];
    ssize_t n = recv(fd, got, sizeof got - 1, 0);
    cr_assert(n >= 0);
    got[n] = '\0';
    cr_assert_str_eq(got, want);
}

Test(notify, a_datagram_reaches_a_path_and_an_abstract_socket)
{
    char dir[] = "/tmp/vigil-notify-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof path, "%s/notify", dir);
    int fd = bound(path);
    setenv("NOTIFY_SOCKET", path, 1);
    cr_assert_eq(vg_notify("READY=1\nSTATUS=listening"), VG_OK);
    expect(fd, "READY=1\nSTATUS=listening");
    close(fd);
    unlink(path);
    rmdir(dir);

    char abstract[64];
    snprintf(abstract, sizeof abstract, "@vigil-test-notify-%d", (int)getpid());
    fd = bound(abstract);
    setenv("NOTIFY_SOCKET", abstract, 1);
    cr_assert_eq(vg_notify("STOPPING=1"), VG_OK);
    expect(fd, "STOPPING=1");
    close(fd);
    /* Nobody bound there any more: the send fails, and says so. */
    cr_assert_eq(vg_notify("READY=1"), VG_ERR_IO);
    setenv("NOTIFY_SOCKET", "relative", 1);
    cr_assert_eq(vg_notify("READY=1"), VG_ERR_ARG);
    unsetenv("NOTIFY_SOCKET");
    cr_assert_eq(vg_notify("READY=1"), VG_OK, "not under systemd: nothing to do");
}
