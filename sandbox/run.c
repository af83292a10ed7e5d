/*
 * run.c: processes in a sandbox -- EXEC, their output (kept up to output_max, or streamed
 * only), stdin, signals, resize, the wall-clock and CPU-time limits and the end of each run
 * with the one status a user can act on.
 *
 * Run states: STARTING (EXEC sent) -> RUNNING (STARTED) -> ENDED (EXIT, or socket EOF).  A run
 * ended by the engine (timeout, cpu, output, kill) keeps the reason it was ended for; the
 * kernel's verdict (exit code, signal, OOM) only decides the status when there is none.
 */
#include "internal.h"

#include "env.h"

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

static const char *const sbx_status_names[] = {"exited", "signaled", "timeout", "cpu_limit",
                                              "memory_limit", "output_limit", "killed", "lost"};

const char *
sb_run_status_name(sb_run_status_t s)
{
    return (unsigned)s < 8 ? sbx_status_names[s] : "unknown";
}

/* ---- runs ------------------------------------------------------------------------------ */

static void
sbx_run_closed(uv_handle_t *h)
{
    sb_sandbox_run_t *r = h->data;
    if (--r->closing == 0) {
        sb_buf_fini(&r->out);
        sb_buf_fini(&r->err);
        free(r);
    }
}


void
sb__sbx_run_finish(sb_sandbox_run_t *r, int code, int sig, uint64_t cpu_us)
{
    sb_sandbox_t *sb = r->sb;
    sb_run_result_t res;
    sb_cgroup_stats_t st;
    if (r->ended)
        return;
    r->ended = 1;
    memset(&res, 0, sizeof res);
    int have = sb_cgroup_stats(&sb->e->cg, sb->cg_name, &st) == 0;
    uint64_t oom = have && st.oom_kills > r->oom_start;
    uint64_t cg_cpu = have && st.cpu_usage_ns > r->cpu_start_ns ? st.cpu_usage_ns - r->cpu_start_ns : 0;
    res.exit_code = sig ? -1 : code;
    res.signal = sig;
    res.error = r->error;
    if (r->reason >= 0)
        res.status = (sb_run_status_t)r->reason;
    else if (code == -2)
        res.status = sb->killed ? SB_RUN_KILLED : SB_RUN_LOST;
    else if (sig == SIGKILL && oom)
        res.status = SB_RUN_MEMORY_LIMIT;
    else if (sig == SIGXCPU || (sig == SIGKILL && r->cpu_ms && cpu_us / 1000 >= r->cpu_ms))
        res.status = SB_RUN_CPU_LIMIT;
    else if (sig)
        res.status = SB_RUN_SIGNALED;
    else
        res.status = SB_RUN_EXITED;
    if (code == -2) {
        res.exit_code = -1;
        res.signal = 0;
    }
    res.out = r->out.data;
    res.out_len = r->out.len;
    res.err = r->err.data;
    res.err_len = r->err.len;
    res.out_truncated = r->out_total > r->out.len;
    res.err_truncated = r->err_total > r->err.len;
    res.execution_time_ms = (sb_now_mono_us() - r->start_us) / 1000;
    uint64_t cpu_ns = cpu_us * 1000 > cg_cpu ? cpu_us * 1000 : cg_cpu;
    res.cpu_time_ms = cpu_ns / 1000000;
    res.memory_peak_bytes = have ? st.memory_peak : 0;
    /* unlink before the callback: it may destroy the sandbox */
    for (sb_sandbox_run_t **pp = &sb->runs; *pp; pp = &(*pp)->next)
        if (*pp == r) {
            *pp = r->next;
            break;
        }
    r->closing = 2;
    uv_close((uv_handle_t *)&r->wall, sbx_run_closed);
    uv_close((uv_handle_t *)&r->tick, sbx_run_closed);
    r->on_done(r, &res, r->ud);
}

static void
sbx_run_end(sb_sandbox_run_t *r, sb_run_status_t why)
{
    if (r->ended || r->reason >= 0)
        return;
    r->reason = (int)why;
    sb_buf_t b;
    sb_buf_init(&b, 256);
    sb_if_signal_t f = {.id = r->id, .sig = SIGKILL};
    if (sb_if_signal_write(&b, &f) < 0 || sb__sbx_send(r->sb, &b) < 0)
        sb_sandbox_kill(r->sb);
    sb_buf_fini(&b);
}

static void
sbx_run_grace(uv_timer_t *t)
{
    sb_sandbox_run_t *r = t->data;
    sb_log_warn("SB-SBX-RUN-STUCK", "run %llu of %s did not end after SIGKILL; killing sandbox",
                (unsigned long long)r->id, r->sb->cg_name);
    sb_sandbox_kill(r->sb);
}

/* After the engine ends a run, the wall timer becomes the grace timer: if the process
 * group kill does not end the run in time (a process stuck in the kernel, a wedged init),
 * the whole sandbox goes. */
static void
sbx_run_wall(uv_timer_t *t)
{
    sb_sandbox_run_t *r = t->data;
    sbx_run_end(r, SB_RUN_TIMEOUT);
    uv_timer_start(&r->wall, sbx_run_grace, SBX_GRACE_MS, 0);
}

static void
sbx_run_tick(uv_timer_t *t)
{
    sb_sandbox_run_t *r = t->data;
    sb_cgroup_stats_t st;
    if (r->reason >= 0 || sb_cgroup_stats(&r->sb->e->cg, r->sb->cg_name, &st) < 0)
        return;
    if (st.cpu_usage_ns > r->cpu_start_ns && (st.cpu_usage_ns - r->cpu_start_ns) / 1000000 >= r->cpu_ms) {
        sbx_run_end(r, SB_RUN_CPU_LIMIT);
        uv_timer_stop(&r->tick);
        uv_timer_start(&r->wall, sbx_run_grace, SBX_GRACE_MS, 0);
    }
}

sb_sandbox_run_t *
sb__sbx_run_find(sb_sandbox_t *sb, uint64_t id)
{
    for (sb_sandbox_run_t *r = sb->runs; r; r = r->next)
        if (r->id == id)
            return r;
    return NULL;
}

void
sb__sbx_run_output(sb_sandbox_run_t *r, int fd, sb_str_t data)
{
    sb_buf_t *b = fd == 2 ? &r->err : &r->out;
    uint64_t *total = fd == 2 ? &r->err_total : &r->out_total;
    if (r->stream_only) {
        if (r->on_output && data.len)
            r->on_output(r, fd, (const uint8_t *)data.ptr, data.len, r->ud);
        return;
    }
    size_t room = r->output_max > b->len ? (size_t)(r->output_max - b->len) : 0;
    size_t keep = data.len < room ? data.len : room;
    *total += data.len;
    if (keep) {
        sb_buf_append(b, data.ptr, keep);
        if (r->on_output)
            r->on_output(r, fd, (const uint8_t *)data.ptr, keep, r->ud);
    }
    if (*total > r->output_max && r->reason < 0 && !r->ended) {
        sbx_run_end(r, SB_RUN_OUTPUT_LIMIT);
        uv_timer_start(&r->wall, sbx_run_grace, SBX_GRACE_MS, 0);
    }
}

int
sb_sandbox_exec(sb_sandbox_t *sb, const sb_exec_opts_t *o, sb_output_cb on_output,
                sb_done_cb on_done, void *ud, sb_sandbox_run_t **out)
{
    if (sb->state != SBX_READY || sb->killed)
        return SB_ECLOSED;
    if (!o->argv || !o->argv[0] || !on_done)
        return SB_EINVAL;
    const char *const *env = o->env ? o->env : o->pty ? sb_env_default_pty : sb_env_default;
    uint32_t argc = 0, envc = 0;
    while (o->argv[argc])
        argc++;
    while (env[envc])
        envc++;
    if (argc > SB_FRAME_ARGS_MAX || envc > SB_FRAME_ARGS_MAX)
        return SB_ETOOBIG;
    if (o->memory_bytes) {
        sb_cgroup_limits_t l = {o->memory_bytes, sb->lim.pids, sb->lim.cpu_pct};
        int rc = sb_cgroup_set_limits(&sb->e->cg, sb->cg_name, &l);
        if (rc < 0)
            return rc;
    }
    sb_buf_t b, argvb, envb;
    sb_buf_init(&b, SB_FRAME_MAX + 4);
    sb_buf_init(&argvb, 0);
    sb_buf_init(&envb, 0);
    sb_mpw_strv(&argvb, o->argv);
    sb_mpw_strv(&envb, env);
    uint64_t id = ++sb->next_id;
    sb_if_exec_t ex = {
        .id = id,
        .argv = {(const char *)argvb.data, (uint32_t)argvb.len},
        .env = {(const char *)envb.data, (uint32_t)envb.len},
        .cwd = sb_str(o->cwd),
        .pty = o->pty,
        .rows = o->rows ? o->rows : 24,
        .cols = o->cols ? o->cols : 80,
        .nofile = o->nofile ? o->nofile : 1024,
        .nproc = o->nproc ? o->nproc : sb->lim.pids,
        .fsize = o->fsize ? o->fsize : (uint64_t)sb->lim.disk_mb << 20,
        .cpu = o->cpu_ms ? (o->cpu_ms + 999) / 1000 + 1 : 0,
    };
    int rc2 = sb_if_exec_write(&b, &ex);
    sb_buf_fini(&argvb);
    sb_buf_fini(&envb);
    /* stdin rides behind EXEC in the same write, in frames of at most 1 MiB */
    for (size_t off = 0; rc2 == 0 && off < o->stdin_len;) {
        size_t n = o->stdin_len - off < (1u << 20) ? o->stdin_len - off : (1u << 20);
        sb_if_stdin_t in = {.id = id, .data = {(const char *)o->stdin_data + off, (uint32_t)n}};
        rc2 = sb_if_stdin_write(&b, &in);
        off += n;
    }
    if (rc2 == 0 && !o->keep_stdin)
        rc2 = sb_if_stdin_close_write(&b, &(sb_if_stdin_close_t){.id = id});
    if (rc2 == 0) {
        sb_cgroup_reset_peak(&sb->e->cg, sb->cg_name);
        rc2 = sb__sbx_send(sb, &b);
    }
    sb_buf_fini(&b);
    if (rc2 < 0)
        return rc2;
    sb_sandbox_run_t *r = sb_xcalloc(1, sizeof *r);
    r->sb = sb;
    r->id = sb->next_id;
    r->on_output = on_output;
    r->on_done = on_done;
    r->on_started = o->on_started;
    r->ud = ud;
    r->reason = -1;
    r->timeout_ms = o->timeout_ms ? o->timeout_ms : 30000;
    r->cpu_ms = o->cpu_ms;
    r->output_max = o->output_max ? o->output_max : (1u << 20);
    r->stream_only = o->stream_only;
    sb_buf_init(&r->out, 0);
    sb_buf_init(&r->err, 0);
    sb_cgroup_stats_t st;
    if (sb_cgroup_stats(&sb->e->cg, sb->cg_name, &st) == 0) {
        r->cpu_start_ns = st.cpu_usage_ns;
        r->oom_start = st.oom_kills;
    }
    r->start_us = sb_now_mono_us();
    uv_timer_init(sb->e->loop, &r->wall);
    uv_timer_init(sb->e->loop, &r->tick);
    r->wall.data = r->tick.data = r;
    uv_timer_start(&r->wall, sbx_run_wall, r->timeout_ms, 0);
    if (r->cpu_ms)
        uv_timer_start(&r->tick, sbx_run_tick, SBX_CPU_TICK_MS, SBX_CPU_TICK_MS);
    r->next = sb->runs;
    sb->runs = r;
    if (out)
        *out = r;
    return 0;
}

/* sbx_run_send sends one frame about run r (built by the caller into b). */
static int
sbx_run_send(sb_sandbox_run_t *r, sb_buf_t *b, int rc)
{
    if (rc == 0)
        rc = sb__sbx_send(r->sb, b);
    sb_buf_fini(b);
    return rc;
}

int
sb_run_pid(const sb_sandbox_run_t *r)
{
    return r->pid;
}

sb_sandbox_run_t *
sb_sandbox_find_run(sb_sandbox_t *sb, int pid)
{
    for (sb_sandbox_run_t *r = sb->runs; r; r = r->next)
        if (!r->ended && r->pid > 0 && r->pid == pid)
            return r;
    return NULL;
}

int
sb_run_write_stdin(sb_sandbox_run_t *r, const void *p, size_t n)
{
    if (n > (1u << 20))
        return SB_ETOOBIG;
    if (r->ended)
        return SB_ECLOSED;
    sb_buf_t b;
    sb_buf_init(&b, SB_FRAME_MAX + 4);
    sb_if_stdin_t f = {.id = r->id, .data = {p ? p : "", (uint32_t)n}};
    return sbx_run_send(r, &b, sb_if_stdin_write(&b, &f));
}
int
sb_run_close_stdin(sb_sandbox_run_t *r)
{
    if (r->ended)
        return SB_ECLOSED;
    sb_buf_t b;
    sb_buf_init(&b, 64);
    return sbx_run_send(r, &b, sb_if_stdin_close_write(&b, &(sb_if_stdin_close_t){.id = r->id}));
}
int
sb_run_signal(sb_sandbox_run_t *r, int sig)
{
    if (sig <= 0 || sig > 64)
        return SB_EINVAL;
    if (r->ended)
        return SB_ECLOSED;
    sb_buf_t b;
    sb_buf_init(&b, 64);
    return sbx_run_send(r, &b, sb_if_signal_write(&b, &(sb_if_signal_t){.id = r->id, .sig = sig}));
}
int
sb_run_resize(sb_sandbox_run_t *r, uint16_t rows, uint16_t cols)
{
    if (r->ended)
        return SB_ECLOSED;
    sb_buf_t b;
    sb_buf_init(&b, 64);
    sb_if_resize_t f = {.id = r->id, .rows = rows, .cols = cols};
    return sbx_run_send(r, &b, sb_if_resize_write(&b, &f));
}
int
sb_run_kill(sb_sandbox_run_t *r)
{
    if (r->ended)
        return SB_ECLOSED;
    sbx_run_end(r, SB_RUN_KILLED);
    uv_timer_start(&r->wall, sbx_run_grace, SBX_GRACE_MS, 0);
    return 0;
}
