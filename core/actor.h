/*
 * actor.h: the actor runtime.  An actor is an ops table; the runtime owns its thread, its
 * uv_loop_t, its mailbox (an NNG pull socket whose receive fd a uv_poll_t watches) and its
 * state memory.
 *
 * Sending never blocks: frames go into a per-destination outbox that is flushed as one NNG
 * message before the loop next waits for I/O (uv_prepare), so everything an actor sends to one
 * peer in one loop iteration costs one cross-thread wake-up.  A full peer makes sends fail with
 * SB_EAGAIN (backpressure), never grow memory without bound.
 *
 * Request/reply: sb_actor_request registers a callback under a fresh correlation id with a
 * deadline; the callback runs exactly once with an error (SB_ETIMEDOUT, SB_ECANCELED, or the
 * remote error code), or once per reply: for a stream, once per chunk until the final one.
 *
 * Liveness: the runtime answers PING on the actor's own loop, so a PONG proves the loop runs.
 *
 * Shutdown: sb_actor_stop (any thread) asks the loop to stop; ops->stop closes what init
 * opened and lets in-flight work finish; when the actor has no handle of its own left and no
 * request pending -- or the grace period ends, when the rest is failed and closed -- the
 * runtime closes its own handles, uv_run returns and uv_loop_close must return 0.
 */
#ifndef SB_ACTOR_H
#define SB_ACTOR_H

#include "bus.h"
#include "protocols/msg.h"

#include <uv.h>

#define SB_ACTOR_ABI_V1 1

typedef struct sb_actor sb_actor_t;

typedef struct {
    int abi;
    const char *name;
    int kind;          /* sb_actor_kind_t */
    size_t state_size; /* zeroed memory handed to every op */
    /* On the actor's thread with the loop ready, before any message.  An error aborts spawn. */
    int (*init)(sb_actor_t *a, void *state);
    /* One message, borrowed until return; must not block.  Return 0 when handled (replied now
     * or later); a negative SB_E* makes the runtime answer a request with that error. */
    int (*handle)(sb_actor_t *a, void *state, const sb_msg_t *m);
    /* Begin stopping: close listeners and what init opened; idempotent. */
    void (*stop)(sb_actor_t *a, void *state);
    /* Optional: free memory after the loop has closed. */
    void (*fini)(sb_actor_t *a, void *state);
} sb_actor_ops_t;

/* sb_actor_spawn starts the actor on a new thread and waits for its init.  arg is borrowed by
 * the actor for its whole life.  On success *out is the caller's (sb_actor_free after join). */
int sb_actor_spawn(sb_bus_t *bus, const sb_actor_ops_t *ops, void *arg, sb_actor_t **out);
/* sb_actor_stop asks the actor to stop within grace_ms.  Any thread; idempotent. */
void sb_actor_stop(sb_actor_t *a, uint32_t grace_ms);
/* sb_actor_join waits for the thread.  Returns 0 if its loop closed cleanly, SB_EINTERNAL if
 * uv_loop_close reported live handles (they are logged). */
int sb_actor_join(sb_actor_t *a);
void sb_actor_free(sb_actor_t *a);

/* Accessors: call on the actor's thread (bus and arg from any). */
uv_loop_t *sb_actor_loop(sb_actor_t *a);
void *sb_actor_arg(sb_actor_t *a);
void *sb_actor_state(sb_actor_t *a);
sb_bus_t *sb_actor_bus(sb_actor_t *a);
int sb_actor_kind(sb_actor_t *a);
int sb_actor_stopping(sb_actor_t *a);
uint64_t sb_actor_pending(sb_actor_t *a);

/* Where a reply goes: copied out of a request so it can be answered after handle returns. */
typedef struct {
    uint64_t node;
    uint64_t corr;
    uint64_t deadline_ms;
    uint8_t kind;
} sb_replyto_t;

static inline sb_replyto_t
sb_replyto(const sb_msg_t *m)
{
    return (sb_replyto_t){m->src_node, m->corr, m->deadline_ms, m->src_actor};
}

/* All of the following: on the actor's thread only; never block; the body is copied. */

/* sb_actor_send queues one message.  SB_EAGAIN: the peer is full; SB_ENOROUTE: nothing runs
 * that kind; SB_ETOOBIG: body over SB_MSG_MAX_BODY. */
int sb_actor_send(sb_actor_t *a, sb_addr_t dst, uint16_t type, uint8_t flags, uint64_t corr,
                  uint64_t deadline_ms, const void *body, size_t len);

typedef void (*sb_reply_cb)(sb_actor_t *a, int status, const sb_msg_t *reply, void *ud);
/* sb_actor_request sends a request and calls cb with the reply (status 0; for a stream, once
 * per chunk, the last with SB_MF_FINAL set) or once with an error.  *corr_out may be NULL.
 * On failure cb is not called. */
int sb_actor_request(sb_actor_t *a, sb_addr_t dst, uint16_t type, const void *body, size_t len,
                     uint32_t timeout_ms, sb_reply_cb cb, void *ud, uint64_t *corr_out);
/* sb_actor_cancel drops a pending request; its callback runs with SB_ECANCELED. */
int sb_actor_cancel(sb_actor_t *a, uint64_t corr);

/* sb_actor_reply answers: flags 0 for a single reply, SB_MF_STREAM for a chunk with more to
 * come, SB_MF_FINAL for the last chunk.  A reply is best effort by contract: when it cannot
 * be queued (SB_ENOROUTE: the requester is gone; SB_EAGAIN: its node is full) the requester's
 * own deadline ends its wait, and the runtime logs the drop (SB-ACTOR-REPLY-DROP, debug).  So
 * a plain reply's result may be ignored; a stream that must stay in order checks SB_EAGAIN
 * and retries (actors/executor/exec_out.c). */
int sb_actor_reply(sb_actor_t *a, const sb_replyto_t *to, uint16_t type, uint8_t flags,
                   const void *body, size_t len);
/* sb_actor_reply_error answers with an error message (code = SB_E*); best effort as above. */
int sb_actor_reply_error(sb_actor_t *a, const sb_replyto_t *to, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* A scratch buffer for encoding bodies on this actor's thread (reset by each call). */
sb_buf_t *sb_actor_scratch(sb_actor_t *a);

#endif
