/*
 * pool.c: the pool actor -- warm sandboxes per runtime: keeps them ready, leases them out, destroys used ones.
 *
 * Today it is a live actor on the bus: the runtime answers its PINGs (so /health sees it) and
 * every other message is refused with an SB_EUNKNOWN_TYPE error reply.  Its real work lands
 * with the issue that owns it; nothing here pretends to do that work.
 */
#include "pool.h"

#include "core/err.h"

static int
pool_handle(sb_actor_t *a, void *state, const sb_msg_t *m)
{
    (void)a;
    (void)state;
    (void)m;
    return SB_EUNKNOWN_TYPE;
}

const sb_actor_ops_t sb_pool_actor = {
    .abi = SB_ACTOR_ABI_V1,
    .name = "pool",
    .kind = SB_ACTOR_POOL,
    .state_size = 1,
    .handle = pool_handle,
};
