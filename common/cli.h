/* Command-line options shared by the programs: the keep-alive knobs (broker,
 * pub, sub; cli.c) and the client options (pub, sub; cli_client.c, which
 * applies them through the public API, vigil/vigil.h). */
#ifndef VG_CLI_H
#define VG_CLI_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>

#include "liveness.h"
#include "vigil/vigil.h"

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

/* Checks the keep-alive settings as a whole; exits 2 if inconsistent. */
void vg_cli_check_keepalive(const vg_keepalive *k, const char *prog, const char *usage);

/* Help lines for the common options, with the default detection bound. */
void vg_cli_common_help(void);

/* The client options being parsed into opts; the keep-alive ones (common
 * options) land in keepalive until vg_cli_client_finish applies them. */
typedef struct {
    vigil_options *opts;
    vg_keepalive keepalive;
    int64_t backoff_base_ms, backoff_max_ms;
} vg_cli_client;

/* Creates cc->opts with the library's defaults and name (the program's);
 * false, logged, if out of memory. The caller destroys cc->opts. */
bool vg_cli_client_init(vg_cli_client *cc, const char *name);

/* Applies a client option; false if opt is not one. Exits 2 for a bad value. */
bool vg_cli_client_option(int opt, const char *arg, vg_cli_client *cc, const char *prog,
                          const char *usage);

/* After the last option: checks and applies the keep-alive and backoff
 * settings, and sends the library's log lines to stderr at --log-level.
 * Exits 2 if they are inconsistent. */
void vg_cli_client_finish(vg_cli_client *cc, const char *prog, const char *usage);

/* Help lines for the client options. */
void vg_cli_client_help(void);

#endif
