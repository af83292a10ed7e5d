/*
 * storage.h: the storage actor -- persistent state: users, API keys, sandboxes, executions,
 * sessions -- behind the STORE_* messages (protocols/storage.def), on SQLite (default) or
 * Redis (storage.backend).  Its spawn argument is the process's const sb_config_t *, borrowed
 * for the actor's life.  See docs/operations.md for the data directory and backups.
 */
#ifndef SB_STORAGE_H
#define SB_STORAGE_H

#include "core/actor.h"

extern const sb_actor_ops_t sb_storage_actor;

#endif
