/* sha256.h: SHA-256 and HMAC-SHA256 (OpenSSL), and their hex forms.  Thread-safe. */
#ifndef SB_SHA256_H
#define SB_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SB_SHA256_LEN 32
#define SB_SHA256_HEX_LEN 64

void sb_sha256(const void *p, size_t n, uint8_t out[SB_SHA256_LEN]);
/* sb_sha256_hex writes 64 lowercase hex digits and a NUL. */
void sb_sha256_hex(const void *p, size_t n, char out[SB_SHA256_HEX_LEN + 1]);
void sb_hmac_sha256(const void *key, size_t keylen, const void *p, size_t n,
                    uint8_t out[SB_SHA256_LEN]);
/* sb_equal_ct compares n bytes in constant time: 1 if equal. */
int sb_equal_ct(const void *a, const void *b, size_t n);

#endif
