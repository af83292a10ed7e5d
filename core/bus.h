/*
 * bus.h: the process-level half of the message bus.
 *
 * A bus is one per process ("node").  It knows which actor kinds run here (each has an
 * inproc mailbox) and which run on other nodes (learned by HELLO over tcp).  Actors send
 * through their own runtime (actor.h); the bus resolves an address to a place:
 *   - local: the actor's inproc:// mailbox, dialed by the sending actor's own socket;
 *   - remote: the node's tcp ingress, through one shared, thread-safe NNG push socket per node.
 * Every tcp batch is authenticated with HMAC-SHA256 under the shared secret and carries a
 * timestamp checked against a skew window; a peer without the secret is refused, logged and
 * its connection closed.  The ingress forwards good batches to the local mailbox they name.
 *
 * Threads: sb_bus_alloc/start/free on the main thread; everything else is thread-safe.
 */
#ifndef SB_BUS_H
#define SB_BUS_H

#include "protocols/msg.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sb_bus sb_bus_t;

typedef struct {
    const char *node_name;     /* default: hostname */
    const char *listen;        /* tcp://host:port to accept other nodes on, or NULL */
    const char *advertise;     /* URL other nodes dial us at; default: listen with bound port */
    const char *const *join;   /* tcp URLs of nodes to join */
    size_t njoin;
    const uint8_t *secret;     /* shared secret; required when listen or join is set */
    size_t secret_len;
    uint32_t hello_ms;         /* HELLO interval (default 1000) */
    uint32_t node_ttl_ms;      /* a node silent this long is considered down (default 5000) */
    uint32_t max_skew_ms;      /* accepted clock skew / replay window (default 30000) */
} sb_bus_opts_t;

/* An address: node 0 means "wherever this kind runs, here first". */
typedef struct {
    uint64_t node;
    uint8_t kind;
} sb_addr_t;

static inline sb_addr_t
sb_addr(uint8_t kind)
{
    return (sb_addr_t){0, kind};
}

/* A snapshot of one node, for health, scheduling and tests. */
typedef struct {
    uint64_t id;
    char name[128];
    char url[256];
    uint64_t actors; /* bit k set: kind k runs there */
    int alive;
    int local;
} sb_node_info_t;

/* sb_bus_alloc validates opts and creates the bus (listening on tcp when asked).  The caller
 * owns *out.  SB_ECONFIG if tcp is configured without a secret, or a URL is bad. */
int sb_bus_alloc(const sb_bus_opts_t *opts, sb_bus_t **out);
/* sb_bus_start begins joining and HELLO heartbeats; call after local actors are spawned. */
int sb_bus_start(sb_bus_t *bus);
/* sb_bus_free stops timers and closes every socket; call after all actors have joined. */
void sb_bus_free(sb_bus_t *bus);

uint64_t sb_bus_node_id(const sb_bus_t *bus);
const char *sb_bus_node_name(const sb_bus_t *bus);
/* sb_bus_url returns the advertised tcp URL, or NULL when this node is not listening. */
const char *sb_bus_url(const sb_bus_t *bus);
/* sb_bus_nodes copies up to max node snapshots (this node first); returns how many. */
size_t sb_bus_nodes(sb_bus_t *bus, sb_node_info_t *out, size_t max);
/* sb_bus_wait_kind blocks up to timeout_ms until some node runs kind; 0 or SB_ETIMEDOUT. */
int sb_bus_wait_kind(sb_bus_t *bus, int kind, uint32_t timeout_ms);

/* Counters by message type (types below 1024), for metrics. */
#define SB_BUS_TYPE_SLOTS 1024
uint64_t sb_bus_count(const sb_bus_t *bus, uint16_t type);
uint64_t sb_bus_auth_refused(const sb_bus_t *bus);

/* Internal to core/: used by actor.c. */
typedef struct {
    int local;
    uint64_t node;
    char url[96];           /* local: the inproc URL */
    void *remote;           /* remote: the node's shared push socket (nng_socket *) */
} sb__route_t;
int sb__bus_register(sb_bus_t *bus, int kind, char *url_out, size_t cap);
void sb__bus_unregister(sb_bus_t *bus, int kind);
int sb__bus_route(sb_bus_t *bus, sb_addr_t dst, sb__route_t *out);
const uint8_t *sb__bus_secret(const sb_bus_t *bus, size_t *len);
void sb__bus_count(sb_bus_t *bus, uint16_t type);

#endif
