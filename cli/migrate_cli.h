/*
 * storage_cli.h: `soulbox migrate` -- bring the storage schema to this build's version and
 * exit, without starting any actor.  Blocking; main thread.
 */
#ifndef SB_STORAGE_CLI_H
#define SB_STORAGE_CLI_H

#include "core/config.h"

/* sb_cmd_migrate runs the pending migrations of the configured backend (storage.backend,
 * data_dir / storage.redis_*) and prints "schema version A -> B".  Returns the exit status:
 * 0 done (or already current), 1 failed, 2 usage. */
int sb_cmd_migrate(int argc, char **argv, const sb_config_t *cfg);

#endif
