/*
 * job.h: the pipeline of one program in a sandbox -- write the source and the request's
 * files, compile when the runtime is compiled, snapshot /home/user, run, collect the files
 * the run created or changed (artifacts) -- ending in one result.  The executor's RUN and
 * `soulbox run` both use it, so a program runs the same way through the server and the CLI.
 *
 * States, in order (any step may end the job with an error):
 *   WRITING    the source file (unless the kernel route is taken) and `files`, in parallel
 *   COMPILING  the plugin's compile_cmd with the compile limits (the plugin's; its memory,
 *              else the sandbox's; 64 KiB of its output kept)
 *   SNAPSHOT   with artifacts: /home/user is listed before the program starts
 *   RUNNING    run_cmd with the run's limits -- or, when spec.kernel is set and the kernel may
 *              take it (kernel.h, sb_kernel_can_run), the code as one cell of that kernel
 *   ARTIFACTS  with artifacts: /home/user is listed again, new or changed files read
 *   DONE       on_done has the result; the job is freed when it returns
 *
 * Ownership: everything in the spec is copied at sb_job_start.  The job never destroys its
 * sandbox; the caller does that after on_done (a destroyed sandbox ends the job first).
 * Threading: the sandbox's loop thread only; nothing blocks.
 */
#ifndef SB_SANDBOX_JOB_H
#define SB_SANDBOX_JOB_H

#include "core/plugin.h"
#include "kernel.h"
#include "sandbox.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SB_JOB_COMPILE_TIMEOUT_MS 30000 /* when neither the request nor the plugin says */
#define SB_JOB_COMPILE_OUT_MAX (64u << 10)
#define SB_JOB_ARTIFACTS_MAX 32          /* files listed in one result */

typedef struct sb_job sb_job_t;

typedef struct {
    const char *path; /* absolute, or relative to /home/user */
    const void *data;
    size_t len;
    int mode;
} sb_job_file_t;

typedef struct {
    const sb_plugin_t *plugin;          /* required; its run_cmd, compile_cmd, source_file */
    const void *code;
    size_t code_len;
    const void *stdin_data;
    size_t stdin_len;
    const char *const *args;            /* the program's arguments ({args}) */
    size_t nargs;
    const char *const *env;             /* the processes' whole environment (sb_env_build);
                                           NULL: sb_env_default */
    bool env_given, memory_given;       /* the request set its own env / memory (a warm
                                           kernel cannot honour either) */
    const sb_job_file_t *files;
    size_t nfiles;
    uint64_t timeout_ms, cpu_ms, memory_bytes, output_max; /* of the run; 0: engine defaults */
    uint64_t compile_timeout_ms;        /* 0: the plugin's, else SB_JOB_COMPILE_TIMEOUT_MS */
    uint64_t artifacts_max;             /* bytes of artifact data kept; 0: none collected */
    uint64_t result_max;                /* kept output + compile output + artifact data stay
                                           under this (one message); 0: no cap */
    bool stream;                        /* program output goes to on_output only, not kept */
    sb_kernel_t *kernel;                /* a fresh warm kernel the program may run in, or NULL */
} sb_job_spec_t;

typedef struct {
    const char *path; /* relative to /home/user when inside it */
    const char *mime;
    uint64_t size;
    const uint8_t *data; /* NULL: listed without data (past the budget) */
    size_t len;
} sb_job_artifact_t;

typedef struct {
    const char *status;      /* sb_run_status_name of the run, "compile_error", or "error"
                                when the program could not be set up or started */
    const char *error;       /* why, in words, when status is "error"; else NULL */
    bool ran;                /* the program's process (or cell) ran */
    sb_run_result_t run;     /* its end; out/err: the kept output (not when streamed) */
    bool compiled;           /* there was a compile step: compile holds its end and output */
    sb_run_result_t compile;
    const sb_job_artifact_t *artifacts;
    size_t nartifacts;
    bool via_kernel;
    int pid;                 /* the program's pid inside the sandbox, or 0 */
} sb_job_result_t;

enum { SB_JOB_STDOUT = 1, SB_JOB_STDERR = 2, SB_JOB_COMPILE_OUTPUT = 3 };

typedef struct {
    /* Output as it arrives: the program's (SB_JOB_STDOUT/STDERR) when spec.stream, and the
     * compiler's (SB_JOB_COMPILE_OUTPUT) always.  May be NULL. */
    void (*on_output)(void *ud, int stream, const uint8_t *p, size_t n);
    /* The job's end, exactly once (never before sb_job_start returns); results valid during
     * the call; the job is freed right after. */
    void (*on_done)(void *ud, const sb_job_result_t *r);
} sb_job_cb_t;

/* sb_job_start starts the pipeline in sb.  SB_EINVAL: no plugin or run_cmd; SB_ECLOSED: the
 * sandbox is dead.  *out (may be NULL) is valid until on_done returns. */
int sb_job_start(sb_sandbox_t *sb, const sb_job_spec_t *spec, const sb_job_cb_t *cb, void *ud,
                 sb_job_t **out);
/* sb_job_process: the program's run while it is running (for stdin and signals), or NULL. */
sb_sandbox_run_t *sb_job_process(const sb_job_t *j);

#endif
