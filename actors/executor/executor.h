/* executor.h: the executor actor -- sandboxes on this host: create, run, limit, observe, destroy; file operations. */
#ifndef SB_EXECUTOR_H
#define SB_EXECUTOR_H

#include "core/actor.h"

extern const sb_actor_ops_t sb_executor_actor;

#endif
