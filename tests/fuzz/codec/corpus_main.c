/* corpus_main.c: runs fuzz_codec's entry point over built-in nasty inputs and every prefix of
 * valid ones, so the fuzz target is exercised (and compiled) in every build. */
#include "protocols/msg.h"
#include "protocols/msgs.h"
#include "test.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
main(void)
{
    static const char *nasty[] = {
        "", "\xc1", "\xdf\xff\xff\xff\xff", "\xdd\xff\xff\xff\xff\xc0", "\x81\x01\xd9\xff",
        "\x81\x02\xdb\xff\xff\xff\xff", "\x81\xcf\xff\xff\xff\xff\xff\xff\xff\xff\xc0",
        "SB\x01\x00\xff\xff\xff\xff", "SB\x01\x01", "\xc7\xff\x01", "\xd8\x01",
    };
    for (size_t i = 0; i < sizeof nasty / sizeof nasty[0]; i++)
        LLVMFuzzerTestOneInput((const uint8_t *)nasty[i], strlen(nasty[i]) + (i == 0));
    /* every prefix and every single-byte corruption of a valid batch */
    sb_buf_t body, batch;
    sb_buf_init(&body, 0);
    sb_buf_init(&batch, 0);
    sb_pong_t p = {.sent_us = 5, .node = SB_STR("n1"), .actor = SB_STR("x"), .handled = 3};
    sb_pong_encode(&p, &body);
    sb_batch_begin(&batch, 42);
    sb_msg_t m = {.type = SB_MSG_PONG, .body = body.data, .body_len = (uint32_t)body.len};
    sb_batch_add(&batch, &m);
    sb_batch_add(&batch, &m);
    sb_batch_seal(&batch, NULL, 0);
    for (size_t n = 0; n <= batch.len; n++)
        LLVMFuzzerTestOneInput(batch.data, n);
    for (size_t i = 0; i < batch.len; i++)
        for (int bit = 0; bit < 8; bit++) {
            batch.data[i] ^= (uint8_t)(1 << bit);
            LLVMFuzzerTestOneInput(batch.data, batch.len);
            batch.data[i] ^= (uint8_t)(1 << bit);
        }
    sb_buf_fini(&body);
    sb_buf_fini(&batch);
    sb_test_ok("codec fuzz corpus");
    return sb_test_done();
}
