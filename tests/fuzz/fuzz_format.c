/* libFuzzer target: sub's output formats (sub/format.c) on arbitrary topic
 * and payload bytes, which come from a broker that a client must not trust.
 *
 * Input layout (tests/fuzz/make_corpus.c writes seeds in it):
 *   byte 0     bits 0-1: the format: 0 text, 1 raw, 2 JSON, 3 all three in turn
 *              bit 2:    MSG_TYPE2 instead of MSG_TYPE1
 *              bits 3-7: the high bits of the topic's length
 *   byte 1     the low 8 bits of the topic's length (cut to what is left)
 *   then       the topic, then the payload (the rest)
 *
 * Each message is written to a memory stream and checked against what
 * format.h promises, decoding the output back rather than comparing it with
 * a second copy of the encoder:
 *   text  one line: one '\n', at the end; no other byte below 0x20 and no
 *         0x7f; unescaping it (\n \t \r \\ \xNN, each used only for a byte
 *         that needs it) gives back "TOPIC TYPE PAYLOAD"
 *   raw   the payload byte for byte and a '\n', or, iff the payload holds a
 *         '\n', nothing (false returned, one more skipped)
 *   JSON  one line holding one object, checked by a strict validator: keys
 *         topic, type, payload and, iff the payload is not valid UTF-8,
 *         base64 (true), in that order; every string well escaped; no raw
 *         control byte, DEL, U+2028 or U+2029; valid UTF-8 throughout. The
 *         topic decodes to its bytes (one character each), the payload to
 *         its bytes (as UTF-8, or from canonical padded base64)
 * and sub_fmt_utf8_valid must agree with an independent UTF-8 decoder. A
 * failed check prints what and aborts, which libFuzzer reports as a crash. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format.h"
#include "frame.h"
#include "log.h"

typedef struct {
    vg_frame_type type;
    const uint8_t *topic;
    size_t topic_len;
    const uint8_t *payload;
    size_t payload_len;
} message;

static __attribute__((noreturn)) void fail(const char *what)
{
    fprintf(stderr, "fuzz_format: invariant violated: %s\n", what);
    abort();
}

static void check(bool ok, const char *what)
{
    if (!ok)
        fail(what);
}

/* A growable byte string for decoded output. */
typedef struct {
    uint8_t *p;
    size_t len, cap;
} bytes;

static void push(bytes *b, uint8_t c)
{
    if (b->len == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 256;
        b->p = realloc(b->p, b->cap);
        check(b->p != NULL, "out of memory");
    }
    b->p[b->len++] = c;
}

static void push_n(bytes *b, const void *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        push(b, ((const uint8_t *)p)[i]);
}

static bool same(const bytes *b, const uint8_t *p, size_t n)
{
    return b->len == n && (n == 0 || memcmp(b->p, p, n) == 0);
}

/* ---- UTF-8, decoded independently of sub_fmt_utf8_valid ---- */

/* Decodes one scalar value at p[0..n): its length, or 0 if the bytes there
 * are not a well-formed sequence (truncated, a stray continuation byte, an
 * overlong form, a surrogate, above U+10FFFF). */
static size_t utf8_next(const uint8_t *p, size_t n, uint32_t *cp)
{
    static const uint32_t least[5] = {0, 0, 0x80, 0x800, 0x10000};
    size_t len = p[0] < 0x80 ? 1 : (p[0] & 0xe0) == 0xc0 ? 2 : (p[0] & 0xf0) == 0xe0 ? 3
                               : (p[0] & 0xf8) == 0xf0 ? 4 : 0;
    if (len == 0 || len > n)
        return 0;
    uint32_t v = len == 1 ? p[0] : p[0] & (0x7f >> len);
    for (size_t k = 1; k < len; k++) {
        if ((p[k] & 0xc0) != 0x80)
            return 0;
        v = v << 6 | (p[k] & 0x3f);
    }
    if (v < least[len] || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *cp = v;
    return len;
}

static bool utf8_valid(const uint8_t *p, size_t n)
{
    uint32_t cp;
    for (size_t i = 0, k; i < n; i += k)
        if ((k = utf8_next(p + i, n - i, &cp)) == 0)
            return false;
    return true;
}

static void put_utf8(bytes *b, uint32_t cp)
{
    if (cp < 0x80) {
        push(b, (uint8_t)cp);
    } else if (cp < 0x800) {
        push(b, (uint8_t)(0xc0 | cp >> 6));
        push(b, (uint8_t)(0x80 | (cp & 0x3f)));
    } else if (cp < 0x10000) {
        push(b, (uint8_t)(0xe0 | cp >> 12));
        push(b, (uint8_t)(0x80 | (cp >> 6 & 0x3f)));
        push(b, (uint8_t)(0x80 | (cp & 0x3f)));
    } else {
        push(b, (uint8_t)(0xf0 | cp >> 18));
        push(b, (uint8_t)(0x80 | (cp >> 12 & 0x3f)));
        push(b, (uint8_t)(0x80 | (cp >> 6 & 0x3f)));
        push(b, (uint8_t)(0x80 | (cp & 0x3f)));
    }
}

/* ---- the output of one call ---- */

typedef struct {
    bool printed;
    char *out;
    size_t len;
} rendered;

static rendered render(sub_fmt *f, const message *m)
{
    rendered r = {0};
    FILE *s = open_memstream(&r.out, &r.len);
    check(s != NULL, "open_memstream failed");
    uint64_t skipped = f->skipped;
    r.printed = sub_fmt_write(f, s, m->type == VG_FRAME_MSG_TYPE2 ? 2 : 1, (const char *)m->topic, m->topic_len, m->payload,
                              m->payload_len, 0, 0);
    check(!ferror(s), "a write to the memory stream failed");
    check(fclose(s) == 0, "fclose of the memory stream failed");
    check(f->skipped == skipped + !r.printed, "skipped miscounted");
    if (r.printed) {
        check(r.len > 0 && r.out[r.len - 1] == '\n', "a printed message does not end in '\\n'");
        check(memchr(r.out, '\n', r.len - 1) == NULL, "a printed message spans two lines");
    } else {
        check(r.len == 0, "a skipped message printed something");
    }
    return r;
}

/* ---- text ---- */

static int hex_value(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Whether text mode must escape b (format.h: below 0x20, 0x7f and '\'). */
static bool text_needs_escape(uint8_t b) { return b < 0x20 || b == 0x7f || b == '\\'; }

static void check_text(const message *m, const rendered *r)
{
    check(r->printed, "text mode skipped a message");
    bytes got = {0}, want = {0};
    const uint8_t *p = (const uint8_t *)r->out;
    size_t n = r->len - 1; /* without the final '\n' */
    for (size_t i = 0; i < n; i++) {
        uint8_t b = p[i];
        check(b >= 0x20 && b != 0x7f, "text: a raw control byte or DEL in the output");
        if (b != '\\') {
            push(&got, b);
            continue;
        }
        check(i + 1 < n, "text: a lone backslash at the end of the line");
        uint8_t e = p[++i], v;
        switch (e) {
        case 'n': v = '\n'; break;
        case 't': v = '\t'; break;
        case 'r': v = '\r'; break;
        case '\\': v = '\\'; break;
        case 'x': {
            check(i + 2 < n, "text: a truncated \\x escape");
            int hi = hex_value((char)p[i + 1]), lo = hex_value((char)p[i + 2]);
            check(hi >= 0 && lo >= 0, "text: \\x without two lowercase hex digits");
            v = (uint8_t)(hi << 4 | lo);
            check(v != '\n' && v != '\t' && v != '\r' && v != '\\',
                  "text: \\x used for a byte with a short escape");
            i += 2;
            break;
        }
        default: fail("text: an unknown escape");
        }
        check(text_needs_escape(v), "text: a byte escaped that needs no escape");
        push(&got, v);
    }
    const char *name = vg_frame_type_name(m->type);
    push_n(&want, m->topic, m->topic_len);
    push(&want, ' ');
    push_n(&want, name, strlen(name));
    push(&want, ' ');
    push_n(&want, m->payload, m->payload_len);
    check(same(&got, want.p, want.len), "text: the line does not unescape to TOPIC TYPE PAYLOAD");
    free(got.p);
    free(want.p);
}

/* ---- raw ---- */

static void check_raw(const message *m, const rendered *r)
{
    bool newline = m->payload_len > 0 && memchr(m->payload, '\n', m->payload_len) != NULL;
    check(r->printed == !newline, "raw: skipped iff the payload holds a newline, it is not");
    if (r->printed)
        check(r->len == m->payload_len + 1 && memcmp(r->out, m->payload, m->payload_len) == 0,
              "raw: the line is not the payload byte for byte");
}

/* ---- JSON: a strict reader for the one object the format writes ---- */

typedef struct {
    const uint8_t *p, *end;
} cursor;

static void expect_lit(cursor *c, const char *lit, const char *what)
{
    size_t n = strlen(lit);
    check((size_t)(c->end - c->p) >= n && memcmp(c->p, lit, n) == 0, what);
    c->p += n;
}

static uint32_t read_hex4(cursor *c)
{
    check(c->end - c->p >= 4, "JSON: a truncated \\u escape");
    uint32_t v = 0;
    for (int k = 0; k < 4; k++) {
        char ch = (char)c->p[k];
        int d = ch >= '0' && ch <= '9'   ? ch - '0'
                : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
                : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
                                         : -1;
        check(d >= 0, "JSON: \\u without four hex digits");
        v = v << 4 | (uint32_t)d;
    }
    c->p += 4;
    return v;
}

/* Reads one JSON string (RFC 8259, strict: no raw byte below 0x20, valid
 * UTF-8, a surrogate escape only as a whole pair) into code points. The
 * writer's own promises on top: no raw DEL, U+2028 or U+2029. */
static void read_string(cursor *c, uint32_t **cps, size_t *n)
{
    size_t cap = 64;
    *cps = malloc(cap * sizeof **cps);
    *n = 0;
    check(*cps != NULL, "out of memory");
    expect_lit(c, "\"", "JSON: a string expected");
    for (;;) {
        check(c->p < c->end, "JSON: an unterminated string");
        uint8_t b = *c->p;
        uint32_t cp;
        if (b == '"') {
            c->p++;
            return;
        }
        check(b >= 0x20, "JSON: a raw control byte in a string");
        check(b != 0x7f, "JSON: a raw DEL in a string");
        if (b == '\\') {
            check(c->end - c->p >= 2, "JSON: a truncated escape");
            uint8_t e = c->p[1];
            c->p += 2;
            switch (e) {
            case '"': cp = '"'; break;
            case '\\': cp = '\\'; break;
            case '/': cp = '/'; break;
            case 'b': cp = '\b'; break;
            case 'f': cp = '\f'; break;
            case 'n': cp = '\n'; break;
            case 'r': cp = '\r'; break;
            case 't': cp = '\t'; break;
            case 'u':
                cp = read_hex4(c);
                if (cp >= 0xdc00 && cp <= 0xdfff)
                    fail("JSON: a lone low surrogate escape");
                if (cp >= 0xd800 && cp <= 0xdbff) {
                    expect_lit(c, "\\u", "JSON: a high surrogate escape without its pair");
                    uint32_t lo = read_hex4(c);
                    check(lo >= 0xdc00 && lo <= 0xdfff, "JSON: a high surrogate escape without its pair");
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                }
                break;
            default: fail("JSON: an unknown escape");
            }
        } else {
            size_t k = utf8_next(c->p, (size_t)(c->end - c->p), &cp);
            check(k > 0, "JSON: invalid UTF-8 in a string");
            check(cp != 0x2028 && cp != 0x2029, "JSON: a raw U+2028 or U+2029");
            c->p += k;
        }
        if (*n == cap) {
            cap *= 2;
            *cps = realloc(*cps, cap * sizeof **cps);
            check(*cps != NULL, "out of memory");
        }
        (*cps)[(*n)++] = cp;
    }
}

/* A key, then ':'. */
static void read_key(cursor *c, const char *want)
{
    uint32_t *cps;
    size_t n;
    read_string(c, &cps, &n);
    bool ok = n == strlen(want);
    for (size_t i = 0; ok && i < n; i++)
        ok = cps[i] == (uint8_t)want[i];
    free(cps);
    check(ok, "JSON: not the key expected (topic, type, payload, base64, in that order)");
    expect_lit(c, ":", "JSON: ':' expected after a key");
}

static int b64_value(uint32_t c)
{
    return c >= 'A' && c <= 'Z'   ? (int)(c - 'A')
           : c >= 'a' && c <= 'z' ? (int)(c - 'a' + 26)
           : c >= '0' && c <= '9' ? (int)(c - '0' + 52)
           : c == '+'             ? 62
           : c == '/'             ? 63
                                  : -1;
}

/* Strict RFC 4648 base64: standard alphabet, padded, unused bits zero. */
static void base64_decode(const uint32_t *s, size_t n, bytes *out)
{
    check(n % 4 == 0, "JSON: base64 length not a multiple of 4");
    for (size_t i = 0; i < n; i += 4) {
        bool last = i + 4 == n;
        int pad = last ? (s[i + 3] == '=') + (s[i + 2] == '=') : 0;
        check(pad < 2 || s[i + 3] == '=', "JSON: base64 padding out of place");
        int v[4];
        for (int k = 0; k < 4; k++) {
            v[k] = k >= 4 - pad ? 0 : b64_value(s[i + k]);
            check(v[k] >= 0, "JSON: a byte outside the base64 alphabet");
        }
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        check(pad == 0 || (w & (pad == 2 ? 0xffff : 0xff)) == 0, "JSON: base64 not canonical");
        push(out, (uint8_t)(w >> 16));
        if (pad < 2)
            push(out, (uint8_t)(w >> 8));
        if (pad < 1)
            push(out, (uint8_t)w);
    }
}

static void check_json(const message *m, const rendered *r)
{
    check(r->printed, "JSON mode skipped a message");
    check(utf8_valid((const uint8_t *)r->out, r->len), "JSON: the line is not valid UTF-8");
    cursor c = {(const uint8_t *)r->out, (const uint8_t *)r->out + r->len};
    uint32_t *cps;
    size_t n;
    bytes got = {0};

    expect_lit(&c, "{", "JSON: the line does not start an object");
    read_key(&c, "topic");
    read_string(&c, &cps, &n);
    for (size_t i = 0; i < n; i++) {
        check(cps[i] <= 0xff, "JSON: the topic holds a character above U+00FF");
        push(&got, (uint8_t)cps[i]);
    }
    check(same(&got, m->topic, m->topic_len), "JSON: the topic does not decode to its bytes");
    free(cps);
    got.len = 0;

    expect_lit(&c, ",", "JSON: ',' expected");
    read_key(&c, "type");
    expect_lit(&c, m->type == VG_FRAME_MSG_TYPE1 ? "\"MSG_TYPE1\"" : "\"MSG_TYPE2\"",
               "JSON: not the message's type name");

    expect_lit(&c, ",", "JSON: ',' expected");
    read_key(&c, "payload");
    read_string(&c, &cps, &n);
    bool text = utf8_valid(m->payload, m->payload_len);
    check(text == sub_fmt_utf8_valid(m->payload, m->payload_len),
          "sub_fmt_utf8_valid disagrees with an independent UTF-8 decoder");
    if (text) {
        for (size_t i = 0; i < n; i++)
            put_utf8(&got, cps[i]);
        check(same(&got, m->payload, m->payload_len), "JSON: the payload does not decode to its bytes");
    } else {
        expect_lit(&c, ",", "JSON: a payload that is not UTF-8 without \"base64\"");
        read_key(&c, "base64");
        expect_lit(&c, "true", "JSON: \"base64\" is not true");
        base64_decode(cps, n, &got);
        check(same(&got, m->payload, m->payload_len), "JSON: the base64 does not decode to the payload");
    }
    free(cps);
    free(got.p);
    expect_lit(&c, "}\n", "JSON: the object does not end the line");
    check(c.p == c.end, "JSON: bytes after the object");
}

/* ---- libFuzzer's entry points ---- */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    vg_log_set_level(VG_LOG_ERROR); /* raw mode logs its first skip as a warning */
    return 0;
}

static void one(sub_format format, const message *m)
{
    sub_fmt f;
    sub_fmt_init(&f, format);
    check(f.skipped == 0, "sub_fmt_init left a skip count");
    rendered r = render(&f, m);
    switch (format) {
    case SUB_FMT_TEXT: check_text(m, &r); break;
    case SUB_FMT_RAW: check_raw(m, &r); break;
    case SUB_FMT_JSON: check_json(m, &r); break;
    }
    free(r.out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    message m = {.type = (data[0] & 4) ? VG_FRAME_MSG_TYPE2 : VG_FRAME_MSG_TYPE1};
    size_t left = size - 2;
    size_t topic_len = (size_t)(data[0] >> 3) << 8 | data[1];
    m.topic = data + 2;
    m.topic_len = topic_len < left ? topic_len : left;
    m.payload = m.topic + m.topic_len;
    m.payload_len = left - m.topic_len;
    int which = data[0] & 3;
    if (which == 3) {
        one(SUB_FMT_TEXT, &m);
        one(SUB_FMT_RAW, &m);
        one(SUB_FMT_JSON, &m);
    } else {
        one(which == 0 ? SUB_FMT_TEXT : which == 1 ? SUB_FMT_RAW : SUB_FMT_JSON, &m);
    }
    return 0;
}
