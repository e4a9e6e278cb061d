/* Command-line options shared by pub and sub (the client programs). */
#ifndef VG_CLI_H
#define VG_CLI_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>

#include "client.h"

enum { VG_OPT_SERVER = 0x100, VG_OPT_NAME, VG_OPT_LOG_LEVEL, VG_OPT_BUFFER, VG_OPT_HELP,
       VG_OPT_VERSION, VG_OPT_FIRST_OWN };

/* Copies own (terminated by a zeroed entry) followed by the shared client
 * options into out, which must hold 32 entries. */
void vg_cli_merge(struct option *out, const struct option *own);

/* Applies a shared option; false if opt is not one. Exits 0 for --help
 * (after help()), --version, and 2 for a bad value. */
bool vg_cli_client_option(int opt, const char *arg, vg_client_opts *o, const char *prog,
                          const char *usage, void (*help)(void));

/* The help lines of the shared options. */
void vg_cli_client_help(void);

#endif
