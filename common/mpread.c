#include "mpread.h"

static bool take(vg_mp_reader *r, size_t n, const uint8_t **out)
{
    if ((size_t)(r->end - r->p) < n)
        return false;
    *out = r->p;
    r->p += n;
    return true;
}

static bool read_be(vg_mp_reader *r, size_t n, uint64_t *v)
{
    const uint8_t *b;
    if (!take(r, n, &b))
        return false;
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++)
        x = (x << 8) | b[i];
    *v = x;
    return true;
}

vg_status vg_mp_read_array(vg_mp_reader *r, uint32_t *count)
{
    const uint8_t *tag;
    uint64_t n;
    if (!take(r, 1, &tag))
        return VG_ERR_MALFORMED;
    if ((*tag & 0xf0) == 0x90)
        n = *tag & 0x0f;
    else if (*tag == 0xdc) {
        if (!read_be(r, 2, &n))
            return VG_ERR_MALFORMED;
    } else if (*tag == 0xdd) {
        if (!read_be(r, 4, &n))
            return VG_ERR_MALFORMED;
    } else
        return VG_ERR_MALFORMED;
    if (n > (uint64_t)(r->end - r->p)) /* every element takes at least one byte */
        return VG_ERR_MALFORMED;
    *count = (uint32_t)n;
    return VG_OK;
}

vg_status vg_mp_read_uint(vg_mp_reader *r, uint64_t *v)
{
    const uint8_t *tag;
    uint64_t x;
    if (!take(r, 1, &tag))
        return VG_ERR_MALFORMED;
    if (*tag <= 0x7f) {
        *v = *tag;
        return VG_OK;
    }
    size_t width;
    bool is_signed = false;
    switch (*tag) {
    case 0xcc: width = 1; break;
    case 0xcd: width = 2; break;
    case 0xce: width = 4; break;
    case 0xcf: width = 8; break;
    case 0xd0: width = 1, is_signed = true; break;
    case 0xd1: width = 2, is_signed = true; break;
    case 0xd2: width = 4, is_signed = true; break;
    case 0xd3: width = 8, is_signed = true; break;
    default: return VG_ERR_MALFORMED;
    }
    if (!read_be(r, width, &x))
        return VG_ERR_MALFORMED;
    if (is_signed && (x >> (width * 8 - 1)) != 0) /* negative */
        return VG_ERR_MALFORMED;
    *v = x;
    return VG_OK;
}

/* Reads a str (want_str) or bin header and its body. */
static vg_status read_raw(vg_mp_reader *r, bool allow_str, bool allow_bin, const uint8_t **b,
                          uint32_t *len)
{
    const uint8_t *tag;
    uint64_t n;
    if (!take(r, 1, &tag))
        return VG_ERR_MALFORMED;
    if (allow_str && (*tag & 0xe0) == 0xa0)
        n = *tag & 0x1f;
    else if ((allow_str && *tag == 0xd9) || (allow_bin && *tag == 0xc4)) {
        if (!read_be(r, 1, &n))
            return VG_ERR_MALFORMED;
    } else if ((allow_str && *tag == 0xda) || (allow_bin && *tag == 0xc5)) {
        if (!read_be(r, 2, &n))
            return VG_ERR_MALFORMED;
    } else if ((allow_str && *tag == 0xdb) || (allow_bin && *tag == 0xc6)) {
        if (!read_be(r, 4, &n))
            return VG_ERR_MALFORMED;
    } else
        return VG_ERR_MALFORMED;
    if (!take(r, (size_t)n, b))
        return VG_ERR_MALFORMED;
    *len = (uint32_t)n;
    return VG_OK;
}

vg_status vg_mp_read_str(vg_mp_reader *r, const char **s, uint32_t *len)
{
    return read_raw(r, true, false, (const uint8_t **)s, len);
}

vg_status vg_mp_read_bytes(vg_mp_reader *r, const uint8_t **b, uint32_t *len)
{
    return read_raw(r, true, true, b, len);
}

vg_status vg_mp_read_str_or_nil(vg_mp_reader *r, const char **s, uint32_t *len, bool *is_nil)
{
    if (r->p < r->end && *r->p == 0xc0) {
        r->p++;
        *s = NULL;
        *len = 0;
        *is_nil = true;
        return VG_OK;
    }
    *is_nil = false;
    return vg_mp_read_str(r, s, len);
}

vg_status vg_mp_skip_scalar(vg_mp_reader *r)
{
    const uint8_t *tag, *body;
    uint32_t len;
    if (r->p == r->end)
        return VG_ERR_MALFORMED;
    uint8_t t = *r->p;
    if ((t & 0xe0) == 0xa0 || t == 0xd9 || t == 0xda || t == 0xdb || t == 0xc4 || t == 0xc5 ||
        t == 0xc6)
        return read_raw(r, true, true, &body, &len);
    size_t width;
    if (t <= 0x7f || t >= 0xe0 || t == 0xc0 || t == 0xc2 || t == 0xc3) /* fixints, nil, bool */
        width = 0;
    else if (t == 0xcc || t == 0xd0)
        width = 1;
    else if (t == 0xcd || t == 0xd1)
        width = 2;
    else if (t == 0xce || t == 0xd2 || t == 0xca)
        width = 4;
    else if (t == 0xcf || t == 0xd3 || t == 0xcb)
        width = 8;
    else
        return VG_ERR_MALFORMED;
    return take(r, 1 + width, &tag) ? VG_OK : VG_ERR_MALFORMED;
}
