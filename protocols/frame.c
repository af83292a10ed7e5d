/*
 * frame.c: the executor <-> soulbox-init frames (frame.h): the descriptors derived from
 * init.def, and the frame header.  Bodies are written and read by the generic codec
 * (codec.c), which checks every field's kind and cap; nothing here allocates.
 */
#include "frame.h"

#include "base/err.h"

#include <stddef.h>

#define SB__IF_DESC(no, UP, low)                                                                   \
    static const sb_field_t if_##low##_fields[] = {                                                \
        SB_IFIELDS_##low(SB__FIELD_DESC, sb_if_##low##_t)};                                        \
    const sb_msgdef_t sb_if_##low##_def = {                                                        \
        (no), "if_" #low, sizeof(sb_if_##low##_t), if_##low##_fields,                              \
        (uint16_t)(sizeof if_##low##_fields / sizeof if_##low##_fields[0])};
SB_INIT_FRAMES(SB__IF_DESC)
SB__IF_DESC(0, ENTRY, entry)
#undef SB__IF_DESC

int
sb_frame_write(sb_buf_t *out, const sb_msgdef_t *d, const void *s)
{
    size_t start = out->len;
    uint8_t hdr[SB_IF_HDR] = {0, 0, 0, 0, (uint8_t)d->type};
    int rc = sb_buf_append(out, hdr, sizeof hdr);
    if (rc == 0)
        rc = sb_codec_encode(d, s, out);
    if (rc == 0 && out->len - start - 4 > SB_FRAME_MAX)
        rc = SB_ETOOBIG;
    if (rc != 0) {
        out->len = start;
        return rc;
    }
    sb_put_u32(out->data + start, (uint32_t)(out->len - start - 4));
    return 0;
}

int
sb_frame_next(const sb_buf_t *in, uint8_t *type, const uint8_t **body, size_t *len,
              size_t *total)
{
    if (in->len < 4)
        return 0;
    uint32_t n = sb_get_u32(in->data);
    if (n > SB_FRAME_MAX)
        return SB_ETOOBIG;
    if (in->len - 4 < n)
        return 0;
    if (n < 1) {
        *total = 4;
        return SB_EBADMSG;
    }
    *type = in->data[4];
    *body = in->data + SB_IF_HDR;
    *len = n - 1;
    *total = 4 + (size_t)n;
    return 1;
}
