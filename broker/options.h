/* The broker's settings and the one table of its options, which drives both
 * the command line (getopt) and the configuration file (conf.h): every flag
 * is a key by construction, spelled as the long flag without "--". Pure:
 * nothing here reads a file, logs or exits; main.c and reload.c do.
 *
 * Adding an option: its field in vg_broker_settings, one entry in the table
 * in options.c (a custom kind also needs its parse and show functions
 * there), its --help line in main.c, and its line in broker/broker.conf and
 * docs/vigil-broker.conf.5. */
#ifndef VG_OPTIONS_H
#define VG_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "log.h"
#include "server.h"

/* Longest value a file line may hold (a path, mostly). */
#define VG_OPT_VALUE_MAX 4096

typedef enum {
    VG_OPT_SRC_DEFAULT,
    VG_OPT_SRC_FILE,
    VG_OPT_SRC_FLAG,
} vg_opt_source;

/* Whether a running broker can take a new value on SIGHUP (reload.c). */
typedef enum {
    VG_RELOAD_LIVE,    /* applied at once (the auth token: to new connections) */
    VG_RELOAD_RESTART, /* logged as reload_skipped: a restart applies it */
} vg_reload_class;

#define VG_OPT_MAX 32

/* The largest max-connections accepted. */
#define VG_OPT_MAX_CONNECTIONS (1 << 24)

typedef struct {
    vg_broker_config cfg; /* cfg.data_dir is owned by the settings; cfg.token is not set here */
    char *token_file;     /* owned; NULL: $VIGIL_AUTH_TOKEN */
    bool allow_unauth;
    bool monitor_on; /* --monitor HOST:PORT given (not "off"): monitor is where */
    vg_addr monitor;
    vg_log_level log_level;
    uint8_t source[VG_OPT_MAX]; /* vg_opt_source of each option, by index */
    unsigned file_line[VG_OPT_MAX]; /* the line that set it, for VG_OPT_SRC_FILE */
} vg_broker_settings;

/* Where a configuration file is wrong. */
typedef struct {
    unsigned line;     /* 0: not a line's fault */
    char key[64];      /* "" if none; truncated */
    char why[160];     /* what is wrong, with the value if one was given */
} vg_opt_error;

/* The defaults (vg_broker_config_defaults, no token file, log level info). */
void vg_opts_defaults(vg_broker_settings *s);

/* Frees what s owns; s may then be given to vg_opts_defaults again. */
void vg_opts_free(vg_broker_settings *s);

/* Number of options, and the name of the i-th (0 <= i < count). */
size_t vg_opts_count(void);
const char *vg_opts_name(size_t i);
bool vg_opts_is_flag(size_t i); /* takes no argument on the command line */
vg_reload_class vg_opts_reload(size_t i);

/* The index of the option named name (len bytes), or -1. */
int vg_opts_find(const char *name, size_t len);

/* Sets option i from its text value (NUL-terminated; "true"/"false" for
 * a flag). Returns NULL, or why the value is refused ("must be 1 or more"),
 * with s unchanged; "out of memory" is possible for a path. */
const char *vg_opts_set(vg_broker_settings *s, size_t i, const char *value, vg_opt_source src);

/* Applies a configuration file's text on top of s: every line must be a
 * known key with a good value, each key at most once. Returns false at the
 * first problem, described in *err; s is then partly applied and fit only
 * for vg_opts_free. */
bool vg_opts_load_text(vg_broker_settings *s, const char *text, size_t len, vg_opt_error *err);

/* Renders option i's value in s as a file would spell it, for reload log
 * lines ("10000", "0.5", "interval=100", "none"); into buf (cap bytes). */
const char *vg_opts_show(const vg_broker_settings *s, size_t i, char *buf, size_t cap);

/* Copies option i's value from src to dst (a path is moved: src loses it). */
void vg_opts_take(vg_broker_settings *dst, vg_broker_settings *src, size_t i);

/* Whole-settings checks that no single value can fail alone. NULL or why. */
const char *vg_opts_check(const vg_broker_settings *s);

#endif
