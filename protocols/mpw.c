/*
 * mpw.c: the one msgpack writer (mpw.h).  Every integer takes its shortest form, as msgpack
 * asks; every write is one bounded append to an sb_buf_t, so the buffer's limit bounds what a
 * message can grow to.
 */
#include "mpw.h"

#include "base/err.h"

#include <string.h>

static int
mpw_raw(sb_buf_t *b, const void *p, size_t n)
{
    return sb_buf_append(b, p, n);
}

static int
mpw_be(sb_buf_t *b, uint8_t tag, uint64_t v, int bytes)
{
    uint8_t t[9];
    t[0] = tag;
    for (int i = 0; i < bytes; i++)
        t[1 + i] = (uint8_t)(v >> (8 * (bytes - 1 - i)));
    return mpw_raw(b, t, (size_t)bytes + 1);
}

int
sb_mpw_map(sb_buf_t *b, uint32_t n)
{
    if (n < 16) {
        uint8_t c = (uint8_t)(0x80 | n);
        return mpw_raw(b, &c, 1);
    }
    return n < 65536 ? mpw_be(b, 0xde, n, 2) : mpw_be(b, 0xdf, n, 4);
}

int
sb_mpw_array(sb_buf_t *b, uint32_t n)
{
    if (n < 16) {
        uint8_t c = (uint8_t)(0x90 | n);
        return mpw_raw(b, &c, 1);
    }
    return n < 65536 ? mpw_be(b, 0xdc, n, 2) : mpw_be(b, 0xdd, n, 4);
}

int
sb_mpw_str(sb_buf_t *b, const void *s, size_t n)
{
    int rc;
    if (n > UINT32_MAX)
        return SB_ETOOBIG;
    if (n < 32) {
        uint8_t c = (uint8_t)(0xa0 | n);
        rc = mpw_raw(b, &c, 1);
    } else if (n < 256) {
        rc = mpw_be(b, 0xd9, n, 1);
    } else if (n < 65536) {
        rc = mpw_be(b, 0xda, n, 2);
    } else {
        rc = mpw_be(b, 0xdb, n, 4);
    }
    return rc ? rc : (n ? mpw_raw(b, s, n) : 0);
}

int
sb_mpw_cstr(sb_buf_t *b, const char *s)
{
    return sb_mpw_str(b, s, strlen(s));
}

int
sb_mpw_bin(sb_buf_t *b, const void *s, size_t n)
{
    int rc;
    if (n > UINT32_MAX)
        return SB_ETOOBIG;
    if (n < 256)
        rc = mpw_be(b, 0xc4, n, 1);
    else if (n < 65536)
        rc = mpw_be(b, 0xc5, n, 2);
    else
        rc = mpw_be(b, 0xc6, n, 4);
    return rc ? rc : (n ? mpw_raw(b, s, n) : 0);
}

int
sb_mpw_uint(sb_buf_t *b, uint64_t v)
{
    if (v < 128) {
        uint8_t c = (uint8_t)v;
        return mpw_raw(b, &c, 1);
    }
    if (v <= UINT32_MAX)
        return mpw_be(b, 0xce, v, 4);
    return mpw_be(b, 0xcf, v, 8);
}

int
sb_mpw_int(sb_buf_t *b, int64_t v)
{
    if (v >= 0)
        return sb_mpw_uint(b, (uint64_t)v);
    if (v >= -32) {
        uint8_t c = (uint8_t)(int8_t)v;
        return mpw_raw(b, &c, 1);
    }
    return mpw_be(b, 0xd3, (uint64_t)v, 8);
}

int
sb_mpw_bool(sb_buf_t *b, bool v)
{
    uint8_t c = v ? 0xc3 : 0xc2;
    return mpw_raw(b, &c, 1);
}

int
sb_mpw_kuint(sb_buf_t *b, const char *k, uint64_t v)
{
    int rc = sb_mpw_cstr(b, k);
    return rc ? rc : sb_mpw_uint(b, v);
}
int
sb_mpw_kint(sb_buf_t *b, const char *k, int64_t v)
{
    int rc = sb_mpw_cstr(b, k);
    return rc ? rc : sb_mpw_int(b, v);
}
int
sb_mpw_kstr(sb_buf_t *b, const char *k, const void *s, size_t n)
{
    int rc = sb_mpw_cstr(b, k);
    return rc ? rc : sb_mpw_str(b, s, n);
}
int
sb_mpw_kbin(sb_buf_t *b, const char *k, const void *s, size_t n)
{
    int rc = sb_mpw_cstr(b, k);
    return rc ? rc : sb_mpw_bin(b, s, n);
}
int
sb_mpw_kbool(sb_buf_t *b, const char *k, bool v)
{
    int rc = sb_mpw_cstr(b, k);
    return rc ? rc : sb_mpw_bool(b, v);
}

int
sb_mpw_nil(sb_buf_t *b)
{
    uint8_t c = 0xc0;
    return mpw_raw(b, &c, 1);
}

int
sb_mpw_f64(sb_buf_t *b, double v)
{
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    return mpw_be(b, 0xcb, u, 8);
}

int
sb_mpw_strv(sb_buf_t *b, const char *const *v)
{
    uint32_t n = 0;
    while (v && v[n])
        n++;
    int rc = sb_mpw_array(b, n);
    for (uint32_t i = 0; i < n && rc == 0; i++)
        rc = sb_mpw_cstr(b, v[i]);
    return rc;
}
