/*
 * run_cli.h: `soulbox run` -- one-shot local execution through a real sandbox, without a
 * server.  Usage:
 *
 *   soulbox run [--runtime NAME] [limits] [--json] FILE|- [ARGS...]
 *     -r, --runtime NAME   python (python3, py), node (javascript, js), bash, sh; default
 *                          from FILE's extension.  FILE "-" reads the program from stdin.
 *     -i, --input FILE     the program's stdin (default: empty)
 *     --timeout MS --cpu-time MS --memory MB --pids N --disk MB --output BYTES
 *     --json               print the whole result record as one JSON object on stdout
 *
 * Exit status mirrors the program's: its exit code, 128+N when killed by signal N, and for
 * runs the sandbox ended: 124 timeout, 123 cpu_limit, 122 memory_limit, 121 output_limit,
 * 120 killed, 119 lost, 118 the sandbox could not be created, 2 usage errors.
 */
#ifndef SB_RUN_CLI_H
#define SB_RUN_CLI_H

#include "core/config.h"

#define SB_RUN_EXIT_TIMEOUT 124
#define SB_RUN_EXIT_CPU 123
#define SB_RUN_EXIT_MEMORY 122
#define SB_RUN_EXIT_OUTPUT 121
#define SB_RUN_EXIT_KILLED 120
#define SB_RUN_EXIT_LOST 119
#define SB_RUN_EXIT_SANDBOX 118

/* sb_cmd_run runs `soulbox run` with argv[0] = "run"; returns the process exit status. */
int sb_cmd_run(int argc, char **argv);

/* The same with main.c's command signature: argv holds the arguments after "run" (the
 * configuration layer has taken its own flags out). */
int sb_cmd_run_main(int argc, char **argv, const sb_config_t *cfg);

#endif
