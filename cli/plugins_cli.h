/*
 * plugins_cli.h: `soulbox plugins` -- the runtime plugins of this host.
 *
 *   soulbox plugins list [--plugins DIR] [--json]
 *       every plugin: name, version (from its version_cmd, run on this host), aliases,
 *       compiled or not, installed or not.  A manifest that does not validate is listed
 *       as an error line (and makes the exit status 1).
 *   soulbox plugins check [--plugins DIR] [--json] PLUGIN_DIR|NAME... | --all
 *       validates each manifest strictly (line-numbered errors) and runs its hello program
 *       through a real sandbox (compile step included), comparing stdout with hello_expect.
 *       --all checks every plugin in DIR whose runtime is installed (the others are reported
 *       as skipped).  Exit 0 when every check passed, 1 otherwise, 2 on usage errors.
 */
#ifndef SB_PLUGINS_CLI_H
#define SB_PLUGINS_CLI_H

#include "core/config.h"

/* main.c's command signature: argv holds the arguments after "plugins". */
int sb_cmd_plugins(int argc, char **argv, const sb_config_t *cfg);

#endif
