#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "cli.h"
#include "log.h"
#include "token.h"

#define FILE_MAX (1u << 20) /* a configuration file is a few KiB */
#define OPT_TABLE 0x200     /* getopt's value for the table's option i: OPT_TABLE + i */

enum { OPT_CONFIG = 0x100 + 64, OPT_CHECK };

void vg_cmdline_parse(vg_cmdline *cl, int argc, char **argv, const char *usage,
                      void (*help)(void))
{
    const char *prog = "broker";
    memset(cl, 0, sizeof *cl);
    cl->flags = calloc((size_t)argc + 1, sizeof *cl->flags);
    if (cl->flags == NULL)
        vg_usage_error(prog, usage, "out of memory");
    struct option opts[VG_OPT_MAX + 8];
    size_t n = 0;
    for (size_t i = 0; i < vg_opts_count(); i++)
        opts[n++] = (struct option){vg_opts_name(i),
                                    vg_opts_is_flag(i) ? no_argument : required_argument, NULL,
                                    OPT_TABLE + (int)i};
    opts[n++] = (struct option){"config", required_argument, NULL, OPT_CONFIG};
    opts[n++] = (struct option){"check-config", no_argument, NULL, OPT_CHECK};
    opts[n++] = (struct option){"help", no_argument, NULL, VG_OPT_HELP};
    opts[n++] = (struct option){"version", no_argument, NULL, VG_OPT_VERSION};
    opts[n] = (struct option){NULL, 0, NULL, 0};
    opterr = 0;
    int o;
    while ((o = getopt_long(argc, argv, "c:t", opts, NULL)) != -1) {
        if (o >= OPT_TABLE && o < OPT_TABLE + (int)vg_opts_count()) {
            size_t i = (size_t)(o - OPT_TABLE);
            cl->flags[cl->nflags++] = (vg_cmdline_flag){i, vg_opts_is_flag(i) ? "true" : optarg};
        } else if (o == OPT_CONFIG || o == 'c') {
            if (optarg[0] == '\0')
                vg_usage_error(prog, usage, "--config must name a file");
            cl->file = optarg;
        } else if (o == OPT_CHECK || o == 't') {
            cl->check = true;
        } else if (o == VG_OPT_HELP || o == VG_OPT_VERSION) {
            vg_cli_common_option(o, NULL, NULL, prog, usage, help); /* exits */
        } else {
            vg_usage_error(prog, usage, "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        vg_usage_error(prog, usage, "unexpected argument '%s'", argv[optind]);
}

void vg_cmdline_free(vg_cmdline *cl)
{
    free(cl->flags);
    cl->flags = NULL;
}

/* "at=FILE[:LINE]" and the rest of a file error, quoted for a log line. */
static void file_error(vg_config_error *e, const char *file, unsigned line, const char *key,
                       const char *why)
{
    char at[300], q_at[200], q_key[80], q_why[200];
    if (line > 0)
        snprintf(at, sizeof at, "%s:%u", file, line);
    else
        snprintf(at, sizeof at, "%s", file);
    vg_log_quote(q_at, sizeof q_at, at, strlen(at));
    vg_log_quote(q_why, sizeof q_why, why, strlen(why));
    e->flag = false;
    if (key != NULL && key[0] != '\0')
        snprintf(e->text, sizeof e->text, "at=%s key=%s error=%s", q_at,
                 vg_log_quote(q_key, sizeof q_key, key, strlen(key)), q_why);
    else
        snprintf(e->text, sizeof e->text, "at=%s error=%s", q_at, q_why);
}

/* Reads all of path (at most FILE_MAX bytes) into a malloc'd *out. */
static bool read_file(const char *path, char **out, size_t *len, vg_config_error *e)
{
    FILE *f = fopen(path, "re");
    if (f == NULL) {
        file_error(e, path, 0, NULL, strerror(errno));
        return false;
    }
    char *buf = malloc(FILE_MAX + 1);
    if (buf == NULL) {
        fclose(f);
        file_error(e, path, 0, NULL, "out of memory");
        return false;
    }
    size_t n = fread(buf, 1, FILE_MAX + 1, f);
    int failed = ferror(f);
    fclose(f);
    if (failed || n > FILE_MAX) {
        free(buf);
        file_error(e, path, 0, NULL, failed ? "read error" : "larger than 1MiB");
        return false;
    }
    *out = buf;
    *len = n;
    return true;
}

bool vg_config_build(const vg_cmdline *cl, vg_broker_settings *s, vg_config_error *e)
{
    vg_opts_defaults(s);
    if (cl->file != NULL) {
        char *text;
        size_t len;
        if (!read_file(cl->file, &text, &len, e))
            return false;
        vg_opt_error fe;
        bool ok = vg_opts_load_text(s, text, len, &fe);
        free(text);
        if (!ok) {
            file_error(e, cl->file, fe.line, fe.key, fe.why);
            return false;
        }
    }
    for (size_t k = 0; k < cl->nflags; k++) {
        const vg_cmdline_flag *f = &cl->flags[k];
        const char *why = vg_opts_set(s, f->option, f->arg, VG_OPT_SRC_FLAG);
        if (why != NULL) {
            e->flag = true;
            snprintf(e->text, sizeof e->text, "--%s %s, got '%s'", vg_opts_name(f->option), why,
                     f->arg);
            return false;
        }
    }
    const char *why = vg_opts_check(s);
    if (why != NULL) {
        e->flag = cl->file == NULL;
        if (e->flag)
            snprintf(e->text, sizeof e->text, "--%s", why);
        else
            file_error(e, cl->file, 0, NULL, why);
        return false;
    }
    return true;
}

bool vg_config_auth(const vg_broker_settings *s, const vg_addr *listen, char **token,
                    vg_config_error *e)
{
    const char *why;
    e->flag = false;
    if (vg_token_load(s->token_file, "VIGIL_AUTH_TOKEN", token, &why) != VG_OK) {
        char q[300];
        if (s->token_file != NULL)
            snprintf(e->text, sizeof e->text,
                     "reason=auth_token source=--auth-token-file file=%s error=\"%s\"",
                     vg_log_quote(q, sizeof q, s->token_file, strlen(s->token_file)), why);
        else
            snprintf(e->text, sizeof e->text,
                     "reason=auth_token source=VIGIL_AUTH_TOKEN error=\"%s\"", why);
        return false;
    }
    char addr[VG_ADDR_STRLEN];
    /* The monitor has no authentication of its own, a token or not. */
    if (s->monitor_on && !vg_addr_is_loopback(&s->monitor) && !s->allow_unauth) {
        snprintf(e->text, sizeof e->text,
                 "reason=protected_mode addr=%s hint=\"a non-loopback --monitor needs "
                 "--allow-unauthenticated: the monitor has no authentication\"",
                 vg_addr_format(&s->monitor, addr));
        goto fail_token;
    }
    if (*token != NULL || vg_addr_is_loopback(listen) || s->allow_unauth)
        return true;
    snprintf(e->text, sizeof e->text,
             "reason=protected_mode addr=%s hint=\"listening beyond loopback needs "
             "--auth-token-file (or VIGIL_AUTH_TOKEN), or --allow-unauthenticated\"",
             vg_addr_format(listen, addr));
    return false;

fail_token:
    if (*token != NULL)
        memset(*token, 0, strlen(*token));
    free(*token);
    *token = NULL;
    return false;
}

/* Whether the token in force differs from t. Reads srv->token unlocked:
 * this thread (vg_server_run's) is the only one that changes it. */
static bool token_changed(const vg_server *srv, const char *t)
{
    if (t == NULL || srv->token == NULL)
        return (t == NULL) != (srv->token == NULL);
    return strlen(t) != srv->token_len || memcmp(t, srv->token, srv->token_len) != 0;
}

void vg_config_reload(void *ud, vg_server *srv)
{
    vg_reload_ctx *ctx = ud;
    vg_broker_settings *run = ctx->running;
    const char *file = ctx->cl->file != NULL ? ctx->cl->file : "none";
    char qf[300];
    vg_log(VG_LOG_INFO, "sighup", "action=reload file=%s", vg_log_quote(qf, sizeof qf, file, strlen(file)));
    vg_broker_settings next;
    vg_config_error e;
    char *token = NULL;
    if (!vg_config_build(ctx->cl, &next, &e) || !vg_config_auth(&next, &run->cfg.listen, &token, &e)) {
        vg_log(VG_LOG_ERROR, "reload_failed", "%s detail=\"nothing changed\"", e.text);
        vg_opts_free(&next);
        return;
    }
    /* Everything checked: from here on nothing can fail. */
    unsigned changed = 0, skipped = 0;
    bool conn_changed = false;
    for (size_t i = 0; i < vg_opts_count(); i++) {
        char a[VG_OPT_VALUE_MAX + 1], b[VG_OPT_VALUE_MAX + 1], qa[200], qb[200];
        const char *was = vg_opts_show(run, i, a, sizeof a);
        const char *now = vg_opts_show(&next, i, b, sizeof b);
        if (strcmp(was, now) == 0)
            continue;
        if (vg_opts_reload(i) == VG_RELOAD_RESTART) {
            vg_log(VG_LOG_WARN, "reload_skipped", "key=%s reason=restart_needed running=%s file=%s",
                   vg_opts_name(i), vg_log_quote(qa, sizeof qa, was, strlen(was)),
                   vg_log_quote(qb, sizeof qb, now, strlen(now)));
            skipped++;
            continue;
        }
        vg_log(VG_LOG_INFO, "reloaded", "key=%s old=%s new=%s", vg_opts_name(i),
               vg_log_quote(qa, sizeof qa, was, strlen(was)),
               vg_log_quote(qb, sizeof qb, now, strlen(now)));
        vg_opts_take(run, &next, i);
        conn_changed |= (int)i == vg_opts_find("max-connections", strlen("max-connections"));
        changed++;
    }
    if (token_changed(srv, token)) {
        vg_log(VG_LOG_INFO, "reloaded", "key=auth-token auth=%s detail=\"for new connections\"",
               token != NULL ? "token" : "none");
        vg_server_set_token(srv, token); /* takes it */
        changed++;
        char addr[VG_ADDR_STRLEN];
        if (token == NULL && !vg_addr_is_loopback(&run->cfg.listen))
            vg_log(VG_LOG_WARN, "unauthenticated", "addr=%s", vg_addr_format(&run->cfg.listen, addr));
    } else if (token != NULL) {
        memset(token, 0, strlen(token));
        free(token);
    }
    vg_broker_config live = run->cfg;
    if (live.max_connections > ctx->connection_room) {
        if (conn_changed)
            vg_log(VG_LOG_WARN, "max_connections_lowered", "asked=%zu max_connections=%zu limited_by=host",
               live.max_connections, ctx->connection_room);
        live.max_connections = ctx->connection_room;
    }
    vg_server_set_limits(srv, &live);
    vg_log_set_level(run->log_level);
    vg_log(VG_LOG_INFO, "reload_done", "changed=%u skipped=%u", changed, skipped);
    vg_opts_free(&next);
}
