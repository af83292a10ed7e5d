/*
 * fuzz_codec.c: every decoder of bus bytes, fed arbitrary input -- the batch framing (with
 * and without a key), every registered message's codec, and the raw msgpack skipper.  Built
 * as a libFuzzer target with SB_FUZZ=ON (clang), and as a corpus regression test otherwise.
 */
#include "protocols/msg.h"
#include "protocols/mp.h"
#include "protocols/msgs.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
fuzz_all_codecs(const uint8_t *p, size_t n)
{
    static const uint16_t types[] = {
#define SB__T(no, UP, low) (no),
        SB_MESSAGES(SB__T)
#undef SB__T
    };
    uint8_t scratch[8192];
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        const sb_msgdef_t *d = sb_msgdef_lookup(types[i]);
        if (!d || d->size > sizeof scratch)
            continue;
        if (sb_codec_decode(d, p, n, scratch, NULL) == 0) {
            /* whatever decodes must re-encode and decode to the same fields */
            sb_buf_t b;
            uint8_t again[8192];
            sb_buf_init(&b, 0);
            if (sb_codec_encode(d, scratch, &b) == 0 &&
                sb_codec_decode(d, b.data, b.len, again, NULL) != 0)
                abort();
            sb_buf_fini(&b);
        }
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sb_batch_iter_t it;
    sb_msg_t m;
    static const uint8_t key[] = "fuzz-key-fuzz-key";

    /* the batch as it arrives from a local mailbox, and from tcp */
    if (sb_batch_open(&it, data, size, NULL, 0, 0) == 0)
        while (sb_batch_next(&it, &m) == 1)
            fuzz_all_codecs(m.body, m.body_len);
    if (sb_batch_open(&it, data, size, key, sizeof key - 1, UINT64_MAX) == 0)
        while (sb_batch_next(&it, &m) == 1)
            ;
    /* bodies directly */
    fuzz_all_codecs(data, size);
    sb_mp_reader_t r;
    sb_str_t raw;
    sb_mp_reader_init(&r, data, size);
    while (sb_mp_read_raw(&r, &raw) == 0 && sb_mp_left(&r) > 0)
        ;
    return 0;
}
