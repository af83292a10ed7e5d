/*
 * msgs.h: message structs, type numbers and codecs derived from messages.def.
 *
 * For each message `name` there is a struct sb_<name>_t, a type number SB_MSG_<NAME>, a
 * descriptor sb_<name>_def, and
 *   int sb_<name>_encode(const sb_<name>_t *s, sb_buf_t *out);  appends msgpack to out
 *   int sb_<name>_decode(const sb_msg_t *m, sb_<name>_t *s);    0, SB_EBADMSG, SB_ETOOBIG
 * Decoded STR/BIN/RAW fields are views into the message: copy what you keep.
 */
#ifndef SB_MSGS_H
#define SB_MSGS_H

#include "base/str.h"
#include "msg.h"
#include "codec.h"
#include "messages.def"

enum {
#define SB__MSG_ENUM(no, UP, low) SB_MSG_##UP = (no),
    SB_MESSAGES(SB__MSG_ENUM)
#undef SB__MSG_ENUM
};

#define SB__MSG_DECL(no, UP, low)                                                                  \
    typedef struct {                                                                               \
        SB_FIELDS_##low(SB__STRUCT_FIELD, _)                                                          \
    } sb_##low##_t;                                                                                \
    extern const sb_msgdef_t sb_##low##_def;                                                       \
    static inline int sb_##low##_encode(const sb_##low##_t *s, sb_buf_t *out)                      \
    {                                                                                              \
        return sb_codec_encode(&sb_##low##_def, s, out);                                           \
    }                                                                                              \
    static inline int sb_##low##_decode(const sb_msg_t *m, sb_##low##_t *s)                        \
    {                                                                                              \
        return sb_codec_decode(&sb_##low##_def, m->body, m->body_len, s, NULL);                    \
    }
SB_MESSAGES(SB__MSG_DECL)
#undef SB__MSG_DECL

#endif
