/*
 * sandbox.c: a sandbox's life after creation -- accessors, kill, destroy, and the teardown
 * that frees it only when init is reaped, every handle is closed, the cgroup is removed and
 * the state dir is gone (in that order, so a uid slot is never reused while a process of
 * that uid might still exist).
 *
 * Sandbox states: CREATING -> READY -> DYING -> (freed).  DYING starts on kill, destroy, or
 * the death of init (control socket EOF).
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

/* ---- lifecycle ------------------------------------------------------------------------- */

uint32_t
sb_sandbox_slot(const sb_sandbox_t *sb)
{
    return sb->slot;
}
uint32_t
sb_sandbox_host_uid(const sb_sandbox_t *sb)
{
    return sb->e->uid_base + 2 * sb->slot;
}
pid_t
sb_sandbox_init_pid(const sb_sandbox_t *sb)
{
    return sb->pid;
}
const char *
sb_sandbox_cgroup_name(const sb_sandbox_t *sb)
{
    return sb->cg_name;
}
int
sb_sandbox_alive(const sb_sandbox_t *sb)
{
    return sb->state == SBX_READY && !sb->killed && !sb->ctl_eof;
}

/* Everything that depends on the socket ends: runs and pending file operations. */
uv_loop_t *
sb_sandbox_loop(const sb_sandbox_t *sb)
{
    return sb->e->loop;
}

int
sb_sandbox_stats(const sb_sandbox_t *sb, sb_cgroup_stats_t *st)
{
    return sb_cgroup_stats(&sb->e->cg, sb->cg_name, st);
}

void
sb_sandbox_reset_peak(sb_sandbox_t *sb)
{
    sb_cgroup_reset_peak(&sb->e->cg, sb->cg_name);
}

void
sb__sbx_fail_pending(sb_sandbox_t *sb)
{
    while (sb->runs)
        sb__sbx_run_finish(sb->runs, -2, 0, 0);
    while (sb->fops) {
        sbx_fop_t *op = sb->fops;
        sb->fops = op->next;
        sb_file_result_t res;
        memset(&res, 0, sizeof res);
        res.err = SB_ECLOSED;
        if (op->cb)
            op->cb(&res, op->ud);
        free(op);
    }
}

static void
sbx_free(sb_sandbox_t *sb)
{
    void (*cb)(void *) = sb->destroy_cb;
    void *ud = sb->destroy_ud;
    sb_sandbox_create_cb ccb = sb->create_cb; /* still set: HELLO never came */
    void *cud = sb->create_ud;
    int cerr = sb->create_err ? sb->create_err : SB_EIO;
    sb->e->live--;
    sb_buf_fini(&sb->in);
    free(sb);
    if (ccb)
        ccb(NULL, cerr, cud);
    if (cb)
        cb(ud);
}

static void
sbx_closed(uv_handle_t *h)
{
    sb_sandbox_t *sb = h->data;
    if (--sb->handles == 0)
        sbx_free(sb);
}

/* Remove the cgroup (retrying while the last tasks exit), then the state dir. */
static void
sbx_retry(uv_timer_t *t)
{
    sb_sandbox_t *sb = t->data;
    int rc = sb_cgroup_destroy(&sb->e->cg, sb->cg_name);
    if (rc == -EBUSY && ++sb->retries < 1000) {
        sb_cgroup_kill(&sb->e->cg, sb->cg_name);
        uv_timer_start(&sb->retry, sbx_retry, sb->retries < 20 ? 1 : 10, 0);
        return;
    }
    if (rc < 0)
        sb_log_error("SB-SBX-CGROUP-FAIL", "cannot remove cgroup %s: %s (left for the orphan "
                     "reaper)", sb->cg_name, sb_strerror(rc));
    else {
        /* Only now may the uid slot be reused: no process of it can exist any more. */
        char p[400];
        snprintf(p, sizeof p, "%s/owner", sb->state_path);
        unlink(p);
        snprintf(p, sizeof p, "%s/init", sb->state_path);
        unlink(p);
        if (rmdir(sb->state_path) < 0)
            sb_log_error("SB-SBX-STATE-DIR", "cannot remove %s: %s", sb->state_path, strerror(errno));
    }
    uv_close((uv_handle_t *)&sb->retry, sbx_closed);
}

/* init was SIGKILLed SBX_KILL_FALLBACK_MS ago and is still not reaped: kill the rest of the
 * sandbox through its cgroup now. */
static void
sbx_kill_fallback(uv_timer_t *t)
{
    sb_sandbox_t *sb = t->data;
    if (!sb->reaped)
        sb_cgroup_kill(&sb->e->cg, sb->cg_name);
}

void
sb__sbx_check_dead(sb_sandbox_t *sb)
{
    if (!sb->ctl_eof || !sb->reaped || sb->cg_done)
        return;
    if (!sb->destroying && sb->state != SBX_CREATING)
        return; /* dead, but the owner has not asked for destroy yet */
    sb->cg_done = true;
    sb->state = SBX_DYING;
    uv_close((uv_handle_t *)&sb->ctl, sbx_closed);
    uv_close((uv_handle_t *)&sb->pid_poll, sbx_closed);
    close(sb->pidfd);
    sb->pidfd = -1;
    uv_timer_start(&sb->retry, sbx_retry, 0, 0);
}

void
sb__sbx_pid_event(uv_poll_t *p, int status, int events)
{
    sb_sandbox_t *sb = p->data;
    siginfo_t si;
    (void)status;
    (void)events;
    memset(&si, 0, sizeof si);
    if (syscall(SYS_waitid, P_PIDFD, sb->pidfd, &si, WEXITED | WNOHANG, NULL) < 0 && errno != ECHILD)
        return;
    if (errno != ECHILD && si.si_pid == 0)
        return;
    uv_poll_stop(p);
    sb->reaped = true;
    /* init gone: its socket end is closed by the kernel, EOF is on its way (or here). */
    sb__sbx_check_dead(sb);
}

int
sb_sandbox_kill(sb_sandbox_t *sb)
{
    if (sb->killed)
        return 0;
    sb->killed = true;
    for (sb_sandbox_run_t *r = sb->runs; r; r = r->next)
        if (r->reason < 0)
            r->reason = SB_RUN_KILLED;
    /* The pid namespace dies with its init, taking every process (daemons included) with it:
     * the kernel disables fork in it and kills the rest before init can be reaped.  The
     * cgroup is the second, independent guarantee, applied once init is reaped (the group
     * must then be empty: removing it fails and kills whatever is left, see sbx_retry) or,
     * should init not die promptly, by the fallback timer.  Sweeping the cgroup right now
     * would cost a freeze/kill/thaw round (~0.3 ms on v1) that almost always finds only the
     * init we just killed. */
    if (!sb->reaped) {
        kill(sb->pid, SIGKILL);
        uv_timer_start(&sb->retry, sbx_kill_fallback, SBX_KILL_FALLBACK_MS, 0);
    } else {
        sb_cgroup_kill(&sb->e->cg, sb->cg_name);
    }
    return 0;
}

void
sb_sandbox_destroy(sb_sandbox_t *sb, void (*cb)(void *), void *ud)
{
    if (sb->destroying)
        return;
    sb->destroying = true;
    sb->destroy_cb = cb;
    sb->destroy_ud = ud;
    sb_sandbox_kill(sb);
    sb__sbx_check_dead(sb);
}
