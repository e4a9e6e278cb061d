#include "conf.h"

#include <stdbool.h>
#include <string.h>

void vg_conf_init(vg_conf_reader *r, const char *buf, size_t len)
{
    r->p = buf;
    r->end = buf + len;
    r->line = 1;
}

static bool blank(char c) { return c == ' ' || c == '\t' || c == '\r'; }

vg_conf_result vg_conf_next(vg_conf_reader *r, vg_conf_line *out, const char **why)
{
    while (r->p < r->end) {
        const char *s = r->p;
        const char *nl = memchr(s, '\n', (size_t)(r->end - s));
        const char *e = nl != NULL ? nl : r->end;
        unsigned line = r->line;
        r->p = nl != NULL ? nl + 1 : r->end;
        r->line++;
        *out = (vg_conf_line){.line = line};
        if (memchr(s, '\0', (size_t)(e - s)) != NULL) {
            *why = "a NUL byte in the line";
            return VG_CONF_ERROR;
        }
        while (s < e && blank(*s))
            s++;
        while (e > s && blank(e[-1]))
            e--;
        if (s == e || *s == '#')
            continue;
        const char *k = s;
        while (s < e && !blank(*s) && *s != '=')
            s++;
        out->key = k;
        out->key_len = (size_t)(s - k);
        while (s < e && blank(*s))
            s++;
        if (s < e && *s == '=' && out->key_len > 0) {
            s++;
            while (s < e && blank(*s))
                s++;
        }
        if (out->key_len == 0) { /* the line starts with '=' */
            *why = "a value without a key";
            return VG_CONF_ERROR;
        }
        if (s == e) {
            *why = "missing value";
            return VG_CONF_ERROR;
        }
        out->value = s;
        out->value_len = (size_t)(e - s);
        return VG_CONF_SETTING;
    }
    return VG_CONF_END;
}
