/* test_frame.c: the executor <-> soulbox-init frames of init.def: round trip, caps,
 * malformed input, framing. */
#include "base/err.h"
#include "protocols/frame.h"
#include "protocols/mp.h"
#include "test.h"

#include <stdlib.h>
#include <string.h>

int
main(void)
{
    sb_buf_t b, argv;
    sb_buf_init(&b, 0);
    sb_buf_init(&argv, 0);
    static const char *const args[] = {"python3", "-c", NULL};
    sb_mpw_strv(&argv, args);
    sb_if_exec_t ex = {.id = 42, .argv = {(const char *)argv.data, (uint32_t)argv.len},
                       .cwd = SB_STR("/home/user/x"), .pty = true, .rows = 30, .cpu = 3};
    CHECK_EQ(sb_if_exec_write(&b, &ex), 0);
    sb_if_exit_t ex2 = {.id = 42, .code = -1, .sig = 9};
    CHECK_EQ(sb_if_exit_write(&b, &ex2), 0);

    const uint8_t *body;
    size_t len, total;
    uint8_t type;
    CHECK_EQ(sb_frame_next(&b, &type, &body, &len, &total), 1);
    CHECK_EQ(type, SB_IF_EXEC);
    sb_if_exec_t f;
    CHECK_EQ(sb_if_exec_decode(body, len, &f), 0);
    CHECK_EQ(f.id, 42);
    CHECK(f.pty);
    CHECK_EQ(f.rows, 30);
    CHECK_EQ(f.cpu, 3);
    CHECK(sb_str_eq(f.cwd, "/home/user/x"));
    char **v;
    size_t n;
    CHECK_EQ(sb_mp_strv(f.argv, 16, &v, &n), 0);
    CHECK_EQ(n, 2);
    CHECK(!strcmp(v[0], "python3") && !strcmp(v[1], "-c") && v[2] == NULL);
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
    CHECK_EQ(sb_mp_strv(f.argv, 1, &v, &n), SB_EBADMSG); /* over the item cap */
    sb_test_ok("round trip");

    /* every truncation of the body is refused, never read past */
    for (size_t k = 0; k < len; k++)
        CHECK(sb_if_exec_decode(body, k, &f) != 0);
    sb_test_ok("truncated bodies refused");

    /* the second frame follows */
    sb_buf_consume(&b, total);
    CHECK_EQ(sb_frame_next(&b, &type, &body, &len, &total), 1);
    CHECK_EQ(type, SB_IF_EXIT);
    sb_if_exit_t e;
    CHECK_EQ(sb_if_exit_decode(body, len, &e), 0);
    CHECK_EQ(e.code, -1);
    CHECK_EQ(e.sig, 9);
    sb_buf_consume(&b, total);
    CHECK_EQ(b.len, 0);
    sb_test_ok("frames in sequence");

    /* a path with a NUL byte, a field of the wrong type, not a map, an oversized string */
    sb_buf_t m;
    sb_buf_init(&m, 0);
    sb_mpw_map(&m, 1);
    sb_mpw_uint(&m, 2);
    sb_mpw_str(&m, "a\0b", 3);
    sb_if_fread_t fr;
    CHECK_EQ(sb_if_fread_decode(m.data, m.len, &fr), SB_EBADMSG);
    sb_buf_reset(&m);
    sb_mpw_map(&m, 1);
    sb_mpw_uint(&m, 2);
    sb_mpw_uint(&m, 3);
    CHECK_EQ(sb_if_fread_decode(m.data, m.len, &fr), SB_EBADMSG);
    sb_buf_reset(&m);
    sb_mpw_array(&m, 0);
    CHECK_EQ(sb_if_fread_decode(m.data, m.len, &fr), SB_EBADMSG);
    sb_buf_reset(&m);
    char big[SB_FRAME_PATH_MAX + 2];
    memset(big, 'a', sizeof big);
    sb_mpw_map(&m, 1);
    sb_mpw_uint(&m, 2);
    sb_mpw_str(&m, big, sizeof big);
    CHECK_EQ(sb_if_fread_decode(m.data, m.len, &fr), SB_ETOOBIG);
    /* the writer refuses what the reader would */
    sb_buf_reset(&b);
    sb_if_fread_t bad = {.id = 1, .path = {big, sizeof big}};
    CHECK_EQ(sb_if_fread_write(&b, &bad), SB_ETOOBIG);
    CHECK_EQ(b.len, 0);
    sb_if_fread_t nul = {.id = 1, .path = {"a\0b", 3}};
    CHECK(sb_if_fread_write(&b, &nul) != 0);
    CHECK_EQ(b.len, 0);
    sb_buf_fini(&m);
    sb_test_ok("malformed refused");

    /* an entry list: encode, then walk it the way the engine does */
    sb_buf_t ents;
    sb_buf_init(&ents, 0);
    sb_mpw_array(&ents, 2);
    sb_if_entry_t e1 = {.path = SB_STR("/home/user/a"), .type = SB_IF_FILE_REGULAR, .size = 5};
    sb_if_entry_t e2 = {.pid = 7, .ppid = 1, .state = SB_STR("S"), .cmd = SB_STR("sleep 9")};
    CHECK_EQ(sb_if_entry_encode(&ents, &e1), 0);
    CHECK_EQ(sb_if_entry_encode(&ents, &e2), 0);
    sb_mp_reader_t r;
    uint32_t cnt;
    sb_str_t raw;
    sb_mp_reader_init(&r, ents.data, ents.len);
    CHECK_EQ(sb_mp_read_array(&r, &cnt), 0);
    CHECK_EQ(cnt, 2);
    sb_if_entry_t d;
    CHECK_EQ(sb_mp_read_raw(&r, &raw), 0);
    CHECK_EQ(sb_if_entry_decode((const uint8_t *)raw.ptr, raw.len, &d), 0);
    CHECK(sb_str_eq(d.path, "/home/user/a") && d.size == 5 && d.type == SB_IF_FILE_REGULAR);
    CHECK_EQ(sb_mp_read_raw(&r, &raw), 0);
    CHECK_EQ(sb_if_entry_decode((const uint8_t *)raw.ptr, raw.len, &d), 0);
    CHECK(d.pid == 7 && sb_str_eq(d.cmd, "sleep 9"));
    sb_buf_fini(&ents);
    sb_test_ok("entries");

    /* framing: an oversized announced length, a partial frame, an empty one */
    sb_buf_reset(&b);
    uint8_t hdr[5] = {0};
    sb_put_u32(hdr, SB_FRAME_MAX + 1);
    sb_buf_append(&b, hdr, 4);
    CHECK_EQ(sb_frame_next(&b, &type, &body, &len, &total), SB_ETOOBIG);
    sb_put_u32(hdr, 10);
    sb_buf_reset(&b);
    sb_buf_append(&b, hdr, 5);
    CHECK_EQ(sb_frame_next(&b, &type, &body, &len, &total), 0);
    sb_put_u32(hdr, 0);
    sb_buf_reset(&b);
    sb_buf_append(&b, hdr, 4);
    CHECK_EQ(sb_frame_next(&b, &type, &body, &len, &total), SB_EBADMSG);
    CHECK_EQ(total, 4);
    sb_test_ok("framing caps");
    sb_buf_fini(&b);
    sb_buf_fini(&argv);
    return sb_test_done();
}
