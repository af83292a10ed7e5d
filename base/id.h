/*
 * id.h: random bytes and random ids.  An id is a prefix and 16 lowercase hex digits (64
 * random bits): "sbx-3f09c2a1d4e5b6f7".  Thread-safe; may block only at boot, before the
 * kernel's entropy pool is ready (getrandom(2) without GRND_NONBLOCK).
 */
#ifndef SB_ID_H
#define SB_ID_H

#include <stddef.h>

/* The size of an id buffer for a prefix of plen characters. */
#define SB_ID_SIZE(plen) ((plen) + 17)

/* sb_random_bytes fills p[n] from the kernel's CSPRNG; SB_EIO if it cannot (never silently
 * weaker randomness). */
int sb_random_bytes(void *p, size_t n);
/* sb_random_id writes prefix + 16 hex digits + NUL into out[cap] (aborts when the kernel has
 * no randomness to give or cap is too small: both are broken invariants). */
void sb_random_id(const char *prefix, char *out, size_t cap);

#endif
