/*
 * codec.c: descriptors derived from messages.def, and the one encoder and decoder that walk
 * them.  Encoding uses the writer of mpw.h; decoding the bounded reader of mp.h.
 */
#include "codec.h"

#include "base/err.h"
#include "mp.h"
#include "mpw.h"

#include <msgpack.h>
#include <stddef.h>
#include <string.h>

static int
codec_write(void *data, const char *buf, size_t len)
{
    return sb_buf_append(data, buf, len) ? -1 : 0;
}

void
sb_codec_packer(void *pk, sb_buf_t *out)
{
    msgpack_packer_init(pk, out, codec_write);
}

static int
codec_is_zero(const sb_field_t *f, const uint8_t *base)
{
    const void *p = base + f->offset;
    switch (f->kind) {
    case SB_FK_U64: return *(const uint64_t *)p == 0;
    case SB_FK_I64: return *(const int64_t *)p == 0;
    case SB_FK_BOOL: return !*(const bool *)p;
    case SB_FK_F64: return *(const double *)p == 0.0;
    default: return ((const sb_str_t *)p)->len == 0;
    }
}

int
sb_codec_encode(const sb_msgdef_t *d, const void *s, sb_buf_t *out)
{
    const uint8_t *base = s;
    size_t start = out->len;
    uint32_t n = 0;

    for (uint16_t i = 0; i < d->nfields; i++)
        n += !codec_is_zero(&d->fields[i], base);
    if (sb_mpw_map(out, n))
        goto fail;
    for (uint16_t i = 0; i < d->nfields; i++) {
        const sb_field_t *f = &d->fields[i];
        const void *p = base + f->offset;
        if (codec_is_zero(f, base))
            continue;
        if (sb_mpw_uint(out, f->no))
            goto fail;
        int r = 0;
        const sb_str_t *sv = p;
        switch (f->kind) {
        case SB_FK_U64: r = sb_mpw_uint(out, *(const uint64_t *)p); break;
        case SB_FK_I64: r = sb_mpw_int(out, *(const int64_t *)p); break;
        case SB_FK_BOOL: r = sb_mpw_bool(out, *(const bool *)p); break;
        case SB_FK_F64: r = sb_mpw_f64(out, *(const double *)p); break;
        case SB_FK_STR:
        case SB_FK_PATH:
            if (sv->len > f->max || (f->kind == SB_FK_PATH && sv->len && memchr(sv->ptr, 0, sv->len))) {
                out->len = start;
                return SB_ETOOBIG;
            }
            r = sb_mpw_str(out, sv->ptr, sv->len);
            break;
        case SB_FK_BIN:
            if (sv->len > f->max) {
                out->len = start;
                return SB_ETOOBIG;
            }
            r = sb_mpw_bin(out, sv->ptr, sv->len);
            break;
        case SB_FK_RAW: {
            /* A RAW field must hold exactly one well-formed object: check before embedding. */
            sb_mp_reader_t rd;
            sb_mp_reader_init(&rd, sv->ptr, sv->len);
            if (sv->len > f->max || sb_mp_skip(&rd) || sb_mp_left(&rd) != 0) {
                out->len = start;
                return sv->len > f->max ? SB_ETOOBIG : SB_EINVAL;
            }
            r = sb_buf_append(out, sv->ptr, sv->len) ? -1 : 0;
            break;
        }
        }
        if (r)
            goto fail;
    }
    return 0;
fail:
    out->len = start;
    return SB_ETOOBIG;
}

int
sb_codec_decode(const sb_msgdef_t *d, const void *p, size_t n, void *s, const char **bad_field)
{
    sb_mp_reader_t r;
    uint32_t nkeys;
    uint8_t *base = s;

    memset(s, 0, d->size);
    sb_mp_reader_init(&r, p, n);
    if (sb_mp_read_map(&r, &nkeys))
        goto bad;
    for (uint32_t k = 0; k < nkeys; k++) {
        uint64_t no;
        const sb_field_t *f = NULL;
        if (sb_mp_read_u64(&r, &no))
            goto bad;
        for (uint16_t i = 0; i < d->nfields; i++)
            if (d->fields[i].no == no)
                f = &d->fields[i];
        if (!f) {
            if (sb_mp_skip(&r)) /* unknown field: ignored, but must still be well-formed */
                goto bad;
            continue;
        }
        void *dst = base + f->offset;
        int e = 0;
        switch (f->kind) {
        case SB_FK_U64: e = sb_mp_read_u64(&r, dst); break;
        case SB_FK_I64: e = sb_mp_read_i64(&r, dst); break;
        case SB_FK_BOOL: e = sb_mp_read_bool(&r, dst); break;
        case SB_FK_F64: e = sb_mp_read_f64(&r, dst); break;
        case SB_FK_STR: e = sb_mp_read_str(&r, dst); break;
        case SB_FK_PATH:
            e = sb_mp_read_str(&r, dst);
            if (!e && ((sb_str_t *)dst)->len && memchr(((sb_str_t *)dst)->ptr, 0, ((sb_str_t *)dst)->len))
                e = SB_EBADMSG;
            break;
        case SB_FK_BIN: e = sb_mp_read_bin(&r, dst); break;
        case SB_FK_RAW: e = sb_mp_read_raw(&r, dst); break;
        }
        if (e) {
            if (bad_field)
                *bad_field = f->name;
            memset(s, 0, d->size);
            return SB_EBADMSG;
        }
        if (f->kind >= SB_FK_STR && ((sb_str_t *)dst)->len > f->max) {
            if (bad_field)
                *bad_field = f->name;
            memset(s, 0, d->size);
            return SB_ETOOBIG;
        }
    }
    if (sb_mp_left(&r) != 0)
        goto bad;
    return 0;
bad:
    if (bad_field)
        *bad_field = "(body)";
    memset(s, 0, d->size);
    return SB_EBADMSG;
}
