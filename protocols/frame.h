/*
 * frame.h: the wire between the executor and soulbox-init (a SOCK_STREAM socketpair), derived
 * from protocols/init.def.
 *
 * A frame is a little-endian u32 length n, then n bytes: one byte of frame type (SB_IF_*),
 * then the body, a msgpack map from field number to value decoded by the table-driven codec
 * (codec.h) with every field's kind and size cap checked.  A frame longer than SB_FRAME_MAX,
 * or a body that does not decode, is refused: soulbox-init answers SB_IF_ERROR and keeps
 * serving; the executor treats it as a lost sandbox.  Both sides link only sb_base and
 * sb_proto for this.
 *
 * For each frame `name` of init.def there is a struct sb_if_<name>_t, a type number
 * SB_IF_<NAME>, a descriptor, and
 *   int sb_if_<name>_write(sb_buf_t *out, const sb_if_<name>_t *s);  appends a whole frame
 *   int sb_if_<name>_decode(const uint8_t *body, size_t n, sb_if_<name>_t *s);
 * sb_if_entry_t (an element of a REPLY's ents) has sb_if_entry_encode / _decode instead (a
 * plain map).  Decoded strings are views into the frame buffer: copy what you keep.
 */
#ifndef SB_PROTOCOLS_FRAME_H
#define SB_PROTOCOLS_FRAME_H

#include "base/buf.h"
#include "base/str.h"
#include "codec.h"
#include "init.def"
#include "mpw.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SB_IF_HDR 5             /* u32 length + u8 type */
#define SB_FRAME_MAX (9u << 20) /* one frame, length word excluded: 8 MiB of data + slack */
#define SB_FRAME_DATA_MAX (8u << 20)
#define SB_FRAME_PATH_MAX 4096
#define SB_FRAME_ARGS_MAX 1024  /* argv or env entries */

/* A stat REPLY's and a listing entry's type. */
enum { SB_IF_FILE_REGULAR = 1, SB_IF_FILE_DIR = 2, SB_IF_FILE_SYMLINK = 3, SB_IF_FILE_OTHER = 4 };

enum {
#define SB__IF_ENUM(no, UP, low) SB_IF_##UP = (no),
    SB_INIT_FRAMES(SB__IF_ENUM)
#undef SB__IF_ENUM
};

#define SB__IF_DECL(no, UP, low)                                                                   \
    typedef struct {                                                                               \
        SB_IFIELDS_##low(SB__STRUCT_FIELD, _)                                                      \
    } sb_if_##low##_t;                                                                             \
    extern const sb_msgdef_t sb_if_##low##_def;                                                    \
    static inline int sb_if_##low##_write(sb_buf_t *out, const sb_if_##low##_t *s)                 \
    {                                                                                              \
        return sb_frame_write(out, &sb_if_##low##_def, s);                                         \
    }                                                                                              \
    static inline int sb_if_##low##_decode(const uint8_t *p, size_t n, sb_if_##low##_t *s)         \
    {                                                                                              \
        return sb_codec_decode(&sb_if_##low##_def, p, n, s, NULL);                                 \
    }

/* sb_frame_write appends one whole frame of descriptor d (header, type, body) to out; on
 * failure (SB_ETOOBIG past out's limit or SB_FRAME_MAX) out is left as it was. */
int sb_frame_write(sb_buf_t *out, const sb_msgdef_t *d, const void *s);

SB_INIT_FRAMES(SB__IF_DECL)
#undef SB__IF_DECL

typedef struct {
    SB_IFIELDS_entry(SB__STRUCT_FIELD, _)
} sb_if_entry_t;
extern const sb_msgdef_t sb_if_entry_def;
static inline int
sb_if_entry_encode(sb_buf_t *out, const sb_if_entry_t *s)
{
    return sb_codec_encode(&sb_if_entry_def, s, out);
}
static inline int
sb_if_entry_decode(const uint8_t *p, size_t n, sb_if_entry_t *s)
{
    return sb_codec_decode(&sb_if_entry_def, p, n, s, NULL);
}

/* sb_frame_next looks at buffered input: 1 when a whole frame is there, with its type, its
 * body and the bytes it takes in the buffer (*total: consume that much); 0 when more bytes
 * are needed; SB_ETOOBIG when the announced length exceeds SB_FRAME_MAX; SB_EBADMSG (with *total set:
 * skip it) for a frame too short to hold its type. */
int sb_frame_next(const sb_buf_t *in, uint8_t *type, const uint8_t **body, size_t *len,
                  size_t *total);

#endif
