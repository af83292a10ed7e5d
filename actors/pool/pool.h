/* pool.h: the pool actor -- warm sandboxes per runtime: keeps them ready, leases them out, destroys used ones. */
#ifndef SB_POOL_H
#define SB_POOL_H

#include "core/actor.h"

extern const sb_actor_ops_t sb_pool_actor;

#endif
