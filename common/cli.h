/* Command-line options shared by the programs: the keep-alive knobs (broker,
 * pub, sub) and the client options (pub, sub). */
#ifndef VG_CLI_H
#define VG_CLI_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>

#include "client.h"
#include "liveness.h"

enum {
    VG_OPT_KEEPALIVE_TIME = 0x100,
    VG_OPT_KEEPALIVE_INTERVAL,
    VG_OPT_KEEPALIVE_PROBES,
    VG_OPT_LOG_LEVEL,
    VG_OPT_HELP,
    VG_OPT_VERSION,
    VG_OPT_SERVER, /* client options from here */
    VG_OPT_NAME,
    VG_OPT_BUFFER,
    VG_OPT_BACKOFF_BASE,
    VG_OPT_BACKOFF_MAX,
    VG_OPT_MAX_RECONNECTS,
    VG_OPT_TOKEN_FILE,
    VG_OPT_FIRST_OWN, /* a program's own options start here */
};

#define VG_CLI_MAX_OPTIONS 40

/* Copies own (terminated by a zeroed entry), then the common options, then,
 * if with_client, the client options into out (VG_CLI_MAX_OPTIONS entries). */
void vg_cli_merge(struct option *out, const struct option *own, bool with_client);

/* Applies a common option (keep-alive, --log-level, --help, --version); false
 * if opt is not one. Exits 0 for --help (after help()) and --version, 2 for
 * a bad value. */
bool vg_cli_common_option(int opt, const char *arg, vg_keepalive *k, const char *prog,
                          const char *usage, void (*help)(void));

/* Applies a client option; false if opt is not one. */
bool vg_cli_client_option(int opt, const char *arg, vg_client_opts *o, const char *prog,
                          const char *usage);

/* Checks the keep-alive settings as a whole; exits 2 if inconsistent. */
void vg_cli_check_keepalive(const vg_keepalive *k, const char *prog, const char *usage);

/* Help lines for the common options, with the default detection bound. */
void vg_cli_common_help(void);

/* Help lines for the client options. */
void vg_cli_client_help(void);

#endif
