#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "log.h"
#include "proto.h"
#include "token.h"
#include "version.h"

#define DAY_MS 86400000

static const struct option common[] = {
    {"keepalive-time", required_argument, NULL, VG_OPT_KEEPALIVE_TIME},
    {"keepalive-interval", required_argument, NULL, VG_OPT_KEEPALIVE_INTERVAL},
    {"keepalive-probes", required_argument, NULL, VG_OPT_KEEPALIVE_PROBES},
    {"log-level", required_argument, NULL, VG_OPT_LOG_LEVEL},
    {"help", no_argument, NULL, VG_OPT_HELP},
    {"version", no_argument, NULL, VG_OPT_VERSION},
    {NULL, 0, NULL, 0},
};

static const struct option client[] = {
    {"server", required_argument, NULL, VG_OPT_SERVER},
    {"name", required_argument, NULL, VG_OPT_NAME},
    {"buffer", required_argument, NULL, VG_OPT_BUFFER},
    {"backoff-base", required_argument, NULL, VG_OPT_BACKOFF_BASE},
    {"backoff-max", required_argument, NULL, VG_OPT_BACKOFF_MAX},
    {"max-reconnects", required_argument, NULL, VG_OPT_MAX_RECONNECTS},
    {"token-file", required_argument, NULL, VG_OPT_TOKEN_FILE},
    {NULL, 0, NULL, 0},
};

void vg_cli_merge(struct option *out, const struct option *own, bool with_client)
{
    size_t n = 0;
    for (size_t i = 0; own[i].name != NULL; i++)
        out[n++] = own[i];
    for (size_t i = 0; common[i].name != NULL; i++)
        out[n++] = common[i];
    for (size_t i = 0; with_client && client[i].name != NULL; i++)
        out[n++] = client[i];
    out[n] = (struct option){NULL, 0, NULL, 0};
}

bool vg_cli_common_option(int opt, const char *arg, vg_keepalive *k, const char *prog,
                          const char *usage, void (*help)(void))
{
    vg_log_level level;
    int64_t v;
    switch (opt) {
    case VG_OPT_KEEPALIVE_TIME:
        if (!vg_parse_seconds(arg, DAY_MS, &k->time_ms))
            vg_usage_error(prog, usage, "--keepalive-time must be decimal seconds (0: off), got '%s'", arg);
        return true;
    case VG_OPT_KEEPALIVE_INTERVAL:
        if (!vg_parse_seconds(arg, DAY_MS, &k->interval_ms) || k->interval_ms == 0)
            vg_usage_error(prog, usage, "--keepalive-interval must be positive decimal seconds, got '%s'", arg);
        return true;
    case VG_OPT_KEEPALIVE_PROBES:
        if (!vg_parse_int(arg, 1, 100, &v))
            vg_usage_error(prog, usage, "--keepalive-probes must be 1 to 100, got '%s'", arg);
        k->probes = (int)v;
        return true;
    case VG_OPT_LOG_LEVEL:
        if (!vg_log_parse_level(arg, &level))
            vg_usage_error(prog, usage, "--log-level must be error, warn, info or debug");
        vg_log_set_level(level);
        return true;
    case VG_OPT_HELP:
        help();
        exit(0);
    case VG_OPT_VERSION:
        printf("%s (vigil) %s, protocol %d\n", prog, VG_VERSION, VG_PROTO_VERSION);
        exit(0);
    }
    return false;
}

bool vg_cli_client_option(int opt, const char *arg, vg_client_opts *o, const char *prog,
                          const char *usage)
{
    uint64_t bytes;
    int64_t v;
    switch (opt) {
    case VG_OPT_SERVER:
        o->servers = arg;
        return true;
    case VG_OPT_NAME:
        if (strlen(arg) > VG_NAME_MAX_LEN)
            vg_usage_error(prog, usage, "--name is longer than %d bytes", VG_NAME_MAX_LEN);
        o->name = arg;
        return true;
    case VG_OPT_BUFFER:
        if (!vg_parse_bytes(arg, 64u << 10, 1ull << 40, &bytes))
            vg_usage_error(prog, usage, "--buffer must be at least 64KiB, got '%s'", arg);
        o->max_buffer = bytes;
        return true;
    case VG_OPT_BACKOFF_BASE:
        if (!vg_parse_seconds(arg, DAY_MS, &o->backoff_base_ms) || o->backoff_base_ms == 0)
            vg_usage_error(prog, usage, "--backoff-base must be positive decimal seconds, got '%s'", arg);
        return true;
    case VG_OPT_BACKOFF_MAX:
        if (!vg_parse_seconds(arg, DAY_MS, &o->backoff_max_ms) || o->backoff_max_ms == 0)
            vg_usage_error(prog, usage, "--backoff-max must be positive decimal seconds, got '%s'", arg);
        return true;
    case VG_OPT_MAX_RECONNECTS:
        if (!vg_parse_int(arg, -1, INT32_MAX, &v))
            vg_usage_error(prog, usage, "--max-reconnects must be -1 (for ever) or more, got '%s'", arg);
        o->max_reconnects = v;
        return true;
    case VG_OPT_TOKEN_FILE: {
        static char kept[VG_TOKEN_MAX_LEN + 1]; /* for the life of the program */
        char *token;
        const char *why;
        if (vg_token_load(arg, NULL, &token, &why) != VG_OK)
            vg_usage_error(prog, usage, "--token-file %s: %s", arg, why);
        strcpy(kept, token);
        memset(token, 0, strlen(token));
        free(token);
        o->token = kept;
        return true;
    }
    }
    return false;
}

void vg_cli_check_keepalive(const vg_keepalive *k, const char *prog, const char *usage)
{
    if (k->time_ms > 0 && k->interval_ms <= 0)
        vg_usage_error(prog, usage, "--keepalive-interval must be positive");
}

void vg_cli_common_help(void)
{
    vg_keepalive k = VG_KEEPALIVE_DEFAULT;
    printf("  --keepalive-time SECS  silence before the first PING (default %g; 0: no\n"
           "                         heartbeats)\n"
           "  --keepalive-interval SECS\n"
           "                         between unanswered PINGs (default %g)\n"
           "  --keepalive-probes N   unanswered PINGs before the peer is dead (default %d)\n"
           "                         A silent peer is declared dead at most time + probes\n"
           "                         x interval after its last sign of life: %g s with\n"
           "                         the defaults.\n"
           "  --log-level LEVEL      error, warn, info (default) or debug\n"
           "  --help, --version\n",
           k.time_ms / 1000.0, k.interval_ms / 1000.0, k.probes, vg_keepalive_bound_ms(&k) / 1000.0);
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
