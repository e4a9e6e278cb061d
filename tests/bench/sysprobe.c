#include "sysprobe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

long sp_status_field(pid_t pid, const char *field)
{
    char path[64], line[256];
    if (pid == 0)
        snprintf(path, sizeof path, "/proc/self/status");
    else
        snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    size_t flen = strlen(field);
    long v = -1;
    while (fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, field, flen) == 0 && line[flen] == ':') {
            v = strtol(line + flen + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return v;
}

double sp_cpu_seconds(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    char buf[1024];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* The command name (field 2) may hold spaces; fields 14 and 15 follow the last ')'. */
    const char *p = strrchr(buf, ')');
    unsigned long ut, st;
    if (p == NULL || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut,
                            &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

long sp_read_long(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    long v;
    int ok = fscanf(f, "%ld", &v);
    fclose(f);
    return ok == 1 ? v : -1;
}

/* The value under name in a "TcpExt: names..." / "TcpExt: values..." pair. */
static long long pick(const char *names, const char *values, const char *name)
{
    size_t want = strlen(name);
    const char *n = names, *v = values;
    while (*n != '\0' && *v != '\0') {
        size_t nl = strcspn(n, " \n"), vl = strcspn(v, " \n");
        if (nl == want && strncmp(n, name, want) == 0)
            return strtoll(v, NULL, 10);
        n += nl + (n[nl] == ' ');
        v += vl + (v[vl] == ' ');
        if (n[0] == '\n' || v[0] == '\n')
            break;
    }
    return -1;
}

void sp_listen_counters_read(sp_listen_counters *out)
{
    memset(out, 0, sizeof *out);
    FILE *f = fopen("/proc/net/netstat", "r");
    if (f == NULL)
        return;
    static char names[8192], values[8192];
    while (fgets(names, sizeof names, f) != NULL && fgets(values, sizeof values, f) != NULL) {
        if (strncmp(names, "TcpExt: ", 8) != 0)
            continue;
        out->overflows = pick(names + 8, values + 8, "ListenOverflows");
        out->drops = pick(names + 8, values + 8, "ListenDrops");
        out->reqq_full_drop = pick(names + 8, values + 8, "TCPReqQFullDrop");
        out->reqq_full_cookies = pick(names + 8, values + 8, "TCPReqQFullDoCookies");
        out->ok = out->overflows >= 0 && out->drops >= 0;
        break;
    }
    fclose(f);
}

sp_listen_counters sp_listen_counters_diff(const sp_listen_counters *b,
                                           const sp_listen_counters *a)
{
    sp_listen_counters d = {.ok = a->ok && b->ok};
    d.overflows = b->overflows - a->overflows;
    d.drops = b->drops - a->drops;
    d.reqq_full_drop = b->reqq_full_drop - a->reqq_full_drop;
    d.reqq_full_cookies = b->reqq_full_cookies - a->reqq_full_cookies;
    return d;
}

int sp_accept_queue(int port)
{
    FILE *f = fopen("/proc/net/tcp", "r");
    if (f == NULL)
        return -1;
    char line[512], want[32];
    snprintf(want, sizeof want, "0100007F:%04X", (unsigned)port);
    int q = -1;
    if (fgets(line, sizeof line, f) != NULL) { /* the header */
        while (fgets(line, sizeof line, f) != NULL) {
            char local[64], st[8];
            unsigned tx, rx;
            if (sscanf(line, "%*s %63s %*s %7s %x:%x", local, st, &tx, &rx) != 4)
                continue;
            if (strcmp(st, "0A") != 0)
                break; /* past the listeners */
            if (strcmp(local, want) == 0) {
                q = (int)rx;
                break;
            }
        }
    }
    fclose(f);
    return q;
}

int sp_listen_backlog(int port)
{
    char cmd[96];
    snprintf(cmd, sizeof cmd, "ss -ltnH 'sport = :%d' 2>/dev/null", port);
    FILE *p = popen(cmd, "r");
    if (p == NULL)
        return -1;
    char line[256];
    int backlog = -1;
    if (fgets(line, sizeof line, p) != NULL) {
        int recvq, sendq;
        if (sscanf(line, "%*s %d %d", &recvq, &sendq) == 2)
            backlog = sendq;
    }
    pclose(p);
    return backlog;
}
