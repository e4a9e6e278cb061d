#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "log.h"
#include "proto.h"
#include "version.h"

static const struct option shared[] = {
    {"server", required_argument, NULL, VG_OPT_SERVER},
    {"name", required_argument, NULL, VG_OPT_NAME},
    {"log-level", required_argument, NULL, VG_OPT_LOG_LEVEL},
    {"buffer", required_argument, NULL, VG_OPT_BUFFER},
    {"help", no_argument, NULL, VG_OPT_HELP},
    {"version", no_argument, NULL, VG_OPT_VERSION},
    {NULL, 0, NULL, 0},
};

void vg_cli_merge(struct option *out, const struct option *own)
{
    size_t n = 0;
    for (; own[n].name != NULL; n++)
        out[n] = own[n];
    for (size_t i = 0; shared[i].name != NULL; i++)
        out[n++] = shared[i];
    out[n] = (struct option){NULL, 0, NULL, 0};
}

bool vg_cli_client_option(int opt, const char *arg, vg_client_opts *o, const char *prog,
                          const char *usage, void (*help)(void))
{
    vg_log_level level;
    uint64_t bytes;
    switch (opt) {
    case VG_OPT_SERVER:
        o->servers = arg;
        return true;
    case VG_OPT_NAME:
        if (strlen(arg) > VG_NAME_MAX_LEN)
            vg_usage_error(prog, usage, "--name is longer than %d bytes", VG_NAME_MAX_LEN);
        o->name = arg;
        return true;
    case VG_OPT_LOG_LEVEL:
        if (!vg_log_parse_level(arg, &level))
            vg_usage_error(prog, usage, "--log-level must be error, warn, info or debug");
        vg_log_set_level(level);
        return true;
    case VG_OPT_BUFFER:
        if (!vg_parse_bytes(arg, 64u << 10, 1ull << 40, &bytes))
            vg_usage_error(prog, usage, "--buffer must be at least 64KiB, got '%s'", arg);
        o->max_buffer = bytes;
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

void vg_cli_client_help(void)
{
    printf("  --server HOST:PORT[,HOST:PORT...]\n"
           "                         broker address(es) (default: $VIGIL_SERVER, else %s)\n"
           "  --name NAME            client name shown in the broker's log\n"
           "  --buffer BYTES         publishes held while the broker is slow or away\n"
           "                         (default 8MiB; suffixes K, M, G)\n"
           "  --log-level LEVEL      error, warn, info (default) or debug\n"
           "  --help, --version\n",
           VG_DEFAULT_SERVER);
}
