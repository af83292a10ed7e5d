/* scheduler.h: the scheduler actor -- the queue: admission control, deadlines, placement of work on executor nodes. */
#ifndef SB_SCHEDULER_H
#define SB_SCHEDULER_H

#include "core/actor.h"

extern const sb_actor_ops_t sb_scheduler_actor;

#endif
