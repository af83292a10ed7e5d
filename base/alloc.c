/* alloc.c: allocators that abort on OOM, for small internal allocations (STYLE.md, Errors). */
#include "alloc.h"

#include "err.h"
#include "str.h"

#include <stdlib.h>

void *
sb_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        sb_assert_fail("malloc", __FILE__, __LINE__);
    return p;
}

void *
sb_xcalloc(size_t n, size_t sz)
{
    void *p = calloc(n ? n : 1, sz ? sz : 1);
    if (!p)
        sb_assert_fail("calloc", __FILE__, __LINE__);
    return p;
}

void *
sb_xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p)
        sb_assert_fail("realloc", __FILE__, __LINE__);
    return p;
}

char *
sb_xstrdup(const char *s)
{
    return sb_str_dup(sb_str(s));
}
