/*
 * str.h: string views -- a pointer and a length, not NUL-terminated, borrowed from whatever
 * holds the bytes (a message, a request): copy what you keep.
 */
#ifndef SB_STR_H
#define SB_STR_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* A string view: not NUL-terminated, borrowed from whatever holds the bytes. */
typedef struct {
    const char *ptr;
    uint32_t len;
} sb_str_t;

#define SB_STR(lit) ((sb_str_t){(lit), (uint32_t)(sizeof(lit) - 1)})
static inline sb_str_t
sb_str(const char *s)
{
    return (sb_str_t){s, s ? (uint32_t)strlen(s) : 0};
}
static inline int
sb_str_eq(sb_str_t a, const char *b)
{
    size_t n = strlen(b);
    return a.len == n && (n == 0 || memcmp(a.ptr, b, n) == 0);
}
/* sb_str_dup returns a malloc'd NUL-terminated copy (aborts on OOM: small, bounded inputs). */
char *sb_str_dup(sb_str_t s);
/* sb_str_copy copies into dst[cap] with NUL; returns SB_ETOOBIG if it does not fit. */
int sb_str_copy(char *dst, size_t cap, sb_str_t s);

#endif
