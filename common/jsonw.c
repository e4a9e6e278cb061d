#include "jsonw.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

vg_jw vg_jw_on(vg_buf *out) { return (vg_jw){.out = out, .st = VG_OK}; }

static void put(vg_jw *w, const void *p, size_t n)
{
    if (w->st == VG_OK && n > 0)
        w->st = vg_buf_append(w->out, p, n);
}

void vg_jw_raw(vg_jw *w, const char *s) { put(w, s, strlen(s)); }

void vg_jw_fmt(vg_jw *w, const char *fmt, ...)
{
    char small[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        if (w->st == VG_OK)
            w->st = VG_ERR_ARG;
        return;
    }
    if ((size_t)n < sizeof small) {
        put(w, small, (size_t)n);
        return;
    }
    if (w->st != VG_OK || (w->st = vg_buf_reserve(w->out, (size_t)n + 1)) != VG_OK)
        return;
    va_start(ap, fmt);
    vsnprintf((char *)w->out->data + w->out->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    w->out->len += (size_t)n;
}

void vg_jw_str(vg_jw *w, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    put(w, "\"", 1);
    if (n == 0) {
        put(w, "\"", 1);
        return;
    }
    size_t run = 0; /* bytes at s[i - run .. i) that need no escape */
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        const char *esc = NULL;
        char u[6] = {'\\', 'u', '0', '0', hex[ch >> 4], hex[ch & 15]};
        switch (ch) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        default:
            if (ch >= 0x20 && ch < 0x7f) {
                run++;
                continue;
            }
        }
        put(w, s + i - run, run);
        run = 0;
        if (esc != NULL)
            put(w, esc, strlen(esc));
        else
            put(w, u, sizeof u);
    }
    put(w, s + n - run, run);
    put(w, "\"", 1);
}

vg_status vg_jw_status(const vg_jw *w) { return w->st; }
