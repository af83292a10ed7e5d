/*
 * mp.h: a bounded, allocation-free msgpack reader.  Every call checks the remaining bytes
 * before it reads; nesting is capped at SB_MP_MAX_DEPTH; nothing is copied (strings and raw
 * objects are views into the input), but for sb_mp_strv, which makes C strings.  Writing is
 * mpw.h's.
 */
#ifndef SB_MP_H
#define SB_MP_H

#include "base/str.h"

#include <stdbool.h>
#include <stdint.h>

#define SB_MP_MAX_DEPTH 32

typedef enum {
    SB_MP_NIL, SB_MP_BOOL, SB_MP_UINT, SB_MP_INT, SB_MP_FLOAT, SB_MP_STR, SB_MP_BIN,
    SB_MP_ARRAY, SB_MP_MAP, SB_MP_EXT, SB_MP_INVALID,
} sb_mp_type_t;

typedef struct {
    const uint8_t *p, *end;
} sb_mp_reader_t;

static inline void
sb_mp_reader_init(sb_mp_reader_t *r, const void *p, size_t n)
{
    r->p = p;
    r->end = r->p + n;
}
static inline size_t
sb_mp_left(const sb_mp_reader_t *r)
{
    return (size_t)(r->end - r->p);
}

/* Each reader returns 0, SB_EBADMSG (truncated, or a different type) and leaves r unchanged on
 * failure. */
sb_mp_type_t sb_mp_peek(const sb_mp_reader_t *r);
int sb_mp_read_nil(sb_mp_reader_t *r);
int sb_mp_read_bool(sb_mp_reader_t *r, bool *v);
int sb_mp_read_u64(sb_mp_reader_t *r, uint64_t *v);   /* non-negative integers only */
int sb_mp_read_i64(sb_mp_reader_t *r, int64_t *v);    /* any integer within int64 */
int sb_mp_read_f64(sb_mp_reader_t *r, double *v);     /* float32/64 or integer */
int sb_mp_read_str(sb_mp_reader_t *r, sb_str_t *v);
int sb_mp_read_bin(sb_mp_reader_t *r, sb_str_t *v);   /* bin, or str accepted as bytes */
int sb_mp_read_array(sb_mp_reader_t *r, uint32_t *n);
int sb_mp_read_map(sb_mp_reader_t *r, uint32_t *n);
/* sb_mp_skip skips one whole object (nested ones included, depth-capped). */
int sb_mp_skip(sb_mp_reader_t *r);
/* sb_mp_read_raw skips one object and returns its encoded bytes. */
int sb_mp_read_raw(sb_mp_reader_t *r, sb_str_t *raw);

/* sb_mp_strv reads raw -- empty, nil, or an array of at most max strings without NUL bytes
 * -- into a malloc'd NULL-terminated vector of *n strings (NULL when empty); SB_EBADMSG
 * otherwise, *out untouched.  Allocation aborts on OOM (the sizes are capped by the caller's
 * field caps).  Free each string and the vector (sb_strv_free in sandbox/env.h). */
int sb_mp_strv(sb_str_t raw, size_t max, char ***out, size_t *n);

#endif
