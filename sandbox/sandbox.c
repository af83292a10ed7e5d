/*
 * sandbox.c: the sandbox engine (see sandbox.h).
 *
 * Creation, in the multi-threaded server: take a uid slot (mkdir of the state dir is the
 * lock) with its cgroup, and a network namespace, from what the preparation thread made
 * ahead (see "preparation"; made inline when none is ready), clone() with the namespace
 * flags into a child that joins the cgroup (v1: writes "0" to tasks files opened before
 * clone()), moves two fds into place and blocks on read(); the parent writes
 * uid_map/gid_map (on v2 also attaches the child to the cgroup) and releases it with one
 * byte; the child execve()s soulbox-init, which does all the setup and says HELLO.  Between
 * clone() and execve() the child calls only async-signal-safe syscalls (write, dup2,
 * close_range, read, setgroups/setresgid/setresuid as raw syscalls, execve, _exit): no
 * malloc, no logging, no libseccomp.  clone() without CLONE_VM gives the child a private
 * copy of memory, so the argv it uses is prepared before clone() and never freed under it.
 *
 * Sandbox states: CREATING -> READY -> DYING -> (freed).  DYING starts on kill, destroy, or
 * the death of init (control socket EOF); the sandbox is freed only when the socket has
 * reached EOF, init has been reaped through its pidfd, every libuv handle is closed, the
 * cgroup is removed and the state dir (which holds the uid slot) is gone, in that order, so
 * a uid slot is never reused while a process of that uid might still exist.
 *
 * Run states: STARTING (EXEC sent) -> RUNNING (STARTED) -> ENDED (EXIT, or socket EOF).  A run
 * ended by the engine (timeout, cpu, output, kill) keeps the reason it was ended for; the
 * kernel's verdict (exit code, signal, OOM) only decides the status when there is none.
 */
#include "sandbox.h"

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

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif

#define SBX_CHILD_STACK (64 * 1024)
#define SBX_GRACE_MS 2000     /* after a per-run kill, before killing the whole sandbox */
#define SBX_CPU_TICK_MS 50
#define SBX_KILL_FALLBACK_MS 200 /* init SIGKILLed but not reaped yet: sweep the cgroup */
#define SBX_PREP 2 /* prepared slots (state dir + cgroup) and network namespaces kept ready */

/* The limits a prepared cgroup is created with: sb_sandbox_create's defaults. */
#define SBX_DEF_MEMORY (512ull << 20)
#define SBX_DEF_PIDS 256
#define SBX_DEF_CPU 100

struct sb_engine {
    uv_loop_t *loop;
    sb_cgroup_sys_t cg;
    char init_path[PATH_MAX];
    char state_dir[256];
    char sb_dir[300];   /* <state>/sandboxes */
    char root_dir[300]; /* <state>/root: mount point of every sandbox's new root */
    uint32_t uid_base, slots, next_slot;
    unsigned long long self_start; /* our start time, recorded as the owner of our slots */
    int live;
    /* Prepared resources (see "preparation" below).  Everything from here down to
     * prep_ready is guarded by prep_mu; next_slot too, once the thread runs. */
    uv_mutex_t prep_mu;
    uv_cond_t prep_cv;
    uv_thread_t prep_thread;
    bool prep_started, prep_stop, prep_slot_fail, netns_off;
    int netns[SBX_PREP], n_netns;
    uint32_t ready[SBX_PREP];
    int n_ready;
    int netns_err; /* why network namespaces cannot be prepared (logged once), or 0 */
    bool netns_logged;
};

typedef enum { SBX_CREATING, SBX_READY, SBX_DYING } sbx_state_t;

typedef struct sbx_fop {
    uint64_t id;
    int kind;
    sb_file_cb cb;
    void *ud;
    struct sbx_fop *next;
} sbx_fop_t;

struct sb_run {
    sb_sandbox_t *sb;
    uint64_t id;
    sb_output_cb on_output;
    sb_done_cb on_done;
    void (*on_started)(sb_sandbox_run_t *r, int pid, void *ud);
    void *ud;
    int pid; /* inside the sandbox, once STARTED came */
    uint64_t timeout_ms, cpu_ms, output_max;
    bool stream_only;
    sb_buf_t out, err;
    uint64_t out_total, err_total;
    uint64_t start_us, cpu_start_ns, oom_start;
    uv_timer_t wall, tick;
    int reason; /* -1, or the sb_run_status_t the engine ended it with */
    int error;
    int ended, closing;
    sb_sandbox_run_t *next;
};

struct sb_sandbox {
    sb_engine_t *e;
    sbx_state_t state;
    uint32_t slot;
    char cg_name[32];
    char state_path[320];
    pid_t pid;
    int pidfd, ctl_fd;
    uv_poll_t pid_poll;
    uv_pipe_t ctl;
    uv_timer_t retry;
    int handles; /* open libuv handles */
    sb_buf_t in;
    bool ctl_eof, reaped, killed, destroying, cg_done;
    int retries;
    sb_sandbox_create_cb create_cb;
    void *create_ud;
    int create_err;
    void (*destroy_cb)(void *);
    void *destroy_ud;
    sb_sandbox_run_t *runs;
    sbx_fop_t *fops;
    uint64_t next_id;
    sb_sandbox_limits_t lim;
};

static void sbx_slot_release(sb_engine_t *e, uint32_t slot);

static const char *const sbx_status_names[] = {"exited", "signaled", "timeout", "cpu_limit",
                                              "memory_limit", "output_limit", "killed", "lost"};

const char *
sb_run_status_name(sb_run_status_t s)
{
    return (unsigned)s < 8 ? sbx_status_names[s] : "unknown";
}

/* ---- engine ---------------------------------------------------------------------------- */

static unsigned long long
sbx_proc_start(pid_t pid)
{
    char p[64], b[1024];
    snprintf(p, sizeof p, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(p, "re");
    if (!f)
        return 0;
    size_t n = fread(b, 1, sizeof b - 1, f);
    fclose(f);
    b[n] = 0;
    char *s = strrchr(b, ')');
    if (!s)
        return 0;
    /* fields after "pid (comm)": state is field 3, starttime field 22 */
    int field = 2;
    for (char *q = s + 1; *q; q++) {
        if (*q == ' ' && ++field == 22)
            return strtoull(q + 1, NULL, 10);
    }
    return 0;
}

static int
sbx_find_init(sb_engine_t *e, const char *configured)
{
    char self[PATH_MAX], cand[PATH_MAX + 16];
    const char *c[4] = {configured, NULL, getenv("SOULBOX_INIT"), NULL};
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = 0;
        char *slash = strrchr(self, '/');
        if (slash) {
            *slash = 0;
            snprintf(cand, sizeof cand, "%s/soulbox-init", self);
            c[1] = cand;
        }
    }
    const char *fallback[] = {SB_INIT_BUILD_PATH, SB_INIT_INSTALL_PATH};
    for (int i = 0; i < 6; i++) {
        const char *p = i < 4 ? c[i] : fallback[i - 4];
        if (p && access(p, X_OK) == 0) {
            snprintf(e->init_path, sizeof e->init_path, "%s", p);
            return 0;
        }
        if (i == 0 && configured)
            return SB_ENOTFOUND; /* an explicit path must exist */
    }
    return SB_ENOTFOUND;
}

int
sb_engine_new(uv_loop_t *loop, const sb_engine_config_t *cfg, sb_engine_t **out)
{
    sb_engine_config_t def = {0};
    if (!cfg)
        cfg = &def;
    sb_engine_t *e = sb_xcalloc(1, sizeof *e);
    e->loop = loop;
    SB_ASSERT(uv_mutex_init(&e->prep_mu) == 0 && uv_cond_init(&e->prep_cv) == 0);
    e->uid_base = cfg->uid_base ? cfg->uid_base : 200000;
    e->slots = cfg->uid_slots ? cfg->uid_slots : 4096;
    e->next_slot = (uint32_t)getpid() % e->slots;
    e->self_start = sbx_proc_start(getpid());
    snprintf(e->state_dir, sizeof e->state_dir, "%s", cfg->state_dir ? cfg->state_dir : "/run/soulbox");
    snprintf(e->sb_dir, sizeof e->sb_dir, "%s/sandboxes", e->state_dir);
    snprintf(e->root_dir, sizeof e->root_dir, "%s/root", e->state_dir);
    int rc = sbx_find_init(e, cfg->init_path);
    if (rc < 0) {
        sb_log_error("SB-SBX-NO-INIT", "soulbox-init not found next to the binary, in "
                     "$SOULBOX_INIT or %s", SB_INIT_BUILD_PATH);
        free(e);
        return rc;
    }
    if ((mkdir(e->state_dir, 0755) < 0 && errno != EEXIST) ||
        (mkdir(e->sb_dir, 0700) < 0 && errno != EEXIST) ||
        (mkdir(e->root_dir, 0755) < 0 && errno != EEXIST)) {
        rc = -errno;
        sb_log_error("SB-SBX-STATE-DIR", "cannot create %s: %s", e->sb_dir, strerror(errno));
        free(e);
        return rc;
    }
    rc = sb_cgroup_detect(&e->cg, cfg->cgroup_root, cfg->cgroup_parent);
    if (rc < 0) {
        sb_log_error("SB-SBX-CGROUP-FAIL", "no usable cgroup hierarchy under %s: %s",
                     cfg->cgroup_root ? cfg->cgroup_root : "/sys/fs/cgroup", sb_strerror(rc));
        free(e);
        return rc;
    }
    sb_log_debug("SB-SBX-ENGINE", "sandbox engine: cgroup %s, init %s, uids %u+%u",
                sb_cgroup_kind_name(e->cg.kind), e->init_path, e->uid_base, e->slots * 2);
    int reaped = sb_engine_reap_orphans(e);
    if (reaped > 0)
        sb_log_warn("SB-SBX-ORPHANS", "reaped %d sandbox(es) left by a previous run", reaped);
    *out = e;
    return 0;
}

void
sb_engine_free(sb_engine_t *e)
{
    if (!e)
        return;
    SB_ASSERT(e->live == 0);
    if (e->prep_started) {
        uv_mutex_lock(&e->prep_mu);
        e->prep_stop = true;
        uv_cond_signal(&e->prep_cv);
        uv_mutex_unlock(&e->prep_mu);
        uv_thread_join(&e->prep_thread);
    }
    for (int i = 0; i < e->n_netns; i++)
        close(e->netns[i]);
    for (int i = 0; i < e->n_ready; i++)
        sbx_slot_release(e, e->ready[i]);
    uv_cond_destroy(&e->prep_cv);
    uv_mutex_destroy(&e->prep_mu);
    free(e);
}

const sb_cgroup_sys_t *
sb_engine_cgroups(const sb_engine_t *e)
{
    return &e->cg;
}

const char *
sb_engine_init_path(const sb_engine_t *e)
{
    return e->init_path;
}

/* Kill everything in a group and remove it, waiting (bounded) for tasks to exit.  Only used
 * at start-up for orphans, where a short synchronous wait is acceptable. */
static void
sbx_cgroup_purge(sb_engine_t *e, const char *name)
{
    for (int i = 0; i < 400; i++) {
        sb_cgroup_kill(&e->cg, name);
        int rc = sb_cgroup_destroy(&e->cg, name);
        if (rc == 0)
            return;
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    sb_log_error("SB-SBX-ORPHAN-CGROUP", "cannot remove orphan cgroup %s", name);
}

typedef struct {
    sb_engine_t *e;
    int count;
} sbx_reap_t;

static void
sbx_reap_cg(const char *name, void *ud)
{
    sbx_reap_t *r = ud;
    char p[400];
    unsigned slot;
    if (sscanf(name, "sb-%u", &slot) != 1)
        return;
    snprintf(p, sizeof p, "%s/%u", r->e->sb_dir, slot);
    if (access(p, F_OK) == 0)
        return; /* owned: its state dir is handled (or live) */
    sbx_cgroup_purge(r->e, name);
    r->count++;
}

int
sb_engine_reap_orphans(sb_engine_t *e)
{
    sbx_reap_t r = {e, 0};
    DIR *d = opendir(e->sb_dir);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        char *end;
        unsigned long slot = strtoul(de->d_name, &end, 10);
        if (de->d_name[0] == '.' || *end)
            continue;
        char p[400], b[128], name[32];
        snprintf(p, sizeof p, "%s/%lu/owner", e->sb_dir, slot);
        FILE *f = fopen(p, "re");
        int pid = 0;
        unsigned long long start = 0;
        if (f) {
            if (fgets(b, sizeof b, f))
                sscanf(b, "%d %llu", &pid, &start);
            fclose(f);
        } else {
            /* A slot being created by a live engine has its dir before its owner file. */
            struct stat st;
            snprintf(p, sizeof p, "%s/%lu", e->sb_dir, slot);
            if (stat(p, &st) == 0 && time(NULL) - st.st_mtime < 10)
                continue;
        }
        if (pid > 0 && kill(pid, 0) == 0 && sbx_proc_start(pid) == start)
            continue; /* its engine is alive */
        snprintf(p, sizeof p, "%s/%lu/init", e->sb_dir, slot);
        if ((f = fopen(p, "re"))) {
            int ipid = 0;
            unsigned long long istart = 0;
            if (fgets(b, sizeof b, f) && sscanf(b, "%d %llu", &ipid, &istart) == 2 && ipid > 0 &&
                sbx_proc_start(ipid) == istart)
                kill(ipid, SIGKILL);
            fclose(f);
        }
        snprintf(name, sizeof name, "sb-%lu", slot);
        sbx_cgroup_purge(e, name);
        snprintf(p, sizeof p, "%s/%lu/owner", e->sb_dir, slot);
        unlink(p);
        snprintf(p, sizeof p, "%s/%lu/init", e->sb_dir, slot);
        unlink(p);
        snprintf(p, sizeof p, "%s/%lu", e->sb_dir, slot);
        if (rmdir(p) == 0)
            r.count++;
    }
    if (d)
        closedir(d);
    sb_cgroup_list(&e->cg, "sb-", sbx_reap_cg, &r);
    return r.count;
}

/* ---- frames out ------------------------------------------------------------------------ */

typedef struct {
    uv_write_t req;
    size_t len;
    uint8_t data[];
} sbx_write_t;

static void
sbx_write_done(uv_write_t *req, int status)
{
    (void)status; /* a failed write means the socket is gone; EOF handling follows */
    free(req->data);
}

static int
sbx_send(sb_sandbox_t *sb, const sb_buf_t *b)
{
    if (sb->state == SBX_DYING || sb->ctl_eof)
        return SB_ECLOSED;
    sbx_write_t *w = malloc(sizeof *w + b->len);
    if (!w)
        return SB_ENOMEM;
    memcpy(w->data, b->data, b->len);
    w->len = b->len;
    w->req.data = w;
    uv_buf_t ub = uv_buf_init((char *)w->data, (unsigned)b->len);
    int rc = uv_write(&w->req, (uv_stream_t *)&sb->ctl, &ub, 1, sbx_write_done);
    if (rc < 0) {
        free(w);
        return rc;
    }
    return 0;
}

int
sb_sandbox_send_raw(sb_sandbox_t *sb, const void *p, size_t n)
{
    sb_buf_t b = {(uint8_t *)p, n, n, 0};
    return sbx_send(sb, &b);
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

static void sbx_check_dead(sb_sandbox_t *sb);

static void
sbx_run_finish(sb_sandbox_run_t *r, int code, int sig, uint64_t cpu_us)
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
    size_t at = sb_frame_begin(&b);
    sb_mpw_map(&b, 3);
    sb_mpw_kuint(&b, "t", SB_IF_SIGNAL);
    sb_mpw_kuint(&b, "id", r->id);
    sb_mpw_kint(&b, "sig", SIGKILL);
    sb_frame_end(&b, at);
    if (sbx_send(r->sb, &b) < 0)
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

static sb_sandbox_run_t *
sbx_run_find(sb_sandbox_t *sb, uint64_t id)
{
    for (sb_sandbox_run_t *r = sb->runs; r; r = r->next)
        if (r->id == id)
            return r;
    return NULL;
}

static void
sbx_run_output(sb_sandbox_run_t *r, int fd, sb_str_t data)
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

static const char *const sbx_default_env[] = {
    "PATH=/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin", "HOME=/home/user",
    "USER=user", "LOGNAME=user", "LANG=C.UTF-8", "SHELL=/bin/bash", NULL};
static const char *const sbx_default_env_pty[] = {
    "PATH=/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin", "HOME=/home/user",
    "USER=user", "LOGNAME=user", "LANG=C.UTF-8", "SHELL=/bin/bash", "TERM=xterm-256color", NULL};

int
sb_sandbox_exec(sb_sandbox_t *sb, const sb_exec_opts_t *o, sb_output_cb on_output,
                sb_done_cb on_done, void *ud, sb_sandbox_run_t **out)
{
    if (sb->state != SBX_READY || sb->killed)
        return SB_ECLOSED;
    if (!o->argv || !o->argv[0] || !on_done)
        return SB_EINVAL;
    const char *const *env = o->env ? o->env : o->pty ? sbx_default_env_pty : sbx_default_env;
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
    sb_buf_t b;
    sb_buf_init(&b, SB_FRAME_MAX + 4);
    uint64_t cpu_s = o->cpu_ms ? (o->cpu_ms + 999) / 1000 + 1 : 0;
    size_t at = sb_frame_begin(&b);
    sb_mpw_map(&b, 11 + (o->cwd ? 1 : 0));
    sb_mpw_kuint(&b, "t", SB_IF_EXEC);
    sb_mpw_kuint(&b, "id", ++sb->next_id);
    sb_mpw_cstr(&b, "argv");
    sb_mpw_array(&b, argc);
    for (uint32_t i = 0; i < argc; i++)
        sb_mpw_cstr(&b, o->argv[i]);
    sb_mpw_cstr(&b, "env");
    sb_mpw_array(&b, envc);
    for (uint32_t i = 0; i < envc; i++)
        sb_mpw_cstr(&b, env[i]);
    if (o->cwd)
        sb_mpw_kstr(&b, "cwd", o->cwd, strlen(o->cwd));
    sb_mpw_kbool(&b, "pty", o->pty);
    sb_mpw_kint(&b, "rows", o->rows ? o->rows : 24);
    sb_mpw_kint(&b, "cols", o->cols ? o->cols : 80);
    sb_mpw_kuint(&b, "nofile", o->nofile ? o->nofile : 1024);
    sb_mpw_kuint(&b, "nproc", o->nproc ? o->nproc : sb->lim.pids);
    sb_mpw_kuint(&b, "fsize", o->fsize ? o->fsize : (uint64_t)sb->lim.disk_mb << 20);
    sb_mpw_kuint(&b, "cpu", cpu_s);
    sb_frame_end(&b, at);
    int rc2 = b.len > SB_FRAME_MAX ? SB_ETOOBIG : 0;
    if (rc2 == 0 && o->stdin_len) {
        /* stdin rides behind EXEC in the same write, in frames of at most 1 MiB */
        for (size_t off = 0; off < o->stdin_len && rc2 == 0;) {
            size_t n = o->stdin_len - off < (1u << 20) ? o->stdin_len - off : (1u << 20);
            at = sb_frame_begin(&b);
            sb_mpw_map(&b, 3);
            sb_mpw_kuint(&b, "t", SB_IF_STDIN);
            sb_mpw_kuint(&b, "id", sb->next_id);
            rc2 = sb_mpw_kbin(&b, "data", (const uint8_t *)o->stdin_data + off, n);
            sb_frame_end(&b, at);
            off += n;
        }
    }
    if (rc2 == 0 && !o->keep_stdin) {
        at = sb_frame_begin(&b);
        sb_mpw_map(&b, 2);
        sb_mpw_kuint(&b, "t", SB_IF_STDIN_CLOSE);
        sb_mpw_kuint(&b, "id", sb->next_id);
        sb_frame_end(&b, at);
    }
    if (rc2 == 0) {
        sb_cgroup_reset_peak(&sb->e->cg, sb->cg_name);
        rc2 = sbx_send(sb, &b);
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

static int
sbx_run_simple(sb_sandbox_run_t *r, uint32_t t, const char *k1, int64_t v1, const char *k2, int64_t v2,
               const void *data, size_t len)
{
    if (r->ended)
        return SB_ECLOSED;
    sb_buf_t b;
    sb_buf_init(&b, SB_FRAME_MAX + 4);
    size_t at = sb_frame_begin(&b);
    sb_mpw_map(&b, 2 + (k1 ? 1 : 0) + (k2 ? 1 : 0) + (data ? 1 : 0));
    sb_mpw_kuint(&b, "t", t);
    sb_mpw_kuint(&b, "id", r->id);
    if (k1)
        sb_mpw_kint(&b, k1, v1);
    if (k2)
        sb_mpw_kint(&b, k2, v2);
    int rc = data ? sb_mpw_kbin(&b, "data", data, len) : 0;
    sb_frame_end(&b, at);
    if (rc == 0)
        rc = sbx_send(r->sb, &b);
    sb_buf_fini(&b);
    return rc;
}

int
sb_run_pid(const sb_sandbox_run_t *r)
{
    return r->pid;
}

int
sb_run_write_stdin(sb_sandbox_run_t *r, const void *p, size_t n)
{
    if (n > (1u << 20))
        return SB_ETOOBIG;
    return sbx_run_simple(r, SB_IF_STDIN, NULL, 0, NULL, 0, p ? p : "", n);
}
int
sb_run_close_stdin(sb_sandbox_run_t *r)
{
    return sbx_run_simple(r, SB_IF_STDIN_CLOSE, NULL, 0, NULL, 0, NULL, 0);
}
int
sb_run_signal(sb_sandbox_run_t *r, int sig)
{
    if (sig <= 0 || sig > 64)
        return SB_EINVAL;
    return sbx_run_simple(r, SB_IF_SIGNAL, "sig", sig, NULL, 0, NULL, 0);
}
int
sb_run_resize(sb_sandbox_run_t *r, uint16_t rows, uint16_t cols)
{
    return sbx_run_simple(r, SB_IF_RESIZE, "rows", rows, "cols", cols, NULL, 0);
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

/* ---- file operations ------------------------------------------------------------------- */

static int
sbx_fop(sb_sandbox_t *sb, uint32_t t, const char *path, const char *path2, const void *data,
        size_t len, int64_t num, bool flag, sb_file_cb cb, void *ud)
{
    if (sb->state != SBX_READY || sb->killed)
        return SB_ECLOSED;
    if ((path && strlen(path) > SB_FRAME_PATH_MAX) || (path2 && strlen(path2) > SB_FRAME_PATH_MAX))
        return SB_ETOOBIG;
    if (len > SB_FRAME_DATA_MAX)
        return SB_ETOOBIG;
    if (t != SB_IF_PS && (!path || !*path))
        return SB_EINVAL;
    sb_buf_t b;
    sb_buf_init(&b, SB_FRAME_MAX + 4);
    uint64_t id = ++sb->next_id;
    size_t at = sb_frame_begin(&b);
    uint32_t n = 2 + (path ? 1 : 0) + (path2 ? 1 : 0) + (data ? 1 : 0) + 2;
    sb_mpw_map(&b, n);
    sb_mpw_kuint(&b, "t", t);
    sb_mpw_kuint(&b, "id", id);
    if (path)
        sb_mpw_kstr(&b, "path", path, strlen(path));
    if (path2)
        sb_mpw_kstr(&b, "path2", path2, strlen(path2));
    if (data)
        sb_mpw_kbin(&b, "data", data, len);
    sb_mpw_kint(&b, t == SB_IF_FLIST ? "depth" : t == SB_IF_FREAD ? "max" : "mode", num);
    sb_mpw_kbool(&b, "append", flag);
    sb_frame_end(&b, at);
    int rc = sbx_send(sb, &b);
    sb_buf_fini(&b);
    if (rc < 0)
        return rc;
    sbx_fop_t *f = sb_xcalloc(1, sizeof *f);
    f->id = id;
    f->kind = (int)t;
    f->cb = cb;
    f->ud = ud;
    f->next = sb->fops;
    sb->fops = f;
    return 0;
}

int
sb_sandbox_file_read(sb_sandbox_t *sb, const char *path, uint64_t max, sb_file_cb cb, void *ud)
{
    return sbx_fop(sb, SB_IF_FREAD, path, NULL, NULL, 0, (int64_t)max, false, cb, ud);
}
int
sb_sandbox_file_write(sb_sandbox_t *sb, const char *path, const void *data, size_t len, int mode,
                      bool append, sb_file_cb cb, void *ud)
{
    return sbx_fop(sb, SB_IF_FWRITE, path, NULL, data ? data : "", len, mode, append, cb, ud);
}
int
sb_sandbox_file_list(sb_sandbox_t *sb, const char *path, int depth, sb_file_cb cb, void *ud)
{
    return sbx_fop(sb, SB_IF_FLIST, path, NULL, NULL, 0, depth, false, cb, ud);
}
int
sb_sandbox_file_stat(sb_sandbox_t *sb, const char *path, sb_file_cb cb, void *ud)
{
    return sbx_fop(sb, SB_IF_FSTAT, path, NULL, NULL, 0, 0, false, cb, ud);
}
int
sb_sandbox_file_mkdir(sb_sandbox_t *sb, const char *path, sb_file_cb cb, void *ud)
{
    return sbx_fop(sb, SB_IF_MKDIR, path, NULL, NULL, 0, 0755, false, cb, ud);
}
int
sb_sandbox_file_remove(sb_sandbox_t *sb, const char *path, sb_file_cb cb, void *ud)
{
    return sbx_fop(sb, SB_IF_REMOVE, path, NULL, NULL, 0, 0, false, cb, ud);
}
int
sb_sandbox_file_rename(sb_sandbox_t *sb, const char *from, const char *to, sb_file_cb cb, void *ud)
{
    if (!to || !*to)
        return SB_EINVAL;
    return sbx_fop(sb, SB_IF_RENAME, from, to, NULL, 0, 0, false, cb, ud);
}
int
sb_sandbox_ps(sb_sandbox_t *sb, sb_file_cb cb, void *ud)
{
    return sbx_fop(sb, SB_IF_PS, NULL, NULL, NULL, 0, 0, false, cb, ud);
}

/* Decode the "ents" array of a list or ps reply. */
static sb_file_entry_t *
sbx_entries(const sb_frame_t *f, size_t *n)
{
    sb_mp_reader_t r;
    uint32_t cnt;
    *n = 0;
    if (!f->entc)
        return NULL;
    sb_mp_reader_init(&r, f->ents.ptr, f->ents.len);
    if (sb_mp_read_array(&r, &cnt) != 0)
        return NULL;
    sb_file_entry_t *v = calloc(cnt, sizeof *v);
    if (!v)
        return NULL;
    for (uint32_t i = 0; i < cnt; i++) {
        sb_str_t raw;
        sb_frame_t e;
        if (sb_mp_read_raw(&r, &raw) != 0 || sb_frame_decode_entry((const uint8_t *)raw.ptr, raw.len, &e) != 0)
            break;
        v[i].path = sb_str_dup(e.path.len ? e.path : e.cmd);
        v[i].type = (int)e.type;
        v[i].size = e.size;
        v[i].mode = (int)e.mode;
        v[i].mtime = e.mtime;
        v[i].pid = (int)e.pid;
        v[i].ppid = (int)e.ppid;
        v[i].state = e.state.len ? e.state.ptr[0] : 0;
        (*n)++;
    }
    return v;
}

static void
sbx_fop_done(sb_sandbox_t *sb, const sb_frame_t *f)
{
    sbx_fop_t *op = NULL;
    for (sbx_fop_t **pp = &sb->fops; *pp; pp = &(*pp)->next)
        if ((*pp)->id == f->id) {
            op = *pp;
            *pp = op->next;
            break;
        }
    if (!op)
        return;
    sb_file_result_t res;
    memset(&res, 0, sizeof res);
    res.err = (int)f->err;
    res.data = (const uint8_t *)f->data.ptr;
    res.len = f->data.len;
    res.size = f->size;
    res.type = (int)f->type;
    res.mode = (int)f->mode;
    res.mtime = f->mtime;
    sb_file_entry_t *ents = NULL;
    if (!res.err && (op->kind == SB_IF_FLIST || op->kind == SB_IF_PS)) {
        ents = sbx_entries(f, &res.nents);
        res.ents = ents;
    }
    if (op->cb)
        op->cb(&res, op->ud);
    for (size_t i = 0; i < res.nents; i++)
        free(ents[i].path);
    free(ents);
    free(op);
}

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
static void
sbx_fail_pending(sb_sandbox_t *sb)
{
    while (sb->runs)
        sbx_run_finish(sb->runs, -2, 0, 0);
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

static void
sbx_check_dead(sb_sandbox_t *sb)
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

static void
sbx_on_eof(sb_sandbox_t *sb)
{
    if (sb->ctl_eof)
        return;
    sb->ctl_eof = true;
    uv_read_stop((uv_stream_t *)&sb->ctl);
    if (sb->state == SBX_READY && !sb->killed && !sb->destroying)
        sb_log_warn("SB-SBX-LOST", "sandbox %s: soulbox-init ended unexpectedly", sb->cg_name);
    /* Make sure nothing outlives init (it is dead or dying; pid ns teardown follows, and the
     * cgroup is swept when init has been reaped: sbx_retry). */
    if (!sb->reaped)
        kill(sb->pid, SIGKILL);
    sbx_fail_pending(sb);
    sbx_check_dead(sb);
}

static void
sbx_frame(sb_sandbox_t *sb, const uint8_t *body, size_t len)
{
    sb_frame_t f;
    sb_sandbox_run_t *r;
    if (sb_frame_decode(body, len, &f) != 0) {
        sb_log_error("SB-SBX-BAD-FRAME", "sandbox %s sent a malformed frame", sb->cg_name);
        sb_sandbox_kill(sb);
        return;
    }
    switch (f.t) {
    case SB_IF_HELLO:
        if (sb->state == SBX_CREATING) {
            sb->state = SBX_READY;
            sb_sandbox_create_cb cb = sb->create_cb;
            sb->create_cb = NULL;
            cb(sb, 0, sb->create_ud);
        }
        break;
    case SB_IF_STARTED:
        if ((r = sbx_run_find(sb, f.id)) && !r->pid && f.pid > 0) {
            r->pid = (int)f.pid;
            if (r->on_started)
                r->on_started(r, r->pid, r->ud);
        }
        break;
    case SB_IF_OUTPUT:
        if ((r = sbx_run_find(sb, f.id)))
            sbx_run_output(r, (int)f.fd, f.data);
        break;
    case SB_IF_EXIT:
        if ((r = sbx_run_find(sb, f.id)))
            sbx_run_finish(r, (int)f.code, (int)f.sig, f.cpu_us);
        break;
    case SB_IF_REPLY:
        if ((r = sbx_run_find(sb, f.id)))
            r->error = (int)f.err;
        else
            sbx_fop_done(sb, &f);
        break;
    case SB_IF_ERROR:
        if (sb->state == SBX_CREATING) {
            sb->create_err = f.err ? (int)f.err : SB_EIO;
            sb_log_error("SB-SBX-INIT-FAIL", "sandbox %s setup failed: %.*s", sb->cg_name,
                         (int)f.msg.len, f.msg.ptr);
            sb_sandbox_kill(sb);
        } else {
            sb_log_warn("SB-SBX-INIT-REFUSED", "sandbox %s refused a frame: %.*s", sb->cg_name,
                        (int)f.msg.len, f.msg.ptr);
        }
        break;
    default: break;
    }
}

static void
sbx_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    sb_sandbox_t *sb = h->data;
    (void)hint;
    if (sb_buf_reserve(&sb->in, 65536) != 0) {
        *buf = uv_buf_init(NULL, 0);
        return;
    }
    *buf = uv_buf_init((char *)sb->in.data + sb->in.len, 65536);
}

static void
sbx_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    sb_sandbox_t *sb = s->data;
    (void)buf;
    if (n < 0) {
        sbx_on_eof(sb);
        return;
    }
    sb->in.len += (size_t)n;
    for (;;) {
        const uint8_t *body;
        size_t len;
        int rc = sb_frame_next(&sb->in, &body, &len);
        if (rc < 0) {
            sb_log_error("SB-SBX-BAD-FRAME", "sandbox %s sent an oversized frame", sb->cg_name);
            sb_buf_reset(&sb->in);
            sb_sandbox_kill(sb);
            return;
        }
        if (rc == 0)
            break;
        sbx_frame(sb, body, len);
        if (sb->ctl_eof)
            return;
        sb_buf_consume(&sb->in, len + 4);
    }
}

static void
sbx_pid_event(uv_poll_t *p, int status, int events)
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
    sbx_check_dead(sb);
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
    sbx_check_dead(sb);
}

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

static int
sbx_write_file(const char *path, const char *s)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC | O_TRUNC | O_CREAT, 0644);
    if (fd < 0)
        return -errno;
    ssize_t n = write(fd, s, strlen(s));
    int e = errno;
    close(fd);
    return n == (ssize_t)strlen(s) ? 0 : (n < 0 ? -e : -EIO);
}

/* ---- preparation ------------------------------------------------------------------------
 *
 * What a sandbox needs from the host before clone() -- a uid slot (its state dir and owner
 * file), a cgroup (five directories and six limit files on v1) and, above all, a network
 * namespace (≈0.5–1 ms with long tails, DESIGN.md §2) -- is made ahead of demand by one
 * preparation thread, SBX_PREP of each, and replaced while the sandbox that took them starts.
 * sb_sandbox_create falls back to making them itself when none is ready.  The thread starts
 * with the first sandbox (a one-shot `soulbox run` never waits for it) and is joined, its
 * leftovers released, by sb_engine_free.
 *
 * A prepared network namespace is owned by the host's user namespace, not the sandbox's:
 * its lo is brought up here, and root inside the sandbox has no CAP_NET_ADMIN over it at all
 * (stricter than a namespace created by clone(), where it could reconfigure lo).  Each one
 * serves exactly one sandbox; none is reused. */

/* sbx_slot_take reserves a free uid slot: its state dir (mkdir is the lock, atomic across
 * processes), owner file and cgroup, created with limits cl.  Any thread. */
static int
sbx_slot_take(sb_engine_t *e, const sb_cgroup_limits_t *cl, uint32_t *out)
{
    char dir[320], p[400], buf[64], cg[32];
    uv_mutex_lock(&e->prep_mu);
    uint32_t start = e->next_slot, slot = 0, s;
    uv_mutex_unlock(&e->prep_mu);
    for (s = 0; s < e->slots; s++) {
        slot = (start + s) % e->slots;
        snprintf(dir, sizeof dir, "%s/%u", e->sb_dir, slot);
        if (mkdir(dir, 0700) == 0)
            break;
        if (errno != EEXIST)
            return -errno;
    }
    if (s == e->slots)
        return SB_ELIMIT;
    uv_mutex_lock(&e->prep_mu);
    e->next_slot = slot + 1;
    uv_mutex_unlock(&e->prep_mu);
    snprintf(p, sizeof p, "%s/owner", dir);
    snprintf(buf, sizeof buf, "%d %llu\n", (int)getpid(), e->self_start);
    int rc = sbx_write_file(p, buf);
    if (rc == 0) {
        /* a leftover of a crashed owner of this slot is purged first */
        snprintf(cg, sizeof cg, "sb-%u", slot);
        rc = sb_cgroup_create(&e->cg, cg, cl);
        if (rc == SB_EEXIST) {
            sbx_cgroup_purge(e, cg);
            rc = sb_cgroup_create(&e->cg, cg, cl);
        }
    }
    if (rc < 0) {
        unlink(p);
        rmdir(dir);
        return rc;
    }
    *out = slot;
    return 0;
}

/* sbx_slot_release undoes sbx_slot_take for a slot no process ever ran in. */
static void
sbx_slot_release(sb_engine_t *e, uint32_t slot)
{
    char dir[320], p[400], cg[32];
    snprintf(cg, sizeof cg, "sb-%u", slot);
    sbx_cgroup_purge(e, cg);
    snprintf(dir, sizeof dir, "%s/%u", e->sb_dir, slot);
    snprintf(p, sizeof p, "%s/owner", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/init", dir);
    unlink(p);
    rmdir(dir);
}

/* sbx_netns_new makes a new network namespace with its lo up and returns an fd to it; the
 * calling thread enters it to do so and returns to `home` (its own namespace) after, so it
 * never keeps a sandbox's namespace alive.  Preparation thread only.  *stuck is set when the
 * thread could not return home (it then must not make more). */
static int
sbx_netns_new(int home, bool *stuck)
{
    struct ifreq ifr;
    if (unshare(CLONE_NEWNET) < 0)
        return -errno;
    int fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    int s = fd < 0 ? -1 : socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int rc = s < 0 ? -1 : 0;
    memset(&ifr, 0, sizeof ifr);
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "lo");
    if (rc == 0 && (rc = ioctl(s, SIOCGIFFLAGS, &ifr)) == 0) {
        ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
        rc = ioctl(s, SIOCSIFFLAGS, &ifr);
    }
    int err = errno;
    if (s >= 0)
        close(s);
    if (setns(home, CLONE_NEWNET) < 0) {
        *stuck = true;
        err = errno;
        rc = -1;
    }
    if (rc < 0) {
        if (fd >= 0)
            close(fd);
        return -err;
    }
    return fd;
}

static void
sbx_prep_main(void *arg)
{
    sb_engine_t *e = arg;
    const sb_cgroup_limits_t def = {SBX_DEF_MEMORY, SBX_DEF_PIDS, SBX_DEF_CPU};
    int home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    bool stuck = false;
    uv_mutex_lock(&e->prep_mu);
    if (home < 0) {
        e->netns_off = true;
        e->netns_err = -errno;
    }
    while (!e->prep_stop) {
        bool want_ns = !e->netns_off && e->n_netns < SBX_PREP;
        bool want_slot = !e->prep_slot_fail && e->n_ready < SBX_PREP;
        if (want_slot && (!want_ns || e->n_ready <= e->n_netns)) {
            uint32_t slot;
            uv_mutex_unlock(&e->prep_mu);
            int rc = sbx_slot_take(e, &def, &slot);
            uv_mutex_lock(&e->prep_mu);
            if (rc == 0)
                e->ready[e->n_ready++] = slot;
            else
                e->prep_slot_fail = true; /* retried after the next sandbox is created */
        } else if (want_ns) {
            uv_mutex_unlock(&e->prep_mu);
            int fd = sbx_netns_new(home, &stuck);
            uv_mutex_lock(&e->prep_mu);
            if (fd >= 0)
                e->netns[e->n_netns++] = fd;
            if (fd < 0 || stuck) {
                e->netns_off = true; /* e.g. not privileged: never retried */
                e->netns_err = fd < 0 ? fd : SB_EIO;
            }
        } else {
            uv_cond_wait(&e->prep_cv, &e->prep_mu);
        }
    }
    uv_mutex_unlock(&e->prep_mu);
    if (home >= 0)
        close(home);
}

/* Start the preparation thread if needed and wake it.  Loop thread. */
static void
sbx_prep_kick(sb_engine_t *e)
{
    if (!e->prep_started) {
        if (uv_thread_create(&e->prep_thread, sbx_prep_main, e) != 0)
            return; /* creation then simply makes everything itself */
        e->prep_started = true;
        return;
    }
    uv_mutex_lock(&e->prep_mu);
    uv_cond_signal(&e->prep_cv);
    uv_mutex_unlock(&e->prep_mu);
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
    if (!prepared && (rc = sbx_slot_take(e, &cl, &slot)) < 0) {
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
    if ((rc = sbx_write_file(p, map)) < 0)
        goto fail_child;
    snprintf(p, sizeof p, "/proc/%d/gid_map", (int)pid);
    if ((rc = sbx_write_file(p, map)) < 0)
        goto fail_child;
    if (ca.ncg == 0 && (rc = sb_cgroup_attach(&e->cg, sb->cg_name, pid)) < 0) {
        sb_log_error("SB-SBX-CGROUP-FAIL", "cannot attach to %s: %s", sb->cg_name, sb_strerror(rc));
        goto fail_child;
    }
    snprintf(buf, sizeof buf, "%d %llu\n", (int)pid, sbx_proc_start(pid));
    {
        char ip[400];
        snprintf(ip, sizeof ip, "%s/init", sb->state_path);
        sbx_write_file(ip, buf);
    }
    if (write(sv[0], "G", 1) != 1) {
        rc = -errno;
        goto fail_child;
    }
    /* While soulbox-init sets up, the preparation thread replaces what we took. */
    sbx_prep_kick(e);
    /* 5. watch the socket and init's pidfd */
    sb->ctl_fd = sv[0];
    uv_pipe_init(e->loop, &sb->ctl, 0);
    uv_poll_init(e->loop, &sb->pid_poll, pidfd);
    uv_timer_init(e->loop, &sb->retry);
    sb->ctl.data = sb->pid_poll.data = sb->retry.data = sb;
    sb->handles = 3;
    if ((rc = uv_pipe_open(&sb->ctl, sv[0])) < 0 ||
        (rc = uv_read_start((uv_stream_t *)&sb->ctl, sbx_alloc, sbx_read)) < 0) {
        /* Cannot happen for a fresh socketpair; treat like an early death. */
        sb->create_cb = NULL;
        sb->destroying = true;
        sb_sandbox_kill(sb);
        sbx_on_eof(sb);
        uv_poll_start(&sb->pid_poll, UV_READABLE, sbx_pid_event);
        e->live++;
        return rc;
    }
    uv_poll_start(&sb->pid_poll, UV_READABLE, sbx_pid_event);
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
    sbx_slot_release(e, sb->slot);
fail_free:
    if (netfd >= 0)
        close(netfd);
    sb_buf_fini(&sb->in);
    free(sb);
    return rc;
}
