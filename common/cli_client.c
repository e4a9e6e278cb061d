/* The client options of pub and sub, applied through the public API
 * (vigil/vigil.h) only. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "log.h"
#include "proto.h"
#include "token.h"

#define DAY_MS 86400000

bool vg_cli_client_init(vg_cli_client *cc, const char *name)
{
    cc->opts = vigil_options_create();
    if (cc->opts == NULL || vigil_options_set_name(cc->opts, name) != VIGIL_OK) {
        vigil_options_destroy(cc->opts);
        vg_log(VG_LOG_ERROR, "start_failed", "error=\"out of memory\"");
        return false;
    }
    cc->keepalive = VG_KEEPALIVE_DEFAULT;
    cc->backoff_base_ms = 100;
    cc->backoff_max_ms = 500;
    return true;
}

bool vg_cli_client_option(int opt, const char *arg, vg_cli_client *cc, const char *prog,
                          const char *usage)
{
    uint64_t bytes;
    int64_t v;
    switch (opt) {
    case VG_OPT_SERVER:
        if (vigil_options_set_servers(cc->opts, arg) != VIGIL_OK)
            vg_usage_error(prog, usage, "--server needs HOST:PORT[,HOST:PORT...]");
        return true;
    case VG_OPT_NAME:
        if (vigil_options_set_name(cc->opts, arg) != VIGIL_OK)
            vg_usage_error(prog, usage, "--name is longer than %d bytes", VG_NAME_MAX_LEN);
        return true;
    case VG_OPT_BUFFER:
        if (!vg_parse_bytes(arg, 64u << 10, 1ull << 40, &bytes))
            vg_usage_error(prog, usage, "--buffer must be at least 64KiB, got '%s'", arg);
        vigil_options_set_max_buffer(cc->opts, bytes);
        return true;
    case VG_OPT_BACKOFF_BASE:
        if (!vg_parse_seconds(arg, DAY_MS, &cc->backoff_base_ms) || cc->backoff_base_ms == 0)
            vg_usage_error(prog, usage, "--backoff-base must be positive decimal seconds, got '%s'", arg);
        return true;
    case VG_OPT_BACKOFF_MAX:
        if (!vg_parse_seconds(arg, DAY_MS, &cc->backoff_max_ms) || cc->backoff_max_ms == 0)
            vg_usage_error(prog, usage, "--backoff-max must be positive decimal seconds, got '%s'", arg);
        return true;
    case VG_OPT_MAX_RECONNECTS:
        if (!vg_parse_int(arg, -1, INT32_MAX, &v))
            vg_usage_error(prog, usage, "--max-reconnects must be -1 (for ever) or more, got '%s'", arg);
        vigil_options_set_max_reconnects(cc->opts, v);
        return true;
    case VG_OPT_TOKEN_FILE: {
        char *token;
        const char *why;
        if (vg_token_load(arg, NULL, &token, &why) != VG_OK)
            vg_usage_error(prog, usage, "--token-file %s: %s", arg, why);
        vigil_status st = vigil_options_set_token(cc->opts, token);
        memset(token, 0, strlen(token));
        free(token);
        if (st != VIGIL_OK)
            vg_usage_error(prog, usage, "--token-file %s: %s", arg, vigil_status_str(st));
        return true;
    }
    }
    return false;
}

/* The library's lines go to stderr like the program's own, at --log-level. */
static void log_to_stderr(void *ud, vigil_log_level level, const char *line)
{
    if (vg_log_enabled((vg_log_level)level))
        vg_log_write_stderr(ud, (vg_log_level)level, line);
}

void vg_cli_client_finish(vg_cli_client *cc, const char *prog, const char *usage)
{
    vg_cli_check_keepalive(&cc->keepalive, prog, usage);
    const vg_keepalive *k = &cc->keepalive;
    if (vigil_options_set_heartbeat(cc->opts, k->time_ms, k->interval_ms, k->probes) != VIGIL_OK)
        vg_usage_error(prog, usage, "--keepalive-interval and --keepalive-probes must be positive");
    if (vigil_options_set_backoff(cc->opts, cc->backoff_base_ms, cc->backoff_max_ms) != VIGIL_OK)
        vg_usage_error(prog, usage, "--backoff-base and --backoff-max must be positive");
    vigil_options_on_log(cc->opts, log_to_stderr, VIGIL_LOG_DEBUG);
}

void vg_cli_client_help(void)
{
    printf("  --server HOST:PORT[,HOST:PORT...]\n"
           "                         broker address(es), tried in turn; a name is\n"
           "                         looked up on every attempt and each of its\n"
           "                         addresses tried (default: $VIGIL_SERVER, else\n"
           "                         %s)\n"
           "  --name NAME            client name shown in the broker's log\n"
           "  --buffer BYTES         publishes held while the broker is slow or away,\n"
           "                         and again as many written ones kept until the\n"
           "                         broker confirms them, to send again after a\n"
           "                         reconnect (default 8MiB; suffixes K, M, G)\n"
           "  --backoff-base SECS    first reconnect delay window (default 0.1)\n"
           "  --backoff-max SECS     largest reconnect delay window (default 0.5); each\n"
           "                         delay is drawn at random from [0, window], so a\n"
           "                         restarted broker is found again within 0.5 s\n"
           "  --max-reconnects N     give up after N failed attempts in a row\n"
           "                         (default -1: retry for ever)\n"
           "  --token-file PATH      authenticate with the token in PATH (default:\n"
           "                         $VIGIL_TOKEN, if set)\n",
           VG_DEFAULT_SERVER);
}
