/* What sublist.c (the table and its trie) and sublist_cache.c (the per-thread
 * caches) share: the table's layout, the token hashing, and the collector
 * that lists the subscription sets a topic reaches. Not for other files. */
#ifndef VG_SUBLIST_INTERNAL_H
#define VG_SUBLIST_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "sublist.h"

/* A queue group within one subject: members once each. */
typedef struct sl_group {
    void **m;
    size_t n, cap;
    uint32_t name_len;
    char name[];
} sl_group;

/* The subscriptions of one subject: plain members and queue groups. */
typedef struct sl_subs {
    void **m;
    size_t n, cap;
    sl_group **g;
    size_t ng, gcap;
} sl_subs;

/* A literal subject, chained in the table's hash by its whole-topic hash. */
typedef struct sl_lit {
    struct sl_lit *next;
    uint64_t hash;
    sl_subs subs;
    size_t len;
    char subj[];
} sl_lit;

/* A trie node: the position after one token of a pattern. */
typedef struct sl_node {
    struct sl_node *parent;
    struct sl_node *next; /* in the parent's kids chain */
    uint64_t hash;        /* of tok */
    struct sl_node **kids; /* literal children, chained by token hash */
    size_t nkids, nbuckets;
    struct sl_node *star; /* the '*' child */
    sl_subs subs;         /* patterns that end here */
    sl_subs gt;           /* patterns that end in '>' right after here */
    uint32_t len;
    char tok[];
} sl_node;

struct vg_sublist {
    pthread_rwlock_t lock;
    _Atomic uint64_t gen;
    uint64_t seed; /* random per table, so colliding topics cannot be precomputed */
    sl_lit **buckets; /* a power of two of them */
    size_t nbuckets;
    sl_node *root; /* patterns only */
    size_t nlit, npat, nentries, ngroups;
    void (*retain)(void *);
    void (*release)(void *);
};

typedef struct {
    const char *p;
    size_t len;
    uint64_t hash;
} sl_tok;

/* A growable list of the sets a topic reaches. */
typedef struct {
    const sl_subs **v;
    size_t n, cap;
} sl_sets;

/* 64x64 -> 128-bit multiply folded to 64 (wyhash's mum). */
static inline uint64_t sl_mum(uint64_t a, uint64_t b)
{
    __uint128_t r = (__uint128_t)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

static inline uint64_t sl_r8(const char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline uint64_t sl_r4(const char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* Hashes one token eight bytes at a time; a tail of 1..7 bytes is read
 * with at most two overlapping loads, not a byte loop (as wyhash does), and
 * never past the token. */
static inline uint64_t sl_hash_token(uint64_t seed, const char *p, size_t n)
{
    uint64_t h = seed ^ ((uint64_t)n * 0x9e3779b97f4a7c15ull);
    for (; n > 8; p += 8, n -= 8)
        h = sl_mum(h ^ sl_r8(p), 0xa0761d6478bd642full);
    uint64_t w;
    if (n == 8)
        w = sl_r8(p);
    else if (n >= 4)
        w = sl_r4(p) << 32 | sl_r4(p + n - 4);
    else if (n > 0)
        w = (uint64_t)(unsigned char)p[0] << 16 | (uint64_t)(unsigned char)p[n >> 1] << 8 |
            (unsigned char)p[n - 1];
    else
        w = 0;
    return sl_mum(h ^ w, 0xe7037ed1a0b428dbull);
}

/* Splits s into tokens, hashing each once; stores the first `cap` of them
 * in t, sets *whole to their combined hash (the literal table's and the
 * caches' key) and returns how many tokens there are (may exceed cap).
 * Topic tokens are short: a byte loop finds the dots faster than memchr's
 * call and set-up. */
static inline size_t sl_tokenize(uint64_t seed, const char *s, size_t len, sl_tok *t,
                                 size_t cap, uint64_t *whole)
{
    uint64_t w = seed ^ 0x589965cc75374cc3ull;
    size_t n = 0, i = 0;
    for (;;) {
        size_t end = i;
        while (end < len && s[end] != '.')
            end++;
        uint64_t h = sl_hash_token(seed, s + i, end - i);
        if (n < cap)
            t[n] = (sl_tok){s + i, end - i, h};
        n++;
        /* The token hashes are already mixed: one multiply combines them
         * (order matters), one mum at the end mixes the whole. */
        w = (w ^ h) * 0x8ebc6af09c88c6e3ull;
        if (end == len)
            break;
        i = end + 1;
    }
    *whole = sl_mum(w, 0x1d8e4e27c47d124full);
    return n;
}

/* Appends to *out every non-empty set that the topic (its n tokens t, whole
 * hash `whole`) reaches: its literal subject and the trie's matching
 * patterns; a set can appear only once. The caller holds sl->lock (shared or
 * exclusive). Returns VG_OK or VG_ERR_NOMEM (*out then partly filled). */
vg_status sublist__collect(vg_sublist *sl, const char *topic, size_t len, const sl_tok *t,
                           size_t n, uint64_t whole, sl_sets *out);

#endif
