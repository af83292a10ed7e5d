/* sha256.c: SHA-256 and HMAC-SHA256 over OpenSSL; the one copy of the hex digest helper. */
#include "sha256.h"

#include "err.h"
#include "hex.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

void
sb_sha256(const void *p, size_t n, uint8_t out[SB_SHA256_LEN])
{
    SHA256(p, n, out);
}

void
sb_sha256_hex(const void *p, size_t n, char out[SB_SHA256_HEX_LEN + 1])
{
    uint8_t md[SB_SHA256_LEN];
    SHA256(p, n, md);
    sb_hex_encode(md, sizeof md, out);
}

void
sb_hmac_sha256(const void *key, size_t keylen, const void *p, size_t n, uint8_t out[SB_SHA256_LEN])
{
    unsigned int len = SB_SHA256_LEN;
    if (!HMAC(EVP_sha256(), key, (int)keylen, p, n, out, &len))
        sb_assert_fail("HMAC-SHA256", __FILE__, __LINE__);
}

int
sb_equal_ct(const void *a, const void *b, size_t n)
{
    return CRYPTO_memcmp(a, b, n) == 0;
}
