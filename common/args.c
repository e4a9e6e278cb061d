#include "args.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool vg_parse_seconds(const char *s, int64_t max_ms, int64_t *ms_out)
{
    /* Parsed by hand, not strtod, so "0.1" is exactly 100 ms and locales do not matter. */
    int64_t whole = 0, frac_ms = 0;
    int frac_digits = 0;
    const char *p = s;
    if (!isdigit((unsigned char)*p) && *p != '.')
        return false;
    for (; isdigit((unsigned char)*p); p++) {
        whole = whole * 10 + (*p - '0');
        if (whole > max_ms / 1000 + 1)
            return false;
    }
    bool rest = false;
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p) && p - 1 == s)
            return false;
        for (; isdigit((unsigned char)*p); p++) {
            if (frac_digits < 3) {
                frac_ms = frac_ms * 10 + (*p - '0');
                frac_digits++;
            } else if (*p != '0') {
                rest = true;
            }
        }
        for (; frac_digits < 3; frac_digits++)
            frac_ms *= 10;
    }
    if (*p != '\0')
        return false;
    int64_t ms = whole * 1000 + frac_ms + (rest ? 1 : 0);
    if (ms > max_ms)
        return false;
    *ms_out = ms;
    return true;
}

bool vg_parse_int(const char *s, int64_t min, int64_t max, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*s == '\0' || isspace((unsigned char)*s) || *end != '\0' || errno != 0 || v < min ||
        v > max)
        return false;
    *out = v;
    return true;
}

bool vg_parse_bytes(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    errno = 0;
    if (!isdigit((unsigned char)*s))
        return false;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0)
        return false;
    unsigned shift = 0;
    if (*end != '\0') {
        switch (toupper((unsigned char)*end)) {
        case 'K': shift = 10; break;
        case 'M': shift = 20; break;
        case 'G': shift = 30; break;
        default: return false;
        }
        end++;
        if (strcmp(end, "") != 0 && strcmp(end, "iB") != 0 && strcmp(end, "B") != 0)
            return false;
    }
    if (v > (UINT64_MAX >> shift))
        return false;
    v <<= shift;
    if (v < min || v > max)
        return false;
    *out = v;
    return true;
}

void vg_usage_error(const char *prog, const char *usage, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", prog);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nusage: %s\nTry '%s --help' for more information.\n", usage, prog);
    exit(2);
}
