/*
 * auth_cli.h: `soulbox keys ...` and `soulbox users ...` -- credentials from the command line.
 *
 * Both run the storage actor in this process on a private bus (the same code `serve` runs, so
 * SQLite and Redis behave identically; SQLite in WAL mode lets this run beside a serving
 * process) and talk to it from a small client actor.  Secrets are printed once (a new key) or
 * read from stdin (passwords, never argv).  Blocking; call from the main thread only.
 * Return: the process exit code (0 ok, 1 failure, 2 usage).
 */
#ifndef SB_AUTH_CLI_H
#define SB_AUTH_CLI_H

#include "core/config.h"

/* keys create --role admin|user|viewer [--name N] [--owner O] [--json] | keys list [--json] |
 * keys revoke ID */
int sb_cmd_keys(int argc, char **argv, const sb_config_t *cfg);
/* users add NAME --role R [--password-stdin] | users passwd NAME | users list | users del NAME */
int sb_cmd_users(int argc, char **argv, const sb_config_t *cfg);

#endif
