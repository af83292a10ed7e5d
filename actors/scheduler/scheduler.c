/*
 * scheduler.c: the scheduler actor -- the queue: admission control, deadlines, placement of work on executor nodes.
 *
 * Today it is a live actor on the bus: the runtime answers its PINGs (so /health sees it) and
 * every other message is refused with an SB_EUNKNOWN_TYPE error reply.  Its real work lands
 * with the issue that owns it; nothing here pretends to do that work.
 */
#include "scheduler.h"

#include "core/err.h"

static int
scheduler_handle(sb_actor_t *a, void *state, const sb_msg_t *m)
{
    (void)a;
    (void)state;
    (void)m;
    return SB_EUNKNOWN_TYPE;
}

const sb_actor_ops_t sb_scheduler_actor = {
    .abi = SB_ACTOR_ABI_V1,
    .name = "scheduler",
    .kind = SB_ACTOR_SCHEDULER,
    .state_size = 1,
    .handle = scheduler_handle,
};
