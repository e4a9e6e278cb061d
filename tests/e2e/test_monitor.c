/* The monitoring endpoint end to end (issue 13): a real broker with
 * --monitor 127.0.0.1:0, driven by curl as a child process, every field
 * checked against what the test made the broker do. Also the same
 * documents as the answers to subscribing to $SYS.varz, $SYS.connz and
 * $SYS.topics, the monitor being off by default, and the refusal of a
 * non-loopback monitor without --allow-unauthenticated. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <dirent.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "jsoncheck.h"
#include "proto.h"

#define WAIT h_ms(10000)

/* ---- the broker and curl ---- */

/* The monitor's port, from the broker's event=monitor_listening line. */
static int monitor_port(h_proc *b)
{
    cr_assert(h_wait_err(b, "event=monitor_listening", WAIT), "no monitor_listening line: %s",
              h_tail(b->err));
    const char *at = strstr(b->err, "event=monitor_listening addr=127.0.0.1:");
    cr_assert(at != NULL, "monitor not on 127.0.0.1: %s", h_tail(b->err));
    int port = atoi(at + strlen("event=monitor_listening addr=127.0.0.1:"));
    cr_assert(port > 0);
    return port;
}

static const char *curl_path(void)
{
    static const char *const where[] = {"/usr/bin/curl", "/bin/curl", "/usr/local/bin/curl"};
    for (size_t i = 0; i < sizeof where / sizeof where[0]; i++)
        if (access(where[i], X_OK) == 0)
            return where[i];
    cr_assert_fail("curl is not installed (scripts/setup installs it)");
    return NULL;
}

typedef struct {
    int status;
    char type[128]; /* Content-Type */
    char *body;     /* malloc'd */
} http_resp;

static void http_free(http_resp *r)
{
    free(r->body);
    r->body = NULL;
}

/* curl -X method http://127.0.0.1:port/path: status, content type, body. */
static http_resp http_do(int port, const char *method, const char *path)
{
    char url[160];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    const char *argv[] = {curl_path(), "-s", "-S", "--max-time", "10", "-X", method, "-o", "-",
                          "-w", "\n%{http_code} %{content_type}", url, NULL};
    h_proc *p = h_spawn("curl", argv);
    cr_assert(h_wait_exit(p, h_ms(15000)), "curl %s %s did not finish", method, url);
    cr_assert_eq(h_exit_code(p), 0, "curl %s failed: %s", url, h_tail(p->err));
    http_resp r = {0};
    char *nl = strrchr(p->out, '\n');
    cr_assert(nl != NULL, "no status from curl: %s", h_tail(p->out));
    *nl = '\0';
    cr_assert(sscanf(nl + 1, "%d %127[^\n]", &r.status, r.type) >= 1, "bad curl trailer: %s", nl + 1);
    r.body = strdup(p->out);
    cr_assert(r.body != NULL);
    h_free(p);
    return r;
}

/* GET path; asserts 200, JSON, and that the body is valid JSON. */
static char *get_json(int port, const char *path)
{
    http_resp r = http_do(port, "GET", path);
    cr_assert_eq(r.status, 200, "GET %s: %d %s", path, r.status, h_tail(r.body));
    cr_assert_str_eq(r.type, "application/json");
    cr_assert(h_json_valid(r.body), "GET %s is not valid JSON: %s", path, h_tail(r.body));
    return r.body;
}

/* ---- reading the documents ---- */

/* The number at "key": in json from `from` on, before `to` (NULL: the
 * end); false if absent or null. */
static bool jnum_in(const char *from, const char *to, const char *key, long long *v)
{
    char want[80];
    snprintf(want, sizeof want, "\"%s\":", key);
    const char *at = strstr(from, want);
    if (at == NULL || (to != NULL && at >= to))
        return false;
    at += strlen(want);
    if (strncmp(at, "null", 4) == 0)
        return false;
    char *end;
    *v = strtoll(at, &end, 10);
    return end != at;
}

static long long jnum(const char *json, const char *key)
{
    long long v;
    cr_assert(jnum_in(json, NULL, key, &v), "no number \"%s\" in %s", key, h_tail(json));
    return v;
}

/* The entry of a list (entries start with `start`, e.g. {"cid":) that
 * contains needle, copied (malloc'd); NULL if none. */
static char *entry(const char *json, const char *start, const char *needle)
{
    for (const char *e = strstr(json, start); e != NULL;) {
        const char *next = strstr(e + 1, start);
        size_t len = next != NULL ? (size_t)(next - e) : strlen(e);
        char *copy = strndup(e, len);
        cr_assert(copy != NULL);
        if (strstr(copy, needle) != NULL)
            return copy;
        free(copy);
        e = next;
    }
    return NULL;
}

/* The /connz entry of the connection named name (as JSON, quotes included). */
static char *conn_named(int port, const char *path, const char *name_json)
{
    char *doc = get_json(port, path);
    char needle[200];
    snprintf(needle, sizeof needle, "\"name\":%s,", name_json);
    char *e = entry(doc, "{\"cid\":", needle);
    free(doc);
    return e;
}

/* Waits until connection name's field key satisfies v >= min (or, with
 * exact, v == min); returns the value seen. */
static long long wait_conn_field(int port, const char *name_json, const char *key, long long min,
                                 bool exact)
{
    h_step("waiting for %s's %s to reach %s%lld in /connz", name_json, key, exact ? "" : ">= ",
           min);
    int64_t deadline = h_now_ms() + WAIT;
    long long v = -1;
    for (;;) {
        char *e = conn_named(port, "/connz", name_json);
        bool have = e != NULL && jnum_in(e, NULL, key, &v);
        if (have && (exact ? v == min : v >= min)) {
            free(e);
            break;
        }
        cr_assert(h_now_ms() < deadline, "%s's %s is %lld, not %s%lld: %s", name_json, key,
                  have ? v : -1, exact ? "" : ">= ", min, e != NULL ? e : "(not listed)");
        free(e);
        usleep(20 * 1000);
    }
    h_step(NULL);
    return v;
}

/* ---- raw clients ---- */

/* The local address of a raw connection, as the broker names its peer. */
static void local_addr(const h_raw *r, char *buf, size_t cap)
{
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    cr_assert_eq(getsockname(r->fd, (struct sockaddr *)&a, &len), 0);
    char ip[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &a.sin_addr, ip, sizeof ip);
    snprintf(buf, cap, "%s:%d", ip, ntohs(a.sin_port));
}

/* CONNECT at version (1 or 2) with name; waits for INFO. */
static void raw_hello(h_raw *r, unsigned version, const char *name)
{
    vg_buf b = {0};
    vg_status st = version >= 2 ? vg_frame_put_connect2(&b, 2, name, NULL, 0, 0)
                                : vg_frame_put_connect(&b, VG_PROTO_V1, name, NULL);
    cr_assert_eq(st, VG_OK);
    h_raw_send_buf(r, &b);
    vg_buf_free(&b);
    vg_frame f;
    cr_assert(h_raw_read(r, &f, WAIT), "no INFO after CONNECT");
    cr_assert_eq(f.type, VG_FRAME_INFO);
}

/* SUB sid topic (version 2: from what comes next); waits for its OK. */
static void raw_sub(h_raw *r, unsigned version, uint64_t sid, const char *topic)
{
    vg_buf b = {0};
    vg_status st = version >= 2 ? vg_frame_put_sub2(&b, sid, topic, strlen(topic), VG_SUB_NEW, 0, 0)
                                : vg_frame_put_sub(&b, sid, topic, strlen(topic));
    cr_assert_eq(st, VG_OK);
    h_raw_send_buf(r, &b);
    vg_buf_free(&b);
    vg_frame f;
    cr_assert(h_raw_read(r, &f, WAIT), "no OK for SUB %s", topic);
    cr_assert_eq(f.type, VG_FRAME_OK, "SUB %s answered with frame type %d", topic, f.type);
}

/* n MSG_TYPE1 frames of len bytes each on topic. */
static void raw_publish(h_raw *r, const char *topic, int n, size_t len)
{
    char *payload = malloc(len);
    cr_assert(payload != NULL);
    memset(payload, 'p', len);
    vg_buf b = {0};
    for (int i = 0; i < n; i++) {
        cr_assert_eq(vg_frame_put_msg(&b, VG_FRAME_MSG_TYPE1, topic, strlen(topic), payload, len),
                     VG_OK);
        if (b.len > 256 * 1024)
            h_raw_send_buf(r, &b);
    }
    h_raw_send_buf(r, &b);
    vg_buf_free(&b);
    free(payload);
}

/* ---- the tests ---- */

/* Listening TCP sockets held by pid: its socket inodes found in
 * /proc/net/tcp in state 0A (LISTEN). */
static int listeners_of(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    cr_assert(d != NULL);
    unsigned long inodes[256];
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < 256) {
        char link[600], target[64];
        snprintf(link, sizeof link, "%s/%s", path, e->d_name);
        ssize_t len = readlink(link, target, sizeof target - 1);
        if (len <= 0)
            continue;
        target[len] = '\0';
        unsigned long ino;
        if (sscanf(target, "socket:[%lu]", &ino) == 1)
            inodes[n++] = ino;
    }
    closedir(d);
    FILE *f = fopen("/proc/net/tcp", "re");
    cr_assert(f != NULL);
    char line[512];
    int listening = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        unsigned state;
        unsigned long ino;
        if (sscanf(line, " %*d: %*s %*s %x %*s %*s %*s %*s %*s %lu", &state, &ino) != 2)
            continue;
        for (size_t i = 0; i < n; i++)
            if (state == 0x0A && inodes[i] == ino)
                listening++;
    }
    fclose(f);
    return listening;
}

Test(monitor, off_by_default)
{
    int port;
    h_proc *b = h_broker(&port, NULL);
    h_assert_serves(port); /* well past start-up: a monitor would have said so by now */
    cr_assert(strstr(b->err, "monitor") == NULL, "a monitor line without --monitor: %s",
              h_tail(b->err));
    cr_assert_eq(listeners_of(b->pid), 1, "the broker listens on more than its --listen");
    h_free(b);

    h_proc *m = h_broker(&port, "--monitor", "127.0.0.1:0", NULL);
    monitor_port(m);
    cr_assert_eq(listeners_of(m->pid), 2, "--monitor adds exactly one listener");
    h_free(m);
}

Test(monitor, non_loopback_refused_without_allow_unauthenticated)
{
    const char *argv[] = {h_bin("broker"), "--listen", "127.0.0.1:0", "--monitor", "0.0.0.0:0", NULL};
    h_proc *b = h_spawn("broker", argv);
    cr_assert(h_wait_exit(b, WAIT), "a broker with --monitor 0.0.0.0:0 did not exit");
    cr_assert_eq(h_exit_code(b), 2);
    cr_assert(strstr(b->err, "event=refused_to_start reason=protected_mode addr=0.0.0.0:0") != NULL,
              "%s", h_tail(b->err));
    cr_assert(strstr(b->err, "monitor_listening") == NULL);
    h_free(b);

    int port;
    h_proc *ok = h_broker(&port, "--monitor", "0.0.0.0:0", "--allow-unauthenticated", NULL);
    cr_assert(h_wait_err(ok, "event=monitor_listening addr=0.0.0.0:", WAIT), "%s",
              h_tail(ok->err));
    cr_assert(strstr(ok->err, "event=monitor_unauthenticated addr=0.0.0.0:0") != NULL, "%s",
              h_tail(ok->err));
    int mport = atoi(strstr(ok->err, "event=monitor_listening addr=0.0.0.0:") +
                     strlen("event=monitor_listening addr=0.0.0.0:"));
    char *h = get_json(mport, "/healthz");
    free(h);
    h_free(ok);
}

Test(monitor, routes_methods_and_health)
{
    int port;
    h_proc *b = h_broker(&port, "--monitor", "127.0.0.1:0", NULL);
    int mport = monitor_port(b);
    http_resp r = http_do(mport, "GET", "/healthz");
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "{\"status\":\"ok\"}\n");
    http_free(&r);
    r = http_do(mport, "GET", "/nothing-here");
    cr_assert_eq(r.status, 404);
    cr_assert(h_json_valid(r.body), "%s", r.body);
    http_free(&r);
    r = http_do(mport, "GET", "/varz/more");
    cr_assert_eq(r.status, 404);
    http_free(&r);
    const char *methods[] = {"POST", "PUT", "DELETE"};
    for (size_t i = 0; i < 3; i++) {
        r = http_do(mport, methods[i], "/varz");
        cr_assert_eq(r.status, 405, "%s /varz: %d", methods[i], r.status);
        http_free(&r);
    }
    r = http_do(mport, "GET", "/metrics");
    cr_assert_eq(r.status, 200);
    cr_assert(strncmp(r.type, "text/plain; version=0.0.4", 25) == 0, "Content-Type %s", r.type);
    http_free(&r);
    r = http_do(mport, "GET", "/topicz");
    cr_assert_eq(r.status, 200, "/topicz is /topics' other name");
    http_free(&r);
    h_free(b);
}

/* A named subscriber with N subscriptions: name, address, count, cid,
 * protocol, and the list with ?subs=1; hostile name bytes stay valid JSON. */
Test(monitor, connz_names_addresses_and_subscriptions)
{
    int port;
    h_proc *b = h_broker(&port, "--monitor", "127.0.0.1:0", NULL);
    int mport = monitor_port(b);
    h_proc *s = h_sub(port, "--name", "watcher", "mon.a", "mon.b", "mon.*", NULL);
    h_raw raw = h_raw_connect(port);
    raw_hello(&raw, 1, "we\"ird\\\x01\xff");
    raw_sub(&raw, 1, 1, "mon.a");
    raw_sub(&raw, 1, 2, "mon.z");
    char raw_addr[64];
    local_addr(&raw, raw_addr, sizeof raw_addr);

    char *doc = get_json(mport, "/connz");
    cr_assert_eq(jnum(doc, "num_connections"), 2, "%s", doc);
    free(doc);
    char *w = conn_named(mport, "/connz", "\"watcher\"");
    cr_assert(w != NULL, "no connection named watcher");
    cr_assert_eq(jnum(w, "subscriptions"), 3, "%s", w);
    cr_assert_eq(jnum(w, "protocol"), 2, "sub speaks version 2: %s", w);
    cr_assert_eq(jnum(w, "cid"), (long long)h_client_id(b, "watcher"), "%s", w);
    /* Its address: the one the broker logged for it. */
    char needle[64];
    snprintf(needle, sizeof needle, "client=%lld addr=", jnum(w, "cid"));
    const char *logged = strstr(b->err, needle);
    cr_assert(logged != NULL);
    logged += strlen(needle);
    char addr[64];
    cr_assert_eq(sscanf(logged, "%63s", addr), 1);
    char want[96];
    snprintf(want, sizeof want, "\"addr\":\"%s\"", addr);
    cr_assert(strstr(w, want) != NULL, "%s not in %s", want, w);
    cr_assert(strstr(w, "subscriptions_list") == NULL, "listed without ?subs=1");
    free(w);

    char *r = conn_named(mport, "/connz", "\"we\\\"ird\\\\\\u0001\\u00ff\"");
    cr_assert(r != NULL, "the raw client's name is not there escaped");
    snprintf(want, sizeof want, "\"addr\":\"%s\"", raw_addr);
    cr_assert(strstr(r, want) != NULL, "%s not in %s", want, r);
    cr_assert_eq(jnum(r, "subscriptions"), 2);
    cr_assert_eq(jnum(r, "protocol"), 1);
    free(r);

    w = conn_named(mport, "/connz?subs=1", "\"watcher\"");
    cr_assert(w != NULL);
    cr_assert(strstr(w, "\"subscriptions_list\":[") != NULL, "%s", w);
    cr_assert(strstr(w, "\"subject\":\"mon.a\"") != NULL, "%s", w);
    cr_assert(strstr(w, "\"subject\":\"mon.b\"") != NULL, "%s", w);
    cr_assert(strstr(w, "\"subject\":\"mon.*\"") != NULL, "%s", w);
    free(w);

    /* An UNSUB is seen at once. */
    vg_buf u = {0};
    cr_assert_eq(vg_frame_put_unsub(&u, 2), VG_OK);
    h_raw_send_buf(&raw, &u);
    vg_buf_free(&u);
    wait_conn_field(mport, "\"we\\\"ird\\\\\\u0001\\u00ff\"", "subscriptions", 1, true);

    /* A connection that ends leaves /connz. */
    h_free(s);
    h_step("waiting for watcher to leave /connz");
    int64_t deadline = h_now_ms() + WAIT;
    while ((w = conn_named(mport, "/connz", "\"watcher\"")) != NULL) {
        free(w);
        cr_assert(h_now_ms() < deadline, "watcher is still listed after it exited");
        usleep(20 * 1000);
    }
    h_raw_close(&raw);
    h_free(b);
}

/* Counters against what was published: per connection, /varz, /topics
 * and /metrics, all the same numbers. */
Test(monitor, counters_topics_and_metrics_match_the_traffic)
{
    int port;
    h_proc *b = h_broker(&port, "--monitor", "127.0.0.1:0", "--stats-interval", "0", NULL);
    int mport = monitor_port(b);
    h_proc *s = h_sub(port, "--name", "reader", "cnt.t", NULL);
    h_raw pub = h_raw_connect(port);
    raw_hello(&pub, 1, "writer");
    const int n = 250;
    const size_t len = 100;
    raw_publish(&pub, "cnt.t", n, len);
    cr_assert(h_wait_out(s, "cnt.t MSG_TYPE1 ", WAIT));
    wait_conn_field(mport, "\"reader\"", "msgs_out", n, true);
    char *w = conn_named(mport, "/connz", "\"writer\"");
    cr_assert(w != NULL);
    cr_assert_eq(jnum(w, "msgs_in"), n, "%s", w);
    cr_assert_eq(jnum(w, "bytes_in"), (long long)(n * len), "%s", w);
    cr_assert_eq(jnum(w, "msgs_out"), 0, "%s", w);
    cr_assert_eq(jnum(w, "subscriptions"), 0, "%s", w);
    free(w);
    char *r = conn_named(mport, "/connz", "\"reader\"");
    cr_assert_eq(jnum(r, "bytes_out"), (long long)(n * len), "%s", r);
    cr_assert_eq(jnum(r, "msgs_in"), 0, "%s", r);
    long long lag;
    cr_assert(jnum_in(r, NULL, "lag", &lag));
    free(r);
    /* A subscriber that keeps up has no lag (once it has read it all). */
    wait_conn_field(mport, "\"reader\"", "lag", 0, true);

    char *v = get_json(mport, "/varz");
    cr_assert_eq(jnum(v, "msgs_in"), n, "%s", v);
    cr_assert_eq(jnum(v, "bytes_in"), (long long)(n * len));
    cr_assert_eq(jnum(v, "msgs_out"), n);
    cr_assert_eq(jnum(v, "bytes_out"), (long long)(n * len));
    cr_assert_eq(jnum(v, "connections"), 2);
    cr_assert_eq(jnum(v, "connections_total"), 2);
    cr_assert_eq(jnum(v, "subscriptions"), 1);
    cr_assert_eq(jnum(v, "topic_logs"), 1, "only cnt.t has a log: %s", v);
    cr_assert_eq(jnum(v, "dropped"), 0);
    cr_assert_eq(jnum(v, "records"), n, "the log holds every message: %s", v);
    cr_assert_gt(jnum(v, "used_bytes"), (long long)(n * len));
    char listen[64];
    snprintf(listen, sizeof listen, "\"listen\":\"127.0.0.1:%d\"", port);
    cr_assert(strstr(v, listen) != NULL, "%s", v);
    char monitor[64];
    snprintf(monitor, sizeof monitor, "\"monitor\":\"127.0.0.1:%d\"", mport);
    cr_assert(strstr(v, monitor) != NULL, "%s", v);
    cr_assert(strstr(v, "\"data_dir\":null") != NULL, "%s", v);
    cr_assert_eq(jnum(v, "max_payload"), 1 << 20);
    cr_assert_gt(jnum(v, "rss_bytes"), 0);

    char *t = get_json(mport, "/topics");
    cr_assert_eq(jnum(t, "num_topics"), 1, "%s", t);
    char *e = entry(t, "{\"topic\":", "\"topic\":\"cnt.t\"");
    cr_assert(e != NULL, "%s", t);
    cr_assert_eq(jnum(e, "first_seq"), 1, "%s", e);
    cr_assert_eq(jnum(e, "last_seq"), n, "%s", e);
    cr_assert_eq(jnum(e, "messages"), n, "%s", e);
    cr_assert_gt(jnum(e, "bytes"), (long long)(n * len), "%s", e);
    cr_assert_eq(jnum(e, "subscribers"), 1, "%s", e);
    free(e);
    free(t);

    http_resp m = http_do(mport, "GET", "/metrics");
    cr_assert_eq(m.status, 200);
    char line[128];
    snprintf(line, sizeof line, "\nvigil_messages_in_total %d\n", n);
    cr_assert(strstr(m.body, line) != NULL, "no %s in %s", line + 1, h_tail(m.body));
    snprintf(line, sizeof line, "\nvigil_messages_out_bytes_total %zu\n", n * len);
    cr_assert(strstr(m.body, line) != NULL, "no %s", line + 1);
    cr_assert(strstr(m.body, "\nvigil_connections 2\n") != NULL);
    cr_assert(strstr(m.body, "\nvigil_evictions_total{reason=\"slow_consumer\"} 0\n") != NULL);
    snprintf(line, sizeof line, "\nvigil_retention_used_bytes %lld\n", jnum(v, "used_bytes"));
    cr_assert(strstr(m.body, line) != NULL, "/metrics and /varz disagree: no %s", line + 1);
    /* Every line is a HELP, a TYPE, or name{labels} value of a family
     * whose HELP and TYPE came before it. */
    char family[128] = "";
    bool typed = false;
    for (char *ln = strtok(m.body, "\n"); ln != NULL; ln = strtok(NULL, "\n")) {
        char name[128], kind[32];
        if (sscanf(ln, "# HELP %127s", name) == 1) {
            snprintf(family, sizeof family, "%s", name);
            typed = false;
            continue;
        }
        if (sscanf(ln, "# TYPE %127s %31s", name, kind) == 2) {
            cr_assert_str_eq(name, family, "TYPE without its HELP: %s", ln);
            cr_assert(strcmp(kind, "counter") == 0 || strcmp(kind, "gauge") == 0, "%s", ln);
            cr_assert(strcmp(kind, "counter") != 0 ||
                          strcmp(name + strlen(name) - 6, "_total") == 0,
                      "counter %s does not end in _total", name);
            typed = true;
            continue;
        }
        size_t nl = strcspn(ln, "{ ");
        cr_assert(typed && strlen(family) == nl && strncmp(ln, family, nl) == 0,
                  "sample outside its family: %s", ln);
        if (ln[nl] == '{') {
            char *close = strchr(ln, '}');
            cr_assert(close != NULL, "%s", ln);
            nl = (size_t)(close - ln) + 1;
        }
        cr_assert_eq(ln[nl], ' ', "%s", ln);
        char *end;
        strtod(ln + nl + 1, &end);
        cr_assert(end != ln + nl + 1 && *end == '\0', "not a value: %s", ln);
    }
    http_free(&m);
    free(v);
    h_raw_close(&pub);
    h_free(s);
    h_free(b);
}

/* Subscribers that stop reading: a version-1 one's outbox (pending bytes)
 * and a version-2 one's lag behind the log grow; one that keeps up stays
 * at lag 0. */
Test(monitor, stalled_subscribers_show_pending_bytes_and_lag)
{
    int port;
    h_proc *b = h_broker(&port, "--monitor", "127.0.0.1:0", "--stats-interval", "0", NULL);
    int mport = monitor_port(b);
    h_raw v1 = h_raw_connect_small(port, 4096);
    raw_hello(&v1, 1, "stuck1");
    raw_sub(&v1, 1, 1, "lag.t");
    h_raw v2 = h_raw_connect_small(port, 4096);
    raw_hello(&v2, 2, "stuck2");
    raw_sub(&v2, 2, 1, "lag.t");
    h_proc *ok = h_sub(port, "--name", "keeper", "lag.t", NULL);
    h_raw pub = h_raw_connect(port);
    raw_hello(&pub, 1, "writer");

    /* 12 MB: more than the broker's socket buffer (tcp_wmem's 4 MB at most)
     * and the stalled client's hold together. */
    raw_publish(&pub, "lag.t", 120, 100000);
    long long lag1 = wait_conn_field(mport, "\"stuck2\"", "lag", 1, false);
    long long pend1 = wait_conn_field(mport, "\"stuck1\"", "pending_bytes", 1, false);
    wait_conn_field(mport, "\"keeper\"", "msgs_out", 120, true);
    wait_conn_field(mport, "\"keeper\"", "lag", 0, true);
    char *k = conn_named(mport, "/connz", "\"keeper\"");
    cr_assert_eq(jnum(k, "pending_bytes"), 0, "%s", k);
    free(k);

    raw_publish(&pub, "lag.t", 40, 100000);
    wait_conn_field(mport, "\"stuck2\"", "lag", lag1 + 1, false);
    wait_conn_field(mport, "\"stuck1\"", "pending_bytes", pend1 + 1, false);
    wait_conn_field(mport, "\"keeper\"", "msgs_out", 160, true);
    wait_conn_field(mport, "\"keeper\"", "lag", 0, true);
    /* The version-1 one's stalled data is in its outbox, not in a lag. */
    char *s1 = conn_named(mport, "/connz", "\"stuck1\"");
    cr_assert_eq(jnum(s1, "lag"), 0, "%s", s1);
    free(s1);
    h_raw_close(&pub);
    h_raw_close(&v1);
    h_raw_close(&v2);
    h_free(ok);
    h_free(b);
}

/* The round trip is null until a PING of the broker is answered, then set. */
Test(monitor, heartbeat_rtt_after_a_pong)
{
    int port;
    h_proc *b = h_broker(&port, "--monitor", "127.0.0.1:0", "--keepalive-time", h_secs(0.3),
                         "--keepalive-interval", h_secs(1), "--keepalive-probes", "3", NULL);
    int mport = monitor_port(b);
    h_raw r = h_raw_connect(port);
    raw_hello(&r, 1, "pinged");
    char *c = conn_named(mport, "/connz", "\"pinged\"");
    cr_assert(c != NULL);
    cr_assert(strstr(c, "\"rtt_us\":null") != NULL, "measured before any PING: %s", c);
    free(c);
    vg_frame f;
    h_step("waiting for the broker's PING");
    do
        cr_assert(h_raw_read(&r, &f, WAIT), "no PING from the broker");
    while (f.type != VG_FRAME_PING);
    h_step(NULL);
    c = conn_named(mport, "/connz", "\"pinged\"");
    cr_assert(strstr(c, "\"rtt_us\":null") != NULL, "measured before the PONG: %s", c);
    free(c);
    usleep(20 * 1000); /* a round trip of at least 20 ms */
    vg_buf pong = {0};
    cr_assert_eq(vg_frame_put_pong(&pong), VG_OK);
    h_raw_send_buf(&r, &pong);
    vg_buf_free(&pong);
    long long rtt = wait_conn_field(mport, "\"pinged\"", "rtt_us", 20000, false);
    cr_assert_lt(rtt, h_ms(10000) * 1000LL, "rtt_us %lld", rtt);
    c = conn_named(mport, "/connz", "\"pinged\"");
    long long idle = jnum(c, "last_activity_ms");
    cr_assert_lt(idle, h_ms(5000), "%s", c);
    free(c);
    char *v = get_json(mport, "/varz");
    cr_assert_geq(jnum(v, "pongs_received"), 1, "%s", v);
    free(v);
    h_raw_close(&r);
    h_free(b);
}

/* The same documents over the broker protocol. */
Test(monitor, sys_topics_answer_with_the_same_documents)
{
    int port;
    h_proc *b = h_broker(&port, "--monitor", "127.0.0.1:0", NULL);
    int mport = monitor_port(b);
    h_raw r = h_raw_connect(port);
    raw_hello(&r, 1, "asker");
    const char *topics[] = {"$SYS.varz", "$SYS.connz", "$SYS.topics"};
    for (int i = 0; i < 3; i++) {
        raw_sub(&r, 1, (uint64_t)i + 1, topics[i]);
        vg_frame f;
        h_step("waiting for the answer on %s", topics[i]);
        do
            cr_assert(h_raw_read(&r, &f, WAIT), "no answer on %s", topics[i]);
        while (f.type != VG_FRAME_MSG_TYPE1);
        h_step(NULL);
        cr_assert(f.topic_len == strlen(topics[i]) && memcmp(f.topic, topics[i], f.topic_len) == 0);
        char *doc = strndup((const char *)f.payload, f.payload_len);
        cr_assert(h_json_valid(doc), "%s is not valid JSON: %s", topics[i], h_tail(doc));
        if (i == 0) {
            char *v = get_json(mport, "/varz");
            char id[64];
            const char *at = strstr(v, "\"server_id\":");
            cr_assert(at != NULL);
            snprintf(id, sizeof id, "%.31s", at);
            cr_assert(strstr(doc, id) != NULL, "%s differs from /varz: %s", topics[i], doc);
            cr_assert_eq(jnum(doc, "connections"), jnum(v, "connections"));
            cr_assert(strstr(doc, "\"limits\":{") != NULL);
            free(v);
        } else if (i == 1) {
            cr_assert(strstr(doc, "\"name\":\"asker\"") != NULL, "%s", doc);
            cr_assert_eq(jnum(doc, "num_connections"), 1);
        } else {
            /* The answers themselves went into logs: $SYS.varz and $SYS.connz. */
            cr_assert(strstr(doc, "\"topic\":\"$SYS.varz\"") != NULL, "%s", doc);
        }
        free(doc);
    }
    h_raw_close(&r);
    h_free(b);
}

/* HTTP clients that connect and never finish a request hold the monitor's
 * slots, not the broker: clients are served meanwhile, $SYS.varz still
 * answers, and once they go the monitor serves again. */
Test(monitor, stuck_http_clients_do_not_stop_the_broker)
{
    int port;
    h_proc *b = h_broker(&port, "--monitor", "127.0.0.1:0", NULL);
    int mport = monitor_port(b);
    enum { STUCK = 24 }; /* more than the monitor's 16 slots, and 8 per address */
    int fds[STUCK];
    for (int i = 0; i < STUCK; i++) {
        fds[i] = h_tcp_connect(mport);
        cr_assert(fds[i] >= 0, "connect to the monitor: %d", i);
        const char half[] = "GET /varz HTTP/1.1\r\nHost: x\r\n"; /* never ended */
        cr_assert_eq(write(fds[i], half, sizeof half - 1), (ssize_t)(sizeof half - 1));
    }
    h_assert_serves(port);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/healthz", mport);
    const char *full[] = {curl_path(), "-s", "--max-time", "2", "-o", "-", "-w", "\n%{http_code}",
                          url, NULL};
    h_proc *c = h_spawn("curl", full);
    cr_assert(h_wait_exit(c, h_ms(5000)));
    cr_assert(strstr(c->out, "\n200") == NULL, "served past its limit of clients from one address");
    h_free(c);
    h_raw r = h_raw_connect(port);
    raw_hello(&r, 1, "asker");
    raw_sub(&r, 1, 1, "$SYS.varz");
    vg_frame f;
    do
        cr_assert(h_raw_read(&r, &f, WAIT), "no $SYS.varz answer while the monitor is full");
    while (f.type != VG_FRAME_MSG_TYPE1);
    h_raw_close(&r);
    for (int i = 0; i < STUCK; i++)
        close(fds[i]);
    h_step("waiting for /healthz to answer again once the stuck clients left");
    int64_t deadline = h_now_ms() + WAIT;
    for (;;) {
        c = h_spawn("curl", full);
        cr_assert(h_wait_exit(c, h_ms(5000)));
        bool ok = strstr(c->out, "{\"status\":\"ok\"}\n\n200") != NULL;
        h_free(c);
        if (ok)
            break;
        cr_assert(h_now_ms() < deadline, "the monitor did not come back");
        usleep(50 * 1000);
    }
    h_step(NULL);
    h_free(b);
}
