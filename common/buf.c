#include "buf.h"

#include <stdlib.h>
#include <string.h>

vg_status vg_buf_reserve(vg_buf *b, size_t extra)
{
    if (extra > SIZE_MAX / 2 - b->len)
        return VG_ERR_NOMEM;
    size_t need = b->len + extra;
    if (need <= b->cap)
        return VG_OK;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    uint8_t *p = realloc(b->data, cap);
    if (p == NULL)
        return VG_ERR_NOMEM;
    b->data = p;
    b->cap = cap;
    return VG_OK;
}

vg_status vg_buf_append(vg_buf *b, const void *p, size_t n)
{
    vg_status st = vg_buf_reserve(b, n);
    if (st != VG_OK)
        return st;
    if (n > 0)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    return VG_OK;
}

void vg_buf_free(vg_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
