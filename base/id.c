/* id.c: random bytes from getrandom(2) and the one random-id format. */
#include "id.h"

#include "err.h"
#include "hex.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/random.h>

int
sb_random_bytes(void *p, size_t n)
{
    uint8_t *b = p;
    while (n) {
        ssize_t got = getrandom(b, n, 0);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return SB_EIO;
        b += got;
        n -= (size_t)got;
    }
    return 0;
}

void
sb_random_id(const char *prefix, char *out, size_t cap)
{
    uint8_t r[8];
    size_t pl = strlen(prefix);
    if (cap < SB_ID_SIZE(pl) || sb_random_bytes(r, sizeof r) != 0)
        sb_assert_fail("sb_random_id", __FILE__, __LINE__);
    memcpy(out, prefix, pl);
    sb_hex_encode(r, sizeof r, out + pl);
}
