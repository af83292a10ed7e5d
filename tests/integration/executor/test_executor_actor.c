/*
 * test_executor_actor.c: the executor actor through the bus, with real sandboxes.  An
 * in-process bus carries requests from a test client actor (kind CLIENT) to the executor; a
 * fake monitor and a fake scheduler record what the executor reports to them.  Covered: create
 * / run / destroy, one-shot python and bash, streamed output (order, coalescing, content),
 * stdin, timeout, memory and output limits, a compiled runtime's compile error and success,
 * files and artifacts, foreground and background commands with PROC_LIST / PROC_INPUT /
 * PROC_SIGNAL, every file operation and errno_ for a missing file, unknown sandboxes,
 * malformed bodies, max_sandboxes, MON_SANDBOX / MON_EXEC / NODE_CAPACITY, a requester that
 * goes away mid-run, and stop with live sandboxes leaving no process, cgroup or state dir.
 *
 * The main thread drives; every bus operation happens on an actor loop.  Each wait is on an
 * event (a reply, a report) with a deadline; nothing sleeps.
 */
#include "actors/executor/executor.h"
#include "core/actor.h"
#include "core/bus.h"
#include "core/config.h"
#include "base/err.h"
#include "protocols/mp.h"
#include "protocols/msgs.h"
#include "test.h"

#include <dirent.h>
#include <msgpack.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "xharness.h"


/* ---- tests ------------------------------------------------------------------------------------ */

static void
test_create_run_destroy(void)
{
    char *id = xh_create("python");
    sb_run_t req = {.sandbox = sb_str(id), .runtime = SB_STR("python"),
                    .code = SB_STR("x = 6 * 7\nprint(x)\n")};
    xh_result_t r;
    xh_result_of(xh_run(&req, 10000), &r);
    CHECK(xh_status_is(&r, "exited"));
    CHECK_EQ(r.res.exit_code, 0);
    CHECK(sb_str_eq(r.res.stdout, "42\n"));
    CHECK(sb_str_eq(r.res.sandbox, id));
    CHECK(r.res.pid > 0);
    xh_call_free(r.c);
    /* the sandbox lives on between runs: a file written by one run is read by the next */
    req.code = SB_STR("open('keep.txt','w').write('kept')\n");
    xh_result_of(xh_run(&req, 10000), &r);
    CHECK(xh_status_is(&r, "exited"));
    xh_call_free(r.c);
    req.code = SB_STR("print(open('keep.txt').read())\n");
    xh_result_of(xh_run(&req, 10000), &r);
    CHECK(sb_str_eq(r.res.stdout, "kept\n"));
    xh_call_free(r.c);
    CHECK_EQ(xh_destroy(id), 0);
    CHECK_EQ(xh_destroy(id), SB_ENOTFOUND);
    free(id);
    /* warm (pool) sandboxes: created the same way, with the runtime's kernel when it ships one */
    id = xh_create_warm("python", true);
    req.sandbox = sb_str(id);
    req.code = SB_STR("print('warm')\n");
    xh_result_of(xh_run(&req, 10000), &r);
    CHECK(sb_str_eq(r.res.stdout, "warm\n"));
    xh_call_free(r.c);
    CHECK_EQ(xh_destroy(id), 0);
    free(id);
    sb_test_ok("create, run twice (state kept), destroy -> EXEC_ACK; destroy again -> ENOTFOUND; warm");
}

static void
test_oneshot(void)
{
    sb_run_t req = {.runtime = SB_STR("python"), .code = SB_STR("print(1)\n")};
    xh_result_t r;
    xh_result_of(xh_run(&req, 10000), &r);
    CHECK(xh_status_is(&r, "exited"));
    CHECK(sb_str_eq(r.res.stdout, "1\n"));
    CHECK(r.res.execution_time_ms < 10000);
    xh_call_free(r.c);
    sb_run_t b = {.runtime = SB_STR("bash"),
                  .code = SB_STR("echo out; echo err >&2; echo \"$1-$2\"; exit 3\n"),
                  .args = xh_strv(0, (const char *const[]){"a b", "c", NULL})};
    xh_result_of(xh_run(&b, 10000), &r);
    CHECK(xh_status_is(&r, "exited"));
    CHECK_EQ(r.res.exit_code, 3);
    if (!sb_str_eq(r.res.stdout, "out\na b-c\n"))
        fprintf(stderr, "stdout: %.*s\n", (int)r.res.stdout.len, r.res.stdout.ptr);
    CHECK(sb_str_eq(r.res.stdout, "out\na b-c\n"));
    CHECK(sb_str_eq(r.res.stderr, "err\n"));
    xh_call_free(r.c);
    sb_run_t u = {.runtime = SB_STR("no-such-runtime"), .code = SB_STR("x")};
    xh_call_t *c = xh_run(&u, 5000);
    CHECK_EQ(xh_last(c)->status, SB_EINVAL);
    xh_call_free(c);
    sb_test_ok("one-shot python print(1), bash with args/stderr/exit 3, unknown runtime EINVAL");
}

static void
test_stream(void)
{
    sb_run_t req = {.runtime = SB_STR("python"), .stream = true,
                    .code = SB_STR("import sys\n"
                                   "for i in range(20000):\n"
                                   "    print(i)\n"
                                   "print('tail', file=sys.stderr)\n")};
    xh_call_t *c = xh_run(&req, 20000);
    sb_buf_t out, err;
    sb_buf_init(&out, 0);
    sb_buf_init(&err, 0);
    size_t chunks = 0;
    for (size_t i = 0; i + 1 < c->n; i++) {
        CHECK_EQ(c->r[i].status, 0);
        CHECK_EQ(c->r[i].type, SB_MSG_OUTPUT);
        CHECK(c->r[i].flags & SB_MF_STREAM);
        sb_msg_t m = xh_as_msg(&c->r[i]);
        sb_output_t o;
        CHECK(sb_output_decode(&m, &o) == 0);
        CHECK(o.data.len > 0 && o.data.len <= 65536);
        CHECK(o.stream == 1 || o.stream == 2);
        sb_buf_append(o.stream == 1 ? &out : &err, o.data.ptr, o.data.len);
        chunks++;
    }
    xh_result_t r;
    xh_result_of(c, &r);
    CHECK(xh_status_is(&r, "exited"));
    sb_buf_t want;
    sb_buf_init(&want, 0);
    for (int i = 0; i < 20000; i++)
        sb_buf_appendf(&want, "%d\n", i);
    CHECK_EQ(out.len, want.len);
    CHECK(memcmp(out.data, want.data, want.len) == 0);
    CHECK(err.len == 5 && memcmp(err.data, "tail\n", 5) == 0);
    /* coalesced: fewer chunks than the 20001 writes (how many depends on the loop's pace) */
    CHECK(chunks >= 2 && chunks < 10000);
    /* the RESULT does not repeat what was streamed */
    CHECK_EQ(r.res.stdout.len, 0);
    fprintf(stderr, "# %zu chunks for %zu bytes\n", chunks, out.len);
    xh_call_free(c);
    sb_buf_fini(&out);
    sb_buf_fini(&err);
    sb_buf_fini(&want);
    sb_test_ok("streamed OUTPUT: chunks <= 64 KiB before the FINAL RESULT, content complete");
}

static void
test_stdin_and_limits(void)
{
    xh_result_t r;
    sb_run_t in = {.runtime = SB_STR("python"), .stdin = SB_STR("abc\ndef\n"),
                   .code = SB_STR("import sys\nprint(sys.stdin.read().upper(), end='')\n")};
    xh_result_of(xh_run(&in, 10000), &r);
    CHECK(sb_str_eq(r.res.stdout, "ABC\nDEF\n"));
    xh_call_free(r.c);

    sb_run_t t = {.runtime = SB_STR("python"), .timeout_ms = 400,
                  .code = SB_STR("while True:\n    pass\n")};
    xh_result_of(xh_run(&t, 10000), &r);
    CHECK(xh_status_is(&r, "timeout"));
    CHECK(r.res.execution_time_ms >= 350 && r.res.execution_time_ms < 5000);
    xh_call_free(r.c);

    sb_run_t mem = {.runtime = SB_STR("python"), .memory_mb = 64,
                    .code = SB_STR("b = []\nwhile True:\n    b.append(bytearray(16 << 20))\n")};
    xh_result_of(xh_run(&mem, 15000), &r);
    CHECK(xh_status_is(&r, "memory_limit"));
    xh_call_free(r.c);

    sb_run_t out = {.runtime = SB_STR("python"), .output_max = 1000,
                    .code = SB_STR("while True:\n    print('x' * 100)\n")};
    xh_result_of(xh_run(&out, 10000), &r);
    CHECK(xh_status_is(&r, "output_limit"));
    CHECK(r.res.stdout_truncated);
    CHECK(r.res.stdout.len <= 1000 && r.res.stdout.len > 0);
    xh_call_free(r.c);
    sb_test_ok("stdin; timeout; memory_limit; output_limit with truncation flag");
}

static void
test_compiled(void)
{
    if (access("/usr/bin/gcc", X_OK) != 0) {
        sb_test_skip("compiled runtime", "no /usr/bin/gcc");
        return;
    }
    xh_result_t r;
    sb_run_t bad = {.runtime = SB_STR("c"), .code = SB_STR("int main(void) { return nope; }\n")};
    xh_result_of(xh_run(&bad, 40000), &r);
    CHECK(xh_status_is(&r, "compile_error"));
    CHECK(r.res.compile.len > 0);
    CHECK(memmem(r.res.compile.ptr, r.res.compile.len, "nope", 4) != NULL);
    CHECK_EQ(r.res.stdout.len, 0);
    xh_call_free(r.c);
    sb_run_t good = {.runtime = SB_STR("c"),
                     .code = SB_STR("#include <stdio.h>\nint main(int c, char **v) { "
                                    "printf(\"hi %s\\n\", v[1]); return 0; }\n"),
                     .args = xh_strv(0, (const char *const[]){"there", NULL})};
    xh_result_of(xh_run(&good, 40000), &r);
    CHECK(xh_status_is(&r, "exited"));
    CHECK(sb_str_eq(r.res.stdout, "hi there\n"));
    CHECK(r.res.compile.len > 0);
    xh_call_free(r.c);
    sb_test_ok("c: compile error -> compile_error with compile record, no run; success runs");
}

static void
test_artifacts(void)
{
    msgpack_packer pk;
    sb_buf_t files;
    sb_buf_init(&files, 0);
    sb_codec_packer(&pk, &files);
    msgpack_pack_array(&pk, 1);
    msgpack_pack_array(&pk, 3);
    msgpack_pack_str(&pk, 11);
    msgpack_pack_str_body(&pk, "data/in.txt", 11);
    msgpack_pack_bin(&pk, 5);
    msgpack_pack_bin_body(&pk, "hello", 5);
    msgpack_pack_uint64(&pk, 0644);
    sb_run_t req = {.runtime = SB_STR("python"), .artifacts_max = 65536,
                    .files = {(const char *)files.data, (uint32_t)files.len},
                    .code = SB_STR("s = open('data/in.txt').read()\n"
                                   "open('out.txt', 'w').write(s.upper())\n"
                                   "import os\nos.makedirs('plots', exist_ok=True)\n"
                                   "open('plots/p.png', 'wb').write(b'\\x89PNG' + bytes(100))\n"
                                   "open('big.csv', 'w').write('a,b\\n' * 40000)\n")};
    xh_result_t r;
    xh_result_of(xh_run(&req, 10000), &r);
    CHECK(xh_status_is(&r, "exited"));
    CHECK(r.res.artifacts.len > 0);
    sb_mp_reader_t rd;
    uint32_t n;
    sb_mp_reader_init(&rd, r.res.artifacts.ptr, r.res.artifacts.len);
    CHECK(sb_mp_read_array(&rd, &n) == 0);
    int seen_out = 0, seen_png = 0, seen_big = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t k;
        sb_str_t path, mime, data;
        uint64_t size;
        CHECK(sb_mp_read_array(&rd, &k) == 0 && k == 4);
        CHECK(sb_mp_read_str(&rd, &path) == 0 && sb_mp_read_str(&rd, &mime) == 0);
        CHECK(sb_mp_read_u64(&rd, &size) == 0 && sb_mp_read_bin(&rd, &data) == 0);
        CHECK(!sb_str_eq(path, "main.py") && !sb_str_eq(path, "data/in.txt"));
        if (sb_str_eq(path, "out.txt")) {
            seen_out = 1;
            CHECK(sb_str_eq(mime, "text/plain") && size == 5 && sb_str_eq(data, "HELLO"));
        } else if (sb_str_eq(path, "plots/p.png")) {
            seen_png = 1;
            CHECK(sb_str_eq(mime, "image/png") && size == 104 && data.len == 104);
        } else if (sb_str_eq(path, "big.csv")) {
            seen_big = 1; /* 160000 bytes: over what is left of the 64 KiB cap, listed empty */
            CHECK(sb_str_eq(mime, "text/csv") && size == 160000 && data.len == 0);
        }
    }
    CHECK(seen_out && seen_png && seen_big);
    xh_call_free(r.c);
    sb_buf_fini(&files);
    sb_test_ok("files written before the run; artifacts: new files with mime, size, data (cap)");
}

static void
test_cmd_and_procs(void)
{
    char *id = xh_create("");
    xh_result_t r;
    sb_cmd_t fg = {.sandbox = sb_str(id), .argv = xh_strv(0, (const char *const[]){"sh", "-c",
                                                           "echo fg; pwd", NULL}),
                   .cwd = SB_STR("/tmp")};
    xh_result_of(xh_call(SB_MSG_CMD, xh_enc(&sb_cmd_def, &fg), 10000), &r);
    CHECK(xh_status_is(&r, "exited"));
    CHECK(sb_str_eq(r.res.stdout, "fg\n/tmp\n"));
    xh_call_free(r.c);

    /* background + stream: CMD_STARTED, then (after SIGKILL) the FINAL RESULT */
    sb_cmd_t bg = {.sandbox = sb_str(id), .argv = xh_strv(0, (const char *const[]){"sleep", "60",
                                                           NULL}),
                   .background = true, .stream = true};
    xh_call_t *c = xh_call_start(SB_MSG_CMD, xh_enc(&sb_cmd_def, &bg), 30000);
    xh_call_wait_n(c, 1, 10000);
    CHECK_EQ(c->r[0].status, 0);
    CHECK_EQ(c->r[0].type, SB_MSG_CMD_STARTED);
    sb_msg_t m = xh_as_msg(&c->r[0]);
    sb_cmd_started_t st;
    CHECK(sb_cmd_started_decode(&m, &st) == 0 && st.pid > 1);

    sb_proc_list_t pl = {.sandbox = sb_str(id)};
    xh_call_t *p = xh_call(SB_MSG_PROC_LIST, xh_enc(&sb_proc_list_def, &pl), 5000);
    CHECK_EQ(xh_last(p)->status, 0);
    CHECK_EQ(xh_last(p)->type, SB_MSG_PROC_LIST_REPLY);
    m = xh_as_msg(xh_last(p));
    sb_proc_list_reply_t plr;
    CHECK(sb_proc_list_reply_decode(&m, &plr) == 0);
    sb_mp_reader_t rd;
    uint32_t n;
    int found = 0;
    sb_mp_reader_init(&rd, plr.procs.ptr, plr.procs.len);
    CHECK(sb_mp_read_array(&rd, &n) == 0);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t k;
        uint64_t pid, ppid;
        sb_str_t state, cmd;
        CHECK(sb_mp_read_array(&rd, &k) == 0 && k == 4);
        CHECK(sb_mp_read_u64(&rd, &pid) == 0 && sb_mp_read_u64(&rd, &ppid) == 0);
        CHECK(sb_mp_read_str(&rd, &state) == 0 && sb_mp_read_str(&rd, &cmd) == 0);
        if (pid == st.pid && memmem(cmd.ptr, cmd.len, "sleep", 5))
            found = 1;
    }
    CHECK(found);
    xh_call_free(p);

    sb_proc_signal_t sg = {.sandbox = sb_str(id), .pid = st.pid, .signal = SIGKILL};
    p = xh_call(SB_MSG_PROC_SIGNAL, xh_enc(&sb_proc_signal_def, &sg), 5000);
    CHECK_EQ(xh_last(p)->status, 0);
    CHECK_EQ(xh_last(p)->type, SB_MSG_EXEC_ACK);
    xh_call_free(p);
    xh_call_wait_n(c, 0, 10000);
    xh_result_of(c, &r);
    CHECK(xh_status_is(&r, "signaled"));
    CHECK_EQ(r.res.signal, SIGKILL);
    xh_call_free(c);
    sg.pid = 99999;
    p = xh_call(SB_MSG_PROC_SIGNAL, xh_enc(&sb_proc_signal_def, &sg), 5000);
    CHECK_EQ(xh_last(p)->status, SB_ENOTFOUND);
    xh_call_free(p);

    /* keep_stdin: cat echoes what PROC_INPUT sends; eof ends it */
    sb_cmd_t cat = {.sandbox = sb_str(id), .argv = xh_strv(0, (const char *const[]){"cat", NULL}),
                    .background = true, .stream = true, .keep_stdin = true};
    c = xh_call_start(SB_MSG_CMD, xh_enc(&sb_cmd_def, &cat), 30000);
    xh_call_wait_n(c, 1, 10000);
    m = xh_as_msg(&c->r[0]);
    CHECK(sb_cmd_started_decode(&m, &st) == 0 && st.pid > 1);
    sb_proc_input_t pi = {.sandbox = sb_str(id), .pid = st.pid, .data = SB_STR("ping\n")};
    p = xh_call(SB_MSG_PROC_INPUT, xh_enc(&sb_proc_input_def, &pi), 5000);
    CHECK_EQ(xh_last(p)->type, SB_MSG_EXEC_ACK);
    xh_call_free(p);
    xh_call_wait_n(c, 2, 10000); /* the echo comes back as an OUTPUT chunk */
    CHECK_EQ(c->r[1].type, SB_MSG_OUTPUT);
    m = xh_as_msg(&c->r[1]);
    sb_output_t o;
    CHECK(sb_output_decode(&m, &o) == 0 && sb_str_eq(o.data, "ping\n") && o.pid == st.pid);
    pi.data = (sb_str_t){0};
    pi.eof = true;
    p = xh_call(SB_MSG_PROC_INPUT, xh_enc(&sb_proc_input_def, &pi), 5000);
    CHECK_EQ(xh_last(p)->type, SB_MSG_EXEC_ACK);
    xh_call_free(p);
    xh_call_wait_n(c, 0, 10000);
    xh_result_of(c, &r);
    CHECK(xh_status_is(&r, "exited"));
    xh_call_free(c);

    /* background without stream: CMD_STARTED is the whole answer */
    bg.stream = false;
    bg.argv = xh_strv(0, (const char *const[]){"sleep", "60", NULL});
    p = xh_call(SB_MSG_CMD, xh_enc(&sb_cmd_def, &bg), 10000);
    CHECK_EQ(xh_last(p)->type, SB_MSG_CMD_STARTED);
    CHECK(!(xh_last(p)->flags & SB_MF_STREAM));
    xh_call_free(p);
    /* a command that cannot start */
    sb_cmd_t nx = {.sandbox = sb_str(id),
                   .argv = xh_strv(0, (const char *const[]){"/no/such/program", NULL})};
    xh_result_of(xh_call(SB_MSG_CMD, xh_enc(&sb_cmd_def, &nx), 10000), &r);
    CHECK(xh_status_is(&r, "error"));
    CHECK(r.res.error.len > 0);
    xh_call_free(r.c);
    CHECK_EQ(xh_destroy(id), 0); /* with the background sleep still running */
    free(id);
    sb_test_ok("CMD foreground/background, PROC_LIST, PROC_SIGNAL kills, PROC_INPUT + eof");
}

static xh_call_t *
fop(const char *id, const char *op, const char *path, const char *path2, const char *data)
{
    sb_file_op_t req = {.sandbox = sb_str(id), .op = sb_str(op), .path = sb_str(path),
                        .path2 = sb_str(path2), .data = sb_str(data), .depth = 4};
    xh_call_t *c = xh_call(SB_MSG_FILE_OP, xh_enc(&sb_file_op_def, &req), 5000);
    CHECK_EQ(xh_last(c)->status, 0);
    CHECK_EQ(xh_last(c)->type, SB_MSG_FILE_REPLY);
    return c;
}

static sb_file_reply_t
fr(xh_call_t *c)
{
    static sb_msg_t m;
    sb_file_reply_t r;
    m = xh_as_msg(xh_last(c));
    CHECK(sb_file_reply_decode(&m, &r) == 0);
    return r;
}

static void
test_files(void)
{
    char *id = xh_create("python");
    xh_call_t *c = fop(id, "write", "a/b/c.txt", NULL, "data");
    CHECK_EQ(fr(c).errno_, 0);
    xh_call_free(c);
    c = fop(id, "read", "a/b/c.txt", NULL, NULL);
    CHECK_EQ(fr(c).errno_, 0);
    CHECK(sb_str_eq(fr(c).data, "data"));
    xh_call_free(c);
    c = fop(id, "list", "a", NULL, NULL);
    sb_file_reply_t r = fr(c);
    CHECK_EQ(r.errno_, 0);
    CHECK(memmem(r.entries.ptr, r.entries.len, "c.txt", 5) != NULL);
    CHECK(memmem(r.entries.ptr, r.entries.len, "dir", 3) != NULL);
    xh_call_free(c);
    c = fop(id, "stat", "a/b/c.txt", NULL, NULL);
    r = fr(c);
    CHECK_EQ(r.errno_, 0);
    sb_mp_reader_t rd;
    uint32_t n, k;
    sb_str_t p, t;
    uint64_t size;
    sb_mp_reader_init(&rd, r.entries.ptr, r.entries.len);
    CHECK(sb_mp_read_array(&rd, &n) == 0 && n == 1 && sb_mp_read_array(&rd, &k) == 0 && k == 5);
    CHECK(sb_mp_read_str(&rd, &p) == 0 && sb_mp_read_str(&rd, &t) == 0 &&
          sb_mp_read_u64(&rd, &size) == 0);
    CHECK(sb_str_eq(t, "file") && size == 4);
    xh_call_free(c);
    c = fop(id, "mkdir", "d", NULL, NULL);
    CHECK_EQ(fr(c).errno_, 0);
    xh_call_free(c);
    c = fop(id, "rename", "a/b/c.txt", "d/c.txt", NULL);
    CHECK_EQ(fr(c).errno_, 0);
    xh_call_free(c);
    c = fop(id, "read", "d/c.txt", NULL, NULL);
    CHECK(sb_str_eq(fr(c).data, "data"));
    xh_call_free(c);
    c = fop(id, "remove", "d/c.txt", NULL, NULL);
    CHECK_EQ(fr(c).errno_, 0);
    xh_call_free(c);
    c = fop(id, "read", "d/c.txt", NULL, NULL);
    CHECK_EQ(fr(c).errno_, 2); /* ENOENT, answered, not an error reply */
    xh_call_free(c);
    c = fop(id, "read", "../../etc/shadow", NULL, NULL);
    CHECK(fr(c).errno_ != 0 || !memmem(fr(c).data.ptr, fr(c).data.len, "root:", 5));
    xh_call_free(c);
    CHECK_EQ(xh_destroy(id), 0);
    free(id);
    sb_test_ok("FILE_OP write/read/list/stat/mkdir/rename/remove; errno_ ENOENT for a missing file");
}

static void
test_errors(void)
{
    const char *ghost = "sbx-0000000000000000";
    sb_run_t req = {.sandbox = sb_str(ghost), .runtime = SB_STR("python"), .code = SB_STR("1")};
    xh_call_t *c = xh_run(&req, 5000);
    CHECK_EQ(xh_last(c)->status, SB_ENOTFOUND);
    xh_call_free(c);
    sb_cmd_t cmd = {.sandbox = sb_str(ghost), .argv = xh_strv(0, (const char *const[]){"true", NULL})};
    c = xh_call(SB_MSG_CMD, xh_enc(&sb_cmd_def, &cmd), 5000);
    CHECK_EQ(xh_last(c)->status, SB_ENOTFOUND);
    xh_call_free(c);
    sb_file_op_t f = {.sandbox = sb_str(ghost), .op = SB_STR("read"), .path = SB_STR("x")};
    c = xh_call(SB_MSG_FILE_OP, xh_enc(&sb_file_op_def, &f), 5000);
    CHECK_EQ(xh_last(c)->status, SB_ENOTFOUND);
    xh_call_free(c);
    sb_proc_list_t pl = {.sandbox = sb_str(ghost)};
    c = xh_call(SB_MSG_PROC_LIST, xh_enc(&sb_proc_list_def, &pl), 5000);
    CHECK_EQ(xh_last(c)->status, SB_ENOTFOUND);
    xh_call_free(c);
    CHECK_EQ(xh_destroy(ghost), SB_ENOTFOUND);

    /* malformed bodies: garbage, a wrong field type, a bad RAW field; the actor keeps serving */
    static const uint16_t types[] = {SB_MSG_RUN, SB_MSG_CMD, SB_MSG_SBX_CREATE, SB_MSG_FILE_OP,
                                     SB_MSG_PROC_SIGNAL};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        sb_buf_reset(&xh_B);
        sb_buf_append(&xh_B, "\xc1\xff\x00", 3);
        c = xh_call(types[i], &xh_B, 5000);
        CHECK_EQ(xh_last(c)->status, SB_EBADMSG);
        xh_call_free(c);
    }
    sb_buf_reset(&xh_B);
    sb_buf_append(&xh_B, "\x81\x01\xc3", 3); /* RUN {1: true}: sandbox must be a string */
    c = xh_call(SB_MSG_RUN, &xh_B, 5000);
    CHECK_EQ(xh_last(c)->status, SB_EBADMSG);
    xh_call_free(c);
    sb_run_t bad = {.runtime = SB_STR("python"), .code = SB_STR("1"), .env = SB_STR("\x91\x01")}; /* env: [1], not strings */
    c = xh_run(&bad, 5000);
    CHECK_EQ(xh_last(c)->status, SB_EBADMSG);
    xh_call_free(c);
    sb_cmd_t noargv = {.sandbox = SB_STR("x")};
    c = xh_call(SB_MSG_CMD, xh_enc(&sb_cmd_def, &noargv), 5000);
    CHECK_EQ(xh_last(c)->status, SB_EBADMSG);
    xh_call_free(c);
    sb_buf_reset(&xh_B);
    c = xh_call(SB_MSG_POOL_OFFER, &xh_B, 5000);
    CHECK_EQ(xh_last(c)->status, SB_EUNKNOWN_TYPE);
    xh_call_free(c);
    char *id = xh_create("bash");
    CHECK_EQ(xh_destroy(id), 0);
    free(id);
    sb_test_ok("unknown sandbox -> ENOTFOUND; malformed bodies -> EBADMSG; actor keeps serving");
}

static void
test_max_sandboxes(int max)
{
    char *ids[64];
    int n = 0;
    for (;;) {
        sb_sbx_create_t req = {.runtime = SB_STR("bash")};
        xh_call_t *c = xh_call(SB_MSG_SBX_CREATE, xh_enc(&sb_sbx_create_def, &req), 10000);
        if (xh_last(c)->status != 0) {
            CHECK_EQ(xh_last(c)->status, SB_EUNAVAILABLE);
            xh_call_free(c);
            break;
        }
        sb_msg_t m = xh_as_msg(xh_last(c));
        sb_sbx_info_t info;
        CHECK(sb_sbx_info_decode(&m, &info) == 0);
        ids[n++] = sb_str_dup(info.id);
        xh_call_free(c);
        CHECK(n <= max);
    }
    CHECK_EQ(n, max);
    /* a one-shot run needs a sandbox too */
    sb_run_t req = {.runtime = SB_STR("bash"), .code = SB_STR("true")};
    xh_call_t *c = xh_run(&req, 5000);
    CHECK_EQ(xh_last(c)->status, SB_EUNAVAILABLE);
    xh_call_free(c);
    for (int i = 0; i < n; i++) {
        CHECK_EQ(xh_destroy(ids[i]), 0);
        free(ids[i]);
    }
    sb_test_ok("SBX_CREATE and one-shot RUN past executor.max_sandboxes -> EUNAVAILABLE");
}

static int
pred_exec(void *a)
{
    return xh_rec.mon_exec >= *(int *)a;
}
static int
pred_sampled(void *a)
{
    return !strcmp(xh_rec.sampled, (const char *)a) && xh_rec.sampled_mem > 0 && xh_rec.sampled_pids > 0;
}
static int
pred_ended(void *a)
{
    for (int i = 0; i < xh_rec.nended; i++)
        if (!strcmp(xh_rec.ended[i], (const char *)a))
            return 1;
    return 0;
}
static int
pred_cap(void *a)
{
    return xh_rec.cap_reports > 0 && xh_rec.cap_sandboxes == *(uint64_t *)a && xh_rec.cap_has_python;
}

static void
test_reports(int max)
{
    int one = 1;
    CHECK(xh_rec_wait(pred_exec, &one, 5000));
    char *id = xh_create("python");
    CHECK(xh_rec_wait(pred_sampled, id, 5000)); /* the 1 s sampler */
    CHECK_EQ(xh_destroy(id), 0);
    CHECK(xh_rec_wait(pred_ended, id, 5000));
    uint64_t zero = 0;
    CHECK(xh_rec_wait(pred_cap, &zero, 5000));
    CHECK_EQ(xh_rec.cap_max, max);
    free(id);
    sb_test_ok("MON_EXEC per run, MON_SANDBOX samples and ended, NODE_CAPACITY to the scheduler");
}

/* A requester that goes away mid-run: the run still ends and its one-shot sandbox goes. */
static void
test_requester_gone(sb_bus_t *bus)
{
    sb_run_t req = {.runtime = SB_STR("bash"), .code = SB_STR("sleep 0.3; echo done"),
                    .stream = true};
    xh_call_t *c = xh_call_start(SB_MSG_RUN, xh_enc(&sb_run_def, &req), 100);
    /* the client's request times out after 100 ms; the executor does not know or care */
    xh_call_wait_n(c, 0, 3000);
    CHECK_EQ(xh_last(c)->status, SB_ETIMEDOUT);
    xh_call_free(c);
    (void)bus;
    uint64_t zero = 0;
    uv_mutex_lock(&xh_rec.mu);
    xh_rec.cap_reports = 0;
    uv_mutex_unlock(&xh_rec.mu);
    CHECK(xh_rec_wait(pred_cap, &zero, 5000));
    sb_test_ok("requester gone mid-run: run finishes, its one-shot sandbox is destroyed");
}

/* Slots (state dirs) this process owns under /run/soulbox/sandboxes. */
static int
our_slots(unsigned *slots, int max)
{
    DIR *d = opendir("/run/soulbox/sandboxes");
    struct dirent *e;
    int n = 0;
    while (d && (e = readdir(d)) && n < max) {
        char p[512], b[128];
        int pid = 0;
        snprintf(p, sizeof p, "/run/soulbox/sandboxes/%s/owner", e->d_name);
        FILE *f = fopen(p, "re");
        if (!f)
            continue;
        if (fgets(b, sizeof b, f) && sscanf(b, "%d", &pid) == 1 && pid == getpid())
            slots[n++] = (unsigned)strtoul(e->d_name, NULL, 10);
        fclose(f);
    }
    if (d)
        closedir(d);
    return n;
}

static int
uid_has_process(uint32_t uid)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    int found = 0;
    while (d && (e = readdir(d)) && !found) {
        char p[300], line[256];
        snprintf(p, sizeof p, "/proc/%s/status", e->d_name);
        FILE *f = fopen(p, "re");
        if (!f)
            continue;
        while (fgets(line, sizeof line, f)) {
            unsigned u;
            if (sscanf(line, "Uid: %u", &u) == 1) {
                found |= u == uid || u == uid + 1;
                break;
            }
        }
        fclose(f);
    }
    if (d)
        closedir(d);
    return found;
}

int
main(void)
{
    xh_world_t w;
    const int max = 4;
    xh_start(&w, (const char *const[]){"--executor.max_sandboxes=4", NULL});

    test_create_run_destroy();
    test_oneshot();
    test_stream();
    test_stdin_and_limits();
    test_compiled();
    test_artifacts();
    test_cmd_and_procs();
    test_files();
    test_errors();
    test_max_sandboxes(max);
    test_reports(max);
    test_requester_gone(w.bus);

    /* stop with live sandboxes (one running a background process and one mid-run) */
    char *a = xh_create("python"), *b = xh_create("bash");
    sb_cmd_t bg = {.sandbox = sb_str(a), .argv = xh_strv(0, (const char *const[]){"sh", "-c",
                                                          "sleep 100 & sleep 100", NULL}),
                   .background = true};
    xh_call_t *c = xh_call(SB_MSG_CMD, xh_enc(&sb_cmd_def, &bg), 10000);
    CHECK_EQ(xh_last(c)->type, SB_MSG_CMD_STARTED);
    xh_call_free(c);
    sb_run_t spin = {.sandbox = sb_str(b), .runtime = SB_STR("bash"), .stream = true,
                     .code = SB_STR("echo started; sleep 100")};
    xh_call_t *inflight = xh_call_start(SB_MSG_RUN, xh_enc(&sb_run_def, &spin), 20000);
    xh_call_wait_n(inflight, 1, 10000); /* its first output: the program runs */
    CHECK_EQ(inflight->r[0].type, SB_MSG_OUTPUT);
    unsigned slots[64];
    int nslots = our_slots(slots, 64);
    CHECK(nslots >= 2);
    sb_actor_stop(w.exec, 10000);
    CHECK_EQ(sb_actor_join(w.exec), 0);
    sb_actor_free(w.exec);
    xh_call_wait_n(inflight, 0, 5000); /* the run in flight ended: killed */
    xh_result_t r;
    xh_result_of(inflight, &r);
    CHECK(xh_status_is(&r, "killed"));
    xh_call_free(inflight);
    CHECK_EQ(our_slots(slots + nslots, 64 - nslots), 0);
    for (int i = 0; i < nslots; i++) {
        char p[256];
        struct stat st;
        CHECK(!uid_has_process(200000 + 2 * slots[i]));
        snprintf(p, sizeof p, "/sys/fs/cgroup/pids/soulbox/sb-%u", slots[i]);
        CHECK(stat(p, &st) != 0);
        snprintf(p, sizeof p, "/sys/fs/cgroup/soulbox/sb-%u", slots[i]);
        CHECK(stat(p, &st) != 0);
    }
    free(a);
    free(b);
    sb_test_ok("stop with live sandboxes: join 0, no process, cgroup or state dir left");

    xh_stop(&w);
    return sb_test_done();
}
