/*
 * run_cli.h: `soulbox run` -- one-shot local execution through a real sandbox, without a
 * server.  Usage:
 *
 *   soulbox run [--runtime NAME] [limits] [--json] FILE|- [ARGS...]
 *     -r, --runtime NAME   a runtime plugin's name or alias (soulbox plugins list); default:
 *                          the plugin whose source file has FILE's extension.  FILE "-"
 *                          reads the program from stdin.
 *     -i, --input FILE     the program's stdin (default: empty)
 *     --timeout MS --cpu-time MS --memory MB --pids N --disk MB --output BYTES
 *                          limits of the run (the compile step has the plugin's own limits)
 *     --plugins DIR        the plugin folder (default: sb_plugins_default_dir())
 *     --json               print the whole result record as one JSON object on stdout
 *
 * A compiled runtime compiles first; if that fails the run does not start, the record's
 * status is "compile_error" (its "compile" member has the compiler's output) and the exit
 * status is 117.  Otherwise the exit status mirrors the program's: its exit code, 128+N when
 * killed by signal N, and for runs the sandbox ended: 124 timeout, 123 cpu_limit,
 * 122 memory_limit, 121 output_limit, 120 killed, 119 lost, 118 the sandbox could not be
 * created, 2 usage errors.
 */
#ifndef SB_RUN_CLI_H
#define SB_RUN_CLI_H

#include "core/config.h"
#include "core/plugin.h"
#include "sandbox/sandbox.h"

#include <jansson.h>

#define SB_RUN_EXIT_TIMEOUT 124
#define SB_RUN_EXIT_CPU 123
#define SB_RUN_EXIT_MEMORY 122
#define SB_RUN_EXIT_OUTPUT 121
#define SB_RUN_EXIT_KILLED 120
#define SB_RUN_EXIT_LOST 119
#define SB_RUN_EXIT_SANDBOX 118
#define SB_RUN_EXIT_COMPILE 117

/* One program for sb_run_job: everything borrowed for the call. */
typedef struct {
    const sb_plugin_t *plugin;
    const void *code;
    size_t code_len;
    const void *input;
    size_t input_len;
    char *const *args;
    size_t nargs;
    sb_sandbox_limits_t lim; /* zeros: the engine's defaults; memory: the plugin's */
    uint64_t timeout_ms, cpu_ms, output_max; /* of the run; 0: the plugin's, then defaults */
    bool stream;             /* copy output to our stdout/stderr as it arrives */
} sb_run_job_t;

/* sb_run_job runs job in a fresh sandbox on a private loop and engine, blocking until the
 * sandbox is destroyed.  Returns the exit status `soulbox run` would; *result (may be NULL)
 * gets the JSON record (the caller decrefs), or NULL when no sandbox could be created.  Call
 * from a thread with no other libuv loop work pending on it (the CLI's main thread). */
int sb_run_job(const sb_run_job_t *job, json_t **result);

/* sb_cmd_run runs `soulbox run` with argv[0] = "run"; returns the process exit status. */
int sb_cmd_run(int argc, char **argv);

/* The same with main.c's command signature: argv holds the arguments after "run" (the
 * configuration layer has taken its own flags out). */
int sb_cmd_run_main(int argc, char **argv, const sb_config_t *cfg);

#endif
