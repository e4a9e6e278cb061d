/* The broker's configuration at start and on SIGHUP: the command line, the
 * configuration file (--config, options.h for its keys), the auth token,
 * the check-only mode and the reload (docs/operations.md, "Configuration
 * file" and "Reloading"). Precedence: defaults, then the file, then the
 * flags, whatever their order on the command line; a reload builds the
 * settings again the same way, so flags still win. */
#ifndef VG_CONFIG_H
#define VG_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "options.h"
#include "server.h"
#include "sock.h"

typedef struct {
    size_t option; /* index in the option table (options.h) */
    const char *arg; /* argv's; "true" for a flag without argument */
} vg_cmdline_flag;

typedef struct {
    const char *file;       /* --config FILE, or NULL */
    bool check;             /* --check-config, -t */
    vg_cmdline_flag *flags; /* the options given, in order; malloc'd */
    size_t nflags;
} vg_cmdline;

/* Why a configuration was refused, as key=value pairs for a log line
 * ("at=FILE:LINE key=K error=...", "reason=... error=..."), or, for a bad
 * flag (flag set), a message for vg_usage_error. */
typedef struct {
    bool flag;
    char text[640];
} vg_config_error;

/* Parses argv against the option table. --help calls help() and exits 0,
 * --version prints and exits 0; an unknown option or a stray argument exits
 * 2 (vg_usage_error). Values are checked by vg_config_build, not here. */
void vg_cmdline_parse(vg_cmdline *cl, int argc, char **argv, const char *usage,
                      void (*help)(void));

void vg_cmdline_free(vg_cmdline *cl);

/* Fills s (which the caller frees with vg_opts_free, also on failure):
 * defaults, cl->file's settings if there is one, then cl's flags, then the
 * whole-settings checks. false with *e on the first problem. */
bool vg_config_build(const vg_cmdline *cl, vg_broker_settings *s, vg_config_error *e);

/* Loads the token (s->token_file, else $VIGIL_AUTH_TOKEN) and applies
 * protected mode to the address listen: refuses to serve beyond loopback
 * without a token unless s->allow_unauth, and to the monitor's address
 * (it has no authentication: beyond loopback only with allow_unauth). On true *token is malloc'd or NULL
 * (no authentication); false with *e. */
bool vg_config_auth(const vg_broker_settings *s, const vg_addr *listen, char **token,
                    vg_config_error *e);

/* What a reload needs; lives as long as the server. */
typedef struct {
    const vg_cmdline *cl;
    vg_broker_settings *running; /* what is in force (non-reloadable values as at start) */
    size_t connection_room;      /* max-connections is lowered to this (main.c) */
} vg_reload_ctx;

/* vg_server_hup_fn (ud: a vg_reload_ctx): re-reads the file and the token
 * file and applies what can change while running, all or nothing; logs each
 * changed value (event=reloaded, or event=reload_skipped for one that needs
 * a restart), then event=reload_done, or event=reload_failed and changes
 * nothing. */
void vg_config_reload(void *ud, vg_server *srv);

#endif
