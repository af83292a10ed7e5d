/* storage.h: the storage actor -- persistent state: users, API keys, sandboxes, executions, sessions. */
#ifndef SB_STORAGE_H
#define SB_STORAGE_H

#include "core/actor.h"

extern const sb_actor_ops_t sb_storage_actor;

#endif
