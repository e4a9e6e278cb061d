/* vigil-matchbench: the subscription matcher alone (broker/sublist.c), no
 * sockets: ns per match for cache hits, for cache misses, and for the
 * naive linear reference (vg_subject_matches over every subscription).
 *
 *   vigil-matchbench [--subs N]... [--topics T] [--seed S]
 *
 * The namespace has four tokens, s0..s9.r0..r19.o0..o49.e0..e9 (100,000
 * topics), of which T (1,000) are published. Subscriptions are 1/2 literal
 * (half of them naming a published topic), 1/4 a published topic with one
 * token replaced by '*', 1/4 a published topic's first 1..3 tokens then
 * '>'; one in ten joins a queue group g0..g3. Members are 1,000 fake
 * connections with an atomic reference count, as the broker's are.
 *
 * Hits: a working set of 16 topics matched over and over through one cache.
 * Misses: all T topics round-robin through one cache of 64 entries, so
 * (nearly) every match is a miss; the hit rate printed says how nearly.
 * Build Release to measure (cmake -DCMAKE_BUILD_TYPE=Release). */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "sublist.h"
#include "topic.h"

#define MEMBERS 1000

typedef struct {
    atomic_long refs;
    char pad[56]; /* a connection's refcount is on its own line */
} member;

static member members[MEMBERS];

static void retain(void *m)
{
    atomic_fetch_add_explicit(&((member *)m)->refs, 1, memory_order_relaxed);
}

static void release(void *m)
{
    atomic_fetch_sub_explicit(&((member *)m)->refs, 1, memory_order_acq_rel);
}

static uint64_t rng_state;

static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static unsigned pick(unsigned n)
{
    return (unsigned)(rnd() % n);
}

typedef struct {
    char s[48];
    size_t len;
} str;

static void random_topic(str *t)
{
    t->len = (size_t)sprintf(t->s, "s%u.r%u.o%u.e%u", pick(10), pick(20), pick(50), pick(10));
}

/* Copies the first k tokens of t (all if k = 4) into out, replacing token
 * `star` (if < 4) with '*' and appending ".>" if gt. */
static void derive(const str *t, unsigned k, unsigned star, int gt, str *out)
{
    out->len = 0;
    const char *p = t->s;
    for (unsigned i = 0; i < k; i++) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        if (i > 0)
            out->s[out->len++] = '.';
        if (i == star) {
            out->s[out->len++] = '*';
        } else {
            memcpy(out->s + out->len, p, n);
            out->len += n;
        }
        p += n + 1;
    }
    if (gt) {
        memcpy(out->s + out->len, ".>", 2);
        out->len += 2;
    }
    out->s[out->len] = '\0';
}

typedef struct {
    str subj;
    const char *queue;
    void *member;
} sub;

static void build(size_t nsubs, const str *topics, size_t ntopics, sub *subs)
{
    static const char *const groups[] = {"g0", "g1", "g2", "g3"};
    for (size_t i = 0; i < nsubs; i++) {
        sub *s = &subs[i];
        const str *t = &topics[pick((unsigned)ntopics)];
        unsigned kind = (unsigned)(i % 4);
        if (kind <= 1) {
            if (pick(2))
                s->subj = *t;
            else
                random_topic(&s->subj);
        } else if (kind == 2) {
            derive(t, 4, pick(4), 0, &s->subj);
        } else {
            unsigned r = pick(10);
            derive(t, r == 0 ? 1 : r <= 3 ? 2 : 3, 4, 1, &s->subj);
        }
        s->queue = pick(10) == 0 ? groups[pick(4)] : NULL;
        s->member = &members[pick(MEMBERS)];
    }
}

static double per_ns(int64_t t0, int64_t t1, uint64_t n)
{
    return (double)(t1 - t0) / (double)n;
}

/* This thread's CPU time: on a shared machine wall time also counts the
 * time other processes held the CPU. Both are printed. */
static int64_t cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static volatile size_t sink; /* keeps the naive loop's results alive */

static void run(size_t nsubs, size_t ntopics, uint64_t seed, int naive)
{
    rng_state = seed;
    str *topics = calloc(ntopics, sizeof *topics);
    sub *subs = calloc(nsubs, sizeof *subs);
    void **scratch = calloc(nsubs, sizeof *scratch);
    if (topics == NULL || subs == NULL || scratch == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < ntopics; i++)
        random_topic(&topics[i]);
    build(nsubs, topics, ntopics, subs);

    vg_sublist *sl = vg_sublist_create(retain, release);
    int64_t t0 = vg_now_ns();
    for (size_t i = 0; i < nsubs; i++) {
        const sub *s = &subs[i];
        if (vg_subject_check(s->subj.s, s->subj.len, 256, 16, NULL) != VG_OK ||
            vg_sublist_add(sl, s->subj.s, s->subj.len, s->queue, s->queue ? 2 : 0, s->member) !=
                VG_OK) {
            fprintf(stderr, "add %s failed\n", s->subj.s);
            exit(1);
        }
    }
    int64_t t1 = vg_now_ns();
    vg_sublist_counts_t k;
    vg_sublist_counts(sl, &k);
    printf("subs=%zu build ns_per_add=%.0f literals=%zu patterns=%zu entries=%zu groups=%zu\n",
           nsubs, per_ns(t0, t1, nsubs), k.literals, k.patterns, k.entries, k.groups);

    /* Fan-out, for context: listings per published topic. */
    vg_sublist_cache *c = vg_sublist_cache_create(sl);
    size_t listed = 0;
    for (size_t i = 0; i < ntopics; i++) {
        const vg_sublist_result *r;
        vg_sublist_match(c, topics[i].s, topics[i].len, &r);
        listed += r->n;
        for (size_t g = 0; g < r->ngroups; g++)
            listed += r->groups[g].n;
    }
    printf("subs=%zu fanout listings_per_topic=%.1f\n", nsubs, (double)listed / ntopics);

    /* (a) hits */
    enum { WORKING = 16 };
    const uint64_t nhit = 4000000;
    uint64_t h0, m0, h1, m1;
    for (size_t i = 0; i < WORKING; i++) {
        const vg_sublist_result *r;
        vg_sublist_match(c, topics[i].s, topics[i].len, &r);
    }
    vg_sublist_cache_stats(c, &h0, &m0);
    int64_t c0 = cpu_ns();
    t0 = vg_now_ns();
    for (uint64_t i = 0; i < nhit; i++) {
        const vg_sublist_result *r;
        const str *t = &topics[i % WORKING];
        vg_sublist_match(c, t->s, t->len, &r);
        sink += r->n;
    }
    t1 = vg_now_ns();
    int64_t c1 = cpu_ns();
    vg_sublist_cache_stats(c, &h1, &m1);
    printf("subs=%zu hit cpu_ns_per_match=%.1f wall_ns_per_match=%.1f matches=%" PRIu64
           " hit_rate=%.3f\n",
           nsubs, per_ns(c0, c1, nhit), per_ns(t0, t1, nhit), nhit,
           (double)(h1 - h0) / (double)nhit);

    /* (b) misses */
    const uint64_t nmiss = nsubs >= 100000 ? 200000 : 1000000;
    vg_sublist_cache_stats(c, &h0, &m0);
    c0 = cpu_ns();
    t0 = vg_now_ns();
    for (uint64_t i = 0; i < nmiss; i++) {
        const vg_sublist_result *r;
        const str *t = &topics[i % ntopics];
        vg_sublist_match(c, t->s, t->len, &r);
        sink += r->n;
    }
    t1 = vg_now_ns();
    c1 = cpu_ns();
    vg_sublist_cache_stats(c, &h1, &m1);
    printf("subs=%zu miss cpu_ns_per_match=%.1f wall_ns_per_match=%.1f matches=%" PRIu64
           " hit_rate=%.3f\n",
           nsubs, per_ns(c0, c1, nmiss), per_ns(t0, t1, nmiss), nmiss,
           (double)(h1 - h0) / (double)nmiss);
    vg_sublist_cache_destroy(c);

    /* (c) the naive reference: every subscription tested per topic */
    if (naive) {
        uint64_t rounds = 3 * ntopics;
        c0 = cpu_ns();
        t0 = vg_now_ns();
        for (uint64_t i = 0; i < rounds; i++) {
            const str *t = &topics[i % ntopics];
            size_t n = 0;
            for (size_t j = 0; j < nsubs; j++)
                if (vg_subject_matches(subs[j].subj.s, subs[j].subj.len, t->s, t->len))
                    scratch[n++] = subs[j].member;
            sink += n;
        }
        t1 = vg_now_ns();
        c1 = cpu_ns();
        printf("subs=%zu naive cpu_ns_per_match=%.1f wall_ns_per_match=%.1f matches=%" PRIu64
               "\n",
               nsubs, per_ns(c0, c1, rounds), per_ns(t0, t1, rounds), rounds);
    }

    for (size_t i = 0; i < nsubs; i++)
        vg_sublist_remove(sl, subs[i].subj.s, subs[i].subj.len, subs[i].queue,
                          subs[i].queue ? 2 : 0, subs[i].member);
    vg_sublist_counts(sl, &k);
    if (k.entries != 0)
        fprintf(stderr, "entries left after removing all: %zu\n", k.entries);
    vg_sublist_destroy(sl);
    free(scratch);
    free(subs);
    free(topics);
}

static void machine(int argc, char **argv)
{
    printf("command:");
    for (int i = 0; i < argc; i++)
        printf(" %s", argv[i]);
    printf("\n");
    struct utsname u;
    if (uname(&u) == 0)
        printf("machine: %s %s %s\n", u.sysname, u.release, u.machine);
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[256];
    while (f != NULL && fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, "model name", 10) == 0) {
            printf("cpu:%s", strchr(line, ':') + 1);
            break;
        }
    }
    if (f != NULL)
        fclose(f);
    printf("cpus_online: %ld\ncompiler: %s\n", sysconf(_SC_NPROCESSORS_ONLN), __VERSION__);
#ifdef NDEBUG
    printf("build: optimized (NDEBUG)\n");
#else
    printf("build: assertions on: not a Release build, figures are not representative\n");
#endif
}

int main(int argc, char **argv)
{
    size_t sizes[8], nsizes = 0, ntopics = 1000;
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--subs") == 0 && i + 1 < argc && nsizes < 8)
            sizes[nsizes++] = strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--topics") == 0 && i + 1 < argc)
            ntopics = strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc)
            seed = strtoull(argv[++i], NULL, 0);
        else {
            fprintf(stderr, "usage: %s [--subs N]... [--topics T] [--seed S]\n", argv[0]);
            return 2;
        }
    }
    if (nsizes == 0) {
        sizes[nsizes++] = 10000;
        sizes[nsizes++] = 100000;
    }
    if (ntopics == 0 || seed == 0) {
        fprintf(stderr, "--topics and --seed must be positive\n");
        return 2;
    }
    machine(argc, argv);
    printf("topics_published: %zu seed: %#" PRIx64 "\n", ntopics, seed);
    for (size_t i = 0; i < nsizes; i++)
        run(sizes[i], ntopics, seed, sizes[i] <= 10000);
    return 0;
}
