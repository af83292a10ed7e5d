/* hex.h: lowercase hexadecimal.  Pure functions; thread-safe. */
#ifndef SB_HEX_H
#define SB_HEX_H

#include <stddef.h>
#include <stdint.h>

/* sb_hex_encode writes 2n lowercase digits and a NUL to out[2n+1]. */
void sb_hex_encode(const void *p, size_t n, char *out);
/* sb_hex_decode reads exactly 2n digits (either case) into out[n]; SB_EINVAL on a non-digit
 * (out is then partly written). */
int sb_hex_decode(const char *s, uint8_t *out, size_t n);

#endif
