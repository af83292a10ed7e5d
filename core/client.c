/*
 * client.c: the blocking client of client.h.  The caller's thread and the client actor's loop
 * meet in one mutex-guarded slot: the caller fills it (have = 1) and wakes the loop with
 * uv_async; the loop sends the request; the reply callback fills the outcome (done = 1) and
 * signals the condition variable the caller waits on.  A reply that arrives after the caller
 * gave up is dropped by the generation check.
 */
#include "client.h"

#include "actor.h"
#include "base/err.h"
#include "protocols/msgs.h"
#include "base/alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sb_client {
    sb_actor_t *actor;
    uv_mutex_t mu;
    uv_cond_t cv;
    uv_async_t async;
    /* the request in hand */
    int have;
    uint64_t gen;
    sb_addr_t dst;
    uint16_t type;
    sb_buf_t body;
    uint32_t timeout_ms;
    /* its outcome */
    int done;
    sb_reply_t *out;
};

static void
client_on_reply(sb_actor_t *a, int status, const sb_msg_t *m, void *ud)
{
    sb_client_t *c = sb_actor_arg(a);
    uint64_t gen = (uint64_t)(uintptr_t)ud;
    uv_mutex_lock(&c->mu);
    if (gen == c->gen && !c->done) {
        sb_reply_t *o = c->out;
        o->status = status;
        if (m) {
            sb_error_t e;
            o->type = m->type;
            o->body = sb_xmalloc((size_t)m->body_len + 1);
            memcpy(o->body, m->body, m->body_len);
            o->body[m->body_len] = 0;
            o->len = m->body_len;
            if ((m->flags & SB_MF_ERROR) && sb_error_decode(m, &e) == 0)
                snprintf(o->error, sizeof o->error, "%.*s", (int)e.message.len, e.message.ptr);
        }
        c->done = 1;
        uv_cond_signal(&c->cv);
    }
    uv_mutex_unlock(&c->mu);
}

static void
client_on_async(uv_async_t *h)
{
    sb_client_t *c = h->data;
    uv_mutex_lock(&c->mu);
    if (c->have) {
        c->have = 0;
        int r = sb_actor_request(c->actor, c->dst, c->type, c->body.data, c->body.len,
                                 c->timeout_ms, client_on_reply, (void *)(uintptr_t)c->gen, NULL);
        if (r) {
            c->out->status = r;
            c->done = 1;
            uv_cond_signal(&c->cv);
        }
    }
    uv_mutex_unlock(&c->mu);
}

static int
client_init(sb_actor_t *a, void *state)
{
    sb_client_t *c = sb_actor_arg(a);
    (void)state;
    c->actor = a;
    uv_async_init(sb_actor_loop(a), &c->async, client_on_async);
    c->async.data = c;
    return 0;
}

static void
client_stop(sb_actor_t *a, void *state)
{
    sb_client_t *c = sb_actor_arg(a);
    (void)state;
    if (!uv_is_closing((uv_handle_t *)&c->async))
        uv_close((uv_handle_t *)&c->async, NULL);
}

static const sb_actor_ops_t client_ops = {
    .abi = SB_ACTOR_ABI_V1,
    .name = "client",
    .kind = SB_ACTOR_CLIENT,
    .state_size = 1,
    .init = client_init,
    .stop = client_stop,
};

int
sb_client_open(sb_bus_t *bus, sb_client_t **out)
{
    sb_client_t *c = sb_xcalloc(1, sizeof *c);
    uv_mutex_init(&c->mu);
    uv_cond_init(&c->cv);
    sb_buf_init(&c->body, 0);
    int r = sb_actor_spawn(bus, &client_ops, c, &c->actor);
    if (r) {
        sb_buf_fini(&c->body);
        uv_cond_destroy(&c->cv);
        uv_mutex_destroy(&c->mu);
        free(c);
        return r;
    }
    *out = c;
    return 0;
}

void
sb_reply_fini(sb_reply_t *r)
{
    free(r->body);
    memset(r, 0, sizeof *r);
}

int
sb_client_call(sb_client_t *c, sb_addr_t dst, uint16_t type, const void *body, size_t len,
               uint32_t timeout_ms, sb_reply_t *out)
{
    sb_reply_fini(out);
    uv_mutex_lock(&c->mu);
    sb_buf_reset(&c->body);
    if (sb_buf_append(&c->body, body, len) != 0) {
        uv_mutex_unlock(&c->mu);
        return out->status = SB_ETOOBIG;
    }
    c->gen++;
    c->dst = dst;
    c->type = type;
    c->timeout_ms = timeout_ms;
    c->out = out;
    c->done = 0;
    c->have = 1;
    uv_mutex_unlock(&c->mu);
    uv_async_send(&c->async);

    uint64_t end = uv_hrtime() + ((uint64_t)timeout_ms + 2000) * 1000000ull;
    uv_mutex_lock(&c->mu);
    while (!c->done) {
        uint64_t now = uv_hrtime();
        if (now >= end)
            break;
        uv_cond_timedwait(&c->cv, &c->mu, end - now);
    }
    if (!c->done) {
        c->have = 0;
        c->gen++; /* a late reply must not write into *out any more */
        out->status = SB_ETIMEDOUT;
    }
    c->out = NULL;
    uv_mutex_unlock(&c->mu);
    return out->status;
}

int
sb_client_close(sb_client_t *c)
{
    if (!c)
        return 0;
    sb_actor_stop(c->actor, 1000);
    int r = sb_actor_join(c->actor);
    sb_actor_free(c->actor);
    sb_buf_fini(&c->body);
    uv_cond_destroy(&c->cv);
    uv_mutex_destroy(&c->mu);
    free(c);
    return r;
}
