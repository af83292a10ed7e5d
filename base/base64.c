/* base64.c: one base64 and one base64url codec for the whole tree (base64.h). */
#include "base64.h"

#include "alloc.h"
#include "err.h"

#include <stdbool.h>

static const char b64_std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char b64_url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static size_t
b64_encode(const char *alpha, bool pad, const uint8_t *p, size_t n, char *out)
{
    size_t o = 0, i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        out[o++] = alpha[v >> 18];
        out[o++] = alpha[(v >> 12) & 63];
        out[o++] = alpha[(v >> 6) & 63];
        out[o++] = alpha[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        out[o++] = alpha[v >> 18];
        out[o++] = alpha[(v >> 12) & 63];
        if (pad) {
            out[o++] = '=';
            out[o++] = '=';
        }
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        out[o++] = alpha[v >> 18];
        out[o++] = alpha[(v >> 12) & 63];
        out[o++] = alpha[(v >> 6) & 63];
        if (pad)
            out[o++] = '=';
    }
    out[o] = 0;
    return o;
}

static int
b64_val(bool url, char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == (url ? '-' : '+'))
        return 62;
    if (c == (url ? '_' : '/'))
        return 63;
    return -1;
}

/* Padding ('=') may only end the input; whitespace is skipped only in the standard form. */
static int
b64_decode(bool url, const char *s, size_t n, uint8_t *out, size_t cap)
{
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0, digits = 0, pad = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!url && (c == '\r' || c == '\n'))
            continue;
        if (!url && c == '=') {
            pad++;
            continue;
        }
        int v = pad ? -1 : b64_val(url, c);
        if (v < 0)
            return SB_EINVAL;
        digits++;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o >= cap)
                return SB_ETOOBIG;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    if (digits % 4 == 1 || pad > 2 || (pad && (digits + pad) % 4 != 0))
        return SB_EINVAL; /* a dangling character, or padding that does not complete a quad */
    return (int)o;
}

size_t
sb_base64_encode(const void *p, size_t n, char *out)
{
    return b64_encode(b64_std, true, p, n, out);
}

char *
sb_base64_encode_alloc(const void *p, size_t n)
{
    char *out = sb_xmalloc(SB_BASE64_LEN(n) + 1);
    sb_base64_encode(p, n, out);
    return out;
}

int
sb_base64_decode(const char *s, size_t n, uint8_t *out, size_t cap)
{
    return b64_decode(false, s, n, out, cap);
}

size_t
sb_base64url_encode(const void *p, size_t n, char *out)
{
    return b64_encode(b64_url, false, p, n, out);
}

int
sb_base64url_decode(const char *s, size_t n, uint8_t *out, size_t cap)
{
    return b64_decode(true, s, n, out, cap);
}

int
sb_base64url_char(char c)
{
    return b64_val(true, c) >= 0;
}
