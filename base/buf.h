/*
 * buf.h: a growable byte buffer with a hard cap, and little-endian loads and stores.  A
 * buffer is embedded (sb_buf_init/sb_buf_fini); it owns its bytes.  Appends beyond the cap
 * fail with SB_ETOOBIG and leave the buffer unchanged.  One owner; not thread-safe.
 */
#ifndef SB_BUF_H
#define SB_BUF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    uint8_t *data;
    size_t len;
    size_t cap;   /* allocated */
    size_t limit; /* hard cap on len; 0 = SIZE_MAX */
} sb_buf_t;

void sb_buf_init(sb_buf_t *b, size_t limit);
void sb_buf_fini(sb_buf_t *b);
/* sb_buf_reserve makes room for n more bytes; SB_ETOOBIG past the limit, SB_ENOMEM. */
int sb_buf_reserve(sb_buf_t *b, size_t n);
int sb_buf_append(sb_buf_t *b, const void *p, size_t n);
int sb_buf_appendf(sb_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* sb_buf_consume drops the first n bytes. */
void sb_buf_consume(sb_buf_t *b, size_t n);
static inline void
sb_buf_reset(sb_buf_t *b)
{
    b->len = 0;
}
/* sb_buf_steal hands the bytes to the caller (free() them) and empties the buffer. */
uint8_t *sb_buf_steal(sb_buf_t *b, size_t *len);

static inline void
sb_put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static inline void
sb_put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline void
sb_put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint16_t
sb_get_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}
static inline uint32_t
sb_get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}
static inline uint64_t
sb_get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

#endif
