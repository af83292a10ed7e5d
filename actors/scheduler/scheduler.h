/*
 * scheduler.h: the scheduler actor -- the queue: admission control, deadlines, fairness
 * between keys, and placement of work on executor nodes (contract: protocols/sched.def).
 *
 * Spawn with arg = the process's sb_config_t (borrowed for the actor's life; read on its
 * thread at init: scheduler.* keys).  Messages:
 *   PLACE -> LEASE, or an error: SB_ELIMIT (the key is over a limit -> 429) or
 *            SB_EUNAVAILABLE (no capacity, queue full, queue timeout, node lost -> 503), both
 *            with a message starting "retry_after_ms=N "; SB_EINVAL for a malformed request.
 *   RELEASE, NODE_CAPACITY (from executors), POOL_OFFER -> POOL_ACK, POOL_WITHDRAW ->
 *            POOL_ACK (from the pool).  It sends POOL_TAKEN to the pool.
 * One-way messages sent as requests are acknowledged with an empty body of their own type.
 */
#ifndef SB_SCHEDULER_H
#define SB_SCHEDULER_H

#include "core/actor.h"

extern const sb_actor_ops_t sb_scheduler_actor;

#endif
