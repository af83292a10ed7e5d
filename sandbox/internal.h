/*
 * internal.h: what the files of the sandbox engine share -- the engine, sandbox and run
 * structs and the functions one file calls in another (prefixed sb__sbx_).  Nothing outside
 * sandbox/ includes this; the public contract is sandbox.h.
 *
 * Files: engine.c (the engine, orphan reaping, the preparation thread), spawn.c (creation),
 * ctl.c (the control socket: frames out and in), run.c (processes), files.c (file
 * operations), sandbox.c (kill, destroy, teardown).  Everything runs on the engine's loop
 * thread except the preparation thread (engine.c), which touches only the prep_* fields
 * under prep_mu.
 */
#ifndef SB_SANDBOX_INTERNAL_H
#define SB_SANDBOX_INTERNAL_H

#include "sandbox.h"

#include "protocols/frame.h"

#include <limits.h>
#include <sys/wait.h>

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

/* engine.c: orphans, slots, prepared network namespaces */
unsigned long long sb__sbx_proc_start(pid_t pid);
int sb__sbx_slot_take(sb_engine_t *e, const sb_cgroup_limits_t *cl, uint32_t *out);
void sb__sbx_slot_release(sb_engine_t *e, uint32_t slot);
void sb__sbx_prep_kick(sb_engine_t *e);
int sb__sbx_netns_new(int home, bool *stuck);
void sb__sbx_cgroup_purge(sb_engine_t *e, const char *name);
/* spawn.c */
int sb__sbx_write_file(const char *path, const char *s);
/* ctl.c: the control socket */
void sb__sbx_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf);
void sb__sbx_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);
int sb__sbx_send(sb_sandbox_t *sb, const sb_buf_t *b);
/* sandbox.c: teardown */
void sb__sbx_on_eof(sb_sandbox_t *sb);
void sb__sbx_pid_event(uv_poll_t *p, int status, int events);
void sb__sbx_fail_pending(sb_sandbox_t *sb);
void sb__sbx_check_dead(sb_sandbox_t *sb);
/* run.c: what frames from init do to runs */
sb_sandbox_run_t *sb__sbx_run_find(sb_sandbox_t *sb, uint64_t id);
void sb__sbx_run_output(sb_sandbox_run_t *r, int fd, sb_str_t data);
void sb__sbx_run_finish(sb_sandbox_run_t *r, int code, int sig, uint64_t cpu_us);
/* files.c: a REPLY that answers a file operation */
void sb__sbx_fop_done(sb_sandbox_t *sb, const sb_if_reply_t *f);

#endif
