/* sub's output formats.
 *
 * sub may print millions of messages a second into a 64 KiB fully buffered
 * stdout, so this is the hot path. A line is assembled in a small buffer on
 * the stack and handed to stdio with one fwrite (more only for a line longer
 * than the buffer): a libc call per run of plain bytes, let alone per byte,
 * cost more than the escaping itself. */
#include "format.h"

#include <string.h>

#include "log.h"

static const char hex[] = "0123456789abcdef";

/* The line being assembled, on its way to out. */
typedef struct {
    FILE *out;
    size_t len;
    char buf[2048];
} sink;

static void sink_flush(sink *s)
{
    if (s->len > 0)
        fwrite(s->buf, 1, s->len, s->out);
    s->len = 0;
}

static void put(sink *s, const void *p, size_t n)
{
    if (n > sizeof s->buf - s->len) {
        sink_flush(s);
        if (n >= sizeof s->buf) { /* a long run goes straight to stdio */
            fwrite(p, 1, n, s->out);
            return;
        }
    }
    memcpy(s->buf + s->len, p, n);
    s->len += n;
}

static void put_ch(sink *s, char c)
{
    if (s->len == sizeof s->buf)
        sink_flush(s);
    s->buf[s->len++] = c;
}

/* ---- text: the format sub has always printed ---- */

/* Bytes below 0x20, 0x7f and '\' as \n \t \r \\ \xNN; the rest as they are,
 * so UTF-8 text stays readable while no byte can end the line or start a
 * terminal escape sequence. */
static void text_escaped(sink *out, const uint8_t *p, size_t n)
{
    size_t plain = 0; /* start of the run of bytes that need no escape */
    for (size_t i = 0; i < n; i++) {
        uint8_t b = p[i];
        if (b >= 0x20 && b != 0x7f && b != '\\')
            continue;
        put(out, p + plain, i - plain);
        plain = i + 1;
        char e[4] = {'\\', 0, 0, 0};
        size_t len = 2;
        switch (b) {
        case '\n': e[1] = 'n'; break;
        case '\t': e[1] = 't'; break;
        case '\r': e[1] = 'r'; break;
        case '\\': e[1] = '\\'; break;
        default:
            e[1] = 'x', e[2] = hex[b >> 4], e[3] = hex[b & 15];
            len = 4;
        }
        put(out, e, len);
    }
    put(out, p + plain, n - plain);
}

/* The protocol's name of a message type (1 or 2). */
static const char *type_name(unsigned type) { return type == 2 ? "MSG_TYPE2" : "MSG_TYPE1"; }

static void write_text(sink *out, unsigned type, const char *topic, size_t topic_len,
                       const uint8_t *payload, size_t payload_len)
{
    text_escaped(out, (const uint8_t *)topic, topic_len);
    put_ch(out, ' ');
    const char *name = type_name(type);
    put(out, name, strlen(name));
    put_ch(out, ' ');
    text_escaped(out, payload, payload_len);
    put_ch(out, '\n');
}

/* ---- JSON: a one-line object writer ---- */

/* One object on one line, a field per call: a new field (a sequence number,
 * a gap marker) is one more json_field_* call in write_json. Keys are
 * literals of this file, written as they are. */
typedef struct {
    sink *out;
    bool empty;
} json_obj;

static void json_begin(json_obj *o, sink *out)
{
    o->out = out;
    o->empty = true;
    put_ch(out, '{');
}

static void json_key(json_obj *o, const char *key)
{
    if (!o->empty)
        put_ch(o->out, ',');
    o->empty = false;
    put_ch(o->out, '"');
    put(o->out, key, strlen(key));
    put(o->out, "\":", 2);
}

static void json_end(json_obj *o) { put(o->out, "}\n", 2); }

/* The two-character JSON escape of b, or 0 if b has none. */
static char json_short_escape(uint8_t b)
{
    switch (b) {
    case '"': return '"';
    case '\\': return '\\';
    case '\b': return 'b';
    case '\f': return 'f';
    case '\n': return 'n';
    case '\r': return 'r';
    case '\t': return 't';
    default: return 0;
    }
}

/* A JSON string from p[0..n): \" and \\, the other control characters and
 * DEL (a terminal would act on it) as \u00XX.
 * With utf8 (p already validated): text. Bytes from 0x80 are written as they
 * are, except U+2028 and U+2029, which end a line in JavaScript and become
 * \u escapes; \b \f \n \r \t keep their short forms.
 * Without it: untrusted bytes of any kind (a topic), each taken as one
 * character, so that everything but printable ASCII comes out as \u00XX. */
static void json_string(sink *out, const uint8_t *p, size_t n, bool utf8)
{
    put_ch(out, '"');
    size_t plain = 0; /* start of the run of bytes that need no escape */
    for (size_t i = 0; i < n; i++) {
        uint8_t b = p[i];
        if (b >= 0x20 && b < 0x7f && b != '"' && b != '\\')
            continue;
        if (b >= 0x80 && utf8) {
            /* U+2028 is e2 80 a8, U+2029 e2 80 a9 */
            if (b != 0xe2 || n - i < 3 || p[i + 1] != 0x80 || (p[i + 2] & 0xfe) != 0xa8)
                continue;
            put(out, p + plain, i - plain);
            put(out, p[i + 2] == 0xa8 ? "\\u2028" : "\\u2029", 6);
            i += 2;
            plain = i + 1;
            continue;
        }
        put(out, p + plain, i - plain);
        plain = i + 1;
        char c = utf8 || b == '"' || b == '\\' ? json_short_escape(b) : 0;
        if (c != 0) {
            char e[2] = {'\\', c};
            put(out, e, 2);
        } else {
            char e[6] = {'\\', 'u', '0', '0', hex[b >> 4], hex[b & 15]};
            put(out, e, 6);
        }
    }
    put(out, p + plain, n - plain);
    put_ch(out, '"');
}

/* A trusted ASCII string with nothing to escape (a frame type name). */
static void json_field_name(json_obj *o, const char *key, const char *value)
{
    json_key(o, key);
    put_ch(o->out, '"');
    put(o->out, value, strlen(value));
    put_ch(o->out, '"');
}

/* Untrusted bytes of any kind, one character each (a topic). */
static void json_field_bytes(json_obj *o, const char *key, const uint8_t *p, size_t n)
{
    json_key(o, key);
    json_string(o->out, p, n, false);
}

/* Well-formed UTF-8 (checked by the caller) as a JSON string. */
static void json_field_utf8(json_obj *o, const char *key, const uint8_t *p, size_t n)
{
    json_key(o, key);
    json_string(o->out, p, n, true);
}

/* Bytes as a base64 string, encoded a slice at a time into a small buffer. */
static void json_field_base64(json_obj *o, const char *key, const uint8_t *p, size_t n)
{
    enum { SLICE = 768 }; /* a multiple of 3: only the last slice is padded */
    char chunk[SLICE / 3 * 4];
    json_key(o, key);
    put_ch(o->out, '"');
    for (size_t i = 0; i < n; i += SLICE)
        put(o->out, chunk, sub_fmt_base64(chunk, p + i, n - i < SLICE ? n - i : SLICE));
    put_ch(o->out, '"');
}

static void json_field_true(json_obj *o, const char *key)
{
    json_key(o, key);
    put(o->out, "true", 4);
}

static void json_field_uint(json_obj *o, const char *key, uint64_t v)
{
    char num[24];
    json_key(o, key);
    put(o->out, num, (size_t)snprintf(num, sizeof num, "%llu", (unsigned long long)v));
}

static void write_json(sink *out, unsigned type, const char *topic, size_t topic_len,
                       const uint8_t *payload, size_t payload_len, uint64_t seq, uint64_t epoch)
{
    json_obj o;
    json_begin(&o, out);
    json_field_bytes(&o, "topic", (const uint8_t *)topic, topic_len);
    json_field_name(&o, "type", type_name(type));
    if (sub_fmt_utf8_valid(payload, payload_len)) {
        json_field_utf8(&o, "payload", payload, payload_len);
    } else {
        json_field_base64(&o, "payload", payload, payload_len);
        json_field_true(&o, "base64");
    }
    if (seq != 0) {
        json_field_uint(&o, "seq", seq);
        json_field_uint(&o, "epoch", epoch);
    }
    json_end(&o);
}

/* ---- the API ---- */

bool sub_fmt_utf8_valid(const uint8_t *p, size_t n)
{
    /* The Unicode Standard's table 3-7 of well-formed sequences: the lead
     * byte fixes the length and the range of the second byte, which is what
     * excludes overlong forms (e0 80..9f, f0 80..8f), surrogates (ed a0..bf)
     * and code points above U+10FFFF (f4 90..bf); c0, c1 and f5..ff never
     * start one. */
    size_t i = 0;
    while (i < n) {
        uint8_t b = p[i];
        if (b < 0x80) {
            i++;
            continue;
        }
        size_t len;
        uint8_t lo = 0x80, hi = 0xbf;
        if (b >= 0xc2 && b <= 0xdf)
            len = 2;
        else if (b == 0xe0)
            len = 3, lo = 0xa0;
        else if (b == 0xed)
            len = 3, hi = 0x9f;
        else if (b >= 0xe1 && b <= 0xef)
            len = 3;
        else if (b == 0xf0)
            len = 4, lo = 0x90;
        else if (b >= 0xf1 && b <= 0xf3)
            len = 4;
        else if (b == 0xf4)
            len = 4, hi = 0x8f;
        else
            return false;
        if (n - i < len || p[i + 1] < lo || p[i + 1] > hi)
            return false;
        for (size_t k = 2; k < len; k++)
            if ((p[i + k] & 0xc0) != 0x80)
                return false;
        i += len;
    }
    return true;
}

size_t sub_fmt_base64(char *dst, const uint8_t *src, size_t n)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t k = 0, i = 0;
    for (; n - i >= 3; i += 3) {
        uint32_t v = (uint32_t)src[i] << 16 | (uint32_t)src[i + 1] << 8 | src[i + 2];
        dst[k++] = abc[v >> 18];
        dst[k++] = abc[v >> 12 & 63];
        dst[k++] = abc[v >> 6 & 63];
        dst[k++] = abc[v & 63];
    }
    if (n - i > 0) { /* one or two bytes left */
        uint32_t v = (uint32_t)src[i] << 16 | (n - i == 2 ? (uint32_t)src[i + 1] << 8 : 0);
        dst[k++] = abc[v >> 18];
        dst[k++] = abc[v >> 12 & 63];
        dst[k++] = n - i == 2 ? abc[v >> 6 & 63] : '=';
        dst[k++] = '=';
    }
    return k;
}

void sub_fmt_init(sub_fmt *f, sub_format format)
{
    f->format = format;
    f->skipped = 0;
}

bool sub_fmt_write(sub_fmt *f, FILE *out, unsigned type, const char *topic,
                   size_t topic_len, const uint8_t *payload, size_t payload_len, uint64_t seq,
                   uint64_t epoch)
{
    if (f->format == SUB_FMT_RAW && payload_len > 0 && memchr(payload, '\n', payload_len) != NULL) {
        /* One payload per line is the whole promise of raw mode; splitting
         * this one would make its tail read as another message. */
        if (f->skipped++ == 0) {
            char q[80];
            vg_log(VG_LOG_WARN, "skipped", "reason=newline_in_payload topic=%s bytes=%zu",
                   vg_log_quote(q, sizeof q, topic, topic_len), payload_len);
        }
        return false;
    }
    sink s;
    s.out = out;
    s.len = 0;
    switch (f->format) {
    case SUB_FMT_RAW:
        put(&s, payload, payload_len);
        put_ch(&s, '\n');
        break;
    case SUB_FMT_JSON:
        write_json(&s, type, topic, topic_len, payload, payload_len, seq, epoch);
        break;
    case SUB_FMT_TEXT:
    default:
        write_text(&s, type, topic, topic_len, payload, payload_len);
        break;
    }
    sink_flush(&s);
    return true;
}

void sub_fmt_log_skipped(const sub_fmt *f)
{
    if (f->skipped > 0)
        vg_log(VG_LOG_WARN, "skipped", "reason=newline_in_payload total=%llu",
               (unsigned long long)f->skipped);
}
