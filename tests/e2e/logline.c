#include "logline.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int64_t h_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *h_line(const char *text, const char *needle, char *line, size_t cap)
{
    const char *hit = strstr(text, needle);
    if (hit == NULL || cap == 0)
        return NULL;
    while (hit > text && hit[-1] != '\n')
        hit--;
    const char *end = strchr(hit, '\n');
    size_t n = end != NULL ? (size_t)(end - hit) : strlen(hit);
    if (n >= cap)
        n = cap - 1;
    memcpy(line, hit, n);
    line[n] = '\0';
    return line;
}

bool h_line_ts(const char *line, int64_t *ms)
{
    const char *at = strstr(line, "ts=");
    struct tm tm = {0};
    int frac;
    if (at == NULL || sscanf(at, "ts=%4d-%2d-%2dT%2d:%2d:%2d.%3dZ", &tm.tm_year, &tm.tm_mon,
                             &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &frac) != 7)
        return false;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    *ms = (int64_t)timegm(&tm) * 1000 + frac;
    return true;
}

bool h_line_num(const char *line, const char *key, long long *v)
{
    const char *at = strstr(line, key);
    if (at == NULL)
        return false;
    char *end;
    *v = strtoll(at + strlen(key), &end, 10);
    return end != at + strlen(key);
}

int h_wait_err_any(h_proc *p, const char *const needles[], int64_t deadline)
{
    for (;;) {
        for (int i = 0; needles[i] != NULL; i++)
            if (strstr(p->err, needles[i]) != NULL)
                return i;
        int64_t left = deadline - h_now_ms();
        if (left <= 0 || p->err_fd < 0)
            return -1;
        h_pump(p, left > 50 ? 50 : (int)left);
    }
}
