/* A scripted getaddrinfo for the client suites that test name resolution.
 *
 * fake_resolver.c defines getaddrinfo and freeaddrinfo: linked into an
 * executable, its definitions win over libc's (and ASan's) for every test
 * in it, so link it only into the suites that need it. Names under .test
 * are ours:
 *   moving.test  the first lookup gives 127.0.0.1:dead_port (nothing
 *                there), every later one 127.0.0.1:port
 *   dual.test    every lookup gives [::1]:port (nothing there: the fake
 *                broker listens on 127.0.0.1 only) then 127.0.0.1:port
 *   hang.test    blocks until gai_release (at most 30 s), then fails
 * Any other name goes to the real getaddrinfo. A lookup runs in the
 * client's helper thread: nothing in fake_resolver.c asserts. */
#ifndef VG_FAKE_RESOLVER_H
#define VG_FAKE_RESOLVER_H

#include <stdbool.h>

/* Where our names point; call before the client starts. */
void gai_set_ports(int port, int dead_port);
/* Lookups of our names so far (numeric-only ones not counted). */
int gai_calls(void);
/* Waits up to timeout_ms until a lookup hangs in hang.test; true if one does. */
bool gai_wait_hanging(int timeout_ms);
/* Releases hang.test and waits up to timeout_ms for the lookups to return,
 * so that an abandoned helper thread has freed what it had before the
 * test ends; false if they did not. */
bool gai_release(int timeout_ms);

#endif
