/*
 * storage.c: the storage actor -- persistent state: users, API keys, sandboxes, executions, sessions.
 *
 * Today it is a live actor on the bus: the runtime answers its PINGs (so /health sees it) and
 * every other message is refused with an SB_EUNKNOWN_TYPE error reply.  Its real work lands
 * with the issue that owns it; nothing here pretends to do that work.
 */
#include "storage.h"

#include "core/err.h"

static int
storage_handle(sb_actor_t *a, void *state, const sb_msg_t *m)
{
    (void)a;
    (void)state;
    (void)m;
    return SB_EUNKNOWN_TYPE;
}

const sb_actor_ops_t sb_storage_actor = {
    .abi = SB_ACTOR_ABI_V1,
    .name = "storage",
    .kind = SB_ACTOR_STORAGE,
    .state_size = 1,
    .handle = storage_handle,
};
