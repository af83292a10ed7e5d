/*
 * sandbox.h: the sandbox engine -- create, run, observe, limit, kill and destroy sandboxes
 * on one libuv loop (the executor actor's), plus file operations inside them.
 *
 * A sandbox is a process tree under soulbox-init (PID 1 of fresh user, pid, mount, ipc, uts,
 * net and cgroup namespaces), a cgroup, a uid slot (two unprivileged host uids: one for
 * uid 1000 inside, one for root inside) and a state directory
 * <state_dir>/sandboxes/<slot> that records its owner, so a later engine can reap it if this
 * process dies (sb_engine_new does that).
 *
 * Threading: every function must be called on the engine's loop thread; none blocks on
 * sandboxed code (creation costs one clone() and a few small file writes on that thread).
 * From its first sandbox on, the engine also runs one preparation thread of its own, which
 * keeps network namespaces and uid slots with their cgroups ready ahead of demand;
 * sb_engine_free joins it and releases what it prepared.  Callbacks run on the loop.
 * Errors: negative SB_E* or negated errno; a function that returns an error never calls its
 * callback.
 */
#ifndef SB_SANDBOX_H
#define SB_SANDBOX_H

#include "cgroup.h"
#include "protocols/frame.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct sb_engine sb_engine_t;
typedef struct sb_sandbox sb_sandbox_t;
typedef struct sb_run sb_sandbox_run_t;

typedef struct {
    const char *init_path;     /* NULL: next to /proc/self/exe, then $SOULBOX_INIT, then the
                                  build tree, then the install path */
    const char *state_dir;     /* NULL: /run/soulbox */
    const char *cgroup_root;   /* NULL: /sys/fs/cgroup */
    const char *cgroup_parent; /* NULL: "soulbox" */
    uint32_t uid_base;         /* 0: 200000 */
    uint32_t uid_slots;        /* 0: 4096 (each slot uses 2 host uids) */
} sb_engine_config_t;

/*
 * sb_engine_new prepares the engine on loop: detects cgroups, makes the state directories,
 * finds soulbox-init, and reaps orphans of dead engines (their processes, cgroups and state
 * dirs).  *out is owned by the caller; free with sb_engine_free once every sandbox is
 * destroyed.  SB_ENOTFOUND: no soulbox-init; SB_EUNSUPPORTED: no usable cgroups.
 */
int sb_engine_new(uv_loop_t *loop, const sb_engine_config_t *cfg, sb_engine_t **out);
void sb_engine_free(sb_engine_t *e);
/* sb_engine_reap_orphans: what sb_engine_new runs at start; returns how many were reaped. */
int sb_engine_reap_orphans(sb_engine_t *e);
const sb_cgroup_sys_t *sb_engine_cgroups(const sb_engine_t *e);
const char *sb_engine_init_path(const sb_engine_t *e);

typedef struct {
    uint64_t memory_bytes; /* 0: 512 MiB */
    uint32_t pids;         /* 0: 256 */
    uint32_t cpu_pct;      /* 0: 100 (one core) */
    uint32_t disk_mb;      /* size of /home/user and of /tmp; 0: 256 */
    uint32_t shm_mb;       /* 0: 64 */
    uint32_t inodes;       /* per writable tmpfs; 0: 65536 */
} sb_sandbox_limits_t;

/* status 0: sb is ready; otherwise sb is NULL and status says why. */
typedef void (*sb_sandbox_create_cb)(sb_sandbox_t *sb, int status, void *ud);

/*
 * sb_sandbox_create starts a sandbox.  cb runs once, when soulbox-init has finished its setup
 * (or failed).  On success the caller owns the sandbox until sb_sandbox_destroy.
 */
int sb_sandbox_create(sb_engine_t *e, const sb_sandbox_limits_t *lim, sb_sandbox_create_cb cb,
                      void *ud);
uint32_t sb_sandbox_slot(const sb_sandbox_t *sb);
/* Host uid that uid 1000 inside the sandbox maps to. */
uint32_t sb_sandbox_host_uid(const sb_sandbox_t *sb);
pid_t sb_sandbox_init_pid(const sb_sandbox_t *sb);
const char *sb_sandbox_cgroup_name(const sb_sandbox_t *sb);
/* 1 while soulbox-init is alive and the sandbox is not being killed. */
int sb_sandbox_alive(const sb_sandbox_t *sb);
uv_loop_t *sb_sandbox_loop(const sb_sandbox_t *sb);
/* sb_sandbox_stats reads the sandbox's cgroup (CPU time, memory, pids so far). */
int sb_sandbox_stats(const sb_sandbox_t *sb, sb_cgroup_stats_t *st);
/* sb_sandbox_reset_peak restarts the cgroup's peak memory tracking (sb_cgroup_reset_peak). */
void sb_sandbox_reset_peak(sb_sandbox_t *sb);

typedef enum {
    SB_RUN_EXITED = 0,
    SB_RUN_SIGNALED,
    SB_RUN_TIMEOUT,
    SB_RUN_CPU_LIMIT,
    SB_RUN_MEMORY_LIMIT,
    SB_RUN_OUTPUT_LIMIT,
    SB_RUN_KILLED,
    SB_RUN_LOST,
} sb_run_status_t;

/* "exited", "signaled", "timeout", "cpu_limit", "memory_limit", "output_limit", "killed",
 * "lost" */
const char *sb_run_status_name(sb_run_status_t s);

typedef struct {
    const char *const *argv; /* required, argv[0] looked up in PATH of env */
    const char *const *env;  /* NULL: sb_env_default (sb_env_default_pty with pty), env.h */
    const char *cwd;         /* NULL: /home/user */
    const void *stdin_data;  /* written first, then stdin is closed unless keep_stdin */
    size_t stdin_len;
    bool keep_stdin;         /* keep stdin open for sb_run_write_stdin */
    bool pty;                /* run on a terminal (stdout and stderr merged) */
    uint16_t rows, cols;
    uint64_t timeout_ms;     /* wall clock; 0: 30000 */
    uint64_t cpu_ms;         /* CPU time over all the run's threads; 0: none */
    uint64_t memory_bytes;   /* 0: keep the sandbox's */
    uint64_t output_max;     /* bytes kept per stream; 0: 1 MiB; past it: killed */
    uint32_t nofile;         /* RLIMIT_NOFILE; 0: 1024 */
    uint32_t nproc;          /* RLIMIT_NPROC; 0: the sandbox's pids limit */
    uint64_t fsize;          /* RLIMIT_FSIZE bytes; 0: the disk size */
    bool stream_only;        /* output goes to on_output only: nothing is kept and output_max
                                does not apply (long-lived processes: warm kernels) */
    /* Optional: called once when the process has started, with its pid inside the sandbox
     * (not called if it could not start). */
    void (*on_started)(sb_sandbox_run_t *r, int pid, void *ud);
} sb_exec_opts_t;

typedef struct {
    sb_run_status_t status;
    int exit_code;          /* -1 unless exited */
    int signal;             /* 0 unless signaled */
    int error;              /* 0, or why the process could not start (e.g. -ENOENT) */
    const uint8_t *out, *err; /* kept output, valid during the callback */
    size_t out_len, err_len;
    bool out_truncated, err_truncated;
    uint64_t execution_time_ms, cpu_time_ms, memory_peak_bytes;
} sb_run_result_t;

/* Streamed output as it arrives (fd 1 or 2), before truncation applies it is counted. */
typedef void (*sb_output_cb)(sb_sandbox_run_t *r, int fd, const uint8_t *data, size_t len, void *ud);
/* The run's end; r is freed right after the callback returns. */
typedef void (*sb_done_cb)(sb_sandbox_run_t *r, const sb_run_result_t *res, void *ud);

/* sb_sandbox_exec starts a process in sb.  on_output may be NULL.  *out (may be NULL) gets the
 * run handle, valid until on_done returns.  SB_ECLOSED: the sandbox is dead. */
int sb_sandbox_exec(sb_sandbox_t *sb, const sb_exec_opts_t *o, sb_output_cb on_output,
                    sb_done_cb on_done, void *ud, sb_sandbox_run_t **out);
/* sb_run_pid: the process's pid inside the sandbox once started, else 0. */
int sb_run_pid(const sb_sandbox_run_t *r);
/* sb_sandbox_find_run finds the running process with pid (inside the sandbox), or NULL. */
sb_sandbox_run_t *sb_sandbox_find_run(sb_sandbox_t *sb, int pid);
int sb_run_write_stdin(sb_sandbox_run_t *r, const void *p, size_t n);
int sb_run_close_stdin(sb_sandbox_run_t *r);
/* sb_run_signal signals the run's process group. */
int sb_run_signal(sb_sandbox_run_t *r, int sig);
int sb_run_resize(sb_sandbox_run_t *r, uint16_t rows, uint16_t cols);
/* sb_run_kill ends the run with status killed. */
int sb_run_kill(sb_sandbox_run_t *r);

/* sb_sandbox_kill kills every process of the sandbox, init included (the cgroup and the pid
 * namespace both guarantee double-forked daemons die too).  Runs end with status killed;
 * then the sandbox can only be destroyed. */
int sb_sandbox_kill(sb_sandbox_t *sb);

/* sb_sandbox_destroy kills what is left, reaps init, removes the cgroup and the state dir,
 * then calls cb (may be NULL).  sb is freed before cb runs.  Pending runs and file
 * operations complete first (killed / SB_ECLOSED). */
void sb_sandbox_destroy(sb_sandbox_t *sb, void (*cb)(void *ud), void *ud);

/* File operations, performed by soulbox-init inside the sandbox as uid 1000.  Relative paths
 * are relative to /home/user.  Results are valid during the callback. */
typedef enum {
    SB_FILE_NONE = 0, /* ps entries */
    SB_FILE_REGULAR = SB_IF_FILE_REGULAR,
    SB_FILE_DIR = SB_IF_FILE_DIR,
    SB_FILE_SYMLINK = SB_IF_FILE_SYMLINK,
    SB_FILE_OTHER = SB_IF_FILE_OTHER,
} sb_file_type_t;

typedef struct {
    char *path; /* for ps: the command line */
    int type;   /* sb_file_type_t */
    uint64_t size;
    int mode;
    uint64_t mtime;
    int pid, ppid; /* ps only */
    char state;    /* ps only */
} sb_file_entry_t;

typedef struct {
    int err; /* 0 or negated errno / SB_E* */
    const uint8_t *data;
    size_t len;
    uint64_t size;
    int type, mode; /* type: sb_file_type_t */
    uint64_t mtime;
    const sb_file_entry_t *ents;
    size_t nents;
} sb_file_result_t;

typedef void (*sb_file_cb)(const sb_file_result_t *r, void *ud);

int sb_sandbox_file_read(sb_sandbox_t *sb, const char *path, uint64_t max, sb_file_cb cb, void *ud);
int sb_sandbox_file_write(sb_sandbox_t *sb, const char *path, const void *data, size_t len,
                          int mode, bool append, sb_file_cb cb, void *ud);
int sb_sandbox_file_list(sb_sandbox_t *sb, const char *path, int depth, sb_file_cb cb, void *ud);
int sb_sandbox_file_stat(sb_sandbox_t *sb, const char *path, sb_file_cb cb, void *ud);
int sb_sandbox_file_mkdir(sb_sandbox_t *sb, const char *path, sb_file_cb cb, void *ud);
int sb_sandbox_file_remove(sb_sandbox_t *sb, const char *path, sb_file_cb cb, void *ud);
int sb_sandbox_file_rename(sb_sandbox_t *sb, const char *from, const char *to, sb_file_cb cb,
                           void *ud);
int sb_sandbox_ps(sb_sandbox_t *sb, sb_file_cb cb, void *ud);
/* sb_sandbox_send_raw sends bytes as-is on the control socket (tests: malformed frames). */
int sb_sandbox_send_raw(sb_sandbox_t *sb, const void *p, size_t n);

#endif
