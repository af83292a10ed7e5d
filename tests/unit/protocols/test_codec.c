/* test_codec.c: msgpack reader, message codecs and batch framing, including hostile input. */
#include "base/err.h"
#include "protocols/msg.h"
#include "protocols/mp.h"
#include "protocols/msgs.h"
#include "test.h"

#include <msgpack.h>
#include <uv.h>
#include <string.h>

static void
test_roundtrip(void)
{
    sb_buf_t b;
    sb_pong_t in = {.sent_us = 123456789012ull, .node = SB_STR("node-a"), .actor = SB_STR("pool"),
                    .uptime_ms = 42, .pid = 7, .handled = 1ull << 40};
    sb_pong_t out;
    sb_buf_init(&b, 0);
    CHECK_EQ(sb_pong_encode(&in, &b), 0);
    sb_msg_t m = {.type = SB_MSG_PONG, .body = b.data, .body_len = (uint32_t)b.len};
    CHECK_EQ(sb_pong_decode(&m, &out), 0);
    CHECK(out.sent_us == in.sent_us && out.uptime_ms == 42 && out.pid == 7);
    CHECK(out.handled == 1ull << 40);
    CHECK(sb_str_eq(out.node, "node-a") && sb_str_eq(out.actor, "pool"));

    /* zero values are omitted and decode as zero */
    sb_buf_reset(&b);
    sb_ping_t z = {0}, zo = {.sent_us = 99};
    CHECK_EQ(sb_ping_encode(&z, &b), 0);
    CHECK_EQ(b.len, 1); /* an empty map */
    m.body = b.data;
    m.body_len = (uint32_t)b.len;
    CHECK_EQ(sb_ping_decode(&m, &zo), 0);
    CHECK_EQ(zo.sent_us, 0);

    /* error with a negative code, bench with binary payload */
    sb_buf_reset(&b);
    sb_error_t e = {.code = SB_ETIMEDOUT, .name = SB_STR("SB_ETIMEDOUT"), .message = SB_STR("late")};
    sb_error_t eo;
    CHECK_EQ(sb_error_encode(&e, &b), 0);
    m.body = b.data;
    m.body_len = (uint32_t)b.len;
    CHECK_EQ(sb_error_decode(&m, &eo), 0);
    CHECK_EQ(eo.code, SB_ETIMEDOUT);
    CHECK(sb_str_eq(eo.message, "late"));
    sb_buf_fini(&b);
    CHECK(strcmp(sb_msg_type_name(SB_MSG_HELLO), "hello") == 0);
    CHECK(sb_msgdef_lookup(65000) == NULL);
    sb_test_ok("codec roundtrip");
}

/* pack builds a msgpack map with one field of the given shape. */
static void
pack_field(sb_buf_t *b, int key, int shape)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_int(&pk, key);
    switch (shape) {
    case 0: msgpack_pack_str(&pk, 3); msgpack_pack_str_body(&pk, "abc", 3); break;
    case 1: msgpack_pack_int(&pk, -5); break;
    case 2: msgpack_pack_array(&pk, 1); msgpack_pack_nil(&pk); break;
    case 3: msgpack_pack_true(&pk); break;
    }
    sb_buf_reset(b);
    sb_buf_append(b, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
}

static void
test_hostile(void)
{
    sb_buf_t b;
    sb_pong_t out;
    const char *bad = NULL;
    sb_buf_init(&b, 0);

    /* wrong types: a string where a u64 belongs, a negative int for u64, an array for str */
    pack_field(&b, 1, 0);
    CHECK_EQ(sb_codec_decode(&sb_pong_def, b.data, b.len, &out, &bad), SB_EBADMSG);
    CHECK(bad && strcmp(bad, "sent_us") == 0);
    pack_field(&b, 1, 1);
    CHECK_EQ(sb_codec_decode(&sb_pong_def, b.data, b.len, &out, NULL), SB_EBADMSG);
    pack_field(&b, 2, 2);
    CHECK_EQ(sb_codec_decode(&sb_pong_def, b.data, b.len, &out, NULL), SB_EBADMSG);
    /* unknown field: ignored */
    pack_field(&b, 77, 2);
    CHECK_EQ(sb_codec_decode(&sb_pong_def, b.data, b.len, &out, NULL), 0);

    /* oversized string field: node max is 128 */
    {
        char big[200];
        memset(big, 'x', sizeof big);
        sb_pong_t p = {.node = {big, sizeof big}};
        sb_buf_reset(&b);
        CHECK_EQ(sb_pong_encode(&p, &b), SB_ETOOBIG);
        /* and hand-made on the wire */
        uint8_t wire[320] = {0x81, 0x02, 0xd9, (uint8_t)sizeof big};
        memcpy(wire + 4, big, sizeof big);
        CHECK_EQ(sb_codec_decode(&sb_pong_def, wire, 4 + sizeof big, &out, &bad), SB_ETOOBIG);
        CHECK(strcmp(bad, "node") == 0);
    }

    /* every truncation of a valid body is refused, never read past */
    {
        sb_pong_t in = {.sent_us = 1, .node = SB_STR("n"), .actor = SB_STR("a"), .handled = 9};
        sb_buf_reset(&b);
        CHECK_EQ(sb_pong_encode(&in, &b), 0);
        for (size_t n = 0; n < b.len; n++) {
            uint8_t *copy = malloc(n ? n : 1);
            memcpy(copy, b.data, n);
            CHECK(sb_codec_decode(&sb_pong_def, copy, n, &out, NULL) != 0);
            free(copy);
        }
    }
    /* trailing garbage after the map */
    {
        uint8_t wire[] = {0x80, 0x01};
        CHECK_EQ(sb_codec_decode(&sb_pong_def, wire, sizeof wire, &out, NULL), SB_EBADMSG);
    }
    /* a map claiming 2^32-1 entries in 5 bytes is refused up front */
    {
        uint8_t wire[] = {0xdf, 0xff, 0xff, 0xff, 0xff};
        CHECK_EQ(sb_codec_decode(&sb_pong_def, wire, sizeof wire, &out, NULL), SB_EBADMSG);
    }
    /* nesting deeper than the cap in an unknown field */
    {
        uint8_t wire[3 + 100];
        wire[0] = 0x81;
        wire[1] = 0x50; /* field 80 */
        for (int i = 0; i < 100; i++)
            wire[2 + i] = 0x91; /* fixarray of 1 */
        wire[102] = 0xc0;
        CHECK_EQ(sb_codec_decode(&sb_pong_def, wire, sizeof wire, &out, NULL), SB_EBADMSG);
    }
    /* the reserved byte 0xc1 */
    {
        uint8_t wire[] = {0x81, 0x50, 0xc1};
        CHECK_EQ(sb_codec_decode(&sb_pong_def, wire, sizeof wire, &out, NULL), SB_EBADMSG);
    }
    /* RAW fields must hold exactly one well-formed object when encoded */
    {
        sb_hello_t h = {.url = SB_STR("tcp://x:1"), .peers = {"\x92\xc0", 2}};
        sb_buf_reset(&b);
        CHECK_EQ(sb_hello_encode(&h, &b), SB_EINVAL);
    }
    sb_buf_fini(&b);
    sb_test_ok("codec refuses hostile input");
}

static void
test_batch(void)
{
    sb_buf_t b;
    sb_batch_iter_t it;
    sb_msg_t m, got;
    const uint8_t key[] = "0123456789abcdef0123";
    sb_buf_init(&b, 0);

    CHECK_EQ(sb_batch_begin(&b, 0xabcdef), 0);
    for (int i = 0; i < 3; i++) {
        m = (sb_msg_t){.type = SB_MSG_BENCH, .flags = SB_MF_REQ, .src_actor = 8, .dst_actor = 2,
                       .corr = (uint64_t)i + 100, .deadline_ms = 5, .body = (const uint8_t *)"xyz",
                       .body_len = (uint32_t)i};
        CHECK_EQ(sb_batch_add(&b, &m), 0);
    }
    CHECK_EQ(sb_batch_count(&b), 3);
    CHECK_EQ(sb_batch_seal(&b, key, sizeof key - 1), 0);
    CHECK_EQ(sb_batch_open(&it, b.data, b.len, key, sizeof key - 1, 60000), 0);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ(sb_batch_next(&it, &got), 1);
        CHECK_EQ(got.corr, 100 + i);
        CHECK_EQ(got.body_len, i);
        CHECK_EQ(got.src_node, 0xabcdef);
        CHECK_EQ(got.dst_actor, 2);
    }
    CHECK_EQ(sb_batch_next(&it, &got), 0);

    /* a flipped bit anywhere fails authentication */
    for (size_t i = 0; i < b.len; i += 7) {
        b.data[i] ^= 0x01;
        int r = sb_batch_open(&it, b.data, b.len, key, sizeof key - 1, 60000);
        CHECK(r == SB_EAUTH || r == SB_EBADMSG);
        b.data[i] ^= 0x01;
    }
    /* a wrong key, or no MAC at all, fails */
    CHECK_EQ(sb_batch_open(&it, b.data, b.len, (const uint8_t *)"wrong-key-wrong-key", 19, 60000),
             SB_EAUTH);
    CHECK_EQ(sb_batch_open(&it, b.data, b.len - SB_BATCH_MAC, key, sizeof key - 1, 60000), SB_EAUTH);
    /* a stale timestamp (replay) fails */
    sb_put_u64(b.data + 16, sb_get_u64(b.data + 16) - 120000);
    CHECK_EQ(sb_batch_open(&it, b.data, b.len, key, sizeof key - 1, 60000), SB_EAUTH);

    /* truncated frames: every prefix is either refused or ends early, never overreads */
    sb_batch_begin(&b, 1);
    m.body_len = 3;
    sb_batch_add(&b, &m);
    sb_batch_add(&b, &m);
    for (size_t n = 0; n < b.len; n++) {
        uint8_t *copy = malloc(n ? n : 1);
        memcpy(copy, b.data, n);
        if (sb_batch_open(&it, copy, n, NULL, 0, 0) == 0) {
            int r;
            while ((r = sb_batch_next(&it, &got)) == 1)
                ;
            CHECK(r == SB_EBADMSG);
        }
        free(copy);
    }
    /* a frame claiming a huge body */
    sb_put_u32(b.data + SB_BATCH_HDR, 0xfffffff0u);
    CHECK_EQ(sb_batch_open(&it, b.data, b.len, NULL, 0, 0), 0);
    CHECK_EQ(sb_batch_next(&it, &got), SB_EBADMSG);
    /* a body over SB_MSG_MAX_BODY is refused at add */
    sb_batch_begin(&b, 1);
    m.body_len = SB_MSG_MAX_BODY + 1;
    CHECK_EQ(sb_batch_add(&b, &m), SB_ETOOBIG);
    sb_buf_fini(&b);
    sb_test_ok("batch framing, HMAC and truncation");
}

static void
test_errors(void)
{
    CHECK(strcmp(sb_err_name(SB_ETIMEDOUT), "SB_ETIMEDOUT") == 0);
    CHECK_EQ(sb_err_from_name("SB_EAGAIN"), SB_EAGAIN);
    CHECK(strcmp(sb_err_name(UV_ECONNREFUSED), "ECONNREFUSED") == 0);
    CHECK(strcmp(sb_strerror(SB_ENOROUTE), "no route to actor") == 0);
    sb_test_ok("error table");
}

int
main(void)
{
    test_roundtrip();
    test_hostile();
    test_batch();
    test_errors();
    return sb_test_done();
}
