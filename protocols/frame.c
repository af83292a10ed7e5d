/*
 * frame.c: encoder and bounded decoder of executor <-> soulbox-init frames (see frame.h).
 * Reading goes through protocols/mp.h, which checks every length before it reads; nothing
 * here allocates while decoding.
 */
#include "frame.h"

#include "base/err.h"
#include "mp.h"

#include <stdlib.h>
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

size_t
sb_frame_begin(sb_buf_t *b)
{
    size_t at = b->len;
    uint8_t z[4] = {0};
    if (sb_buf_append(b, z, 4) != 0)
        return (size_t)-1;
    return at;
}

void
sb_frame_end(sb_buf_t *b, size_t start)
{
    if (start == (size_t)-1 || start + 4 > b->len)
        return;
    sb_put_u32(b->data + start, (uint32_t)(b->len - start - 4));
}

int
sb_frame_next(const sb_buf_t *in, const uint8_t **body, size_t *len)
{
    if (in->len < 4)
        return 0;
    uint32_t n = sb_get_u32(in->data);
    if (n > SB_FRAME_MAX)
        return SB_ETOOBIG;
    if (in->len - 4 < n)
        return 0;
    *body = in->data + 4;
    *len = n;
    return 1;
}

/* One known key: which field it fills and how. */
typedef enum { FK_U, FK_I, FK_B, FK_S, FK_PATH, FK_BIN, FK_ARR } fk_t;
typedef struct {
    const char *key;
    fk_t kind;
    size_t off, cnt_off;
    uint32_t max;
} fkey_t;

#define F(k, kind, field, max) {k, kind, offsetof(sb_frame_t, field), 0, max}
#define FA(k, field, cnt, max) {k, FK_ARR, offsetof(sb_frame_t, field), offsetof(sb_frame_t, cnt), max}
static const fkey_t frame_keys[] = {
    F("id", FK_U, id, 0), F("fd", FK_I, fd, 0), F("sig", FK_I, sig, 0),
    F("code", FK_I, code, 0), F("err", FK_I, err, 0), F("rows", FK_I, rows, 0),
    F("cols", FK_I, cols, 0), F("depth", FK_I, depth, 0), F("mode", FK_I, mode, 0),
    F("pid", FK_I, pid, 0), F("ppid", FK_I, ppid, 0), F("max", FK_U, max, 0),
    F("size", FK_U, size, 0), F("cpu_us", FK_U, cpu_us, 0), F("maxrss_kb", FK_U, maxrss_kb, 0),
    F("mtime", FK_U, mtime, 0), F("nofile", FK_U, nofile, 0), F("nproc", FK_U, nproc, 0),
    F("fsize", FK_U, fsize, 0), F("cpu", FK_U, cpu, 0), F("type", FK_U, type, 0),
    F("pty", FK_B, pty, 0), F("append", FK_B, append, 0),
    F("data", FK_BIN, data, SB_FRAME_DATA_MAX), F("path", FK_PATH, path, SB_FRAME_PATH_MAX),
    F("path2", FK_PATH, path2, SB_FRAME_PATH_MAX), F("cwd", FK_PATH, cwd, SB_FRAME_PATH_MAX),
    F("msg", FK_S, msg, 4096), F("cmd", FK_S, cmd, 4096), F("state", FK_S, state, 16),
    FA("argv", argv, argc, SB_FRAME_ARGS_MAX), FA("env", env, envc, SB_FRAME_ARGS_MAX),
    FA("ents", ents, entc, 1u << 20),
};
#undef F
#undef FA

static int frame_decode(const uint8_t *p, size_t n, sb_frame_t *out, int need_type);

int
sb_frame_decode(const uint8_t *p, size_t n, sb_frame_t *out)
{
    return frame_decode(p, n, out, 1);
}

int
sb_frame_decode_entry(const uint8_t *p, size_t n, sb_frame_t *out)
{
    return frame_decode(p, n, out, 0);
}

static int
frame_decode(const uint8_t *p, size_t n, sb_frame_t *out, int need_type)
{
    sb_mp_reader_t r;
    sb_frame_t f;
    uint32_t nkeys;
    memset(&f, 0, sizeof f);
    sb_mp_reader_init(&r, p, n);
    if (sb_mp_read_map(&r, &nkeys) != 0)
        return SB_EBADMSG;
    for (uint32_t i = 0; i < nkeys; i++) {
        sb_str_t k;
        if (sb_mp_read_str(&r, &k) != 0)
            return SB_EBADMSG;
        if (sb_str_eq(k, "t")) {
            uint64_t t;
            if (sb_mp_read_u64(&r, &t) != 0 || t > 255)
                return SB_EBADMSG;
            f.t = (uint32_t)t;
            continue;
        }
        const fkey_t *fk = NULL;
        for (size_t j = 0; j < sizeof frame_keys / sizeof frame_keys[0]; j++)
            if (sb_str_eq(k, frame_keys[j].key)) {
                fk = &frame_keys[j];
                break;
            }
        if (!fk) {
            if (sb_mp_skip(&r) != 0)
                return SB_EBADMSG;
            continue;
        }
        uint8_t *dst = (uint8_t *)&f + fk->off;
        switch (fk->kind) {
        case FK_U:
            if (sb_mp_read_u64(&r, (uint64_t *)dst) != 0)
                return SB_EBADMSG;
            break;
        case FK_I:
            if (sb_mp_read_i64(&r, (int64_t *)dst) != 0)
                return SB_EBADMSG;
            break;
        case FK_B:
            if (sb_mp_read_bool(&r, (bool *)dst) != 0)
                return SB_EBADMSG;
            break;
        case FK_S:
        case FK_PATH: {
            sb_str_t s;
            if (sb_mp_read_str(&r, &s) != 0 || s.len > fk->max)
                return SB_EBADMSG;
            if (fk->kind == FK_PATH && s.len && memchr(s.ptr, 0, s.len))
                return SB_EBADMSG;
            *(sb_str_t *)dst = s;
            break;
        }
        case FK_BIN: {
            sb_str_t s;
            if (sb_mp_read_bin(&r, &s) != 0 || s.len > fk->max)
                return SB_EBADMSG;
            *(sb_str_t *)dst = s;
            break;
        }
        case FK_ARR: {
            uint32_t cnt;
            const uint8_t *start = r.p;
            if (sb_mp_read_array(&r, &cnt) != 0 || cnt > fk->max)
                return SB_EBADMSG;
            r.p = start;
            sb_str_t raw;
            if (sb_mp_read_raw(&r, &raw) != 0)
                return SB_EBADMSG;
            *(sb_str_t *)dst = raw;
            *(uint32_t *)((uint8_t *)&f + fk->cnt_off) = cnt;
            break;
        }
        }
    }
    if (need_type && f.t == 0)
        return SB_EBADMSG;
    *out = f;
    return 0;
}

char *
sb_frame_strv(sb_str_t raw, uint32_t i)
{
    sb_mp_reader_t r;
    uint32_t n;
    sb_str_t s;
    sb_mp_reader_init(&r, raw.ptr, raw.len);
    if (sb_mp_read_array(&r, &n) != 0 || i >= n)
        return NULL;
    for (uint32_t j = 0; j < i; j++)
        if (sb_mp_skip(&r) != 0)
            return NULL;
    if (sb_mp_read_str(&r, &s) != 0 || (s.len && memchr(s.ptr, 0, s.len)))
        return NULL;
    char *c = malloc((size_t)s.len + 1);
    if (!c)
        return NULL;
    memcpy(c, s.ptr, s.len);
    c[s.len] = 0;
    return c;
}
