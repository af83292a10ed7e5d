/*
 * exec.h: internals shared by the files of the executor actor.  Each file owns one part of
 * the state and is the only one to change it:
 *
 *   executor.c     the actor's life, message dispatch, the sandbox table (SBX_CREATE,
 *                  SBX_DESTROY), the 1 s sampler (MON_SANDBOX, NODE_CAPACITY)
 *   exec_out.c     reply streams: coalesced chunks then one final reply, flushed by the one
 *                  uv_check of the actor (every streamed reply of RUN, CMD and KERNEL_EXEC)
 *   exec_run.c     RUN (over the sandbox engine's job pipeline, sandbox/job.h), CMD, and
 *                  PROC_INPUT / PROC_SIGNAL / PROC_RESIZE
 *   exec_kernel.c  the warm kernels of each sandbox (over sandbox/kernel.h) and
 *                  KERNEL_EXEC / KERNEL_INTERRUPT / KERNEL_CONTEXT
 *   exec_files.c   FILE_OP and PROC_LIST
 *   exec_util.c    RAW field readers (limits, files)
 *
 * Everything here runs on the executor actor's loop thread; nothing is shared with others.
 *
 * Ownership: the actor state owns the sandbox table; a table entry owns its engine sandbox
 * until the engine's destroy callback, after which the entry is freed.  A run waiting for its
 * sandbox is on that sandbox's wait list; once started, a run knows its sandbox only by id
 * (found again when it ends), so a sandbox can go away under a run safely.  A reply stream
 * (sb__xout_t) belongs to the out list from its request until its final reply has left.
 */
#ifndef SB_EXECUTOR_EXEC_H
#define SB_EXECUTOR_EXEC_H

#include "base/buf.h"
#include "base/str.h"
#include "core/actor.h"
#include "core/config.h"
#include "core/plugin.h"
#include "protocols/msgs.h"
#include "sandbox/kernel.h"
#include "sandbox/sandbox.h"

#include <stdbool.h>
#include <stdint.h>

#define SB__X_ID_LEN 21             /* "sbx-" + 16 hex + NUL */
#define SB__X_CHUNK_MAX (64u << 10) /* one streamed chunk */
#define SB__X_READ_MAX ((4u << 20) - (64u << 10)) /* a FILE_REPLY must fit one message */
#define SB__X_KERNELS_MAX 8         /* kernels (languages) per sandbox */

typedef struct sb__xstate sb__xstate_t;
typedef struct sb__xsbx sb__xsbx_t;
typedef struct sb__xout sb__xout_t;
typedef struct sb__xwait sb__xwait_t;

/* Sandbox entry states: CREATING -> READY -> DESTROYING -> (freed in the destroy callback).
 * CREATING -> DESTROYING when the actor stops, or the engine fails the creation (then the
 * entry is freed at once: there is no engine sandbox). */
typedef enum { SB__XSBX_CREATING, SB__XSBX_READY, SB__XSBX_DESTROYING } sb__xsbx_state_t;

/* Something waiting for a CREATING sandbox (a one-shot RUN): ready(ud, 0) when it is, or
 * ready(ud, err) when it failed or went away. */
struct sb__xwait {
    void (*ready)(void *ud, sb__xsbx_t *s, int status);
    void *ud;
    sb__xwait_t *next;
};

struct sb__xsbx {
    sb__xstate_t *x;
    char id[SB__X_ID_LEN];
    char runtime[64];
    char owner[128];
    sb__xsbx_state_t state;
    sb_sandbox_t *sb;            /* set once created; valid until the destroy callback */
    const sb_plugin_t *plugin;   /* of runtime, or NULL */
    bool oneshot, warm, lost;
    bool runs_done;              /* a RUN used it: its kernel is no longer fresh for a one-shot */
    uint64_t created_ms;
    sb_sandbox_limits_t lim;
    char **env;                  /* the sandbox's environment for every run (NULL-terminated) */
    sb_kernel_t *kernels[SB__X_KERNELS_MAX]; /* live warm kernels, one per language */
    size_t nkernels;
    sb__xwait_t *waiting;        /* runs waiting for CREATING to end */
    bool reply_create;           /* an SBX_CREATE waits for SBX_INFO */
    sb_replyto_t create_to;
    sb_replyto_t *destroy_to;    /* SBX_DESTROY requests waiting for the engine */
    size_t ndestroy;
    sb__xsbx_t *next;
};

struct sb__xstate {
    sb_actor_t *a;
    const sb_config_t *cfg;
    sb_engine_t *engine;
    sb_plugins_t *plugins;
    char *runtimes_raw;          /* msgpack array of the runtimes this node can run */
    size_t runtimes_len;
    uv_timer_t tick;
    uv_check_t flush;            /* reply streams go out once per loop iteration */
    uv_idle_t retry;             /* keeps the loop turning while replies wait for room */
    bool handles_open, stopping;
    sb__xsbx_t *sbxs;
    size_t nsbx;                 /* entries in the table, one-shot ones included */
    size_t engine_live;          /* engine sandboxes not yet destroyed (for fini) */
    sb__xout_t *outs;            /* reply streams with something still to send */
    size_t running;              /* programs, commands and kernel cells running */
    uint64_t last_cap_sig;       /* what the last NODE_CAPACITY said (send on change) */
};

/* executor.c */
sb__xsbx_t *sb__x_find(sb__xstate_t *x, sb_str_t id);
/* sb__x_ready_sbx finds a READY sandbox; else replies why (not found / still creating) and
 * returns NULL. */
sb__xsbx_t *sb__x_ready_sbx(sb__xstate_t *x, const sb_replyto_t *to, sb_str_t id);
/* sb__x_sbx_new adds a CREATING entry and starts the engine's creation; waiters hear when it
 * is ready.  SB_EUNAVAILABLE past executor.max_sandboxes. */
int sb__x_sbx_new(sb__xstate_t *x, const char *runtime, const sb_sandbox_limits_t *lim,
                  bool oneshot, sb__xsbx_t **out);
void sb__x_sbx_wait(sb__xsbx_t *s, sb__xwait_t *w);
/* sb__x_sbx_destroy starts destroying an entry (idempotent); reason is logged. */
void sb__x_sbx_destroy(sb__xsbx_t *s, const char *reason);
void sb__x_send_capacity(sb__xstate_t *x, bool force);
void sb__x_mon_exec(sb__xstate_t *x, const char *runtime, const char *status,
                    uint64_t duration_us, uint64_t memory_peak, uint64_t cpu_us);
uint64_t sb__x_clamp(uint64_t v, uint64_t def, uint64_t max);

/* exec_out.c: a reply stream.  Chunks (OUTPUT or KERNEL_EVENT, chosen at creation) queue in
 * order; text of one kind is appended to the last unsent chunk of the same kind up to 64
 * KiB, so a chatty program costs few messages; whole chunks leave as soon as they fill, the
 * rest at the end of the loop iteration.  The final reply always leaves last, flagged FINAL;
 * then the stream is freed.  When the bus says the peer is full (SB_EAGAIN) the rest waits
 * for the next iteration; nothing is reordered. */
sb__xout_t *sb__x_out_new(sb__xstate_t *x, const sb_replyto_t *to, uint16_t chunk_type);
/* OUTPUT chunks: the process they come from (0 until known). */
void sb__x_out_set_pid(sb__xout_t *o, uint64_t pid);
/* kind: OUTPUT stream (1 stdout, 2 stderr, 3 terminal) or KERNEL_EVENT kind (sb_kernel_ev_t);
 * text chunks coalesce, items (sb__x_out_item: a kernel's result or error) never do. */
void sb__x_out_text(sb__xout_t *o, int kind, const void *p, size_t n);
void sb__x_out_item(sb__xout_t *o, int kind, const void *p, size_t n);
/* A message of its own type (CMD_STARTED) in order among the chunks, flagged STREAM. */
void sb__x_out_msg(sb__xout_t *o, uint16_t type, const void *body, size_t len);
/* The final reply (body is copied); or an error reply; or none (close: only what is queued
 * still goes).  Exactly one of the three ends every stream. */
void sb__x_out_final(sb__xout_t *o, uint16_t type, const void *body, size_t len);
void sb__x_out_error(sb__xout_t *o, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void sb__x_out_close(sb__xout_t *o);
/* The flush check: send what every stream has; returns true while some wait for room. */
void sb__x_out_flush(sb__xstate_t *x);
/* The actor stops: streams still queued are dropped. */
void sb__x_out_free_all(sb__xstate_t *x);

/* exec_run.c */
int sb__x_handle_run(sb__xstate_t *x, const sb_msg_t *m);
int sb__x_handle_cmd(sb__xstate_t *x, const sb_msg_t *m);
int sb__x_handle_proc(sb__xstate_t *x, const sb_msg_t *m);

/* exec_kernel.c */
/* sb__x_kern_get finds the live kernel of plugin p in s, or (start) starts one. */
int sb__x_kern_get(sb__xsbx_t *s, const sb_plugin_t *p, bool start, sb_kernel_t **out);
/* Kill every kernel of s (the sandbox is going): their requests end with SB_ECLOSED. */
void sb__x_kerns_kill(sb__xsbx_t *s);
int sb__x_handle_kernel(sb__xstate_t *x, const sb_msg_t *m);

/* exec_files.c */
int sb__x_handle_file(sb__xstate_t *x, const sb_msg_t *m);
int sb__x_handle_ps(sb__xstate_t *x, const sb_msg_t *m);

/* exec_util.c: RAW fields (msgpack) in: limits, files (string arrays: sb_mp_strv). */
int sb__x_limits(sb_str_t raw, sb_sandbox_limits_t *lim);
typedef struct {
    char *path;
    uint8_t *data;
    size_t len;
    int mode;
} sb__xfile_t;
int sb__x_files(sb_str_t raw, sb__xfile_t **out, size_t *n);
void sb__x_files_free(sb__xfile_t *f, size_t n);

#endif
