/* Subscriptions at scale (issue 12; subs.h): the workload, its runs against
 * each system, and the side-by-side report.
 *
 * The namespace. 1,000 topics are published, bench.<a>.<b> with a in
 * 0..99 and b in 0..9, round robin, by one publisher at full speed. The N
 * subscriptions are drawn (a fixed seed) from a namespace W = max(N/5,
 * 1000) wide, so that most of them match nothing published: by i mod 4,
 *   0, 1  bench.<a>.<b>          a in [0, W), b in [0, 10): 1 topic if a < 100
 *   2     bench.<a>.* (i/4 even)  a in [0, W): 10 topics if a < 100
 *         bench.*.<c> (i/4 odd)   c in [0, W): 100 topics if c < 10
 *   3     bench.<a>.>             a in [0, W): 10 topics if a < 100
 * which gives each published message 2.75 matching subscriptions on average
 * at any N in expectation (the fixed seed draws 2.59 at 10,000) (0.05 N/W for the literals, 0.125 N/W for each half of the
 * stars, 0.25 N/W for the >s). Subscription i belongs to connection
 * i mod conns. --literal-only makes every one a literal (same topics).
 *
 * What is expected: nats-server delivers a message once per matching
 * subscription, vigil once per matching *connection* (its MSG carries no
 * sid: a connection's sids on one topic share one position). Both counts
 * are worked out from the subjects, exactly, so the loss check is exact for
 * each system; the delivered rates count what each delivered.
 *
 * Churn subjects are drawn from the same shapes outside the published
 * range (a >= 100, c >= 10): they change the table, never the deliveries. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "subs_internal.h"

#define QUEUE_TOPIC "bench.q"
#define QUEUE_NAME "q"

/* ---- the workload ---- */

static uint64_t rng_next(uint64_t *s) /* splitmix64 */
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void topic_name(char *buf, int t) { snprintf(buf, SUBJECT_MAX, "bench.%d.%d", t / 10, t % 10); }

void subs_subject(char *buf, int i, int width, bool literal_only, bool churn, uint64_t *rng,
                  uint8_t *hit)
{
    int lo_a = churn ? 100 : 0, lo_c = churn ? 10 : 0;
    int a = lo_a + (int)(rng_next(rng) % (uint64_t)(width - lo_a));
    int c = lo_c + (int)(rng_next(rng) % (uint64_t)(width - lo_c));
    int b = (int)(rng_next(rng) % 10);
    int kind = literal_only ? 0 : i % 4;
    if (kind <= 1) {
        snprintf(buf, SUBJECT_MAX, "bench.%d.%d", a, b);
        if (hit != NULL && a < 100)
            hit[a * 10 + b]++;
    } else if (kind == 2 && (i / 4) % 2 == 0) {
        snprintf(buf, SUBJECT_MAX, "bench.%d.*", a);
        for (int k = 0; hit != NULL && a < 100 && k < 10; k++)
            hit[a * 10 + k]++;
    } else if (kind == 2) {
        snprintf(buf, SUBJECT_MAX, "bench.*.%d", c);
        for (int k = 0; hit != NULL && c < 10 && k < 100; k++)
            hit[k * 10 + c]++;
    } else {
        snprintf(buf, SUBJECT_MAX, "bench.%d.>", a);
        for (int k = 0; hit != NULL && a < 100 && k < 10; k++)
            hit[a * 10 + k]++;
    }
}

static int table_make(table *t, const subs_cfg *cfg)
{
    *t = (table){.nsubs = cfg->subs, .conns = cfg->conns,
                 .width = cfg->subs / 5 > 1000 ? cfg->subs / 5 : 1000};
    t->subjects = calloc((size_t)cfg->subs, sizeof *t->subjects);
    t->hits_vigil = calloc(TOPICS, sizeof *t->hits_vigil);
    t->hits_nats = calloc(TOPICS, sizeof *t->hits_nats);
    uint8_t *hit = calloc((size_t)cfg->conns * TOPICS, 1);
    if (t->subjects == NULL || t->hits_vigil == NULL || t->hits_nats == NULL || hit == NULL) {
        free(hit);
        return -1;
    }
    uint64_t rng = 12;
    for (int i = 0; i < cfg->subs; i++)
        subs_subject(t->subjects[i], i, t->width, cfg->literal_only, false, &rng,
                hit + (size_t)(i % cfg->conns) * TOPICS);
    for (int c = 0; c < cfg->conns; c++)
        for (int k = 0; k < TOPICS; k++) {
            uint8_t h = hit[(size_t)c * TOPICS + k];
            t->hits_nats[k] += h;
            t->hits_vigil[k] += h > 0;
        }
    for (int k = 0; k < TOPICS; k++) {
        t->expect_per_round_vigil += t->hits_vigil[k];
        t->expect_per_round_nats += t->hits_nats[k];
    }
    free(hit);
    return 0;
}

uint64_t subs_expected(const table *t, bool nats, uint64_t count)
{
    if (t == NULL)
        return count;
    const uint32_t *h = nats ? t->hits_nats : t->hits_vigil;
    uint64_t per = nats ? t->expect_per_round_nats : t->expect_per_round_vigil;
    uint64_t n = count / TOPICS * per;
    for (uint64_t k = 0; k < count % TOPICS; k++)
        n += h[k];
    return n;
}

static void table_free(table *t)
{
    free(t->subjects);
    free(t->hits_vigil);
    free(t->hits_nats);
}

/* ---- the cases, per system ---- */

typedef struct {
    bool ran, ok, unsupported;
    double v[8]; /* per case, see the metric names in print_side_by_side */
} sys_result;

static double rate(uint64_t n, double secs) { return secs > 0 ? (double)n / secs : 0; }

static int run_table(const subs_cfg *cfg, const system_ref *s, const table *t, sys_result *out)
{
    conn_set cs = {0};
    long rss0 = subs_rss_kb(s->pid);
    double setup_ms = 0;
    uint64_t refused = 0;
    const char *reason = NULL;
    int rc = conns_open(s, &cs, t->conns);
    if (rc == 0)
        rc = table_subscribe(s, &cs, t, &setup_ms, &refused, &reason);
    long rss1 = subs_rss_kb(s->pid);
    char (*topics)[SUBJECT_MAX] = calloc(TOPICS, SUBJECT_MAX);
    for (int k = 0; k < TOPICS; k++)
        topic_name(topics[k], k);
    phase_result quiet = {0}, busy = {0};
    churner ch = {.sys = s, .rate = cfg->churn_rate, .width = t->width,
                  .literal_only = cfg->literal_only};
    bool churn = cfg->mode == SUBS_CHURN;
    if (rc == 0)
        quiet = publish_phase(s, &cs, topics, TOPICS, cfg->count, cfg->secs, cfg->size, t,
                              cfg->timeout_ms);
    if (rc == 0 && churn) {
        pthread_t tid;
        ch.conn = s->sb->connect(s->server);
        rc = ch.conn == NULL ? -1 : 0;
        if (rc == 0) {
            pthread_create(&tid, NULL, churn_main, &ch);
            busy = publish_phase(s, &cs, topics, TOPICS, cfg->count, cfg->secs, cfg->size, t,
                                 cfg->timeout_ms);
            atomic_store(&ch.stop, true);
            pthread_join(tid, NULL);
            rc = ch.rc;
        }
    }
    uint64_t lost_q = quiet.want > quiet.got ? quiet.want - quiet.got : 0;
    uint64_t lost_b = busy.want > busy.got ? busy.want - busy.got : 0;
    /* Missing deliveries: one more message per topic tells stuck ones (a
     * subscriber not woken: they come with the probe's) from lost ones. */
    uint64_t late = 0;
    bool probed = false;
    if (rc == 0 && lost_q + lost_b > 0) {
        phase_result probe = publish_phase(s, &cs, topics, TOPICS, TOPICS, 0, cfg->size, t,
                                           cfg->timeout_ms);
        probed = !probe.failed;
        late = probe.got > probe.want ? probe.got - probe.want : 0;
    }
    /* More than expected: someone else publishes to these topics (another run on the broker?) */
    uint64_t extra = (quiet.got > quiet.want ? quiet.got - quiet.want : 0) +
                     (busy.got > busy.want ? busy.got - busy.want : 0);
    printf("system=%s mode=%s subs=%d conns=%d topics=%d size=%zu sent=%llu setup_ms=%.0f "
           "pub_rate=%.0f recv_rate=%.0f delivered=%llu expected=%llu lost=%llu",
           s->name, churn ? "churn" : "subs", t->nsubs, t->conns, TOPICS, cfg->size,
           (unsigned long long)quiet.sent, setup_ms, rate(quiet.sent, quiet.pub_s),
           rate(quiet.got, quiet.recv_s), (unsigned long long)quiet.got,
           (unsigned long long)quiet.want, (unsigned long long)lost_q);
    if (churn)
        printf(" churn_rate=%d churn_achieved=%.0f churn_ops=%llu churn_sync_ms=%.0f "
               "churn_sent=%llu churn_pub_rate=%.0f churn_recv_rate=%.0f churn_lost=%llu",
               cfg->churn_rate, rate(ch.ops, ch.secs), (unsigned long long)ch.ops, ch.sync_ms,
               (unsigned long long)busy.sent, rate(busy.sent, busy.pub_s),
               rate(busy.got, busy.recv_s), (unsigned long long)lost_b);
    if (s->pid > 0)
        printf(" broker_cpu_us_per_msg=%.3f broker_rss_start_kb=%ld broker_rss_subs_kb=%ld "
               "broker_rss_growth_kb=%ld broker_rss_kb=%ld",
               quiet.cpu_us_per_msg, rss0, rss1, rss1 - rss0, subs_rss_kb(s->pid));
    if (extra > 0)
        printf(" extra=%llu", (unsigned long long)extra);
    if (probed) /* of the lost ones, how many came after one more message per topic */
        printf(" late_after_probe=%llu", (unsigned long long)late);
    uint64_t told = 0;
    for (int i = 0; i < cs.n && s->sb->gap_missed != NULL; i++)
        told += s->sb->gap_missed(cs.conns[i]);
    if (told > 0) /* lost, and the broker said so: retention passed a subscriber */
        printf(" gap_missed=%llu", (unsigned long long)told);
    if (refused > 0)
        printf(" refused=%llu error=refused_subs reason=\"%s\"", (unsigned long long)refused,
               reason ? reason : "?");
    else if (rc != 0 || quiet.failed || busy.failed)
        printf(" error=%s", rc != 0 ? "setup_failed" : "publish_failed_or_unconfirmed");
    printf("\n");
    fflush(stdout);
    *out = (sys_result){.ran = true,
                        .ok = rc == 0 && refused == 0 && lost_q == 0 && lost_b == 0 && extra == 0 &&
                              !quiet.failed && !busy.failed,
                        .v = {rate(quiet.sent, quiet.pub_s), rate(quiet.got, quiet.recv_s),
                              setup_ms, rss1 > 0 && rss0 > 0 ? (double)(rss1 - rss0) / 1024 : NAN,
                              churn ? rate(busy.sent, busy.pub_s) : NAN,
                              churn ? rate(busy.got, busy.recv_s) : NAN,
                              churn ? rate(ch.ops, ch.secs) : NAN,
                              s->pid > 0 ? quiet.cpu_us_per_msg : NAN}};
    if (ch.conn != NULL)
        s->sb->close(ch.conn);
    free(topics);
    conns_close(s, &cs);
    return out->ok ? 0 : 1;
}

static int run_queue(const subs_cfg *cfg, const system_ref *s, sys_result *out)
{
    conn_set cs = {0};
    int rc = conns_open(s, &cs, cfg->members);
    const char *reason = NULL;
    for (int i = 0; rc == 0 && i < cs.n; i++)
        if (s->sb->sub(cs.conns[i], QUEUE_TOPIC, QUEUE_NAME) == 0)
            rc = -1;
    for (int i = 0; rc == 0 && i < cs.n; i++) {
        rc = s->sb->sync(cs.conns[i], 10000);
        if (s->sb->refused(cs.conns[i], &reason) > 0 || s->sb->lost(cs.conns[i]))
            rc = -2;
    }
    if (rc == -2 || (rc != 0 && cs.n > 0 && cs.conns[0] != NULL && s->sb->lost(cs.conns[0]))) {
        if (reason == NULL)
            s->sb->refused(cs.conns[0], &reason);
        printf("system=%s mode=queue members=%d error=unsupported_by_this_broker reason=\"%s\"\n",
               s->name, cfg->members, reason ? reason : "connection closed");
        *out = (sys_result){.ran = true, .unsupported = true};
        conns_close(s, &cs);
        return 0;
    }
    char topic[1][SUBJECT_MAX] = {QUEUE_TOPIC};
    phase_result r = {.failed = 1};
    if (rc == 0)
        r = publish_phase(s, &cs, topic, 1, cfg->count, cfg->secs, cfg->size, NULL,
                          cfg->timeout_ms);
    uint64_t lo = UINT64_MAX, hi = 0, as_member = 0;
    printf("system=%s mode=queue members=%d size=%zu sent=%llu pub_rate=%.0f recv_rate=%.0f "
           "delivered=%llu lost=%llu dup=%llu per_member=",
           s->name, cfg->members, cfg->size, (unsigned long long)r.sent, rate(r.sent, r.pub_s),
           rate(r.got, r.recv_s), (unsigned long long)r.got,
           (unsigned long long)(r.got < r.sent ? r.sent - r.got : 0),
           (unsigned long long)(r.got > r.sent ? r.got - r.sent : 0));
    for (int i = 0; i < cs.n; i++) {
        uint64_t n = s->sb->received(cs.conns[i]);
        lo = n < lo ? n : lo;
        hi = n > hi ? n : hi;
        as_member += s->sb->queue_msgs != NULL ? s->sb->queue_msgs(cs.conns[i]) : n;
        printf("%s%llu", i ? "/" : "", (unsigned long long)n);
    }
    double balance = hi > 0 ? (double)lo / (double)hi : 0;
    printf(" balance=%.3f", balance);
    if (s->pid > 0)
        printf(" broker_cpu_us_per_msg=%.3f", r.cpu_us_per_msg);
    /* A broker that takes the 8-element SUB as a plain one delivers every
     * message to every member, as 4-element MSGs without the member's sid. */
    bool plain = r.got > 0 && as_member == 0;
    if (plain)
        printf(" error=unsupported_by_this_broker reason=\"plain delivery: no 5-element MSG, "
               "every member got every message\"");
    else if (rc != 0 || r.failed)
        printf(" error=failed");
    printf("\n");
    fflush(stdout);
    *out = (sys_result){.ran = true, .unsupported = plain,
                        .ok = rc == 0 && !r.failed && r.got == r.sent,
                        .v = {rate(r.sent, r.pub_s), rate(r.got, r.recv_s), balance, (double)lo,
                              (double)hi, s->pid > 0 ? r.cpu_us_per_msg : NAN}};
    conns_close(s, &cs);
    return out->ok || plain ? 0 : 1;
}

/* ---- side by side ---- */

static void cell(char *buf, size_t n, const sys_result *r, int i, const char *unit)
{
    if (!r->ran)
        snprintf(buf, n, "-");
    else if (r->unsupported)
        snprintf(buf, n, "unsupported");
    else if (isnan(r->v[i]))
        snprintf(buf, n, "?");
    else if (strcmp(unit, "rate") == 0)
        snprintf(buf, n, r->v[i] >= 1e6 ? "%.2fM" : "%.1fk", r->v[i] >= 1e6 ? r->v[i] / 1e6 : r->v[i] / 1e3);
    else if (strcmp(unit, "count") == 0)
        snprintf(buf, n, "%.0f", r->v[i]);
    else
        snprintf(buf, n, r->v[i] >= 100 ? "%.0f" : "%.3g", r->v[i]);
    if (r->ran && !r->ok && !r->unsupported && strlen(buf) + 2 < n)
        strcat(buf, " !");
}

static void print_side_by_side(const subs_cfg *cfg, const sys_result *v, const sys_result *n)
{
    static const char *table_rows[][3] = {
        {"publish msgs/s", "rate", "+"}, {"delivered msgs/s", "rate", "+"},
        {"setup ms", "ms", "-"}, {"broker RSS growth MiB", "mib", "-"},
        {"publish msgs/s, churn", "rate", "+"}, {"delivered msgs/s, churn", "rate", "+"},
        {"churn achieved /s", "rate", "+"}, {"broker CPU us/msg", "us", "-"}};
    static const char *queue_rows[][3] = {
        {"publish msgs/s", "rate", "+"}, {"delivered msgs/s", "rate", "+"},
        {"balance min/max", "x", "+"}, {"fewest to a member", "count", "+"},
        {"most to a member", "count", "+"}, {"broker CPU us/msg", "us", "-"}};
    bool q = cfg->mode == SUBS_QUEUE;
    int rows = q ? 6 : 8;
    char how[64];
    if (cfg->count > 0)
        snprintf(how, sizeof how, "%llu messages", (unsigned long long)cfg->count);
    else
        snprintf(how, sizeof how, "%.3g s of messages", cfg->secs);
    if (q)
        printf("\nqueue group: %d members on one topic, %s of %zu B\n", cfg->members, how,
               cfg->size);
    else
        printf("\n%d subscriptions (%s) on %d connections, %d topics published, %s of %zu B%s\n",
               cfg->subs, cfg->literal_only ? "literal only" : "1/2 literal, 1/4 *, 1/4 >",
               cfg->conns, TOPICS, how, cfg->size,
               cfg->mode == SUBS_CHURN ? ", then again with churn" : "");
    printf("%-26s %14s %14s %10s\n", "metric", "vigil", "nats", "vigil/nats");
    for (int i = 0; i < rows; i++) {
        const char *(*row)[3] = q ? &queue_rows[i] : &table_rows[i];
        if (!q && cfg->mode != SUBS_CHURN && i >= 4 && i <= 6)
            continue;
        char a[32], b[32], r[16] = "-";
        cell(a, sizeof a, v, i, (*row)[1]);
        cell(b, sizeof b, n, i, (*row)[1]);
        if (v->ran && n->ran && !v->unsupported && !n->unsupported && v->v[i] > 0 &&
            n->v[i] > 0 && !isnan(v->v[i]) && !isnan(n->v[i]))
            snprintf(r, sizeof r, "%.2fx", v->v[i] / n->v[i]);
        printf("%-26s %14s %14s %10s\n", (*row)[0], a, b, r);
    }
    if ((v->ran && !v->ok && !v->unsupported) || (n->ran && !n->ok && !n->unsupported))
        printf("\"!\": that system's run failed or lost messages (its system= line says how).\n");
    printf("vigil/nats is the plain quotient: above 1x vigil is better for msgs/s and balance,\n"
           "worse for ms, MiB and CPU.\n");
}

int bench_subs(const subs_cfg *cfg)
{
    system_ref systems[2] = {
        {"vigil", &sb_vigil, &bench_vigil, cfg->vigil_server, cfg->vigil_pid, false},
#ifdef HAVE_NATS
        {"nats", &sb_nats, &bench_nats, cfg->nats_server, cfg->nats_pid, true},
#else
        {"nats", NULL, NULL, NULL, 0, true},
#endif
    };
    sys_result res[2] = {{0}};
    table t = {0};
    if (cfg->mode != SUBS_QUEUE && table_make(&t, cfg) != 0) {
        fprintf(stderr, "vigil-bench: out of memory\n");
        return 1;
    }
    int rc = 0;
    for (int i = 0; i < 2; i++) {
        const system_ref *s = &systems[i];
        if (s->server == NULL || s->sb == NULL)
            continue;
        rc |= cfg->mode == SUBS_QUEUE ? run_queue(cfg, s, &res[i]) : run_table(cfg, s, &t, &res[i]);
    }
    if (cfg->mode != SUBS_QUEUE)
        printf("# matching per round of %d topics: vigil %llu connections, nats %llu "
               "subscriptions (%.2f and %.2f per message)\n",
               TOPICS, (unsigned long long)t.expect_per_round_vigil,
               (unsigned long long)t.expect_per_round_nats,
               (double)t.expect_per_round_vigil / TOPICS, (double)t.expect_per_round_nats / TOPICS);
    print_side_by_side(cfg, &res[0], &res[1]);
    table_free(&t);
    return rc;
}
