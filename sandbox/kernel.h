/*
 * kernel.h: the warm-kernel client -- a long-lived interpreter in a sandbox speaking the
 * JSON-lines protocol of docs/plugins.md ("Warm kernels"), its request queue, its deadlines,
 * the contexts created in it, and the route that runs a one-shot program through it.
 *
 * A kernel is a run of the engine (sb_sandbox_exec) with stdin kept open and stream-only
 * output: stdout is the event channel (one JSON object per line), stderr a short tail kept
 * for crash messages.  The files kernel_cmd names under {plugin} are copied into the
 * sandbox's /tmp/.soulbox/<runtime>/ first (sandboxes do not see the plugin folder).
 *
 * Requests queue on their kernel; only the head is written, the next one when the head has
 * ended, so a request's deadline counts only its own time.  Events whose id is not the
 * head's are dropped (late output of an earlier cell).  Every request ends exactly once,
 * through its on_end: answered; deadline passed (the kernel is killed: "timeout"); the
 * kernel died (the head "crashed", the queued ones "canceled"); the sandbox went away
 * (SB_ECLOSED).  Past a request's output_max the cell is interrupted (SIGINT, state kept)
 * and its further output dropped ("output_limit").
 *
 * Ownership: the caller owns the kernel from sb_kernel_start until its on_exit callback,
 * after which the kernel is freed; on_exit always comes (the engine ends every run before a
 * sandbox is destroyed).  Threading: the sandbox's loop thread only; nothing blocks.
 */
#ifndef SB_SANDBOX_KERNEL_H
#define SB_SANDBOX_KERNEL_H

#include "core/plugin.h"
#include "sandbox.h"

#include <jansson.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sb_kernel sb_kernel_t;

/* The kinds of event an execute produces, in the protocol's words (sb_kernel_event_name). */
typedef enum { SB_KEV_STDOUT, SB_KEV_STDERR, SB_KEV_RESULT, SB_KEV_ERROR } sb_kernel_ev_t;
const char *sb_kernel_event_name(sb_kernel_ev_t k);

typedef struct {
    int err;                   /* 0: the kernel answered; else SB_ETIMEDOUT, SB_EIO (the kernel
                                  died), SB_ECANCELED (never ran), SB_ECLOSED (sandbox gone) */
    const char *status;        /* execute: "ok", "error", "output_limit", "timeout", "crashed",
                                  "canceled" */
    const char *msg;           /* err != 0: what happened, in words for the caller */
    json_t *reply;             /* the kernel's last event (done, context reply): borrowed */
    const sb_run_result_t *kres; /* the kernel process's end, if it ended during the request */
    uint64_t execution_count;
    uint64_t duration_us;
} sb_kernel_end_t;

typedef struct {
    /* an event of an execute; ev borrowed ("text" for stdout/stderr; the result or error) */
    void (*on_event)(void *ud, sb_kernel_ev_t kind, json_t *ev);
    void (*on_end)(void *ud, const sb_kernel_end_t *e);
} sb_kernel_cb_t;

/* sb_kernel_start starts plugin p's kernel in sb with environment env (copied).  on_exit(k,
 * ud) runs once when the kernel process has ended and its requests have ended; k is freed
 * right after it returns.  SB_EINVAL: p has no kernel; SB_ENOTFOUND: the plugin does not ship
 * the file its kernel_cmd names; SB_ECLOSED: the sandbox is dying. */
int sb_kernel_start(sb_sandbox_t *sb, const sb_plugin_t *p, const char *const *env,
                    void (*on_exit)(sb_kernel_t *k, void *ud), void *ud, sb_kernel_t **out);

/* sb_kernel_submit queues req (stolen; its "id" is set here) on k, with a deadline of
 * timeout_ms (0: 20 s, for context operations) once it is written, and output_max bytes of
 * stdout+stderr (0: none).  cb->on_end runs exactly once, possibly before this returns. */
void sb_kernel_submit(sb_kernel_t *k, json_t *req, uint64_t timeout_ms, uint64_t output_max,
                      const sb_kernel_cb_t *cb, void *ud);

/* sb_kernel_interrupt sends SIGINT to a running cell (an idle or starting kernel is not
 * signalled: its handler may not be installed yet).  Returns true if it was signalled. */
bool sb_kernel_interrupt(sb_kernel_t *k);
/* sb_kernel_kill kills the kernel; the request in flight ends with (status, err, msg). */
void sb_kernel_kill(sb_kernel_t *k, const char *status, int err, const char *msg);

/* true until the kernel is killed or its process ends. */
bool sb_kernel_live(const sb_kernel_t *k);
const sb_plugin_t *sb_kernel_plugin(const sb_kernel_t *k);
int sb_kernel_pid(const sb_kernel_t *k);

/* Contexts created in the kernel (the protocol's create_context); "default" is implicit. */
#define SB_KERNEL_CTX_MAX 64
size_t sb_kernel_contexts(const sb_kernel_t *k);
const char *sb_kernel_context(const sb_kernel_t *k, size_t i);
bool sb_kernel_has_context(const sb_kernel_t *k, const char *ctx);
int sb_kernel_context_add(sb_kernel_t *k, const char *ctx);   /* SB_ELIMIT past the max */
void sb_kernel_context_remove(sb_kernel_t *k, const char *ctx);

/*
 * The warm-kernel route of a one-shot program (sb_job_t, job.h, takes it when it may).  A
 * program runs in the kernel instead of starting run_cmd when the kernel is fresh (the
 * caller vouches: a leased warm sandbox that ran nothing) and the request needs nothing the
 * kernel model cannot give: no stdin, args, env or memory of its own, no CPU-time limit, an
 * interpreted runtime whose kernel this is, and UTF-8 code (the protocol is JSON).  What
 * differs from run_cmd, by design: an uncaught exception is exit code 1 with the traceback on
 * stderr (python: SystemExit(n) is exit code n; bash: the last status); figures the code
 * shows come back as PNG images; the value of a trailing expression is not printed (as with
 * `python3 main.py`).  CPU time and peak memory come from the sandbox's cgroup.
 */
typedef struct {
    void (*on_text)(void *ud, int fd, const char *p, size_t n); /* fd 1 or 2 */
    void (*on_figure)(void *ud, const uint8_t *png, size_t n);  /* decoded, borrowed */
    void (*on_done)(void *ud, const sb_run_result_t *res);       /* out/err not set */
} sb_kernel_prog_cb_t;

bool sb_kernel_can_run(const sb_kernel_t *k, const sb_plugin_t *p, const void *code,
                       size_t len);
/* sb_kernel_run_program sends code to k as one cell; cb->on_done runs exactly once. */
int sb_kernel_run_program(sb_kernel_t *k, const void *code, size_t len, uint64_t timeout_ms,
                          uint64_t output_max, const sb_kernel_prog_cb_t *cb, void *ud);

#endif
