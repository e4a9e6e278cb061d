/* sub's output formats: one received message becomes at most one line.
 *
 * The topic and payload come from a broker, which a client must not trust,
 * so every format keeps them from forging lines or terminal control:
 * text escapes both, JSON escapes both, and raw (payload bytes as sent)
 * refuses a payload that holds a newline rather than split it. */
#ifndef SUB_FORMAT_H
#define SUB_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>


typedef enum {
    SUB_FMT_TEXT, /* TOPIC TYPE PAYLOAD, bytes below 0x20, 0x7f and '\' escaped */
    SUB_FMT_RAW,  /* PAYLOAD exactly as sent; a payload with a newline is skipped */
    SUB_FMT_JSON, /* {"topic":...,"type":...,"payload":...[,"base64":true]
                     [,"seq":N,"epoch":N]} */
} sub_format;

typedef struct {
    sub_format format;
    uint64_t skipped; /* raw: messages not printed because of a newline */
} sub_fmt;

/* Prepares f to write messages in format, with nothing skipped yet. */
void sub_fmt_init(sub_fmt *f, sub_format format);

/* Writes one message (type 1 or 2: MSG_TYPE1 or MSG_TYPE2) to out
 * as one line in f's format; JSON adds its place in its topic's log, seq
 * and epoch, unless seq is 0 (not known). Returns false if it was skipped
 * instead (raw mode, a newline in the payload): the first skip is logged on
 * stderr, the rest only counted in f->skipped. A write error is left for
 * the caller in ferror(out), as stdio keeps it. Not thread-safe: one
 * writer per f. */
bool sub_fmt_write(sub_fmt *f, FILE *out, unsigned type, const char *topic,
                   size_t topic_len, const uint8_t *payload, size_t payload_len, uint64_t seq,
                   uint64_t epoch);

/* Logs the total skipped (event=skipped ... total=N) if any; for exit time,
 * once no more sub_fmt_write calls can run. */
void sub_fmt_log_skipped(const sub_fmt *f);

/* True if p[0..n) is well-formed UTF-8 (no overlong forms, surrogates, code
 * points above U+10FFFF or truncated sequences). */
bool sub_fmt_utf8_valid(const uint8_t *p, size_t n);

/* Writes the base64 of src[0..n) to dst (RFC 4648: standard alphabet,
 * padded; no NUL), which holds at least (n + 2) / 3 * 4 bytes; returns that
 * count. */
size_t sub_fmt_base64(char *dst, const uint8_t *src, size_t n);

#endif
