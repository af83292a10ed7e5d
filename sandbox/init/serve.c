/*
 * serve.c: soulbox-init's main(): parse the command line the executor prepared, set up the
 * sandbox (setup.c), say HELLO, then serve frames from the control socket until it closes.
 *
 * One poll() loop, single thread.  It watches the control socket, a signalfd for SIGCHLD and
 * each spawned process's stdout/stderr (or PTY master) and pending stdin.  Invariants:
 *  - every child is reaped (we are PID 1: orphans of the whole sandbox land here);
 *  - a process's OUTPUT frames all precede its EXIT frame: on its exit we drain what is
 *    already in its pipes, then report, then close our ends (output written later by
 *    background descendants that inherited the pipes is discarded);
 *  - a malformed frame gets an ERROR frame and is skipped; an oversized one is skipped
 *    without being buffered; init never exits on bad input, only when the executor closes
 *    the socket (then the kernel kills the whole pid namespace with us);
 *  - writes to the control socket block: the executor reads continuously, and blocking here
 *    is the backpressure that stops a flood of output at the source.
 */
#include "init.h"

#include "base/err.h"
#include "protocols/mp.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#define SERVE_MAX_PROCS 256
#define SERVE_STDIN_MAX (4u << 20)
#define SERVE_CHUNK 65536

typedef struct {
    uint64_t id;
    pid_t pid;
    int out, err, in; /* -1 when closed; with a PTY, out is the master and in a dup of it */
    int pty;
    int slave; /* PTY slave held open by init until the process exits, or -1 */
    sb_buf_t inbuf;
    int in_close; /* close stdin once inbuf drains */
} serve_proc_t;

static int serve_ctl = -1;
static serve_proc_t serve_procs[SERVE_MAX_PROCS];
static int serve_nprocs;

/* core/buf.c's allocation helpers abort through this; init links buf.c but not err.c (which
 * pulls in libuv).  Dying is right: the executor sees EOF and reports the sandbox lost. */
void
sb_assert_fail(const char *expr, const char *file, int line)
{
    (void)expr;
    (void)file;
    (void)line;
    _exit(3);
}

int
sbi_send(sb_buf_t *b)
{
    size_t off = 0;
    while (off < b->len) {
        ssize_t n = write(serve_ctl, b->data + off, b->len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            _exit(0); /* the executor is gone: nothing left to serve */
        off += (size_t)n;
    }
    sb_buf_reset(b);
    return 0;
}

static void
serve_strv_free(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

/* A REPLY with an error (or, for a refused frame, an ERROR). */
static void
serve_reply_err(sb_buf_t *out, uint32_t t, uint64_t id, int err, const char *msg)
{
    if (t == SB_IF_ERROR)
        sb_if_error_write(out, &(sb_if_error_t){.id = id, .err = err, .msg = sb_str(msg)});
    else
        sb_if_reply_write(out, &(sb_if_reply_t){.id = id, .err = err, .msg = sb_str(msg)});
}

/* An EXEC that fails before a process exists: the reply says why, and an EXIT (code 127, as a
 * shell reports a command it cannot run) ends the run, so the executor never waits for a
 * process that will not come. */
static void
serve_exec_fail(sb_buf_t *out, uint64_t id, int err, const char *msg)
{
    serve_reply_err(out, SB_IF_REPLY, id, err, msg);
    sb_if_exit_write(out, &(sb_if_exit_t){.id = id, .code = 127});
}

static void
serve_output(sb_buf_t *out, serve_proc_t *p, int which, const void *data, size_t n)
{
    sb_if_output_t f = {.id = p->id, .fd = (uint64_t)which,
                        .data = {(const char *)data, (uint32_t)n}};
    sb_if_output_write(out, &f);
    sbi_send(out);
}

/* Read what is available on one output fd; returns 0 at EOF/EIO (fd closed), 1 otherwise. */
static int
serve_pump(sb_buf_t *out, serve_proc_t *p, int *fdp, int which, int drain)
{
    static uint8_t chunk[SERVE_CHUNK];
    for (int rounds = 0; drain || rounds < 1; rounds++) {
        ssize_t n = read(*fdp, chunk, sizeof chunk);
        if (n > 0) {
            serve_output(out, p, which, chunk, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return 1;
        /* EOF, or EIO on a PTY master whose slave side is gone. */
        close(*fdp);
        if (p->in == *fdp)
            p->in = -1;
        *fdp = -1;
        return 0;
    }
    return 1;
}

static void
serve_proc_free(serve_proc_t *p)
{
    if (p->out >= 0)
        close(p->out);
    if (p->err >= 0)
        close(p->err);
    if (p->in >= 0 && p->in != p->out)
        close(p->in);
    if (p->slave >= 0)
        close(p->slave);
    sb_buf_fini(&p->inbuf);
    *p = serve_procs[--serve_nprocs];
}

static serve_proc_t *
serve_find(uint64_t id)
{
    for (int i = 0; i < serve_nprocs; i++)
        if (serve_procs[i].id == id)
            return &serve_procs[i];
    return NULL;
}

static void
serve_reap(sb_buf_t *out)
{
    for (;;) {
        int st;
        struct rusage ru;
        pid_t pid = wait4(-1, &st, WNOHANG, &ru);
        if (pid <= 0)
            return;
        for (int i = 0; i < serve_nprocs; i++) {
            serve_proc_t *p = &serve_procs[i];
            if (p->pid != pid)
                continue;
            if (p->slave >= 0) {
                /* Holding the slave kept the master from reporting hang-up before the child
                 * opened it; now let the master reach EIO once drained. */
                close(p->slave);
                p->slave = -1;
            }
            if (p->out >= 0)
                serve_pump(out, p, &p->out, 1, 1);
            if (p->err >= 0)
                serve_pump(out, p, &p->err, 2, 1);
            uint64_t cpu = (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000u +
                           (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
            sb_if_exit_t ex = {.id = p->id,
                               .code = WIFEXITED(st) ? WEXITSTATUS(st) : -1,
                               .sig = WIFSIGNALED(st) ? WTERMSIG(st) : 0,
                               .cpu_us = cpu,
                               .maxrss_kb = (uint64_t)ru.ru_maxrss};
            sb_if_exit_write(out, &ex);
            sbi_send(out);
            serve_proc_free(p);
            break;
        }
    }
}

static void
serve_child(const sb_if_exec_t *f, char **argv, char **envp, int in, int outfd, int errfd,
            int ptyfd, int status_fd)
{
    sigset_t none;
    struct rlimit rl;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    setsid();
    if (f->pty) {
        if (ioctl(ptyfd, TIOCSCTTY, 0) < 0)
            goto fail;
        in = outfd = errfd = ptyfd;
    }
    if (dup2(in, 0) < 0 || dup2(outfd, 1) < 0 || dup2(errfd, 2) < 0)
        goto fail;
    /* Untrusted code is the first to go when memory runs out (raising is unprivileged). */
    int oom = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
    if (oom >= 0) {
        (void)!write(oom, "1000", 4);
        close(oom);
    }
#define RL(res, v)                                                                                 \
    do {                                                                                           \
        rl.rlim_cur = rl.rlim_max = (v);                                                           \
        if (setrlimit(res, &rl) < 0)                                                               \
            goto fail;                                                                             \
    } while (0)
    RL(RLIMIT_CORE, 0);
    RL(RLIMIT_MEMLOCK, 0);
    if (f->nofile)
        RL(RLIMIT_NOFILE, f->nofile);
    if (f->nproc)
        RL(RLIMIT_NPROC, f->nproc);
    if (f->fsize)
        RL(RLIMIT_FSIZE, f->fsize);
    if (f->cpu) {
        /* SIGXCPU at the soft limit, SIGKILL one second later: a backstop behind the
         * executor's cgroup CPU accounting. */
        rl.rlim_cur = f->cpu;
        rl.rlim_max = f->cpu + 1;
        if (setrlimit(RLIMIT_CPU, &rl) < 0)
            goto fail;
    }
#undef RL
    if (chdir(f->cwd.len ? argv[-1] : SB_INIT_HOME) < 0)
        goto fail;
    environ = envp;
    execvp(argv[0], argv);
fail:;
    int e = errno;
    (void)!write(status_fd, &e, sizeof e);
    _exit(127);
}

static void
serve_exec(const sb_if_exec_t *f, sb_buf_t *out)
{
    int pin[2] = {-1, -1}, pout[2] = {-1, -1}, perr[2] = {-1, -1}, pst[2] = {-1, -1};
    int master = -1, slave = -1, err = 0;
    char **args = NULL, **argv = NULL, **envp = NULL;
    size_t argc = 0, envc = 0;
    if (serve_nprocs >= SERVE_MAX_PROCS) {
        serve_exec_fail(out, f->id, SB_ELIMIT, "too many processes");
        return;
    }
    if (sb_mp_strv(f->argv, SB_FRAME_ARGS_MAX, &args, &argc) != 0 ||
        sb_mp_strv(f->env, SB_FRAME_ARGS_MAX, &envp, &envc) != 0 || argc == 0 ||
        serve_find(f->id)) {
        serve_strv_free(args);
        serve_strv_free(envp);
        serve_reply_err(out, SB_IF_REPLY, f->id, SB_EINVAL, "bad exec");
        return;
    }
    if (!envp)
        envp = calloc(1, sizeof *envp);
    /* argv[-1] carries the cwd so the child needs no other state. */
    argv = calloc(argc + 2, sizeof *argv);
    if (!argv || !envp) {
        err = SB_ENOMEM;
        goto done;
    }
    argv++;
    argv[-1] = f->cwd.len ? sb_str_dup(f->cwd) : NULL;
    memcpy(argv, args, argc * sizeof *argv);
    free(args);
    args = NULL;
    if (pipe2(pst, O_CLOEXEC) < 0)
        goto sys;
    if (f->pty) {
        master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (master < 0 || grantpt(master) < 0 || unlockpt(master) < 0)
            goto sys;
        struct winsize ws = {(unsigned short)(f->rows > 0 ? f->rows : 24),
                             (unsigned short)(f->cols > 0 ? f->cols : 80), 0, 0};
        ioctl(master, TIOCSWINSZ, &ws);
        char name[64];
        if (ptsname_r(master, name, sizeof name) != 0) {
            errno = ENOTTY;
            goto sys;
        }
        if ((slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC)) < 0)
            goto sys;
    } else if (pipe2(pin, O_CLOEXEC) < 0 || pipe2(pout, O_CLOEXEC) < 0 ||
               pipe2(perr, O_CLOEXEC) < 0) {
        goto sys;
    }
    pid_t pid = fork();
    if (pid < 0)
        goto sys;
    if (pid == 0)
        serve_child(f, argv, envp, pin[0], pout[1], perr[1], slave, pst[1]);
    close(pst[1]);
    pst[1] = -1;
    int e = 0;
    ssize_t n;
    while ((n = read(pst[0], &e, sizeof e)) < 0 && errno == EINTR)
        ;
    serve_proc_t *p = &serve_procs[serve_nprocs++];
    memset(p, 0, sizeof *p);
    p->id = f->id;
    p->pid = pid;
    p->pty = f->pty;
    p->slave = slave;
    slave = -1;
    sb_buf_init(&p->inbuf, SERVE_STDIN_MAX);
    if (f->pty) {
        p->out = master;
        p->in = master;
        p->err = -1;
        master = -1;
    } else {
        p->in = pin[1];
        p->out = pout[0];
        p->err = perr[0];
        pin[1] = pout[0] = perr[0] = -1;
    }
    fcntl(p->out, F_SETFL, O_NONBLOCK);
    if (p->err >= 0)
        fcntl(p->err, F_SETFL, O_NONBLOCK);
    if (p->in >= 0 && p->in != p->out)
        fcntl(p->in, F_SETFL, O_NONBLOCK);
    if (n == (ssize_t)sizeof e) {
        /* exec failed: the child has exited with 127; its EXIT follows the reply. */
        serve_reply_err(out, SB_IF_REPLY, f->id, -e, "exec failed");
    } else {
        sb_if_started_write(out, &(sb_if_started_t){.id = f->id, .pid = (uint64_t)pid});
    }
    goto done;
sys:
    err = -errno;
done:
    if (err)
        serve_exec_fail(out, f->id, err, "exec failed");
    int fds[] = {pin[0], pin[1], pout[0], pout[1], perr[0], perr[1], pst[0], pst[1], master, slave};
    for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    if (argv) {
        for (size_t i = 0; i < argc + 1; i++)
            free(argv[(int)i - 1]);
        free(argv - 1);
    } else {
        serve_strv_free(args);
    }
    serve_strv_free(envp);
}

/* SERVE_DECODE(name, var): decode the body as frame `name` into var, or refuse it. */
#define SERVE_DECODE(name, var)                                                                    \
    sb_if_##name##_t var;                                                                          \
    if (sb_if_##name##_decode(body, len, &var) != 0) {                                             \
        serve_reply_err(out, SB_IF_ERROR, 0, SB_EBADMSG, "malformed frame");                       \
        return;                                                                                    \
    }

static void
serve_frame(uint8_t type, const uint8_t *body, size_t len, sb_buf_t *out)
{
    serve_proc_t *p;
    switch (type) {
    case SB_IF_EXEC: {
        SERVE_DECODE(exec, f);
        serve_exec(&f, out);
        return;
    }
    case SB_IF_STDIN: {
        SERVE_DECODE(stdin, f);
        if ((p = serve_find(f.id)) && p->in >= 0 && !p->in_close) {
            if (sb_buf_append(&p->inbuf, f.data.ptr, f.data.len) != 0)
                serve_reply_err(out, SB_IF_ERROR, f.id, SB_ETOOBIG, "stdin buffer full");
        }
        return;
    }
    case SB_IF_STDIN_CLOSE: {
        SERVE_DECODE(stdin_close, f);
        if ((p = serve_find(f.id))) {
            p->in_close = 1;
            if (p->pty && p->in >= 0) {
                /* A terminal has no half-close: send EOF (^D) instead. */
                sb_buf_append(&p->inbuf, "\x04", 1);
            }
        }
        return;
    }
    case SB_IF_SIGNAL: {
        SERVE_DECODE(signal, f);
        if ((p = serve_find(f.id)) && f.sig > 0 && f.sig < 65) {
            if (kill(-p->pid, (int)f.sig) < 0)
                kill(p->pid, (int)f.sig);
        }
        return;
    }
    case SB_IF_SIGNAL_ALL: {
        SERVE_DECODE(signal_all, f);
        if (f.sig > 0 && f.sig < 65)
            kill(-1, (int)f.sig);
        return;
    }
    case SB_IF_RESIZE: {
        SERVE_DECODE(resize, f);
        if ((p = serve_find(f.id)) && p->pty && p->out >= 0 && f.rows > 0 && f.cols > 0 &&
            f.rows < 10000 && f.cols < 10000) {
            struct winsize ws = {(unsigned short)f.rows, (unsigned short)f.cols, 0, 0};
            ioctl(p->out, TIOCSWINSZ, &ws);
        }
        return;
    }
    case SB_IF_PS: {
        SERVE_DECODE(ps, f);
        sbi_ps(f.id, out);
        return;
    }
    case SB_IF_FREAD:
    case SB_IF_FWRITE:
    case SB_IF_FLIST:
    case SB_IF_FSTAT:
    case SB_IF_MKDIR:
    case SB_IF_REMOVE:
    case SB_IF_RENAME: sbi_file_op(type, body, len, out); return;
    default: serve_reply_err(out, SB_IF_ERROR, 0, SB_EUNKNOWN_TYPE, "unknown frame type");
    }
}
#undef SERVE_DECODE

static void
serve_stdin(serve_proc_t *p)
{
    while (p->inbuf.len) {
        ssize_t n = write(p->in, p->inbuf.data, p->inbuf.len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) {
            sb_buf_reset(&p->inbuf);
            break;
        }
        sb_buf_consume(&p->inbuf, (size_t)n);
    }
    if (p->in_close && !p->pty && p->in >= 0) {
        close(p->in);
        p->in = -1;
    }
}

static int
serve_loop(void)
{
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sfd < 0)
        return -1;
    sb_buf_t in, out;
    sb_buf_init(&in, SB_FRAME_MAX + 4);
    sb_buf_init(&out, SB_FRAME_MAX + 4);
    uint64_t skip = 0; /* bytes of an oversized frame still to discard */
    struct pollfd pfd[2 + 3 * SERVE_MAX_PROCS];
    for (;;) {
        int n = 0;
        pfd[n++] = (struct pollfd){serve_ctl, POLLIN, 0};
        pfd[n++] = (struct pollfd){sfd, POLLIN, 0};
        for (int i = 0; i < serve_nprocs; i++) {
            serve_proc_t *p = &serve_procs[i];
            pfd[n++] = (struct pollfd){p->out, POLLIN, 0};
            pfd[n++] = (struct pollfd){p->err, POLLIN, 0};
            pfd[n++] = (struct pollfd){p->inbuf.len ? p->in : -1, POLLOUT, 0};
        }
        if (poll(pfd, (nfds_t)n, -1) < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (pfd[1].revents) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof si) > 0)
                ;
            serve_reap(&out);
        }
        /* Output and stdin before new frames; procs may be freed by serve_reap above, so
         * walk by fd match, not by poll index. */
        for (int k = 2; k < n; k++) {
            if (!pfd[k].revents || pfd[k].fd < 0)
                continue;
            for (int i = 0; i < serve_nprocs; i++) {
                serve_proc_t *p = &serve_procs[i];
                if (pfd[k].events == POLLIN && p->out == pfd[k].fd)
                    serve_pump(&out, p, &p->out, 1, 0);
                else if (pfd[k].events == POLLIN && p->err == pfd[k].fd)
                    serve_pump(&out, p, &p->err, 2, 0);
                else if (pfd[k].events == POLLOUT && p->in == pfd[k].fd)
                    serve_stdin(p);
                else
                    continue;
                break;
            }
        }
        if (pfd[0].revents) {
            if (sb_buf_reserve(&in, SERVE_CHUNK) != 0) {
                return -1;
            }
            ssize_t r = read(serve_ctl, in.data + in.len, SERVE_CHUNK);
            if (r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN))
                return 0; /* executor gone */
            if (r > 0)
                in.len += (size_t)r;
            for (;;) {
                if (skip) {
                    size_t d = skip < in.len ? (size_t)skip : in.len;
                    sb_buf_consume(&in, d);
                    skip -= d;
                    if (skip)
                        break;
                }
                const uint8_t *body;
                size_t len, total;
                uint8_t type;
                int rc = sb_frame_next(&in, &type, &body, &len, &total);
                if (rc == SB_EBADMSG) {
                    sb_buf_consume(&in, total);
                    serve_reply_err(&out, SB_IF_ERROR, 0, SB_EBADMSG, "empty frame");
                    sbi_send(&out);
                    continue;
                }
                if (rc == SB_ETOOBIG) {
                    skip = sb_get_u32(in.data);
                    sb_buf_consume(&in, 4);
                    serve_reply_err(&out, SB_IF_ERROR, 0, SB_ETOOBIG, "frame too big");
                    sbi_send(&out);
                    continue;
                }
                if (rc <= 0)
                    break;
                serve_frame(type, body, len, &out);
                sb_buf_consume(&in, total);
                if (out.len)
                    sbi_send(&out);
            }
        }
        for (int i = 0; i < serve_nprocs; i++)
            if (serve_procs[i].inbuf.len || serve_procs[i].in_close)
                serve_stdin(&serve_procs[i]);
    }
}

int
main(int argc, char **argv)
{
    sbi_config_t c = {.fd = 3, .rootdir = "/run/soulbox/root", .disk_mb = 512, .shm_mb = 64,
                      .inodes = 65536, .hostname = "sandbox"};
    static const struct option opts[] = {
        {"fd", 1, 0, 'f'},     {"root", 1, 0, 'r'},     {"disk-mb", 1, 0, 'd'},
        {"shm-mb", 1, 0, 's'}, {"inodes", 1, 0, 'i'},   {"hostname", 1, 0, 'h'},
        {0, 0, 0, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'f': c.fd = atoi(optarg); break;
        case 'r': c.rootdir = optarg; break;
        case 'd': c.disk_mb = strtoull(optarg, NULL, 10); break;
        case 's': c.shm_mb = strtoull(optarg, NULL, 10); break;
        case 'i': c.inodes = strtoull(optarg, NULL, 10); break;
        case 'h': c.hostname = optarg; break;
        default: return 2;
        }
    }
    serve_ctl = c.fd;
    if (getpid() != 1 || fcntl(serve_ctl, F_GETFD) < 0) {
        fprintf(stderr, "soulbox-init: run by the SoulBox executor only (PID 1 of a sandbox)\n");
        return 2;
    }
    fcntl(serve_ctl, F_SETFD, FD_CLOEXEC);
    signal(SIGPIPE, SIG_IGN); /* reset to default in every child before exec */
    sb_buf_t out;
    sb_buf_init(&out, 1 << 16);
    const char *what = "?";
    int rc = sbi_setup(&c, &what);
    if (rc < 0) {
        char msg[256];
        snprintf(msg, sizeof msg, "setup step %s: %s", what, strerror(-rc));
        serve_reply_err(&out, SB_IF_ERROR, 0, rc, msg);
        sbi_send(&out);
        return 1;
    }
    sb_if_hello_write(&out, &(sb_if_hello_t){.pid = (uint64_t)getpid()});
    sbi_send(&out);
    sb_buf_fini(&out);
    return serve_loop() < 0 ? 1 : 0;
}
