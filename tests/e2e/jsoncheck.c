#include "jsoncheck.h"

#include <stdlib.h>
#include <string.h>

static const char *ws(const char *p)
{
    while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r')
        p++;
    return p;
}

static const char *value(const char *p);

static const char *string(const char *p)
{
    if (*p != '"')
        return NULL;
    for (p++; *p != '"'; p++) {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20 || c >= 0x7f) /* we emit ASCII only */
            return NULL;
        if (c != '\\')
            continue;
        p++;
        if (strchr("\"\\/bfnrt", *p) != NULL && *p != '\0')
            continue;
        if (*p != 'u')
            return NULL;
        for (int i = 1; i <= 4; i++)
            if (strchr("0123456789abcdefABCDEF", p[i]) == NULL || p[i] == '\0')
                return NULL;
        p += 4;
    }
    return p + 1;
}

static const char *number(const char *p)
{
    char *end;
    strtod(p, &end);
    return end == p ? NULL : end;
}

static const char *value(const char *p)
{
    p = ws(p);
    if (*p == '"')
        return string(p);
    if (*p == '{' || *p == '[') {
        char close = *p == '{' ? '}' : ']';
        p = ws(p + 1);
        if (*p == close)
            return p + 1;
        for (;;) {
            if (close == '}') {
                p = string(ws(p));
                if (p == NULL || *(p = ws(p)) != ':')
                    return NULL;
                p++;
            }
            p = value(p);
            if (p == NULL)
                return NULL;
            p = ws(p);
            if (*p == close)
                return p + 1;
            if (*p != ',')
                return NULL;
            p++;
        }
    }
    if (strncmp(p, "true", 4) == 0 || strncmp(p, "null", 4) == 0)
        return p + 4;
    if (strncmp(p, "false", 5) == 0)
        return p + 5;
    return number(p);
}

bool h_json_valid(const char *s)
{
    const char *end = value(s);
    return end != NULL && *ws(end) == '\0';
}

