/*
 * spawn.c: creating a sandbox in a multi-threaded server.
 *
 * Take a uid slot (mkdir of the state dir is the lock) with its cgroup, and a network
 * namespace, from what the preparation thread made ahead (engine.c; made inline when none is
 * ready), clone() with the namespace flags into a child that joins the cgroup (v1: writes "0"
 * to tasks files opened before clone()), moves two fds into place and blocks on read(); the
 * parent writes uid_map/gid_map (on v2 also attaches the child to the cgroup) and releases it
 * with one byte; the child execve()s soulbox-init, which does all the setup and says HELLO.
 * Between clone() and execve() the child calls only async-signal-safe syscalls (write, dup2,
 * close_range, read, setgroups/setresgid/setresuid as raw syscalls, execve, _exit): no
 * malloc, no logging, no libseccomp.  clone() without CLONE_VM gives the child a private copy
 * of memory, so the argv it uses is prepared before clone() and never freed under it.
 */
#include "internal.h"

#include "base/err.h"
#include "base/log.h"
#include "protocols/frame.h"
#include "protocols/mp.h"
#include "base/alloc.h"
#include "base/clock.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    int sock, devnull;
    const char *path;
    char *const *argv;
    int cgfds[SB_CGROUP_JOIN_MAX], ncg; /* v1: join the cgroup by writing "0" to these */
} sbx_child_args_t;

/* The clone child: async-signal-safe syscalls only (see the file comment). */
static int
sbx_child(void *arg)
{
    sbx_child_args_t *a = arg;
    char go;
    static char *const envp[] = {NULL};
    /* First, before the dup2()s below can reuse these fd numbers: into the cgroup. */
    for (int i = 0; i < a->ncg; i++)
        if (write(a->cgfds[i], "0", 1) != 1)
            _exit(124);
    if (dup2(a->devnull, 0) < 0 || dup2(a->devnull, 1) < 0 || dup2(a->devnull, 2) < 0 ||
        dup2(a->sock, 3) < 0)
        _exit(126);
    syscall(SYS_close_range, 4U, ~0U, 0U);
    while (read(3, &go, 1) < 0 && errno == EINTR)
        ;
    if (go != 'G')
        _exit(126);
    /* Become root of the new user namespace (host uid = the slot's root uid) now that the
     * maps exist, so execve() grants soulbox-init its capabilities there.  Raw syscalls: the
     * libc wrappers would try to signal the parent's other threads (setxid broadcast). */
    if (syscall(SYS_setgroups, 0, NULL) < 0 || syscall(SYS_setresgid, 0, 0, 0) < 0 ||
        syscall(SYS_setresuid, 0, 0, 0) < 0)
        _exit(125);
    execve(a->path, a->argv, envp);
    _exit(127);
}

static void
sbx_close_fds(const int *fds, int n)
{
    for (int i = 0; i < n; i++)
        close(fds[i]);
}

int
sb__sbx_write_file(const char *path, const char *s)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC | O_TRUNC | O_CREAT, 0644);
    if (fd < 0)
        return -errno;
    ssize_t n = write(fd, s, strlen(s));
    int e = errno;
    close(fd);
    return n == (ssize_t)strlen(s) ? 0 : (n < 0 ? -e : -EIO);
}

int
sb_sandbox_create(sb_engine_t *e, const sb_sandbox_limits_t *lim, sb_sandbox_create_cb cb, void *ud)
{
    sb_sandbox_limits_t l = lim ? *lim : (sb_sandbox_limits_t){0};
    char buf[256];
    int rc, sv[2] = {-1, -1}, devnull = -1, pidfd = -1;
    if (!l.memory_bytes)
        l.memory_bytes = 512ull << 20;
    if (!l.pids)
        l.pids = 256;
    if (!l.cpu_pct)
        l.cpu_pct = 100;
    if (!l.disk_mb)
        l.disk_mb = 256;
    if (!l.shm_mb)
        l.shm_mb = 64;
    if (!l.inodes)
        l.inodes = 65536;

    sb_sandbox_t *sb = sb_xcalloc(1, sizeof *sb);
    sb->e = e;
    sb->lim = l;
    sb->pidfd = -1;
    sb_buf_init(&sb->in, SB_FRAME_MAX + 4 + 65536);
    /* 1+2. a uid slot with its state dir, owner file and cgroup: a prepared one when there is
     * one (its cgroup has the default limits), else made here; and a prepared network
     * namespace, if any. */
    sb_cgroup_limits_t cl = {l.memory_bytes, l.pids, l.cpu_pct};
    uint32_t slot = 0;
    bool prepared = false;
    int netfd = -1, nerr;
    uv_mutex_lock(&e->prep_mu);
    if (e->n_ready > 0) {
        slot = e->ready[--e->n_ready];
        prepared = true;
    }
    if (e->n_netns > 0)
        netfd = e->netns[--e->n_netns];
    nerr = e->netns_err;
    e->prep_slot_fail = false;
    uv_mutex_unlock(&e->prep_mu);
    if (nerr && !e->netns_logged) {
        e->netns_logged = true;
        sb_log_warn("SB-SBX-NETNS-PREP", "cannot prepare network namespaces ahead (%s): each "
                    "sandbox creates its own at clone()", sb_strerror(nerr));
    }
    if (!prepared && (rc = sb__sbx_slot_take(e, &cl, &slot)) < 0) {
        sb_log_error("SB-SBX-SLOT-FAIL", "cannot reserve a sandbox slot and cgroup: %s",
                     sb_strerror(rc));
        goto fail_free;
    }
    sb->slot = slot;
    snprintf(sb->state_path, sizeof sb->state_path, "%s/%u", e->sb_dir, slot);
    snprintf(sb->cg_name, sizeof sb->cg_name, "sb-%u", slot);
    if (prepared && (cl.memory_bytes != SBX_DEF_MEMORY || cl.pids != SBX_DEF_PIDS ||
                     cl.cpu_pct != SBX_DEF_CPU) &&
        (rc = sb_cgroup_set_limits(&e->cg, sb->cg_name, &cl)) < 0) {
        sb_log_error("SB-SBX-CGROUP-FAIL", "cannot set limits of %s: %s", sb->cg_name,
                     sb_strerror(rc));
        goto fail_cg;
    }
    /* 3. fds and argv for the child, prepared before clone() */
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0 ||
        (devnull = open("/dev/null", O_RDWR | O_CLOEXEC)) < 0) {
        rc = -errno;
        goto fail_cg;
    }
    int csock = fcntl(sv[1], F_DUPFD_CLOEXEC, 10), cnull = fcntl(devnull, F_DUPFD_CLOEXEC, 10);
    close(sv[1]);
    close(devnull);
    sv[1] = csock;
    devnull = cnull;
    if (csock < 0 || cnull < 0) {
        rc = -EMFILE;
        goto fail_fds;
    }
    char disk[24], shm[24], inodes[24];
    snprintf(disk, sizeof disk, "%u", l.disk_mb);
    snprintf(shm, sizeof shm, "%u", l.shm_mb);
    snprintf(inodes, sizeof inodes, "%u", l.inodes);
    char *const argv[] = {"soulbox-init", "--fd", "3", "--root", e->root_dir, "--disk-mb", disk,
                          "--shm-mb", shm, "--inodes", inodes, NULL};
    sbx_child_args_t ca = {sv[1], devnull, e->init_path, argv, {0}, 0};
    if ((rc = sb_cgroup_join_fds(&e->cg, sb->cg_name, ca.cgfds)) < 0) {
        sb_log_error("SB-SBX-CGROUP-FAIL", "cannot open %s to join it: %s", sb->cg_name,
                     sb_strerror(rc));
        goto fail_fds;
    }
    ca.ncg = rc;
    char *stack = malloc(SBX_CHILD_STACK);
    if (!stack) {
        rc = SB_ENOMEM;
        sbx_close_fds(ca.cgfds, ca.ncg);
        goto fail_fds;
    }
    int flags = CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS |
                CLONE_NEWNET | CLONE_PIDFD | SIGCHLD;
    /* A prepared network namespace is entered by this thread just for the clone() (the
     * namespace is per thread and inherited by the child); nothing else runs on the thread
     * in between, and it returns to its own namespace right after. */
    int selfns = -1;
    if (netfd >= 0) {
        selfns = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
        if (selfns >= 0 && setns(netfd, CLONE_NEWNET) == 0) {
            flags &= ~CLONE_NEWNET;
        } else if (selfns >= 0) {
            close(selfns);
            selfns = -1;
        }
    }
    pid_t pid = clone(sbx_child, stack + SBX_CHILD_STACK, flags, &ca, &pidfd);
    int cerr = errno;
    sbx_close_fds(ca.cgfds, ca.ncg);
    if (selfns >= 0) {
        SB_ASSERT(setns(selfns, CLONE_NEWNET) == 0);
        close(selfns);
    }
    if (netfd >= 0)
        close(netfd);
    netfd = -1;
    free(stack);
    close(sv[1]);
    close(devnull);
    sv[1] = devnull = -1;
    if (pid < 0) {
        rc = -cerr;
        sb_log_error("SB-SBX-CLONE-FAIL", "clone: %s", strerror(cerr));
        goto fail_fds;
    }
    sb->pid = pid;
    sb->pidfd = pidfd;
    /* 4. identity and cgroup, then release the child */
    uint32_t uid = e->uid_base + 2 * sb->slot;
    char p[64], map[96];
    snprintf(map, sizeof map, "0 %u 1\n1000 %u 1\n", uid + 1, uid);
    snprintf(p, sizeof p, "/proc/%d/uid_map", (int)pid);
    if ((rc = sb__sbx_write_file(p, map)) < 0)
        goto fail_child;
    snprintf(p, sizeof p, "/proc/%d/gid_map", (int)pid);
    if ((rc = sb__sbx_write_file(p, map)) < 0)
        goto fail_child;
    if (ca.ncg == 0 && (rc = sb_cgroup_attach(&e->cg, sb->cg_name, pid)) < 0) {
        sb_log_error("SB-SBX-CGROUP-FAIL", "cannot attach to %s: %s", sb->cg_name, sb_strerror(rc));
        goto fail_child;
    }
    snprintf(buf, sizeof buf, "%d %llu\n", (int)pid, sb__sbx_proc_start(pid));
    {
        char ip[400];
        snprintf(ip, sizeof ip, "%s/init", sb->state_path);
        sb__sbx_write_file(ip, buf);
    }
    if (write(sv[0], "G", 1) != 1) {
        rc = -errno;
        goto fail_child;
    }
    /* While soulbox-init sets up, the preparation thread replaces what we took. */
    sb__sbx_prep_kick(e);
    /* 5. watch the socket and init's pidfd */
    sb->ctl_fd = sv[0];
    uv_pipe_init(e->loop, &sb->ctl, 0);
    uv_poll_init(e->loop, &sb->pid_poll, pidfd);
    uv_timer_init(e->loop, &sb->retry);
    sb->ctl.data = sb->pid_poll.data = sb->retry.data = sb;
    sb->handles = 3;
    if ((rc = uv_pipe_open(&sb->ctl, sv[0])) < 0 ||
        (rc = uv_read_start((uv_stream_t *)&sb->ctl, sb__sbx_alloc, sb__sbx_read)) < 0) {
        /* Cannot happen for a fresh socketpair; treat like an early death. */
        sb->create_cb = NULL;
        sb->destroying = true;
        sb_sandbox_kill(sb);
        sb__sbx_on_eof(sb);
        uv_poll_start(&sb->pid_poll, UV_READABLE, sb__sbx_pid_event);
        e->live++;
        return rc;
    }
    uv_poll_start(&sb->pid_poll, UV_READABLE, sb__sbx_pid_event);
    sb->state = SBX_CREATING;
    sb->create_cb = cb;
    sb->create_ud = ud;
    e->live++;
    return 0;

fail_child:
    kill(pid, SIGKILL);
    {
        siginfo_t si;
        syscall(SYS_waitid, P_PIDFD, pidfd, &si, WEXITED, NULL);
    }
    close(pidfd);
    {
        char ip[400];
        snprintf(ip, sizeof ip, "%s/init", sb->state_path);
        unlink(ip);
    }
fail_fds:
    if (sv[0] >= 0)
        close(sv[0]);
    if (sv[1] >= 0)
        close(sv[1]);
    if (devnull >= 0)
        close(devnull);
fail_cg:
    sb__sbx_slot_release(e, sb->slot);
fail_free:
    if (netfd >= 0)
        close(netfd);
    sb_buf_fini(&sb->in);
    free(sb);
    return rc;
}
