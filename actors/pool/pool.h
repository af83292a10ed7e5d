/*
 * pool.h: the pool actor -- warm sandboxes per runtime, kept between pool.min_size and
 * pool.max_size on the bus's executor nodes, offered to the scheduler, refilled as they are
 * leased, retired at pool.max_age_s (contract: protocols/sched.def, executor.def).
 *
 * Spawn with arg = the process's sb_config_t (borrowed for the actor's life; pool.* keys).
 * It sends SBX_CREATE (warm) / SBX_DESTROY to executors, POOL_OFFER / POOL_WITHDRAW to the
 * scheduler and MON_POOL to the monitor every second; it handles POOL_TAKEN.  Stop destroys
 * the warm sandboxes it holds, within the grace period.
 */
#ifndef SB_POOL_H
#define SB_POOL_H

#include "core/actor.h"

extern const sb_actor_ops_t sb_pool_actor;

#endif
