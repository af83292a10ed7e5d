/*
 * client.h: blocking requests from a thread that is not an actor -- CLI commands (`soulbox
 * keys`, ...) and tests.  A client is a small actor of kind SB_ACTOR_CLIENT on the given bus;
 * sb_client_call hands it one request through a uv_async and waits, with a deadline, for the
 * reply.  So every bus operation still happens on an actor loop, and the caller's code reads
 * top to bottom.  One client per bus (the kind is unique in a process); calls from one thread
 * at a time.
 */
#ifndef SB_CLIENT_H
#define SB_CLIENT_H

#include "bus.h"
#include "protocols/msg.h"

#include <stddef.h>
#include <stdint.h>

typedef struct sb_client sb_client_t;

typedef struct {
    int status;       /* 0, the SB_E* of an error reply, or SB_ETIMEDOUT */
    uint16_t type;    /* the reply's type (SB_MSG_ERROR for an error reply); 0: none came */
    uint8_t *body;    /* a malloc'd, NUL-terminated copy of the reply body; NULL: none */
    size_t len;
    char error[1024]; /* an error reply's message, else "" */
} sb_reply_t;

/* sb_client_open spawns the client actor on bus.  0 or the spawn error; *out is the caller's. */
int sb_client_open(sb_bus_t *bus, sb_client_t **out);
/* sb_client_call sends one request and blocks until its reply, or timeout_ms + 2 s.  *out is
 * released first (start from a zeroed sb_reply_t) and then filled; returns out->status. */
int sb_client_call(sb_client_t *c, sb_addr_t dst, uint16_t type, const void *body, size_t len,
                   uint32_t timeout_ms, sb_reply_t *out);
/* sb_reply_msg views a reply as a received message, for the generated decoders. */
static inline sb_msg_t
sb_reply_msg(const sb_reply_t *r)
{
    return (sb_msg_t){.type = r->type, .body = r->body, .body_len = (uint32_t)r->len};
}
void sb_reply_fini(sb_reply_t *r);
/* sb_client_close stops and joins the client actor; returns sb_actor_join's result. */
int sb_client_close(sb_client_t *c);

#endif
