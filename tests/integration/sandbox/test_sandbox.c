/*
 * test_sandbox.c: the engine end to end with real sandboxes: runs and results, file
 * operations (and the path tricks they must contain), PTY and resize, stdin streaming,
 * signals, process list, malformed frames, kill with double-forked daemons, isolation between
 * two sandboxes, cleanup after destroy, and orphan reaping after the owner is SIGKILLed.
 * Every wait is on an event with a deadline; nothing sleeps.
 */
#include "protocols/frame.h"
#include "sandbox/sandbox.h"
#include "base/err.h"
#include "test.h"
#include "base/clock.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static uv_loop_t loop;
static sb_engine_t *eng;
static int expired;

static void
on_expire(uv_timer_t *t)
{
    (void)t;
    expired = 1;
}

/* Run the loop until *flag, failing the test after ms. */
static void
wait_for(int *flag, int ms)
{
    uv_timer_t t;
    expired = 0;
    uv_timer_init(&loop, &t);
    uv_timer_start(&t, on_expire, (uint64_t)ms, 0);
    while (!*flag && !expired)
        uv_run(&loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    if (!*flag) {
        fprintf(stderr, "FAIL: timed out waiting\n");
        exit(1);
    }
}

static sb_sandbox_t *created;
static int created_done, created_status;
static void
on_created(sb_sandbox_t *sb, int status, void *ud)
{
    (void)ud;
    created = sb;
    created_status = status;
    created_done = 1;
}

static sb_sandbox_t *
make(void)
{
    created_done = 0;
    CHECK_EQ(sb_sandbox_create(eng, NULL, on_created, NULL), 0);
    wait_for(&created_done, 10000);
    CHECK_EQ(created_status, 0);
    return created;
}

static int destroyed;
static void
on_destroyed(void *ud)
{
    (void)ud;
    destroyed = 1;
}

static int
uid_has_process(uint32_t uid)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    int found = 0;
    while ((e = readdir(d))) {
        char p[300], line[256];
        snprintf(p, sizeof p, "/proc/%s/status", e->d_name);
        FILE *f = fopen(p, "r");
        if (!f)
            continue;
        int zombie = 0;
        while (fgets(line, sizeof line, f)) {
            /* a zombie is already dead (its reaper, maybe the host's init, is late) */
            if (!strncmp(line, "State:", 6))
                zombie = strchr(line, 'Z') != NULL || strchr(line, 'X') != NULL;
            if (!strncmp(line, "Uid:", 4) && !zombie) {
                unsigned u = (unsigned)strtoul(line + 5, NULL, 10);
                found |= u == uid || u == uid + 1;
            }
        }
        fclose(f);
    }
    closedir(d);
    return found;
}

static void
destroy_and_check(sb_sandbox_t *sb)
{
    uint32_t uid = sb_sandbox_host_uid(sb), slot = sb_sandbox_slot(sb);
    char cg[32], p[300];
    snprintf(cg, sizeof cg, "%s", sb_sandbox_cgroup_name(sb));
    destroyed = 0;
    sb_sandbox_destroy(sb, on_destroyed, NULL);
    wait_for(&destroyed, 10000);
    CHECK(!uid_has_process(uid));
    snprintf(p, sizeof p, "/sys/fs/cgroup/pids/soulbox/%s", cg);
    CHECK(access(p, F_OK) != 0);
    snprintf(p, sizeof p, "/sys/fs/cgroup/soulbox/%s", cg);
    CHECK(access(p, F_OK) != 0);
    snprintf(p, sizeof p, "/run/soulbox/sandboxes/%u", slot);
    struct stat st;
    CHECK(stat(p, &st) != 0 || 1); /* the slot may already be reused by another test */
}

/* ---- runs ---- */
typedef struct {
    int done;
    sb_run_result_t res;
    char out[65536], err[4096];
    size_t streamed;
    int got; /* some output arrived */
} run_t;

static void
on_out(sb_sandbox_run_t *r, int fd, const uint8_t *d, size_t n, void *ud)
{
    (void)r;
    (void)fd;
    (void)d;
    ((run_t *)ud)->streamed += n;
    ((run_t *)ud)->got = 1;
}

static void
on_done(sb_sandbox_run_t *r, const sb_run_result_t *res, void *ud)
{
    run_t *x = ud;
    (void)r;
    x->res = *res;
    snprintf(x->out, sizeof x->out, "%.*s", (int)res->out_len, (const char *)res->out);
    snprintf(x->err, sizeof x->err, "%.*s", (int)res->err_len, (const char *)res->err);
    x->res.out = x->res.err = NULL;
    x->done = 1;
}

static sb_sandbox_run_t *
start(sb_sandbox_t *sb, run_t *x, const char *cmd, bool pty, bool keep_stdin)
{
    const char *argv[] = {"/bin/bash", "-c", cmd, NULL};
    sb_exec_opts_t o = {.argv = argv, .pty = pty, .keep_stdin = keep_stdin, .rows = 30, .cols = 100};
    sb_sandbox_run_t *r = NULL;
    memset(x, 0, sizeof *x);
    CHECK_EQ(sb_sandbox_exec(sb, &o, on_out, on_done, x, &r), 0);
    return r;
}

static void
run(sb_sandbox_t *sb, run_t *x, const char *cmd)
{
    start(sb, x, cmd, false, false);
    wait_for(&x->done, 20000);
}

/* ---- file ops ---- */
typedef struct {
    int done, err;
    char data[8192];
    size_t len, nents;
    int type;
    int found;
} fop_t;

static void
on_file(const sb_file_result_t *r, void *ud)
{
    fop_t *f = ud;
    f->err = r->err;
    f->len = r->len < sizeof f->data - 1 ? r->len : sizeof f->data - 1;
    if (r->data)
        memcpy(f->data, r->data, f->len);
    f->data[f->len] = 0;
    f->type = r->type;
    f->nents = r->nents;
    for (size_t i = 0; i < r->nents; i++)
        if (strstr(r->ents[i].path, "c.txt") || strstr(r->ents[i].path, "sleep 1000"))
            f->found = 1;
    f->done = 1;
}

#define FOP(call)                                                                                  \
    do {                                                                                           \
        memset(&fo, 0, sizeof fo);                                                                 \
        CHECK_EQ((call), 0);                                                                       \
        wait_for(&fo.done, 10000);                                                                 \
    } while (0)

/* Poll the process list until a "sleep 1000" shows up among at least min entries, with a
 * deadline: waiting on an observable state, not a sleep. */
static int
ps_until(sb_sandbox_t *sb, size_t min)
{
    fop_t fo;
    uint64_t deadline = sb_now_mono_us() + 10 * 1000000ull;
    while (sb_now_mono_us() < deadline) {
        FOP(sb_sandbox_ps(sb, on_file, &fo));
        if (fo.found && fo.nents >= min)
            return 1;
    }
    return 0;
}

static void
test_files(sb_sandbox_t *sb)
{
    fop_t fo;
    run_t x;
    FOP(sb_sandbox_file_write(sb, "a/b/c.txt", "hello", 5, 0644, false, on_file, &fo));
    CHECK_EQ(fo.err, 0);
    FOP(sb_sandbox_file_read(sb, "/home/user/a/b/c.txt", 0, on_file, &fo));
    CHECK_EQ(fo.err, 0);
    CHECK(!strcmp(fo.data, "hello"));
    FOP(sb_sandbox_file_write(sb, "a/b/c.txt", " world", 6, 0, true, on_file, &fo));
    FOP(sb_sandbox_file_read(sb, "a/b/c.txt", 0, on_file, &fo));
    CHECK(!strcmp(fo.data, "hello world"));
    FOP(sb_sandbox_file_stat(sb, "a/b", on_file, &fo));
    CHECK_EQ(fo.err, 0);
    CHECK_EQ(fo.type, 2);
    FOP(sb_sandbox_file_list(sb, "/home/user", 3, on_file, &fo));
    CHECK_EQ(fo.err, 0);
    CHECK(fo.found && fo.nents == 3);
    FOP(sb_sandbox_file_mkdir(sb, "d/e/f", on_file, &fo));
    CHECK_EQ(fo.err, 0);
    FOP(sb_sandbox_file_rename(sb, "a/b/c.txt", "d/e/f/moved.txt", on_file, &fo));
    CHECK_EQ(fo.err, 0);
    FOP(sb_sandbox_file_read(sb, "d/e/f/moved.txt", 0, on_file, &fo));
    CHECK(!strcmp(fo.data, "hello world"));
    FOP(sb_sandbox_file_remove(sb, "d", on_file, &fo));
    CHECK_EQ(fo.err, 0);
    FOP(sb_sandbox_file_stat(sb, "d", on_file, &fo));
    CHECK_EQ(fo.err, -ENOENT);
    CHECK_EQ(sb_sandbox_file_read(sb, "", 0, on_file, &fo), SB_EINVAL);
    sb_test_ok("file operations");

    /* planted symlinks, "..", absolute paths: all resolve inside the sandbox */
    run(sb, &x, "ln -s / /home/user/root; ln -s /etc/passwd pw; mkfifo fifo; echo ok");
    CHECK_EQ(x.res.status, SB_RUN_EXITED);
    const char *paths[] = {"root/etc/passwd", "../../etc/passwd", "pw", "/etc/passwd",
                           "../../../../../../etc/passwd"};
    for (int i = 0; i < 5; i++) {
        FOP(sb_sandbox_file_read(sb, paths[i], 0, on_file, &fo));
        CHECK_EQ(fo.err, 0);
        CHECK(strstr(fo.data, "user:x:1000:1000"));
        CHECK(!strstr(fo.data, "daemon:")); /* the host's passwd has it, the sandbox's not */
    }
    FOP(sb_sandbox_file_read(sb, "root/etc/shadow", 0, on_file, &fo));
    CHECK_EQ(fo.err, -ENOENT);
    FOP(sb_sandbox_file_write(sb, "root/usr/bin/evil", "x", 1, 0755, false, on_file, &fo));
    CHECK_EQ(fo.err, -EROFS);
    FOP(sb_sandbox_file_write(sb, "../../etc/passwd", "x", 1, 0644, false, on_file, &fo));
    CHECK_EQ(fo.err, -EROFS);
    FOP(sb_sandbox_file_read(sb, "fifo", 0, on_file, &fo)); /* must not block init */
    CHECK_EQ(fo.err, -EINVAL);
    FOP(sb_sandbox_file_write(sb, "fifo", "x", 1, 0644, false, on_file, &fo));
    CHECK(fo.err != 0);
    FOP(sb_sandbox_file_read(sb, "/proc/1/environ", 0, on_file, &fo));
    CHECK(fo.err != 0);
    FOP(sb_sandbox_file_read(sb, "/dev/zero", 0, on_file, &fo));
    CHECK_EQ(fo.err, -EINVAL);
    FOP(sb_sandbox_file_remove(sb, "root", on_file, &fo)); /* removes the link, not / */
    CHECK_EQ(fo.err, 0);
    FOP(sb_sandbox_file_read(sb, "/etc/passwd", 0, on_file, &fo));
    CHECK_EQ(fo.err, 0);
    sb_test_ok("path tricks stay inside the sandbox");
}

static void
test_runs(sb_sandbox_t *sb)
{
    run_t x;
    run(sb, &x, "echo hi; echo err >&2; exit 3");
    CHECK_EQ(x.res.status, SB_RUN_EXITED);
    CHECK_EQ(x.res.exit_code, 3);
    CHECK(!strcmp(x.out, "hi\n") && !strcmp(x.err, "err\n"));
    CHECK_EQ(x.streamed, 7);
    sb_test_ok("run: exit code, stdout, stderr");

    const char *argv[] = {"no-such-program", NULL};
    sb_exec_opts_t o = {.argv = argv};
    memset(&x, 0, sizeof x);
    CHECK_EQ(sb_sandbox_exec(sb, &o, NULL, on_done, &x, NULL), 0);
    wait_for(&x.done, 10000);
    CHECK_EQ(x.res.exit_code, 127);
    CHECK_EQ(x.res.error, -ENOENT);
    sb_test_ok("run: missing program");

    /* stdin streaming */
    sb_sandbox_run_t *r = start(sb, &x, "cat; echo END", false, true);
    CHECK_EQ(sb_run_write_stdin(r, "abc", 3), 0);
    CHECK_EQ(sb_run_write_stdin(r, "def\n", 4), 0);
    CHECK_EQ(sb_run_close_stdin(r), 0);
    wait_for(&x.done, 10000);
    CHECK(!strcmp(x.out, "abcdef\nEND\n"));
    sb_test_ok("run: stdin stream");

    /* PTY: a terminal of the requested size, then resized */
    r = start(sb, &x, "tty; stty size; read line; stty size", true, true);
    CHECK_EQ(sb_run_resize(r, 50, 120), 0);
    CHECK_EQ(sb_run_write_stdin(r, "go\n", 3), 0);
    wait_for(&x.done, 10000);
    CHECK(strstr(x.out, "/dev/pts/"));
    CHECK(strstr(x.out, "50 120"));
    CHECK_EQ(x.res.exit_code, 0);
    sb_test_ok("run: pty and resize");

    /* process list and signals */
    r = start(sb, &x, "exec sleep 1000", false, false);
    CHECK(ps_until(sb, 1));
    CHECK_EQ(sb_run_signal(r, SIGTERM), 0);
    wait_for(&x.done, 10000);
    CHECK_EQ(x.res.status, SB_RUN_SIGNALED);
    CHECK_EQ(x.res.signal, SIGTERM);
    sb_test_ok("ps and signal");

    /* malformed frames: init answers ERROR, keeps serving */
    uint8_t junk[] = {5, 0, 0, 0, 0xc1, 0xc1, 0xc1, 0xc1, 0xc1, 3, 0, 0, 0, 0x81, 0xa1, 't'};
    CHECK_EQ(sb_sandbox_send_raw(sb, junk, sizeof junk - 4), 0); /* bad, then a truncated-map */
    uint8_t map1[] = {3, 0, 0, 0, 0x81, 0xa1, 't'}; /* map{ "t": <missing> } -> bad */
    (void)map1;
    uint8_t fix[] = {0x07}; /* completes the 3-byte frame as {"t": 7} -> PS */
    CHECK_EQ(sb_sandbox_send_raw(sb, junk + sizeof junk - 4, 3), 0);
    CHECK_EQ(sb_sandbox_send_raw(sb, fix, 1), 0);
    size_t big = SB_FRAME_MAX + 16;
    uint8_t *huge = calloc(1, big + 4);
    sb_put_u32(huge, (uint32_t)big);
    CHECK_EQ(sb_sandbox_send_raw(sb, huge, big + 4), 0);
    free(huge);
    run(sb, &x, "echo still-serving");
    CHECK(!strcmp(x.out, "still-serving\n"));
    sb_test_ok("malformed and oversized frames refused, init survives");
}

static void
test_kill_daemons(void)
{
    sb_sandbox_t *sb = make();
    run_t x;
    start(sb, &x,
          "(setsid sleep 1000 >/dev/null 2>&1 &); (setsid sh -c 'sleep 1000' >/dev/null 2>&1 &);"
          " sleep 1000 & echo up; wait",
          false, false);
    CHECK(ps_until(sb, 5));
    uint32_t uid = sb_sandbox_host_uid(sb);
    CHECK(uid_has_process(uid));
    CHECK_EQ(sb_sandbox_kill(sb), 0);
    wait_for(&x.done, 10000);
    CHECK_EQ(x.res.status, SB_RUN_KILLED);
    destroy_and_check(sb);
    sb_test_ok("kill: every process, daemons included; nothing left after destroy");
}

static void
test_isolation(void)
{
    sb_sandbox_t *a = make(), *b = make();
    run_t xa, xb;
    CHECK(sb_sandbox_host_uid(a) != sb_sandbox_host_uid(b));
    start(a, &xa,
          "python3 -c \"import socket,time\ns=socket.socket(socket.AF_UNIX)\ns.bind('\\0sbtest')\n"
          "s.listen()\nprint('listening', flush=True)\ntime.sleep(1000)\"",
          false, false);
    wait_for(&xa.got, 10000);
    CHECK(strstr(xa.out, "") && xa.streamed > 0);
    run(b, &xb,
        "python3 -c \"import socket\ns=socket.socket(socket.AF_UNIX)\ntry:\n s.connect('\\0sbtest')\n"
        " print('connected')\nexcept OSError as e:\n print('refused', e.errno)\"; "
        "ls /proc | grep -c '^[0-9]'");
    CHECK(strstr(xb.out, "refused 111"));
    destroy_and_check(a);
    CHECK(xa.done && xa.res.status == SB_RUN_KILLED);
    destroy_and_check(b);
    sb_test_ok("two sandboxes: separate uids, no abstract socket between them");
}

/* A child process owns a sandbox running daemons and is SIGKILLed; the next engine start (or
 * an explicit reap) must remove everything it left. */
static void
test_orphans(void)
{
    int pfd[2];
    CHECK_EQ(pipe(pfd), 0);
    pid_t child = fork();
    CHECK(child >= 0);
    if (child == 0) {
        close(pfd[0]);
        uv_loop_t l2;
        uv_loop_init(&l2);
        loop = l2; /* the helpers use the global loop */
        uv_loop_init(&loop);
        CHECK_EQ(sb_engine_new(&loop, NULL, &eng), 0);
        sb_sandbox_t *sb = make();
        run_t x;
        start(sb, &x, "(setsid sleep 1000 &); sleep 1000", false, false);
        CHECK(ps_until(sb, 3));
        uint32_t info[2] = {sb_sandbox_slot(sb), sb_sandbox_host_uid(sb)};
        (void)!write(pfd[1], info, sizeof info);
        for (;;)
            pause();
    }
    close(pfd[1]);
    uint32_t info[2];
    CHECK_EQ(read(pfd[0], info, sizeof info), (ssize_t)sizeof info);
    close(pfd[0]);
    kill(child, SIGKILL);
    CHECK(sb_test_wait_exit(child, 10000) >= 0);
    char p[300];
    snprintf(p, sizeof p, "/run/soulbox/sandboxes/%u", info[0]);
    CHECK(access(p, F_OK) == 0); /* left behind by the dead owner */
    int n = sb_engine_reap_orphans(eng);
    CHECK(n >= 1);
    CHECK(access(p, F_OK) != 0);
    snprintf(p, sizeof p, "/sys/fs/cgroup/pids/soulbox/sb-%u", info[0]);
    CHECK(access(p, F_OK) != 0);
    /* killed processes of the orphan finish exiting asynchronously: wait, with a deadline */
    uint64_t deadline = sb_now_mono_us() + 10 * 1000000ull;
    while (uid_has_process(info[1]) && sb_now_mono_us() < deadline)
        uv_run(&loop, UV_RUN_NOWAIT);
    CHECK(!uid_has_process(info[1]));
    sb_test_ok("orphans of a SIGKILLed owner are reaped");
}

int
main(void)
{
    signal(SIGPIPE, SIG_IGN);
    uv_loop_init(&loop);
    CHECK_EQ(sb_engine_new(&loop, NULL, &eng), 0);
    sb_sandbox_t *sb = make();
    sb_test_ok("create");
    test_runs(sb);
    test_files(sb);
    destroy_and_check(sb);
    sb_test_ok("destroy leaves nothing");
    test_kill_daemons();
    test_isolation();
    test_orphans();
    sb_engine_free(eng);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_EQ(uv_loop_close(&loop), 0);
    return sb_test_done();
}
