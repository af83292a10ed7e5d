/* sb_run.c: `soulbox run` as a standalone test driver (sb_cmd_run), so the hostile-program
 * suite does not depend on how the soulbox binary wires its subcommands. */
#include "cli/run_cli.h"

int
main(int argc, char **argv)
{
    argv[0] = "run";
    return sb_cmd_run(argc, argv);
}
