/* A dead network path on demand: two network namespaces joined by a veth
 * pair, and nftables rules that silently drop everything crossing it.
 *
 * A userspace proxy cannot fake this, because its kernel still ACKs. Here
 * the path dies the way real ones do: segments leave the sender's kernel
 * and vanish, with no ACK, no RST and no ICMP, while the sender's TCP goes on
 * retransmitting and its send buffer goes on filling.
 *
 * One pair per test process (Criterion runs each test in its own worker), so
 * parallel workers never collide:
 *
 *   namespace      vgt<pid>a                  vgt<pid>b
 *   device         vgt0   <---- veth ---->    vgt0
 *   address        10.x.y.(4k+1)/30           10.x.y.(4k+2)/30
 *
 * the /30 numbered by the pid's low 22 bits. Every command run here has a
 * deadline. Needs root, `ip` (iproute2) and `nft` (nftables); without them
 * h_netns_up skips the test, saying exactly why. */
#ifndef VG_NETNS_H
#define VG_NETNS_H

#include <stdbool.h>

#include "harness.h"

enum { H_NS_A, H_NS_B };

/* The start of every skip message of h_netns_up. */
#define H_NETNS_SKIP "netns: "
/* The exit status of h_netns_main when tests were skipped and none failed:
 * ctest's SKIP_RETURN_CODE for the test, so that a run without root says
 * "Skipped" rather than "Passed". */
#define H_NETNS_SKIPPED_EXIT 77

typedef struct {
    char name[2][24]; /* the namespaces: vgt<pid>a, vgt<pid>b */
    char addr[2][16]; /* their veth addresses, no prefix length */
    bool cut;         /* the drop rules are in place */
} h_netns;

/* Creates this process's pair, first deleting stale vgt* namespaces left by
 * test processes that no longer exist. Skips the test (cr_skip_test) if it
 * cannot: not root, `ip` or `nft` missing, or the kernel refuses a
 * namespace, a veth pair or an nftables table. Returns the pair, owned by
 * this module: release it with h_netns_down. */
h_netns *h_netns_up(void);

/* Deletes the pair if there is one; safe to call at any time and more than
 * once, so it can be a test's .fini (which Criterion runs after a failed
 * assertion). Processes still inside die with the test worker
 * (PR_SET_PDEATHSIG), and the kernel frees the namespaces then. */
void h_netns_down(void);

/* Starts argv (NULL-terminated, argv[0] a path) inside namespace side
 * through `ip netns exec`, which execs it: the h_proc's pid is the program's. */
h_proc *h_netns_spawn(const h_netns *n, int side, const char *name, const char *const argv[]);

/* Starts a broker in namespace A on its veth address, port 0, with
 * --allow-unauthenticated and the extra arguments (NULL-terminated), and
 * waits for event=listening; *port receives the port. */
h_proc *h_netns_broker(const h_netns *n, int *port, ...);

/* Starts "sub --server <A's address>:port [extra...] TOPIC..." in namespace
 * side and waits until every topic is acknowledged (event=subscribed); as
 * h_sub, options before the topics. */
h_proc *h_netns_sub(const h_netns *n, int side, int port, ...);

/* Starts "pub --server <A's address>:port args..." in namespace side
 * without waiting for it. */
h_proc *h_netns_pub_start(const h_netns *n, int side, int port, ...);

/* Kills the path: in each namespace, a rule dropping every packet that
 * arrives on the veth. Each direction thus dies at its receiving end, after
 * the "wire": the sender's TCP believes it transmitted and retransmits into
 * the void, as on a real dead path. (Dropping in the output hook instead
 * would hand the sender's TCP a local error, so its data would stay unsent
 * in the queue: a different failure.) ARP is not IP and still passes, so
 * no neighbour entry fails and no EHOSTUNREACH reaches the sockets.
 * Asserts that both rules went in. */
void h_netns_cut(h_netns *n);

/* Removes the drop rules: the path works again. */
void h_netns_restore(h_netns *n);

/* A main for a Criterion test binary that uses h_netns_up: runs the tests
 * as Criterion's own main does, prints how many h_netns_up skipped and why,
 * and returns H_NETNS_SKIPPED_EXIT if some were and none failed. */
int h_netns_main(int argc, char *argv[]);

#endif
