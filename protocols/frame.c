/*
 * frame.c: encoder and bounded decoder of executor <-> soulbox-init frames (see frame.h).
 * Reading goes through protocols/mp.h, which checks every length before it reads; nothing
 * here allocates while decoding.
 */
#include "frame.h"

#include "base/err.h"
#include "mp.h"
#include "mpw.h"

#include <stdlib.h>
#include <string.h>

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
