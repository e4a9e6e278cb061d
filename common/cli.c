#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "log.h"
#include "proto.h"
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
