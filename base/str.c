/* str.c: copies out of string views. */
#include "str.h"

#include "alloc.h"
#include "err.h"

char *
sb_str_dup(sb_str_t s)
{
    char *p = sb_xmalloc((size_t)s.len + 1);
    if (s.len)
        memcpy(p, s.ptr, s.len);
    p[s.len] = 0;
    return p;
}

int
sb_str_copy(char *dst, size_t cap, sb_str_t s)
{
    if ((size_t)s.len + 1 > cap)
        return SB_ETOOBIG;
    if (s.len)
        memcpy(dst, s.ptr, s.len);
    dst[s.len] = 0;
    return 0;
}
