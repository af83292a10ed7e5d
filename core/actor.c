/*
 * actor.c: thread + loop + mailbox + outboxes + pending requests for one actor.
 *
 * States of an actor: RUNNING -> STOPPING (ops->stop called, grace timer armed, in-flight work
 * finishing; messages still handled) -> FINISHING (runtime handles closing) -> closed
 * (uv_run returned).  Only the actor's own thread touches anything but stop_req/grace_ms.
 *
 * Invariants:
 *  - every pending request is in the hash and the deadline list, and its callback runs exactly
 *    once with an error or with its final reply;
 *  - an outbox holds one open batch; it is flushed by the prepare hook before the loop waits,
 *    and retried by a 1 ms timer while the peer is full;
 *  - the uv_poll on NNG's receive fd is closed before the NNG socket.
 */
#include "actor.h"

#include "base/err.h"
#include "base/log.h"
#include "protocols/msgs.h"
#include "base/clock.h"
#include "base/alloc.h"

#include <nng/nng.h>
#include <nng/protocol/pipeline0/pull.h>
#include <nng/protocol/pipeline0/push.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ACTOR_BATCH_DRAIN 64      /* NNG messages per wake-up, so timers and I/O keep their turn */
#define ACTOR_OUTBOX_SOFT (1u << 20) /* past this an outbox refuses more (backpressure) */
#define ACTOR_PENDING_BUCKETS 1024
#define ACTOR_MBOX_RECVBUF 128
#define ACTOR_PUSH_SENDBUF 32
#define ACTOR_ROUTE_TTL_US 1000000

typedef struct pending {
    uint64_t corr;
    uint64_t deadline_us; /* monotonic */
    sb_reply_cb cb;
    void *ud;
    struct pending *prev, *next; /* deadline order */
    struct pending *hnext;
} pending_t;

typedef struct {
    sb_addr_t want;       /* as the sender addressed it */
    uint64_t node;        /* resolved */
    int local;
    int sock_open;
    nng_socket sock;      /* local: ours, dialed to url */
    nng_socket *remote;   /* remote: the bus's shared socket for that node */
    char url[96];
    uint64_t resolved_us;
    sb_buf_t batch;
} outbox_t;

enum { ACTOR_RUNNING, ACTOR_STOPPING, ACTOR_FINISHING };

struct sb_actor {
    const sb_actor_ops_t *ops;
    sb_bus_t *bus;
    void *arg;
    void *state;
    uv_thread_t thread;
    uv_loop_t loop;

    nng_socket mbox;
    int mbox_open;
    char url[96];
    uv_poll_t poll;
    uv_async_t async;
    uv_prepare_t prepare;
    uv_timer_t deadline_timer, retry_timer, stop_timer, grace_timer;
    int handles_inited;
    int registered; /* our kind is in the bus directory (ours to remove) */

    uv_mutex_t mu;
    uv_cond_t cv;
    int init_done, init_rc;
    int async_live; /* guarded by mu: the async handle may be signalled */

    atomic_int stop_req;
    atomic_uint grace_ms;
    int phase;
    int closed_rc;

    pending_t *buckets[ACTOR_PENDING_BUCKETS];
    pending_t *dl_head, *dl_tail;
    uint64_t npending;
    uint64_t next_corr;

    outbox_t *ob;
    size_t nob;
    int dirty;

    sb_buf_t scratch;
    uint64_t handled;
    uint64_t started_ms;
};

static void actor_flush(sb_actor_t *a);
static void actor_finish(sb_actor_t *a);
static void actor_on_deadline(uv_timer_t *t);

uv_loop_t *
sb_actor_loop(sb_actor_t *a)
{
    return &a->loop;
}

void *
sb_actor_arg(sb_actor_t *a)
{
    return a->arg;
}

void *
sb_actor_state(sb_actor_t *a)
{
    return a->state;
}

sb_bus_t *
sb_actor_bus(sb_actor_t *a)
{
    return a->bus;
}

int
sb_actor_kind(sb_actor_t *a)
{
    return a->ops->kind;
}

int
sb_actor_stopping(sb_actor_t *a)
{
    return a->phase != ACTOR_RUNNING;
}

uint64_t
sb_actor_pending(sb_actor_t *a)
{
    return a->npending;
}

sb_buf_t *
sb_actor_scratch(sb_actor_t *a)
{
    sb_buf_reset(&a->scratch);
    return &a->scratch;
}

/* ---- pending requests ---------------------------------------------------------------- */

static pending_t **
actor_bucket(sb_actor_t *a, uint64_t corr)
{
    return &a->buckets[(corr * 0x9E3779B97F4A7C15ull) >> 54 & (ACTOR_PENDING_BUCKETS - 1)];
}

static void
actor_arm_deadline(sb_actor_t *a)
{
    if (a->phase == ACTOR_FINISHING)
        return;
    if (!a->dl_head) {
        uv_timer_stop(&a->deadline_timer);
        return;
    }
    uint64_t now = sb_now_mono_us();
    uint64_t ms = a->dl_head->deadline_us > now ? (a->dl_head->deadline_us - now + 999) / 1000 : 0;
    uv_timer_start(&a->deadline_timer, actor_on_deadline, ms, 0);
}

static void
actor_pending_unlink(sb_actor_t *a, pending_t *p)
{
    pending_t **pp = actor_bucket(a, p->corr);
    while (*pp && *pp != p)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = p->hnext;
    if (p->prev)
        p->prev->next = p->next;
    else
        a->dl_head = p->next;
    if (p->next)
        p->next->prev = p->prev;
    else
        a->dl_tail = p->prev;
    a->npending--;
}

static pending_t *
actor_pending_find(sb_actor_t *a, uint64_t corr)
{
    for (pending_t *p = *actor_bucket(a, corr); p; p = p->hnext)
        if (p->corr == corr)
            return p;
    return NULL;
}

static void
actor_pending_add(sb_actor_t *a, pending_t *p)
{
    pending_t **b = actor_bucket(a, p->corr);
    p->hnext = *b;
    *b = p;
    /* Deadlines mostly arrive in order: insert scanning back from the tail. */
    pending_t *q = a->dl_tail;
    while (q && q->deadline_us > p->deadline_us)
        q = q->prev;
    p->prev = q;
    p->next = q ? q->next : a->dl_head;
    if (p->next)
        p->next->prev = p;
    else
        a->dl_tail = p;
    if (q)
        q->next = p;
    else
        a->dl_head = p;
    a->npending++;
    if (a->dl_head == p)
        actor_arm_deadline(a);
}

static void
actor_on_deadline(uv_timer_t *t)
{
    sb_actor_t *a = t->data;
    uint64_t now = sb_now_mono_us();
    while (a->dl_head && a->dl_head->deadline_us <= now + 500) {
        pending_t *p = a->dl_head;
        actor_pending_unlink(a, p);
        sb_log_set_cid(p->corr);
        p->cb(a, SB_ETIMEDOUT, NULL, p->ud);
        free(p);
    }
    sb_log_set_cid(0);
    actor_arm_deadline(a);
}

static void
actor_fail_all_pending(sb_actor_t *a, int err)
{
    while (a->dl_head) {
        pending_t *p = a->dl_head;
        actor_pending_unlink(a, p);
        p->cb(a, err, NULL, p->ud);
        free(p);
    }
}

int
sb_actor_cancel(sb_actor_t *a, uint64_t corr)
{
    pending_t *p = actor_pending_find(a, corr);
    if (!p)
        return SB_ENOTFOUND;
    actor_pending_unlink(a, p);
    p->cb(a, SB_ECANCELED, NULL, p->ud);
    free(p);
    actor_arm_deadline(a);
    return 0;
}

/* ---- sending ------------------------------------------------------------------------- */

static void
actor_outbox_close(outbox_t *ob)
{
    if (ob->sock_open) {
        nng_close(ob->sock);
        ob->sock_open = 0;
    }
}

/* actor_outbox finds or makes the outbox for dst, resolving its route when stale. */
static int
actor_outbox(sb_actor_t *a, sb_addr_t dst, outbox_t **out)
{
    outbox_t *ob = NULL;
    uint64_t now = sb_now_mono_us();
    sb__route_t rt;
    int r, e;

    for (size_t i = 0; i < a->nob; i++)
        if (a->ob[i].want.node == dst.node && a->ob[i].want.kind == dst.kind)
            ob = &a->ob[i];
    if (ob && now - ob->resolved_us < ACTOR_ROUTE_TTL_US) {
        *out = ob;
        return 0;
    }
    if ((r = sb__bus_route(a->bus, dst, &rt)) != 0)
        return r;
    if (!ob) {
        a->ob = sb_xrealloc(a->ob, (a->nob + 1) * sizeof *a->ob);
        ob = &a->ob[a->nob++];
        memset(ob, 0, sizeof *ob);
        ob->want = dst;
        sb_buf_init(&ob->batch, 0);
        sb_batch_begin(&ob->batch, sb_bus_node_id(a->bus));
    }
    if (rt.local && (!ob->sock_open || strcmp(ob->url, rt.url) != 0)) {
        actor_outbox_close(ob);
        if ((e = nng_push0_open(&ob->sock)) != 0)
            return SB_EIO;
        nng_socket_set_int(ob->sock, NNG_OPT_SENDBUF, ACTOR_PUSH_SENDBUF);
        if ((e = nng_dial(ob->sock, rt.url, NULL, 0)) != 0) {
            nng_close(ob->sock);
            return SB_ENOROUTE;
        }
        ob->sock_open = 1;
        snprintf(ob->url, sizeof ob->url, "%s", rt.url);
    }
    ob->local = rt.local;
    ob->node = rt.node;
    ob->remote = rt.local ? NULL : (nng_socket *)rt.remote;
    ob->resolved_us = now;
    *out = ob;
    return 0;
}

static void
actor_on_prepare(uv_prepare_t *h)
{
    sb_actor_t *a = h->data;
    if (a->dirty)
        actor_flush(a);
}

static void
actor_on_retry(uv_timer_t *t)
{
    actor_flush(t->data);
}

/* actor_flush sends every non-empty outbox as one NNG message; a full peer keeps its batch. */
static void
actor_flush(sb_actor_t *a)
{
    size_t keylen;
    const uint8_t *key = sb__bus_secret(a->bus, &keylen);
    int blocked = 0;

    for (size_t i = 0; i < a->nob; i++) {
        outbox_t *ob = &a->ob[i];
        nng_msg *nm;
        if (sb_batch_count(&ob->batch) == 0)
            continue;
        size_t plain = ob->batch.len;
        sb_batch_seal(&ob->batch, ob->local ? NULL : key, keylen);
        nng_socket s = ob->local ? ob->sock : *ob->remote;
        int e = nng_msg_alloc(&nm, ob->batch.len);
        if (e == 0) {
            memcpy(nng_msg_body(nm), ob->batch.data, ob->batch.len);
            e = nng_sendmsg(s, nm, NNG_FLAG_NONBLOCK);
            if (e)
                nng_msg_free(nm);
        }
        if (e == 0) {
            sb_batch_begin(&ob->batch, sb_bus_node_id(a->bus));
        } else {
            /* Unseal and keep it: the next flush re-stamps it. */
            ob->batch.len = plain;
            ob->batch.data[3] &= (uint8_t)~SB_BATCH_AUTH;
            if (e == NNG_ECLOSED) {
                sb_batch_begin(&ob->batch, sb_bus_node_id(a->bus));
                ob->resolved_us = 0;
            } else {
                blocked = 1;
            }
        }
    }
    a->dirty = blocked;
    if (blocked && a->phase != ACTOR_FINISHING && !uv_is_active((uv_handle_t *)&a->retry_timer))
        uv_timer_start(&a->retry_timer, actor_on_retry, 1, 1);
    else if (!blocked)
        uv_timer_stop(&a->retry_timer);
}

int
sb_actor_send(sb_actor_t *a, sb_addr_t dst, uint16_t type, uint8_t flags, uint64_t corr,
              uint64_t deadline_ms, const void *body, size_t len)
{
    outbox_t *ob;
    int r;

    if (a->phase == ACTOR_FINISHING)
        return SB_ECLOSED;
    if (len > SB_MSG_MAX_BODY)
        return SB_ETOOBIG;
    if ((r = actor_outbox(a, dst, &ob)) != 0)
        return r;
    if (sb_batch_count(&ob->batch) > 0 && ob->batch.len + len > ACTOR_OUTBOX_SOFT)
        return SB_EAGAIN;
    sb_msg_t m = {.type = type, .flags = flags, .src_actor = (uint8_t)a->ops->kind,
                  .dst_actor = dst.kind, .dst_node = ob->local ? 0 : ob->node, .corr = corr,
                  .deadline_ms = deadline_ms, .body = body, .body_len = (uint32_t)len};
    if ((r = sb_batch_add(&ob->batch, &m)) != 0)
        return r;
    a->dirty = 1;
    return 0;
}

int
sb_actor_request(sb_actor_t *a, sb_addr_t dst, uint16_t type, const void *body, size_t len,
                 uint32_t timeout_ms, sb_reply_cb cb, void *ud, uint64_t *corr_out)
{
    uint64_t corr = ++a->next_corr;
    uint64_t deadline = sb_now_real_ms() + timeout_ms;
    int r = sb_actor_send(a, dst, type, SB_MF_REQ, corr, deadline, body, len);
    if (r)
        return r;
    pending_t *p = sb_xcalloc(1, sizeof *p);
    p->corr = corr;
    p->deadline_us = sb_now_mono_us() + (uint64_t)timeout_ms * 1000;
    p->cb = cb;
    p->ud = ud;
    actor_pending_add(a, p);
    if (corr_out)
        *corr_out = corr;
    return 0;
}

int
sb_actor_reply(sb_actor_t *a, const sb_replyto_t *to, uint16_t type, uint8_t flags,
               const void *body, size_t len)
{
    sb_addr_t dst = {to->node == sb_bus_node_id(a->bus) ? 0 : to->node, to->kind};
    int rc = sb_actor_send(a, dst, type, (uint8_t)(SB_MF_REPLY | flags), to->corr, 0, body, len);
    if (rc < 0)
        sb_log_debug("SB-ACTOR-REPLY-DROP", "%s: reply %s to %s dropped: %s", a->ops->name,
                     sb_msg_type_name(type), sb_actor_kind_name(to->kind), sb_strerror(rc));
    return rc;
}

int
sb_actor_reply_error(sb_actor_t *a, const sb_replyto_t *to, int code, const char *fmt, ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    sb_error_t e = {.code = code, .name = sb_str(sb_err_name(code)), .message = sb_str(text)};
    sb_buf_t *b = sb_actor_scratch(a);
    int r = sb_error_encode(&e, b);
    if (r)
        return r;
    return sb_actor_reply(a, to, SB_MSG_ERROR, SB_MF_ERROR | SB_MF_FINAL, b->data, b->len);
}

/* ---- receiving ----------------------------------------------------------------------- */

static void
actor_on_reply(sb_actor_t *a, const sb_msg_t *m)
{
    pending_t *p = actor_pending_find(a, m->corr);
    if (!p) {
        sb_log_debug("SB-ACTOR-LATE-REPLY", "reply %s for no pending request dropped",
                     sb_msg_type_name(m->type));
        return;
    }
    int status = 0;
    int final = !(m->flags & SB_MF_STREAM) || (m->flags & SB_MF_FINAL);
    if (m->flags & SB_MF_ERROR) {
        sb_error_t e;
        status = sb_error_decode(m, &e) == 0 && e.code < 0 ? (int)e.code : SB_EINTERNAL;
        final = 1;
    }
    if (final) {
        actor_pending_unlink(a, p);
        p->cb(a, status, m, p->ud);
        free(p);
        actor_arm_deadline(a);
    } else {
        p->cb(a, status, m, p->ud);
    }
}

static void
actor_answer_ping(sb_actor_t *a, const sb_msg_t *m)
{
    sb_ping_t ping;
    sb_replyto_t to = sb_replyto(m);
    if (sb_ping_decode(m, &ping) != 0) {
        sb_actor_reply_error(a, &to, SB_EBADMSG, "malformed ping");
        return;
    }
    sb_pong_t pong = {.sent_us = ping.sent_us, .node = sb_str(sb_bus_node_name(a->bus)),
                      .actor = sb_str(a->ops->name), .uptime_ms = sb_now_real_ms() - a->started_ms,
                      .pid = (uint64_t)getpid(), .handled = a->handled};
    sb_buf_t *b = sb_actor_scratch(a);
    if (sb_pong_encode(&pong, b) == 0)
        sb_actor_reply(a, &to, SB_MSG_PONG, 0, b->data, b->len);
}

static void
actor_dispatch(sb_actor_t *a, const sb_msg_t *m)
{
    a->handled++;
    sb__bus_count(a->bus, m->type);
    sb_log_set_cid(m->corr);
    if (m->flags & SB_MF_REPLY) {
        actor_on_reply(a, m);
    } else if (m->deadline_ms && sb_now_real_ms() > m->deadline_ms) {
        sb_log_debug("SB-ACTOR-EXPIRED", "%s arrived after its deadline; dropped",
                     sb_msg_type_name(m->type));
    } else if (m->type == SB_MSG_PING) {
        actor_answer_ping(a, m);
    } else {
        int r = a->ops->handle ? a->ops->handle(a, a->state, m) : SB_EUNKNOWN_TYPE;
        if (r < 0) {
            if (m->flags & SB_MF_REQ) {
                sb_replyto_t to = sb_replyto(m);
                sb_actor_reply_error(a, &to, r, "%s refused %s: %s", a->ops->name,
                                     sb_msg_type_name(m->type), sb_strerror(r));
            }
            sb_log_warn("SB-ACTOR-REFUSED", "%s refused message type %u (%s): %s", a->ops->name,
                        m->type, sb_msg_type_name(m->type), sb_strerror(r));
        }
    }
    sb_log_set_cid(0);
}

static void
actor_on_mbox(uv_poll_t *h, int status, int events)
{
    sb_actor_t *a = h->data;
    (void)events;
    if (status < 0)
        return;
    for (int i = 0; i < ACTOR_BATCH_DRAIN; i++) {
        nng_msg *nm;
        sb_batch_iter_t it;
        sb_msg_t m;
        int n;
        if (nng_recvmsg(a->mbox, &nm, NNG_FLAG_NONBLOCK) != 0)
            break;
        if (sb_batch_open(&it, nng_msg_body(nm), nng_msg_len(nm), NULL, 0, 0) != 0) {
            sb_log_warn("SB-ACTOR-BAD-BATCH", "malformed batch dropped (%zu bytes)",
                        nng_msg_len(nm));
        } else {
            while ((n = sb_batch_next(&it, &m)) == 1)
                actor_dispatch(a, &m);
            if (n < 0)
                sb_log_warn("SB-ACTOR-BAD-FRAME", "malformed frame; rest of batch dropped");
        }
        nng_msg_free(nm);
        if (a->phase == ACTOR_FINISHING)
            break;
    }
}

/* ---- lifecycle ----------------------------------------------------------------------- */

static int
actor_own_handle(sb_actor_t *a, uv_handle_t *h)
{
    return (void *)h >= (void *)a && (void *)h < (void *)(a + 1);
}

static void
actor_count_foreign(uv_handle_t *h, void *arg)
{
    void **ctx = arg;
    if (!actor_own_handle(ctx[0], h) && !uv_is_closing(h))
        (*(int *)ctx[1])++;
}

static void
actor_close_foreign(uv_handle_t *h, void *arg)
{
    sb_actor_t *a = arg;
    if (!actor_own_handle(a, h) && !uv_is_closing(h)) {
        sb_log_warn("SB-ACTOR-FORCE-CLOSE", "%s: closing a %s handle left open at stop",
                    a->ops->name, uv_handle_type_name(h->type));
        uv_close(h, NULL);
    }
}

/* The stop timer polls for quiescence: no handle of the actor's own and nothing pending. */
static void
actor_on_stop_tick(uv_timer_t *t)
{
    sb_actor_t *a = t->data;
    int n = 0;
    void *ctx[2] = {a, &n};
    uv_walk(&a->loop, actor_count_foreign, ctx);
    if (n == 0 && a->npending == 0)
        actor_finish(a);
}

static void
actor_on_grace(uv_timer_t *t)
{
    sb_actor_t *a = t->data;
    sb_log_warn("SB-ACTOR-GRACE-EXPIRED", "%s: grace period over with %llu requests pending; "
                "failing them", a->ops->name, (unsigned long long)a->npending);
    actor_fail_all_pending(a, SB_ECANCELED);
    uv_walk(&a->loop, actor_close_foreign, a);
    actor_finish(a);
}

static void
actor_begin_stop(sb_actor_t *a)
{
    if (a->phase != ACTOR_RUNNING)
        return;
    a->phase = ACTOR_STOPPING;
    sb_log_debug("SB-ACTOR-STOPPING", "%s stopping", a->ops->name);
    if (a->ops->stop)
        a->ops->stop(a, a->state);
    uv_timer_start(&a->grace_timer, actor_on_grace, atomic_load(&a->grace_ms), 0);
    uv_timer_start(&a->stop_timer, actor_on_stop_tick, 0, 5);
}

static void
actor_on_async(uv_async_t *h)
{
    sb_actor_t *a = h->data;
    if (atomic_load(&a->stop_req))
        actor_begin_stop(a);
}

/* actor_finish: last flush, then close the runtime's own handles; uv_run then returns. */
static void
actor_finish(sb_actor_t *a)
{
    if (a->phase == ACTOR_FINISHING)
        return;
    if (a->dirty)
        actor_flush(a);
    a->phase = ACTOR_FINISHING;
    actor_fail_all_pending(a, SB_ECANCELED);
    if (a->registered)
        sb__bus_unregister(a->bus, a->ops->kind);
    a->registered = 0;
    if (a->handles_inited) {
        uv_mutex_lock(&a->mu);
        a->async_live = 0;
        uv_mutex_unlock(&a->mu);
        uv_close((uv_handle_t *)&a->poll, NULL); /* before the NNG socket that owns the fd */
        uv_close((uv_handle_t *)&a->async, NULL);
        uv_close((uv_handle_t *)&a->prepare, NULL);
        uv_close((uv_handle_t *)&a->deadline_timer, NULL);
        uv_close((uv_handle_t *)&a->retry_timer, NULL);
        uv_close((uv_handle_t *)&a->stop_timer, NULL);
        uv_close((uv_handle_t *)&a->grace_timer, NULL);
    }
    if (a->mbox_open) {
        nng_close(a->mbox);
        a->mbox_open = 0;
    }
    for (size_t i = 0; i < a->nob; i++)
        actor_outbox_close(&a->ob[i]);
}

static void
actor_log_leftover(uv_handle_t *h, void *arg)
{
    sb_actor_t *a = arg;
    sb_log_error("SB-ACTOR-LEAK", "%s: %s handle still open after stop (closing=%d)",
                 a->ops->name, uv_handle_type_name(h->type), uv_is_closing(h));
}

static int
actor_setup(sb_actor_t *a)
{
    int e, fd, r;
    if ((r = sb__bus_register(a->bus, a->ops->kind, a->url, sizeof a->url)) != 0) {
        sb_log_error("SB-ACTOR-DUP", "%s already runs in this process", a->ops->name);
        return r;
    }
    a->registered = 1;
    if ((e = nng_pull0_open(&a->mbox)) != 0)
        goto fail_nng;
    a->mbox_open = 1;
    nng_socket_set_int(a->mbox, NNG_OPT_RECVBUF, ACTOR_MBOX_RECVBUF);
    nng_socket_set_size(a->mbox, NNG_OPT_RECVMAXSZ, SB_BATCH_MAX);
    if ((e = nng_listen(a->mbox, a->url, NULL, 0)) != 0)
        goto fail_nng;
    if ((e = nng_socket_get_int(a->mbox, NNG_OPT_RECVFD, &fd)) != 0)
        goto fail_nng;
    uv_poll_init(&a->loop, &a->poll, fd);
    uv_async_init(&a->loop, &a->async, actor_on_async);
    uv_prepare_init(&a->loop, &a->prepare);
    uv_timer_init(&a->loop, &a->deadline_timer);
    uv_timer_init(&a->loop, &a->retry_timer);
    uv_timer_init(&a->loop, &a->stop_timer);
    uv_timer_init(&a->loop, &a->grace_timer);
    a->poll.data = a->async.data = a->prepare.data = a;
    a->deadline_timer.data = a->retry_timer.data = a->stop_timer.data = a->grace_timer.data = a;
    a->handles_inited = 1;
    uv_poll_start(&a->poll, UV_READABLE, actor_on_mbox);
    uv_prepare_start(&a->prepare, actor_on_prepare);
    uv_mutex_lock(&a->mu);
    a->async_live = 1;
    uv_mutex_unlock(&a->mu);
    return 0;
fail_nng:
    sb_log_error("SB-ACTOR-MBOX", "%s: mailbox %s: %s", a->ops->name, a->url, nng_strerror(e));
    return SB_EIO;
}

static void
actor_main(void *arg)
{
    sb_actor_t *a = arg;
    int r;

    sb_log_set_actor(a->ops->name);
    uv_loop_init(&a->loop);
    a->state = sb_xcalloc(1, a->ops->state_size ? a->ops->state_size : 1);
    a->started_ms = sb_now_real_ms();
    r = actor_setup(a);
    if (r == 0 && a->ops->init)
        r = a->ops->init(a, a->state);

    uv_mutex_lock(&a->mu);
    a->init_done = 1;
    a->init_rc = r;
    uv_cond_signal(&a->cv);
    uv_mutex_unlock(&a->mu);

    if (r != 0) {
        a->phase = ACTOR_STOPPING;
        if (a->ops->stop && a->handles_inited)
            a->ops->stop(a, a->state);
        uv_walk(&a->loop, actor_close_foreign, a);
        actor_finish(a);
    } else if (atomic_load(&a->stop_req)) {
        actor_begin_stop(a);
    }
    uv_run(&a->loop, UV_RUN_DEFAULT);
    if (a->mbox_open) /* setup failed before the handles existed */
        nng_close(a->mbox);
    if (uv_loop_close(&a->loop) != 0) {
        uv_walk(&a->loop, actor_log_leftover, a);
        a->closed_rc = SB_EINTERNAL;
    }
    if (a->ops->fini)
        a->ops->fini(a, a->state);
    sb_log_debug("SB-ACTOR-STOPPED", "%s stopped", a->ops->name);
}

int
sb_actor_spawn(sb_bus_t *bus, const sb_actor_ops_t *ops, void *arg, sb_actor_t **out)
{
    if (!ops || ops->abi != SB_ACTOR_ABI_V1 || ops->kind <= 0 || ops->kind >= SB_ACTOR_KINDS)
        return SB_EINVAL;
    sb_actor_t *a = sb_xcalloc(1, sizeof *a);
    a->ops = ops;
    a->bus = bus;
    a->arg = arg;
    a->next_corr = sb_now_mono_us() << 8; /* distinct across restarts of one node */
    atomic_init(&a->grace_ms, 5000);
    sb_buf_init(&a->scratch, 0);
    uv_mutex_init(&a->mu);
    uv_cond_init(&a->cv);
    if (uv_thread_create(&a->thread, actor_main, a) != 0) {
        sb_actor_free(a);
        return SB_EINTERNAL;
    }
    uv_mutex_lock(&a->mu);
    while (!a->init_done)
        uv_cond_wait(&a->cv, &a->mu);
    int r = a->init_rc;
    uv_mutex_unlock(&a->mu);
    if (r != 0) {
        uv_thread_join(&a->thread);
        sb_actor_free(a);
        return r;
    }
    *out = a;
    return 0;
}

void
sb_actor_stop(sb_actor_t *a, uint32_t grace_ms)
{
    atomic_store(&a->grace_ms, grace_ms);
    atomic_store(&a->stop_req, 1);
    uv_mutex_lock(&a->mu);
    if (a->async_live)
        uv_async_send(&a->async);
    uv_mutex_unlock(&a->mu);
}

int
sb_actor_join(sb_actor_t *a)
{
    uv_thread_join(&a->thread);
    return a->closed_rc;
}

void
sb_actor_free(sb_actor_t *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->nob; i++)
        sb_buf_fini(&a->ob[i].batch);
    free(a->ob);
    free(a->state);
    sb_buf_fini(&a->scratch);
    uv_mutex_destroy(&a->mu);
    uv_cond_destroy(&a->cv);
    free(a);
}
