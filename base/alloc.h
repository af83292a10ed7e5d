/* alloc.h: allocation that aborts on OOM.  Thread-safe. */
#ifndef SB_ALLOC_H
#define SB_ALLOC_H

#include <stddef.h>

/* sb_xmalloc & co. abort on OOM: for small internal allocations only (STYLE.md, Errors). */
void *sb_xmalloc(size_t n);
void *sb_xcalloc(size_t n, size_t sz);
void *sb_xrealloc(void *p, size_t n);
char *sb_xstrdup(const char *s);

#endif
