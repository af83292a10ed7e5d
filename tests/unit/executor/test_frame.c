/* test_frame.c: executor <-> soulbox-init frame codec: round trip, caps, malformed input. */
#include "protocols/frame.h"
#include "base/err.h"
#include "test.h"

#include <string.h>

int
main(void)
{
    sb_buf_t b;
    sb_buf_init(&b, 0);
    size_t at = sb_frame_begin(&b);
    sb_mpw_map(&b, 7);
    sb_mpw_kuint(&b, "t", SB_IF_EXEC);
    sb_mpw_kuint(&b, "id", 42);
    sb_mpw_cstr(&b, "argv");
    sb_mpw_array(&b, 2);
    sb_mpw_cstr(&b, "python3");
    sb_mpw_cstr(&b, "-c");
    sb_mpw_kstr(&b, "cwd", "/home/user", 10);
    sb_mpw_kbool(&b, "pty", true);
    sb_mpw_kint(&b, "sig", -5);
    sb_mpw_kuint(&b, "unknown_future_key", 7); /* skipped */
    sb_frame_end(&b, at);
    const uint8_t *body;
    size_t len;
    CHECK_EQ(sb_frame_next(&b, &body, &len), 1);
    sb_frame_t f;
    CHECK_EQ(sb_frame_decode(body, len, &f), 0);
    CHECK_EQ(f.t, SB_IF_EXEC);
    CHECK_EQ(f.id, 42);
    CHECK_EQ(f.argc, 2);
    CHECK(f.pty);
    CHECK_EQ(f.sig, -5);
    CHECK(sb_str_eq(f.cwd, "/home/user"));
    char *a1 = sb_frame_strv(f.argv, 1);
    CHECK(a1 && !strcmp(a1, "-c"));
    free(a1);
    CHECK(sb_frame_strv(f.argv, 2) == NULL);
    sb_test_ok("round trip");

    /* every truncation of the body is refused, never read past */
    for (size_t n = 0; n < len; n++)
        CHECK(sb_frame_decode(body, n, &f) != 0 || n == len);
    sb_test_ok("truncated bodies refused");

    /* a path with a NUL byte, a missing type, a wrong type */
    sb_buf_reset(&b);
    sb_mpw_map(&b, 2);
    sb_mpw_kuint(&b, "t", SB_IF_FREAD);
    sb_mpw_kstr(&b, "path", "a\0b", 3);
    CHECK_EQ(sb_frame_decode(b.data, b.len, &f), SB_EBADMSG);
    sb_buf_reset(&b);
    sb_mpw_map(&b, 1);
    sb_mpw_kuint(&b, "id", 1);
    CHECK_EQ(sb_frame_decode(b.data, b.len, &f), SB_EBADMSG);
    sb_buf_reset(&b);
    sb_mpw_map(&b, 2);
    sb_mpw_kuint(&b, "t", SB_IF_FREAD);
    sb_mpw_kuint(&b, "path", 3);
    CHECK_EQ(sb_frame_decode(b.data, b.len, &f), SB_EBADMSG);
    sb_buf_reset(&b);
    sb_mpw_array(&b, 0);
    CHECK_EQ(sb_frame_decode(b.data, b.len, &f), SB_EBADMSG);
    sb_test_ok("malformed refused");

    /* oversized announced length */
    sb_buf_reset(&b);
    uint8_t hdr[4];
    sb_put_u32(hdr, SB_FRAME_MAX + 1);
    sb_buf_append(&b, hdr, 4);
    CHECK_EQ(sb_frame_next(&b, &body, &len), SB_ETOOBIG);
    sb_put_u32(hdr, 10);
    sb_buf_reset(&b);
    sb_buf_append(&b, hdr, 4);
    CHECK_EQ(sb_frame_next(&b, &body, &len), 0);
    sb_test_ok("framing caps");
    sb_buf_fini(&b);
    return sb_test_done();
}
