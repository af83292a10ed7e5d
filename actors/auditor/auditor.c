/*
 * auditor.c: the auditor actor -- the audit trail: append-only, HMAC-chained, verifiable.
 *
 * Today it is a live actor on the bus: the runtime answers its PINGs (so /health sees it) and
 * every other message is refused with an SB_EUNKNOWN_TYPE error reply.  Its real work lands
 * with the issue that owns it; nothing here pretends to do that work.
 */
#include "auditor.h"

#include "core/err.h"

static int
auditor_handle(sb_actor_t *a, void *state, const sb_msg_t *m)
{
    (void)a;
    (void)state;
    (void)m;
    return SB_EUNKNOWN_TYPE;
}

const sb_actor_ops_t sb_auditor_actor = {
    .abi = SB_ACTOR_ABI_V1,
    .name = "auditor",
    .kind = SB_ACTOR_AUDITOR,
    .state_size = 1,
    .handle = auditor_handle,
};
