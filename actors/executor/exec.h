/*
 * exec.h: internals shared by the files of the executor actor (executor.c: the actor, its
 * sandbox table, the 1 s sampler; exec_run.c: RUN and CMD, their output streams and results;
 * exec_files.c: FILE_OP, PROC_LIST, artifacts; exec_util.c: RAW field parsing, environments).
 * Everything here runs on the executor actor's loop thread; nothing is shared with others.
 *
 * Ownership: the actor state (sb__xstate_t) owns the sandbox table; a table entry
 * (sb__xsbx_t) owns its engine sandbox until the engine's destroy callback, after which the
 * entry is freed.  A run (sb__xrun_t) belongs to the run list of the state from the request
 * until its last reply has been sent; while it uses a sandbox it is also on that sandbox's
 * run list, and it leaves that list (r->s = NULL) before the sandbox can be freed.
 */
#ifndef SB_EXECUTOR_EXEC_H
#define SB_EXECUTOR_EXEC_H

#include "core/actor.h"
#include "base/str.h"
#include "core/config.h"
#include "core/plugin.h"
#include "protocols/msgs.h"
#include "sandbox/sandbox.h"

#include <jansson.h>

#include <stdbool.h>
#include <stdint.h>

#define SB__X_ID_LEN 21          /* "sbx-" + 16 hex + NUL */
#define SB__X_CHUNK_MAX (64u << 10) /* one streamed OUTPUT chunk */
#define SB__X_ARTIFACTS_MAX 32    /* files listed in one result */
#define SB__X_READ_MAX ((4u << 20) - (64u << 10)) /* a FILE_REPLY must fit one message */

typedef struct sb__xstate sb__xstate_t;
typedef struct sb__xsbx sb__xsbx_t;
typedef struct sb__xrun sb__xrun_t;
typedef struct sb__xkern sb__xkern_t;
typedef struct sb__xkreq sb__xkreq_t;
typedef struct sb__xkx sb__xkx_t;

/* Sandbox entry states: CREATING -> READY -> DESTROYING -> (freed in the destroy callback).
 * CREATING -> DESTROYING when the actor stops, or the engine fails the creation (then the
 * entry is freed at once: there is no engine sandbox). */
typedef enum { SB__XSBX_CREATING, SB__XSBX_READY, SB__XSBX_DESTROYING } sb__xsbx_state_t;

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
    sb__xkern_t *kernels;        /* warm kernels, one per language (exec_kernel.c) */
    bool reply_create;           /* an SBX_CREATE waits for SBX_INFO */
    sb_replyto_t create_to;
    sb_replyto_t *destroy_to;    /* SBX_DESTROY requests waiting for the engine */
    size_t ndestroy;
    sb__xrun_t *runs;            /* runs using this sandbox (via sbx_next) */
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
    uv_check_t flush;            /* coalesced OUTPUT chunks go out once per loop iteration */
    uv_idle_t retry;             /* keeps the loop turning while replies wait for room */
    uv_timer_t ktimer;           /* the earliest deadline of a kernel request */
    sb__xkx_t *kxs;              /* KERNEL_EXEC requests with replies still to send */
    bool handles_open, stopping;
    sb__xsbx_t *sbxs;
    size_t nsbx;                 /* entries in the table, one-shot ones included */
    size_t engine_live;          /* engine sandboxes not yet destroyed (for fini) */
    sb__xrun_t *runs;            /* every run with a reply still to send */
    size_t running;              /* runs whose process is running */
    uint64_t next_seq;
    uint64_t last_cap_sig;       /* what the last NODE_CAPACITY said (send on change) */
};

/* executor.c */
sb__xsbx_t *sb__x_find(sb__xstate_t *x, sb_str_t id);
/* sb__x_sbx_new adds a CREATING entry and starts the engine's creation; on_ready runs the
 * runs waiting on it.  SB_EUNAVAILABLE past executor.max_sandboxes. */
int sb__x_sbx_new(sb__xstate_t *x, const char *runtime, const sb_sandbox_limits_t *lim,
                  bool oneshot, sb__xsbx_t **out);
/* sb__x_sbx_destroy starts destroying an entry (idempotent); reason is logged. */
void sb__x_sbx_destroy(sb__xsbx_t *s, const char *reason);
void sb__x_send_capacity(sb__xstate_t *x, bool force);
uint64_t sb__x_clamp(uint64_t v, uint64_t def, uint64_t max);

/* exec_run.c */
int sb__x_handle_run(sb__xstate_t *x, const sb_msg_t *m);
int sb__x_handle_cmd(sb__xstate_t *x, const sb_msg_t *m);
int sb__x_handle_proc(sb__xstate_t *x, const sb_msg_t *m);
/* The sandbox of waiting runs became ready (status 0) or failed. */
void sb__x_sbx_ready(sb__xsbx_t *s, int status);
/* The flush check: send coalesced output and finished results. */
void sb__x_flush(sb__xstate_t *x);
/* The actor stops: runs not started yet are failed. */
void sb__x_runs_stop(sb__xstate_t *x);
void sb__x_runs_free(sb__xstate_t *x);

/* Start the flush check: coalesced output goes out at the end of this loop iteration. */
void sb__x_flush_schedule(sb__xstate_t *x);

/* exec_kernel.c: warm kernels (one process per sandbox and language speaking the JSON-lines
 * protocol of docs/plugins.md), their requests, and KERNEL_EXEC / KERNEL_INTERRUPT /
 * KERNEL_CONTEXT.  A kernel request is queued on its kernel and written when the kernel has
 * answered the one before; it ends exactly once, through on_end. */
typedef struct {
    int err;                  /* 0: the kernel answered; else SB_ETIMEDOUT, SB_EIO (the kernel
                                 died), SB_ECANCELED (never ran), SB_ECLOSED (sandbox gone) */
    const char *status;       /* execute: "ok", "error", "output_limit", "timeout", "crashed",
                                 "canceled" */
    const char *msg;          /* err != 0: what happened, in words for the caller */
    json_t *reply;            /* the kernel's last event (done, context, ok, error): borrowed */
    const sb_run_result_t *kres; /* the kernel process's end, if it ended during the request */
    uint64_t execution_count;
    uint64_t duration_us;
} sb__xkend_t;
typedef struct {
    /* an event of an execute: type "stdout", "stderr", "result" or "error"; ev borrowed */
    void (*on_event)(void *ud, const char *type, json_t *ev);
    void (*on_end)(void *ud, const sb__xkend_t *e);
} sb__xkcb_t;
/* sb__x_kern_get finds the live kernel of plugin p in s, or (start) starts one. */
int sb__x_kern_get(sb__xsbx_t *s, const sb_plugin_t *p, bool start, sb__xkern_t **out);
/* sb__x_kern_submit queues req (stolen; "id" is set here) on k.  output_max 0: none. */
sb__xkreq_t *sb__x_kern_submit(sb__xkern_t *k, json_t *req, uint64_t timeout_ms,
                               uint64_t output_max, const sb__xkcb_t *cb, void *ud);
int sb__x_kern_pid(const sb__xkern_t *k);
/* Kill every kernel of s (the sandbox is going): their requests end with SB_ECLOSED. */
void sb__x_kerns_kill(sb__xsbx_t *s);
int sb__x_handle_kernel(sb__xstate_t *x, const sb_msg_t *m);
bool sb__x_kern_flush(sb__xstate_t *x); /* true: replies still wait for room */
void sb__x_kern_stop(sb__xstate_t *x);

/* exec_files.c */
int sb__x_handle_file(sb__xstate_t *x, const sb_msg_t *m);
int sb__x_handle_ps(sb__xstate_t *x, const sb_msg_t *m);
const char *sb__x_mime(const char *path);

/* exec_util.c: RAW fields (msgpack) in, NULL-terminated malloc'd string vectors out. */
int sb__x_strv(sb_str_t raw, size_t max, char ***out, size_t *n);
void sb__x_strv_free(char **v);
/* sb__x_env_merge returns base overlaid with each layer's "K=V" (later wins); layers may be
 * NULL.  SB_EBADMSG: an entry without '='. */
int sb__x_env_merge(char ***out, const char *const *base, const char *const *l1,
                    const char *const *l2, const char *const *l3);
int sb__x_limits(sb_str_t raw, sb_sandbox_limits_t *lim);
typedef struct {
    char *path;
    uint8_t *data;
    size_t len;
    int mode;
} sb__xfile_t;
int sb__x_files(sb_str_t raw, sb__xfile_t **out, size_t *n);
void sb__x_files_free(sb__xfile_t *f, size_t n);
extern const char *const sb__x_default_env[];
extern const char *const sb__x_default_env_pty[];

#endif
