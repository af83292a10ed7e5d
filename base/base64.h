/*
 * base64.h: base64 (RFC 4648 section 4, with padding: JSON payloads, artifacts, figures) and
 * base64url (section 5, without padding: tokens, JWT segments).  Pure functions; thread-safe.
 */
#ifndef SB_BASE64_H
#define SB_BASE64_H

#include <stddef.h>
#include <stdint.h>

/* Encoded sizes, without the NUL. */
#define SB_BASE64_LEN(n) (4 * (((size_t)(n) + 2) / 3))
#define SB_BASE64URL_LEN(n) (((size_t)(n) * 4 + 2) / 3)

/* sb_base64_encode writes SB_BASE64_LEN(n) characters and a NUL to out; returns the length. */
size_t sb_base64_encode(const void *p, size_t n, char *out);
/* sb_base64_encode_alloc: the same into a malloc'd string (aborts on OOM). */
char *sb_base64_encode_alloc(const void *p, size_t n);
/* sb_base64_decode decodes s[n] into out[cap].  Padding is optional; CR and LF are skipped.
 * Returns the number of bytes, SB_EINVAL on any other character or a dangling one, SB_ETOOBIG
 * when out is too small (at most n / 4 * 3 + 2 bytes are needed). */
int sb_base64_decode(const char *s, size_t n, uint8_t *out, size_t cap);

size_t sb_base64url_encode(const void *p, size_t n, char *out);
/* sb_base64url_decode: no padding, no other characters; errors as sb_base64_decode. */
int sb_base64url_decode(const char *s, size_t n, uint8_t *out, size_t cap);
/* sb_base64url_char: 1 if c is a character of the base64url alphabet. */
int sb_base64url_char(char c);

#endif
