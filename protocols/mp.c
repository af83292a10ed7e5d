/*
 * mp.c: the msgpack reader.  Format reference: the msgpack spec (fixint, fixmap, fixarray,
 * fixstr, nil, bool, bin8/16/32, ext, float32/64, uint8..64, int8..64, str8/16/32,
 * array16/32, map16/32).  Lengths are 32-bit at most and are checked against what is left
 * before any pointer moves.
 */
#include "mp.h"

#include "base/alloc.h"

#include "base/err.h"

#include <stdlib.h>
#include <string.h>

static uint64_t
mp_be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

sb_mp_type_t
sb_mp_peek(const sb_mp_reader_t *r)
{
    if (r->p >= r->end)
        return SB_MP_INVALID;
    uint8_t c = r->p[0];
    if (c <= 0x7f || (c >= 0xcc && c <= 0xcf))
        return SB_MP_UINT;
    if (c >= 0xe0 || (c >= 0xd0 && c <= 0xd3))
        return SB_MP_INT;
    if ((c & 0xf0) == 0x80 || c == 0xde || c == 0xdf)
        return SB_MP_MAP;
    if ((c & 0xf0) == 0x90 || c == 0xdc || c == 0xdd)
        return SB_MP_ARRAY;
    if ((c & 0xe0) == 0xa0 || (c >= 0xd9 && c <= 0xdb))
        return SB_MP_STR;
    switch (c) {
    case 0xc0:
        return SB_MP_NIL;
    case 0xc2:
    case 0xc3:
        return SB_MP_BOOL;
    case 0xc4:
    case 0xc5:
    case 0xc6:
        return SB_MP_BIN;
    case 0xca:
    case 0xcb:
        return SB_MP_FLOAT;
    case 0xc7:
    case 0xc8:
    case 0xc9:
    case 0xd4:
    case 0xd5:
    case 0xd6:
    case 0xd7:
    case 0xd8:
        return SB_MP_EXT;
    default:
        return SB_MP_INVALID; /* 0xc1 is never used */
    }
}

int
sb_mp_read_nil(sb_mp_reader_t *r)
{
    if (r->p >= r->end || r->p[0] != 0xc0)
        return SB_EBADMSG;
    r->p++;
    return 0;
}

int
sb_mp_read_bool(sb_mp_reader_t *r, bool *v)
{
    if (r->p >= r->end || (r->p[0] != 0xc2 && r->p[0] != 0xc3))
        return SB_EBADMSG;
    *v = r->p[0] == 0xc3;
    r->p++;
    return 0;
}

/* mp_int reads any integer as a sign flag and magnitude-preserving 64-bit value. */
static int
mp_int(sb_mp_reader_t *r, int *neg, uint64_t *u)
{
    size_t left = sb_mp_left(r);
    if (left < 1)
        return SB_EBADMSG;
    uint8_t c = r->p[0];
    int n;
    if (c <= 0x7f) {
        *neg = 0;
        *u = c;
        r->p++;
        return 0;
    }
    if (c >= 0xe0) {
        *neg = 1;
        *u = (uint64_t)(int64_t)(int8_t)c;
        r->p++;
        return 0;
    }
    if (c >= 0xcc && c <= 0xcf) {
        n = 1 << (c - 0xcc);
        if (left < (size_t)n + 1)
            return SB_EBADMSG;
        *neg = 0;
        *u = mp_be(r->p + 1, n);
    } else if (c >= 0xd0 && c <= 0xd3) {
        n = 1 << (c - 0xd0);
        if (left < (size_t)n + 1)
            return SB_EBADMSG;
        uint64_t raw = mp_be(r->p + 1, n);
        int64_t s;
        switch (n) {
        case 1: s = (int8_t)raw; break;
        case 2: s = (int16_t)raw; break;
        case 4: s = (int32_t)raw; break;
        default: s = (int64_t)raw; break;
        }
        *neg = s < 0;
        *u = (uint64_t)s;
    } else {
        return SB_EBADMSG;
    }
    r->p += 1 + n;
    return 0;
}

int
sb_mp_read_u64(sb_mp_reader_t *r, uint64_t *v)
{
    sb_mp_reader_t save = *r;
    int neg;
    uint64_t u;
    if (mp_int(r, &neg, &u))
        return SB_EBADMSG;
    if (neg) {
        *r = save;
        return SB_EBADMSG;
    }
    *v = u;
    return 0;
}

int
sb_mp_read_i64(sb_mp_reader_t *r, int64_t *v)
{
    sb_mp_reader_t save = *r;
    int neg;
    uint64_t u;
    if (mp_int(r, &neg, &u))
        return SB_EBADMSG;
    if (!neg && u > (uint64_t)INT64_MAX) {
        *r = save;
        return SB_EBADMSG;
    }
    *v = (int64_t)u;
    return 0;
}

int
sb_mp_read_f64(sb_mp_reader_t *r, double *v)
{
    size_t left = sb_mp_left(r);
    if (left >= 5 && r->p[0] == 0xca) {
        uint32_t b = (uint32_t)mp_be(r->p + 1, 4);
        float f;
        memcpy(&f, &b, 4);
        *v = f;
        r->p += 5;
        return 0;
    }
    if (left >= 9 && r->p[0] == 0xcb) {
        uint64_t b = mp_be(r->p + 1, 8);
        memcpy(v, &b, 8);
        r->p += 9;
        return 0;
    }
    int neg;
    uint64_t u;
    sb_mp_reader_t save = *r;
    if (mp_int(r, &neg, &u)) {
        *r = save;
        return SB_EBADMSG;
    }
    *v = neg ? (double)(int64_t)u : (double)u;
    return 0;
}

/* mp_len reads a str/bin/array/map header and its length; *hdr is the header size. */
static int
mp_len(const sb_mp_reader_t *r, sb_mp_type_t want, uint32_t *len, size_t *hdr)
{
    size_t left = sb_mp_left(r);
    if (left < 1 || sb_mp_peek(r) != want)
        return SB_EBADMSG;
    uint8_t c = r->p[0];
    int n = 0;
    if (want == SB_MP_STR && (c & 0xe0) == 0xa0) {
        *len = c & 0x1f;
    } else if (want == SB_MP_MAP && (c & 0xf0) == 0x80) {
        *len = c & 0x0f;
    } else if (want == SB_MP_ARRAY && (c & 0xf0) == 0x90) {
        *len = c & 0x0f;
    } else {
        switch (c) {
        case 0xd9: case 0xc4: n = 1; break;
        case 0xda: case 0xc5: case 0xdc: case 0xde: n = 2; break;
        default: n = 4; break; /* 0xdb, 0xc6, 0xdd, 0xdf */
        }
        if (left < (size_t)n + 1)
            return SB_EBADMSG;
        *len = (uint32_t)mp_be(r->p + 1, n);
    }
    *hdr = 1 + (size_t)n;
    return 0;
}

static int
mp_read_bytes(sb_mp_reader_t *r, sb_mp_type_t t, sb_str_t *v)
{
    uint32_t len;
    size_t hdr;
    if (mp_len(r, t, &len, &hdr))
        return SB_EBADMSG;
    if (sb_mp_left(r) - hdr < len)
        return SB_EBADMSG;
    v->ptr = (const char *)r->p + hdr;
    v->len = len;
    r->p += hdr + len;
    return 0;
}

int
sb_mp_read_str(sb_mp_reader_t *r, sb_str_t *v)
{
    return mp_read_bytes(r, SB_MP_STR, v);
}

int
sb_mp_read_bin(sb_mp_reader_t *r, sb_str_t *v)
{
    return mp_read_bytes(r, sb_mp_peek(r) == SB_MP_STR ? SB_MP_STR : SB_MP_BIN, v);
}

static int
mp_read_container(sb_mp_reader_t *r, sb_mp_type_t t, uint32_t *n)
{
    size_t hdr;
    uint32_t len;
    if (mp_len(r, t, &len, &hdr))
        return SB_EBADMSG;
    /* Each element takes at least one byte (two for a map entry): a count that cannot fit
     * in what is left is refused now rather than discovered element by element. */
    if (len > (sb_mp_left(r) - hdr) / (t == SB_MP_MAP ? 2 : 1))
        return SB_EBADMSG;
    r->p += hdr;
    *n = len;
    return 0;
}

int
sb_mp_read_array(sb_mp_reader_t *r, uint32_t *n)
{
    return mp_read_container(r, SB_MP_ARRAY, n);
}

int
sb_mp_read_map(sb_mp_reader_t *r, uint32_t *n)
{
    return mp_read_container(r, SB_MP_MAP, n);
}

static int
mp_skip(sb_mp_reader_t *r, int depth)
{
    if (depth > SB_MP_MAX_DEPTH)
        return SB_EBADMSG;
    size_t left = sb_mp_left(r);
    sb_str_t s;
    uint32_t n;
    bool b;
    double d;
    int64_t i;
    uint64_t u;
    switch (sb_mp_peek(r)) {
    case SB_MP_NIL:
        return sb_mp_read_nil(r);
    case SB_MP_BOOL:
        return sb_mp_read_bool(r, &b);
    case SB_MP_UINT:
        return sb_mp_read_u64(r, &u);
    case SB_MP_INT:
        return sb_mp_read_i64(r, &i);
    case SB_MP_FLOAT:
        return sb_mp_read_f64(r, &d);
    case SB_MP_STR:
        return sb_mp_read_str(r, &s);
    case SB_MP_BIN:
        return sb_mp_read_bin(r, &s);
    case SB_MP_ARRAY:
    case SB_MP_MAP: {
        int map = sb_mp_peek(r) == SB_MP_MAP;
        sb_mp_reader_t save = *r;
        if (mp_read_container(r, map ? SB_MP_MAP : SB_MP_ARRAY, &n))
            return SB_EBADMSG;
        uint64_t items = (uint64_t)n * (map ? 2 : 1);
        for (uint64_t k = 0; k < items; k++)
            if (mp_skip(r, depth + 1)) {
                *r = save;
                return SB_EBADMSG;
            }
        return 0;
    }
    case SB_MP_EXT: {
        uint8_t c = r->p[0];
        size_t hdr, len;
        if (c >= 0xd4 && c <= 0xd8) {
            hdr = 2;
            len = (size_t)1 << (c - 0xd4);
        } else {
            int nb = c == 0xc7 ? 1 : c == 0xc8 ? 2 : 4;
            if (left < (size_t)nb + 2)
                return SB_EBADMSG;
            len = (size_t)mp_be(r->p + 1, nb);
            hdr = (size_t)nb + 2;
        }
        if (left < hdr || left - hdr < len)
            return SB_EBADMSG;
        r->p += hdr + len;
        return 0;
    }
    default:
        return SB_EBADMSG;
    }
}

int
sb_mp_skip(sb_mp_reader_t *r)
{
    return mp_skip(r, 0);
}

int
sb_mp_read_raw(sb_mp_reader_t *r, sb_str_t *raw)
{
    const uint8_t *start = r->p;
    int e = sb_mp_skip(r);
    if (e)
        return e;
    raw->ptr = (const char *)start;
    raw->len = (uint32_t)(r->p - start);
    return 0;
}

int
sb_mp_strv(sb_str_t raw, size_t max, char ***out, size_t *n)
{
    sb_mp_reader_t r;
    uint32_t cnt = 0;
    if (raw.len == 0) {
        *out = NULL;
        *n = 0;
        return 0;
    }
    sb_mp_reader_init(&r, raw.ptr, raw.len);
    if (sb_mp_peek(&r) == SB_MP_NIL) {
        *out = NULL;
        *n = 0;
        return 0;
    }
    if (sb_mp_read_array(&r, &cnt) != 0 || cnt > max)
        return SB_EBADMSG;
    char **v = sb_xcalloc((size_t)cnt + 1, sizeof *v);
    for (uint32_t i = 0; i < cnt; i++) {
        sb_str_t s;
        if (sb_mp_read_str(&r, &s) != 0 || (s.len && memchr(s.ptr, 0, s.len))) {
            for (uint32_t k = 0; k < i; k++)
                free(v[k]);
            free(v);
            return SB_EBADMSG;
        }
        v[i] = sb_str_dup(s);
    }
    *out = v;
    *n = cnt;
    return 0;
}
