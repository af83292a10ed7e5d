/*
 * exec_out.c: reply streams (exec.h) -- the one place the executor coalesces and sends
 * streamed replies: the OUTPUT chunks of RUN and CMD, the KERNEL_EVENTs of KERNEL_EXEC, and
 * the final reply that ends each.
 *
 * A stream is a queue of items (chunks and in-order messages) and, once known, its final
 * reply.  Appending schedules the actor's flush check (a uv_check: after the loop's I/O),
 * which sends every stream's items in order and then its final reply, and frees the stream
 * when that has left.  Text of one kind joins the last unsent item of that kind while it is
 * under 64 KiB; a full item is sent at once, so a flood costs few messages and bounded
 * memory.  When a peer is full (SB_EAGAIN) the stream keeps its place and a uv_idle keeps the
 * loop turning until there is room; a requester that is gone (SB_ENOROUTE, a dropped reply)
 * is not waited for.  Invariants: items leave in the order they were queued; the final reply
 * leaves last; a stream is on x->outs from creation until freed.
 */
#include "exec.h"

#include "base/alloc.h"
#include "base/err.h"
#include "base/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { XO_TEXT, XO_ITEM, XO_MSG } xo_form_t;

typedef struct {
    xo_form_t form;
    int kind;          /* stream (OUTPUT) or event kind (KERNEL_EVENT) */
    uint16_t type;     /* XO_MSG: its message type */
    sb_buf_t data;
} xo_item_t;

typedef enum { XO_OPEN, XO_FINAL, XO_ERROR, XO_CLOSED } xo_end_t;

struct sb__xout {
    sb__xstate_t *x;
    sb_replyto_t to;
    uint16_t chunk_type;  /* SB_MSG_OUTPUT or SB_MSG_KERNEL_EVENT */
    uint64_t pid;
    xo_item_t *items;
    size_t n, cap, sent;
    xo_end_t end;
    uint16_t final_type;
    sb_buf_t final;
    int err;
    char msg[256];
    bool scheduled;
    sb__xout_t *next;
};

static void xo_idle_cb(uv_idle_t *h);

static void
xo_check_cb(uv_check_t *h)
{
    sb__x_out_flush(h->data);
}

static void
xo_schedule(sb__xout_t *o)
{
    o->scheduled = true;
    if (o->x->handles_open)
        uv_check_start(&o->x->flush, xo_check_cb);
}

static void
xo_free(sb__xout_t *o)
{
    sb__xstate_t *x = o->x;
    for (sb__xout_t **pp = &x->outs; *pp; pp = &(*pp)->next)
        if (*pp == o) {
            *pp = o->next;
            break;
        }
    for (size_t i = o->sent; i < o->n; i++)
        sb_buf_fini(&o->items[i].data);
    free(o->items);
    sb_buf_fini(&o->final);
    free(o);
}

sb__xout_t *
sb__x_out_new(sb__xstate_t *x, const sb_replyto_t *to, uint16_t chunk_type)
{
    sb__xout_t *o = sb_xcalloc(1, sizeof *o);
    o->x = x;
    o->to = *to;
    o->chunk_type = chunk_type;
    sb_buf_init(&o->final, 0);
    o->next = x->outs;
    x->outs = o;
    return o;
}

void
sb__x_out_set_pid(sb__xout_t *o, uint64_t pid)
{
    o->pid = pid;
}

static xo_item_t *
xo_push(sb__xout_t *o, xo_form_t form, int kind)
{
    if (o->sent == o->n) /* everything sent: reuse the array from its start */
        o->sent = o->n = 0;
    if (o->n == o->cap) {
        o->cap = o->cap ? o->cap * 2 : 8;
        o->items = sb_xrealloc(o->items, o->cap * sizeof *o->items);
    }
    xo_item_t *it = &o->items[o->n++];
    *it = (xo_item_t){.form = form, .kind = kind};
    sb_buf_init(&it->data, 0);
    return it;
}

/* xo_send_one sends item it; 0 when it left (or its requester is gone), SB_EAGAIN when the
 * peer is full. */
static int
xo_send_one(sb__xout_t *o, xo_item_t *it)
{
    sb__xstate_t *x = o->x;
    sb_buf_t *b = sb_actor_scratch(x->a);
    int rc;
    if (it->form == XO_MSG) {
        rc = sb_actor_reply(x->a, &o->to, it->type, SB_MF_STREAM, it->data.data, it->data.len);
    } else {
        if (o->chunk_type == SB_MSG_OUTPUT) {
            sb_output_t m = {.pid = o->pid, .stream = (uint64_t)it->kind,
                             .data = {(const char *)it->data.data, (uint32_t)it->data.len}};
            rc = sb_output_encode(&m, b);
        } else {
            sb_kernel_event_t m = {.kind = sb_str(sb_kernel_event_name(it->kind)),
                                   .data = {(const char *)it->data.data, (uint32_t)it->data.len}};
            rc = sb_kernel_event_encode(&m, b);
        }
        if (rc == 0)
            rc = sb_actor_reply(x->a, &o->to, o->chunk_type, SB_MF_STREAM, b->data, b->len);
    }
    if (rc == SB_EAGAIN && !x->stopping)
        return SB_EAGAIN;
    /* sent, or the requester is gone: the work it reports finishes regardless */
    return 0;
}

/* xo_send sends the queued items (all, or only the full ones), then the final reply.
 * Returns 1 when the stream is done and freed, SB_EAGAIN when it waits for room, else 0. */
static int
xo_send(sb__xout_t *o, bool full_only)
{
    sb__xstate_t *x = o->x;
    while (o->sent < o->n) {
        xo_item_t *it = &o->items[o->sent];
        if (full_only && it->form == XO_TEXT && it->data.len < SB__X_CHUNK_MAX)
            break;
        if (xo_send_one(o, it) == SB_EAGAIN)
            return SB_EAGAIN;
        sb_buf_fini(&it->data);
        o->sent++;
    }
    if (full_only || o->sent < o->n || o->end == XO_OPEN)
        return 0;
    int rc = 0;
    if (o->end == XO_FINAL)
        rc = sb_actor_reply(x->a, &o->to, o->final_type, SB_MF_FINAL, o->final.data,
                            o->final.len);
    else if (o->end == XO_ERROR)
        rc = sb_actor_reply_error(x->a, &o->to, o->err, "%s", o->msg);
    if (rc == SB_EAGAIN && !x->stopping)
        return SB_EAGAIN;
    if (rc < 0 && rc != SB_ENOROUTE)
        sb_log_warn("SB-EXEC-REPLY-DROP", "final reply (type %u) dropped: %s",
                    (unsigned)o->final_type, sb_strerror(rc));
    xo_free(o);
    return 1;
}

void
sb__x_out_text(sb__xout_t *o, int kind, const void *p, size_t n)
{
    const uint8_t *d = p;
    if (!n)
        return;
    while (n) {
        xo_item_t *tail = o->n > o->sent ? &o->items[o->n - 1] : NULL;
        if (!tail || tail->form != XO_TEXT || tail->kind != kind ||
            tail->data.len >= SB__X_CHUNK_MAX)
            tail = xo_push(o, XO_TEXT, kind);
        size_t room = SB__X_CHUNK_MAX - tail->data.len, take = n < room ? n : room;
        sb_buf_append(&tail->data, d, take);
        d += take;
        n -= take;
    }
    if (o->items[o->sent].data.len >= SB__X_CHUNK_MAX)
        xo_send(o, true);
    xo_schedule(o);
}

void
sb__x_out_item(sb__xout_t *o, int kind, const void *p, size_t n)
{
    sb_buf_append(&xo_push(o, XO_ITEM, kind)->data, p, n);
    xo_schedule(o);
}

void
sb__x_out_msg(sb__xout_t *o, uint16_t type, const void *body, size_t len)
{
    xo_item_t *it = xo_push(o, XO_MSG, 0);
    it->type = type;
    sb_buf_append(&it->data, body, len);
    xo_schedule(o);
}

/* xo_end: the end is known.  While the actor stops no flush check turns, so send now. */
static void
xo_end(sb__xout_t *o, xo_end_t end)
{
    SB_ASSERT(o->end == XO_OPEN);
    o->end = end;
    if (!o->x->handles_open) {
        xo_send(o, false);
        return;
    }
    xo_schedule(o);
}

void
sb__x_out_final(sb__xout_t *o, uint16_t type, const void *body, size_t len)
{
    o->final_type = type;
    sb_buf_append(&o->final, body, len);
    xo_end(o, XO_FINAL);
}

void
sb__x_out_error(sb__xout_t *o, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(o->msg, sizeof o->msg, fmt, ap);
    va_end(ap);
    o->err = code;
    xo_end(o, XO_ERROR);
}

void
sb__x_out_close(sb__xout_t *o)
{
    xo_end(o, XO_CLOSED);
}

static void
xo_idle_cb(uv_idle_t *h)
{
    (void)h; /* only keeps the loop from blocking while replies wait for room */
}

void
sb__x_out_flush(sb__xstate_t *x)
{
    bool blocked = false, pending = false;
    for (sb__xout_t *o = x->outs, *next; o; o = next) {
        next = o->next;
        if (!o->scheduled)
            continue;
        o->scheduled = false;
        int rc = xo_send(o, false);
        if (rc == SB_EAGAIN) {
            o->scheduled = true;
            blocked = pending = true;
        }
    }
    if (!x->handles_open)
        return;
    if (!pending)
        uv_check_stop(&x->flush);
    if (blocked)
        uv_idle_start(&x->retry, xo_idle_cb);
    else
        uv_idle_stop(&x->retry);
}

void
sb__x_out_free_all(sb__xstate_t *x)
{
    while (x->outs)
        xo_free(x->outs);
}
