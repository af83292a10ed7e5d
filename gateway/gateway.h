/* gateway.h: the gateway actor -- client connections (HTTP now, WebSocket later) turned into
 * bus messages and back. */
#ifndef SB_GATEWAY_H
#define SB_GATEWAY_H

#include "core/actor.h"
#include "core/config.h"

#include <stdatomic.h>

/* The gateway's spawn argument: the configuration, and the port it bound (set during init,
 * so readable once sb_actor_spawn returns). */
typedef struct {
    const sb_config_t *cfg;
    atomic_int port;
} sb_gateway_arg_t;

extern const sb_actor_ops_t sb_gateway_actor;

#endif
