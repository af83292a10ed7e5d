/* xharness.c: the executor-actor tests' shared client, fakes and builders (xharness.h). */
#include "xharness.h"

#include "actors/executor/executor.h"
#include "core/actor.h"
#include "core/bus.h"
#include "core/config.h"
#include "base/err.h"
#include "protocols/mp.h"
#include "protocols/msgs.h"
#include "test.h"
#include <dirent.h>
#include <msgpack.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- the client: concurrent calls, every reply of a stream recorded ------------------------- */



xh_client_t xh_cl;

static void
cl_on_reply(sb_actor_t *a, int status, const sb_msg_t *m, void *ud)
{
    xh_call_t *c = ud;
    (void)a;
    uv_mutex_lock(&xh_cl.mu);
    if (c->n < 4096) {
        xh_reply_t *r = &c->r[c->n++];
        r->status = status;
        if (m) {
            r->type = m->type;
            r->flags = m->flags;
            r->body = malloc(m->body_len + 1);
            memcpy(r->body, m->body, m->body_len);
            r->len = m->body_len;
        }
    }
    if (status != 0 || !m || !(m->flags & SB_MF_STREAM))
        c->done = 1;
    uv_cond_broadcast(&xh_cl.cv);
    uv_mutex_unlock(&xh_cl.mu);
}

static void
cl_on_async(uv_async_t *h)
{
    (void)h;
    uv_mutex_lock(&xh_cl.mu);
    xh_call_t *q = xh_cl.queue;
    xh_cl.queue = NULL;
    uv_mutex_unlock(&xh_cl.mu);
    for (xh_call_t *c = q, *next; c; c = next) {
        next = c->next;
        int rc = sb_actor_request(xh_cl.actor, sb_addr(c->dst), c->type, c->body, c->len,
                                  c->timeout_ms, cl_on_reply, c, NULL);
        if (rc) {
            uv_mutex_lock(&xh_cl.mu);
            c->r[c->n++].status = rc;
            c->done = 1;
            uv_cond_broadcast(&xh_cl.cv);
            uv_mutex_unlock(&xh_cl.mu);
        }
    }
}

static int
cl_init(sb_actor_t *a, void *state)
{
    (void)state;
    xh_cl.actor = a;
    uv_async_init(sb_actor_loop(a), &xh_cl.async, cl_on_async);
    return 0;
}

static void
cl_stop(sb_actor_t *a, void *state)
{
    (void)a;
    (void)state;
    if (!uv_is_closing((uv_handle_t *)&xh_cl.async))
        uv_close((uv_handle_t *)&xh_cl.async, NULL);
}

const sb_actor_ops_t xh_cl_ops = {.abi = SB_ACTOR_ABI_V1, .name = "testclient",
                                      .kind = SB_ACTOR_CLIENT, .state_size = 1,
                                      .init = cl_init, .stop = cl_stop};

xh_call_t *
xh_call_start(uint16_t type, const sb_buf_t *b, uint32_t timeout_ms)
{
    xh_call_t *c = calloc(1, sizeof *c);
    c->dst = SB_ACTOR_EXECUTOR;
    c->type = type;
    c->body = malloc(b->len + 1);
    memcpy(c->body, b->data, b->len);
    c->len = b->len;
    c->timeout_ms = timeout_ms;
    uv_mutex_lock(&xh_cl.mu);
    c->next = xh_cl.queue;
    xh_cl.queue = c;
    uv_mutex_unlock(&xh_cl.mu);
    uv_async_send(&xh_cl.async);
    return c;
}

/* Wait until the call has n replies (0: until it is done). */
void
xh_call_wait_n(xh_call_t *c, size_t n, uint32_t ms)
{
    uint64_t end = uv_hrtime() + (uint64_t)ms * 1000000ull;
    uv_mutex_lock(&xh_cl.mu);
    while (!c->done && (n == 0 || c->n < n)) {
        uint64_t now = uv_hrtime();
        if (now >= end)
            break;
        uv_cond_timedwait(&xh_cl.cv, &xh_cl.mu, end - now);
    }
    int ok = c->done || (n && c->n >= n);
    uv_mutex_unlock(&xh_cl.mu);
    if (!ok) {
        fprintf(stderr, "FAIL: no answer to message type %u within %u ms\n", c->type, ms);
        exit(1);
    }
}

void
xh_call_free(xh_call_t *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->r[i].body);
    free(c->body);
    free(c);
}

/* One request, one final answer: returns the xh_call (status of the last reply in ->r). */
xh_call_t *
xh_call(uint16_t type, const sb_buf_t *b, uint32_t timeout_ms)
{
    xh_call_t *c = xh_call_start(type, b, timeout_ms);
    xh_call_wait_n(c, 0, timeout_ms + 2000);
    return c;
}

xh_reply_t *
xh_last(xh_call_t *c)
{
    CHECK(c->n > 0);
    return &c->r[c->n - 1];
}

sb_msg_t
xh_as_msg(const xh_reply_t *r)
{
    return (sb_msg_t){.type = r->type, .flags = r->flags, .body = r->body,
                      .body_len = (uint32_t)r->len};
}

/* ---- fake monitor and scheduler ----------------------------------------------------------- */

xh_rec_t xh_rec;

static int
mon_handle(sb_actor_t *a, void *state, const sb_msg_t *m)
{
    (void)a;
    (void)state;
    uv_mutex_lock(&xh_rec.mu);
    if (m->type == SB_MSG_MON_EXEC) {
        sb_mon_exec_t e;
        CHECK(sb_mon_exec_decode(m, &e) == 0);
        CHECK(e.runtime.len > 0 && e.status.len > 0 && e.duration_us > 0);
        xh_rec.mon_exec++;
    } else if (m->type == SB_MSG_MON_SANDBOX) {
        sb_mon_sandbox_t s;
        CHECK(sb_mon_sandbox_decode(m, &s) == 0);
        if (s.ended && xh_rec.nended < 64)
            sb_str_copy(xh_rec.ended[xh_rec.nended++], 24, s.id);
        else if (!s.ended) {
            xh_rec.mon_sbx_samples++;
            sb_str_copy(xh_rec.sampled, sizeof xh_rec.sampled, s.id);
            xh_rec.sampled_mem = s.memory;
            xh_rec.sampled_pids = s.pids;
        }
    } else if (m->type == SB_MSG_NODE_CAPACITY) {
        sb_node_capacity_t c;
        CHECK(sb_node_capacity_decode(m, &c) == 0);
        xh_rec.cap_reports++;
        xh_rec.cap_sandboxes = c.sandboxes;
        xh_rec.cap_max = c.max_sandboxes;
        xh_rec.cap_has_python = memmem(c.runtimes.ptr, c.runtimes.len, "python", 6) != NULL;
    }
    uv_cond_broadcast(&xh_rec.cv);
    uv_mutex_unlock(&xh_rec.mu);
    return 0;
}

const sb_actor_ops_t xh_mon_ops = {.abi = SB_ACTOR_ABI_V1, .name = "fakemonitor",
                                       .kind = SB_ACTOR_MONITOR, .state_size = 1,
                                       .handle = mon_handle};
const sb_actor_ops_t xh_sched_ops = {.abi = SB_ACTOR_ABI_V1, .name = "fakesched",
                                         .kind = SB_ACTOR_SCHEDULER, .state_size = 1,
                                         .handle = mon_handle};

/* Wait (deadline ms) until pred() holds; the recorder signals each report it takes. */
int
xh_rec_wait(int (*pred)(void *), void *arg, int ms)
{
    uint64_t end = uv_hrtime() + (uint64_t)ms * 1000000ull;
    uv_mutex_lock(&xh_rec.mu);
    int ok;
    while (!(ok = pred(arg))) {
        uint64_t now = uv_hrtime();
        if (now >= end)
            break;
        uv_cond_timedwait(&xh_rec.cv, &xh_rec.mu, end - now);
    }
    uv_mutex_unlock(&xh_rec.mu);
    return ok;
}

/* ---- request builders ---------------------------------------------------------------------- */

sb_buf_t xh_B;

sb_buf_t *
xh_enc(const sb_msgdef_t *d, const void *s)
{
    sb_buf_reset(&xh_B);
    CHECK(sb_codec_encode(d, s, &xh_B) == 0);
    return &xh_B;
}

/* A msgpack array of strings, in a static buffer per slot. */
sb_buf_t xh_strv_bufs[4];

sb_str_t
xh_strv(int slot, const char *const *v)
{
    sb_buf_t *buf = &xh_strv_bufs[slot];
    msgpack_packer pk;
    size_t n = 0;
    while (v[n])
        n++;
    sb_buf_reset(buf);
    sb_codec_packer(&pk, buf);
    msgpack_pack_array(&pk, n);
    for (size_t i = 0; i < n; i++) {
        msgpack_pack_str(&pk, strlen(v[i]));
        msgpack_pack_str_body(&pk, v[i], strlen(v[i]));
    }
    return (sb_str_t){(const char *)buf->data, (uint32_t)buf->len};
}

/* ---- sandboxes and runs ---------------------------------------------------------------- */

char *
xh_create_warm(const char *runtime, bool warm)
{
    sb_sbx_create_t req = {.runtime = sb_str(runtime), .owner = SB_STR("test"), .warm = warm};
    xh_call_t *c = xh_call(SB_MSG_SBX_CREATE, xh_enc(&sb_sbx_create_def, &req), 10000);
    CHECK_EQ(xh_last(c)->status, 0);
    CHECK_EQ(xh_last(c)->type, SB_MSG_SBX_INFO);
    sb_msg_t m = xh_as_msg(xh_last(c));
    sb_sbx_info_t info;
    CHECK(sb_sbx_info_decode(&m, &info) == 0);
    CHECK(info.id.len == 20 && memcmp(info.id.ptr, "sbx-", 4) == 0);
    CHECK(sb_str_eq(info.state, "running"));
    char *id = sb_str_dup(info.id);
    xh_call_free(c);
    return id;
}

char *
xh_create(const char *runtime)
{
    return xh_create_warm(runtime, false);
}

int
xh_destroy(const char *id)
{
    sb_sbx_destroy_t req = {.id = sb_str(id), .reason = SB_STR("deleted")};
    xh_call_t *c = xh_call(SB_MSG_SBX_DESTROY, xh_enc(&sb_sbx_destroy_def, &req), 10000);
    int st = xh_last(c)->status;
    if (st == 0) {
        CHECK_EQ(xh_last(c)->type, SB_MSG_EXEC_ACK);
        sb_msg_t m = xh_as_msg(xh_last(c));
        sb_exec_ack_t ack;
        CHECK(sb_exec_ack_decode(&m, &ack) == 0 && sb_str_eq(ack.id, id));
    }
    xh_call_free(c);
    return st;
}

/* The RESULT of a finished RUN/CMD xh_call (which must end with one). */
void
xh_result_of(xh_call_t *c, xh_result_t *out)
{
    out->c = c;
    CHECK_EQ(xh_last(c)->status, 0);
    CHECK_EQ(xh_last(c)->type, SB_MSG_RESULT);
    CHECK(xh_last(c)->flags & SB_MF_FINAL);
    out->m = xh_as_msg(xh_last(c));
    CHECK(sb_result_decode(&out->m, &out->res) == 0);
}

xh_call_t *
xh_run(sb_run_t *req, uint32_t timeout_ms)
{
    return xh_call(SB_MSG_RUN, xh_enc(&sb_run_def, req), timeout_ms);
}

int
xh_status_is(const xh_result_t *r, const char *s)
{
    if (!sb_str_eq(r->res.status, s)) {
        fprintf(stderr, "status %.*s (want %s), error '%.*s', stderr '%.*s'\n",
                (int)r->res.status.len, r->res.status.ptr, s, (int)r->res.error.len,
                r->res.error.ptr, (int)(r->res.stderr.len > 400 ? 400 : r->res.stderr.len),
                r->res.stderr.ptr);
        return 0;
    }
    return 1;
}

/* ---- the world ---------------------------------------------------------------------------- */

void
xh_start(xh_world_t *w, const char *const *flags)
{
    signal(SIGPIPE, SIG_IGN);
    sb_buf_init(&xh_B, 0);
    for (int i = 0; i < 4; i++)
        sb_buf_init(&xh_strv_bufs[i], 0);
    uv_mutex_init(&xh_cl.mu);
    uv_cond_init(&xh_cl.cv);
    uv_mutex_init(&xh_rec.mu);
    uv_cond_init(&xh_rec.cv);
    sb_test_config(&w->cfg, flags);
    CHECK(sb_bus_alloc(&(sb_bus_opts_t){0}, &w->bus) == 0);
    CHECK(sb_actor_spawn(w->bus, &xh_mon_ops, NULL, &w->mon) == 0);
    CHECK(sb_actor_spawn(w->bus, &xh_sched_ops, NULL, &w->sched) == 0);
    CHECK(sb_actor_spawn(w->bus, &sb_executor_actor, &w->cfg, &w->exec) == 0);
    CHECK(sb_actor_spawn(w->bus, &xh_cl_ops, NULL, &xh_cl.actor) == 0);
}

void
xh_stop(xh_world_t *w)
{
    sb_actor_stop(xh_cl.actor, 1000);
    CHECK_EQ(sb_actor_join(xh_cl.actor), 0);
    sb_actor_free(xh_cl.actor);
    sb_actor_stop(w->mon, 1000);
    sb_actor_stop(w->sched, 1000);
    CHECK_EQ(sb_actor_join(w->mon), 0);
    CHECK_EQ(sb_actor_join(w->sched), 0);
    sb_actor_free(w->mon);
    sb_actor_free(w->sched);
    sb_bus_free(w->bus);
    sb_config_fini(&w->cfg);
    sb_buf_fini(&xh_B);
    for (int i = 0; i < 4; i++)
        sb_buf_fini(&xh_strv_bufs[i]);
}
