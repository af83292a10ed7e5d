/*
 * gateway.c: the gateway actor.  It owns the HTTP server (http.h) on its loop and turns
 * requests into bus messages.  Today it serves GET /health.
 *
 * /health asks every actor kind for a PONG over the bus and reports each one's liveness, the
 * node it runs on and the round-trip time; 200 "ok" when all seven answer within
 * health.timeout_ms, else 503 "degraded" naming the ones that did not.  Concurrent /health
 * requests share one probe round (they wait for the round in flight), so a flood of health
 * checks costs one round of pings per round-trip, not one per request.
 *
 * Probe round states: IDLE -> PROBING (pings out, waiters queued) -> IDLE (answered all).
 *
 * The REST API (/api/v1/...) lives in handlers/, one file per route family, on the shared
 * helpers of api.h; authentication and rate limits in auth.c.
 *
 * GET /metrics asks the monitor for the Prometheus text; GET /ready asks it whether the
 * deployment can take work.  Every HTTP response is counted by (route pattern, status) here
 * and the counts go to the monitor once a second (and with each /metrics request, so a scrape
 * is never a report behind).
 */
#include "gateway.h"

#include "base/err.h"
#include "base/log.h"
#include "api.h"
#include "gateway/auth/auth.h"
#include "gateway/http/http.h"
#include "gateway/ws/ws.h"
#include "protocols/msgs.h"
#include "base/clock.h"
#include "base/alloc.h"

#include <jansson.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

#define GW_KINDS 7 /* gateway .. storage */

typedef struct gw_waiter {
    sb_http_req_t *req;
    struct gw_waiter *next;
} gw_waiter_t;

typedef struct {
    int answered;
    int ok;
    int err;
    uint64_t rtt_us;
    char node[128];
    uint64_t handled;
} gw_probe_t;

#define GW_MAX_HTTP_SERIES 256

typedef struct {
    char route[96];
    int code;
    uint64_t count;
} gw_http_count_t;

typedef struct {
    sb_actor_t *actor;
    sb_gateway_arg_t *arg;
    sb_http_server_t *http;
    int http_closed;
    /* the probe round */
    int probing;
    int outstanding;
    uint64_t round_started_us;
    gw_probe_t probes[SB_ACTOR_KINDS];
    gw_waiter_t *waiters, **waiters_tail;
    /* HTTP counts not yet reported to the monitor */
    gw_http_count_t counts[GW_MAX_HTTP_SERIES];
    size_t ncounts;
    uv_timer_t report_timer;
    gw_ctx_t ctx; /* what the REST handlers share */
    sb_ws_t *ws;  /* WebSocket /ws */
} gw_state_t;

static void gw_health_round(gw_state_t *gs);

/* gw_health_json renders the last round. */
static json_t *
gw_health_json(gw_state_t *gs, int *all_ok)
{
    json_t *actors = json_object(), *nodes = json_array();
    sb_node_info_t info[64];
    int ok = 1;

    for (int k = SB_ACTOR_GATEWAY; k <= SB_ACTOR_STORAGE; k++) {
        gw_probe_t *p = &gs->probes[k];
        json_t *o = json_object();
        json_object_set_new(o, "ok", json_boolean(p->ok));
        if (p->ok) {
            json_object_set_new(o, "node", json_string(p->node));
            json_object_set_new(o, "rtt_us", json_integer((json_int_t)p->rtt_us));
        } else {
            json_object_set_new(o, "error", json_string(p->err == SB_ENOROUTE ? "no_route"
                                                        : p->err == SB_ETIMEDOUT ? "timeout"
                                                                                 : sb_err_name(p->err)));
        }
        ok &= p->ok;
        json_object_set_new(actors, sb_actor_kind_name(k), o);
    }
    size_t n = sb_bus_nodes(sb_actor_bus(gs->actor), info, 64);
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_object(), *kinds = json_array();
        char id[17];
        snprintf(id, sizeof id, "%016llx", (unsigned long long)info[i].id);
        json_object_set_new(o, "id", json_string(id));
        json_object_set_new(o, "name", json_string(info[i].name));
        json_object_set_new(o, "alive", json_boolean(info[i].alive));
        json_object_set_new(o, "local", json_boolean(info[i].local));
        for (int k = 1; k < SB_ACTOR_KINDS; k++)
            if (info[i].actors & (1ull << k))
                json_array_append_new(kinds, json_string(sb_actor_kind_name(k)));
        json_object_set_new(o, "actors", kinds);
        json_array_append_new(nodes, o);
    }
    json_t *root = json_object();
    json_object_set_new(root, "status", json_string(ok ? "ok" : "degraded"));
    json_object_set_new(root, "node", json_string(sb_bus_node_name(sb_actor_bus(gs->actor))));
    json_object_set_new(root, "actors", actors);
    json_object_set_new(root, "nodes", nodes);
    *all_ok = ok;
    return root;
}

/* gw_round_done answers every request that waited for this round with the same bytes,
 * rendered once: building and serializing the JSON per waiter was a third of the gateway
 * thread's time under a /health flood (docs/performance.md). */
static void
gw_round_done(gw_state_t *gs)
{
    gw_waiter_t *w = gs->waiters;
    int ok = 0;
    gs->probing = 0;
    gs->waiters = NULL;
    gs->waiters_tail = &gs->waiters;
    if (!w)
        return;
    json_t *j = gw_health_json(gs, &ok);
    char *body = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    size_t len = body ? strlen(body) : 0;
    while (w) {
        gw_waiter_t *next = w->next;
        if (body)
            sb_http_respond(w->req, ok ? 200 : 503, "application/json", body, len);
        else
            sb_http_respond_error(w->req, 500, "internal", "could not serialize the response");
        free(w);
        w = next;
    }
    free(body);
}

static void
gw_on_pong(sb_actor_t *a, int status, const sb_msg_t *reply, void *ud)
{
    gw_state_t *gs = sb_actor_state(a);
    int kind = (int)(intptr_t)ud;
    gw_probe_t *p = &gs->probes[kind];
    sb_pong_t pong;

    p->answered = 1;
    p->err = status;
    if (status == 0 && sb_pong_decode(reply, &pong) == 0) {
        p->ok = 1;
        p->rtt_us = sb_now_mono_us() - gs->round_started_us;
        sb_str_copy(p->node, sizeof p->node, pong.node);
        p->handled = pong.handled;
    } else if (status == 0) {
        p->err = SB_EBADMSG;
    }
    if (--gs->outstanding == 0)
        gw_round_done(gs);
}

static void
gw_health_round(gw_state_t *gs)
{
    sb_ping_t ping = {.sent_us = sb_now_mono_us()};
    sb_buf_t *b = sb_actor_scratch(gs->actor);
    uint32_t timeout = (uint32_t)gs->arg->cfg->health_timeout_ms;

    gs->probing = 1;
    gs->round_started_us = ping.sent_us;
    gs->outstanding = 1; /* held until every ping is out, so a synchronous failure can't finish */
    sb_ping_encode(&ping, b);
    for (int k = SB_ACTOR_GATEWAY; k <= SB_ACTOR_STORAGE; k++) {
        gw_probe_t *p = &gs->probes[k];
        memset(p, 0, sizeof *p);
        int r = sb_actor_request(gs->actor, sb_addr((uint8_t)k), SB_MSG_PING, b->data, b->len,
                                 timeout, gw_on_pong, (void *)(intptr_t)k, NULL);
        if (r == 0) {
            gs->outstanding++;
        } else {
            p->answered = 1;
            p->err = r;
        }
    }
    if (--gs->outstanding == 0)
        gw_round_done(gs);
}

static void
gw_on_health(sb_http_req_t *req, void *ud)
{
    gw_state_t *gs = ud;
    gw_waiter_t *w = sb_xcalloc(1, sizeof *w);
    w->req = req;
    *gs->waiters_tail = w;
    gs->waiters_tail = &w->next;
    if (!gs->probing)
        gw_health_round(gs);
}

/* ---- HTTP counters -> monitor ---------------------------------------------------------- */

static void
gw_observe(const char *route, const char *method, int status, uint64_t duration_us, void *ud)
{
    gw_state_t *gs = ud;
    (void)method;
    (void)duration_us;
    for (size_t i = 0; i < gs->ncounts; i++)
        if (gs->counts[i].code == status && !strcmp(gs->counts[i].route, route)) {
            gs->counts[i].count++;
            return;
        }
    if (gs->ncounts < GW_MAX_HTTP_SERIES) {
        gw_http_count_t *c = &gs->counts[gs->ncounts++];
        snprintf(c->route, sizeof c->route, "%s", route);
        c->code = status;
        c->count = 1;
    }
}

/* gw_counts_encode writes the pending counts as a msgpack array of [route, code, count]. */
static void
gw_counts_encode(gw_state_t *gs, sb_buf_t *out)
{
    msgpack_packer pk;
    sb_codec_packer(&pk, out);
    msgpack_pack_array(&pk, (uint32_t)gs->ncounts);
    for (size_t i = 0; i < gs->ncounts; i++) {
        gw_http_count_t *c = &gs->counts[i];
        size_t l = strlen(c->route);
        msgpack_pack_array(&pk, 3);
        msgpack_pack_str(&pk, l);
        msgpack_pack_str_body(&pk, c->route, l);
        msgpack_pack_int(&pk, c->code);
        msgpack_pack_uint64(&pk, c->count);
    }
}

static void
gw_on_report(uv_timer_t *t)
{
    gw_state_t *gs = t->data;
    sb_buf_t raw, *b;
    sb__gw_audit_flush(&gs->ctx);
    if (gs->ncounts == 0)
        return;
    sb_buf_init(&raw, 0);
    gw_counts_encode(gs, &raw);
    sb_mon_http_t h = {.counts = {(const char *)raw.data, (uint32_t)raw.len}};
    b = sb_actor_scratch(gs->actor);
    /* One-way; if the monitor is full or absent the counts stay and go with the next report. */
    if (sb_mon_http_encode(&h, b) == 0 &&
        sb_actor_send(gs->actor, sb_addr(SB_ACTOR_MONITOR), SB_MSG_MON_HTTP, 0, 0, 0, b->data,
                      b->len) == 0)
        gs->ncounts = 0;
    sb_buf_fini(&raw);
}

/* ---- /metrics and /ready ------------------------------------------------------------------ */

static void
gw_on_metrics_reply(sb_actor_t *a, int status, const sb_msg_t *m, void *ud)
{
    sb_http_req_t *req = ud;
    sb_metrics_text_t t;
    (void)a;
    if (status != 0 || sb_metrics_text_decode(m, &t) != 0) {
        sb_http_respond_error(req, 503, "unavailable", "the monitor did not answer: %s",
                              status ? sb_strerror(status) : "malformed reply");
        return;
    }
    sb_http_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", t.text.ptr, t.text.len);
}

static void
gw_on_metrics(sb_http_req_t *req, void *ud)
{
    gw_state_t *gs = ud;
    sb_buf_t raw;
    sb_buf_init(&raw, 0);
    gw_counts_encode(gs, &raw);
    sb_metrics_get_t g = {.http_counts = {(const char *)raw.data, (uint32_t)raw.len}};
    sb_buf_t *b = sb_actor_scratch(gs->actor);
    int r = sb_metrics_get_encode(&g, b);
    if (r == 0)
        r = sb_actor_request(gs->actor, sb_addr(SB_ACTOR_MONITOR), SB_MSG_METRICS_GET, b->data,
                             b->len, (uint32_t)gs->arg->cfg->health_timeout_ms,
                             gw_on_metrics_reply, req, NULL);
    sb_buf_fini(&raw);
    if (r == 0)
        gs->ncounts = 0; /* they travel with the request */
    else
        sb_http_respond_error(req, 503, "unavailable", "no monitor: %s", sb_strerror(r));
}

static void
gw_on_ready_reply(sb_actor_t *a, int status, const sb_msg_t *m, void *ud)
{
    sb_http_req_t *req = ud;
    sb_ready_t rd;
    (void)a;
    json_t *j = json_object();
    if (status != 0 || sb_ready_decode(m, &rd) != 0) {
        json_object_set_new(j, "ready", json_false());
        json_object_set_new(j, "reason", json_string("the monitor did not answer"));
        sb_http_respond_json(req, 503, j);
        return;
    }
    json_object_set_new(j, "ready", json_boolean(rd.ready));
    if (!rd.ready)
        json_object_set_new(j, "reason", json_stringn(rd.reason.ptr, rd.reason.len));
    sb_http_respond_json(req, rd.ready ? 200 : 503, j);
}

static void
gw_on_ready(sb_http_req_t *req, void *ud)
{
    gw_state_t *gs = ud;
    sb_ready_get_t q = {0};
    sb_buf_t *b = sb_actor_scratch(gs->actor);
    sb_ready_get_encode(&q, b);
    int r = sb_actor_request(gs->actor, sb_addr(SB_ACTOR_MONITOR), SB_MSG_READY_GET, b->data,
                             b->len, (uint32_t)gs->arg->cfg->health_timeout_ms, gw_on_ready_reply,
                             req, NULL);
    if (r != 0) {
        json_t *j = json_object();
        json_object_set_new(j, "ready", json_false());
        json_object_set_new(j, "reason", json_string("no monitor runs"));
        sb_http_respond_json(req, 503, j);
    }
}

static int
gw_init(sb_actor_t *a, void *state)
{
    gw_state_t *gs = state;
    sb_gateway_arg_t *arg = sb_actor_arg(a);
    const sb_config_t *cfg = arg->cfg;
    sb_http_opts_t ho = {0};
    sb_auth_t *auth = NULL;
    char err[512];
    int r;

    gs->actor = a;
    gs->arg = arg;
    gs->waiters_tail = &gs->waiters;
    gs->ctx.actor = a;
    gs->ctx.cfg = cfg;
    /* The runtimes this host can run, probed once: requests are validated against them. */
    if ((r = sb_plugins_load(sb_plugins_default_dir(), false, true, &gs->ctx.plugins, err,
                             sizeof err)) != 0)
        sb_log_warn("SB-GW-PLUGINS", "no runtimes loaded: %s", err);
    if ((r = sb_auth_alloc(a, cfg, &auth)) != 0)
        goto fail;
    gs->ctx.auth = auth;

    ho.max_connections = (uint32_t)cfg->http_max_connections;
    ho.max_body_bytes = (size_t)cfg->api_max_body_bytes;
    ho.access_log = 0;
    gs->http = sb_http_server_alloc(sb_actor_loop(a), &ho);
    sb_http_set_observer(gs->http, gw_observe, gs);
    sb_http_route(gs->http, "GET", "/health", gw_on_health, gs, 0);
    sb_http_route(gs->http, "GET", "/ready", gw_on_ready, gs, 0);
    sb_http_route(gs->http, "GET", "/metrics", gw_on_metrics, gs, 0);
    sb_auth_routes(auth, gs->http);
    sb__gw_execute_routes(&gs->ctx, gs->http);
    sb__gw_sandbox_routes(&gs->ctx, gs->http);
    sb__gw_file_routes(&gs->ctx, gs->http);
    sb__gw_runtime_routes(&gs->ctx, gs->http);
    sb__gw_kernel_routes(&gs->ctx, gs->http);
    sb__gw_static_routes(&gs->ctx, gs->http);
    gs->ws = sb__gw_ws_alloc(&gs->ctx, gs->http);
    if ((r = sb_http_listen(gs->http, cfg->http_host, (int)cfg->http_port)) != 0) {
        sb_log_error("SB-GW-LISTEN-FAIL", "cannot listen on %s:%lld: %s", cfg->http_host,
                     (long long)cfg->http_port, sb_strerror(r));
        goto fail;
    }
    atomic_store(&arg->port, sb_http_port(gs->http));
    sb_log_info("SB-GW-LISTEN", "HTTP API listening on %s:%d", cfg->http_host,
                sb_http_port(gs->http));
    uv_timer_init(sb_actor_loop(a), &gs->report_timer);
    gs->report_timer.data = gs;
    uv_timer_start(&gs->report_timer, gw_on_report, 1000, 1000);
    sb__gw_sandboxes_start(&gs->ctx);
    sb_auth_start(auth);
    return 0;
fail:
    /* The runtime calls stop, which closes whatever was opened here. */
    return r ? r : SB_EINTERNAL;
}

static int
gw_handle(sb_actor_t *a, void *state, const sb_msg_t *m)
{
    (void)a;
    (void)state;
    (void)m;
    return SB_EUNKNOWN_TYPE;
}

static void
gw_stop(sb_actor_t *a, void *state)
{
    gw_state_t *gs = state;
    (void)a;
    /* a last try for audit events a slow auditor left waiting; the grace period covers it */
    sb__gw_audit_flush(&gs->ctx);
    if (gs->report_timer.data && !uv_is_closing((uv_handle_t *)&gs->report_timer))
        uv_close((uv_handle_t *)&gs->report_timer, NULL);
    sb__gw_ws_stop(gs->ws);
    sb__gw_sandboxes_stop(&gs->ctx);
    if (gs->ctx.auth)
        sb_auth_stop(gs->ctx.auth);
    if (gs->http) {
        sb_http_server_close(gs->http, NULL, NULL);
        gs->http = NULL;
    }
}

static void
gw_fini(sb_actor_t *a, void *state)
{
    gw_state_t *gs = state;
    (void)a;
    sb__gw_audit_fini(&gs->ctx);
    sb__gw_ws_free(gs->ws);
    gs->ws = NULL;
    if (gs->ctx.auth)
        sb_auth_free(gs->ctx.auth);
    gs->ctx.auth = NULL;
    if (gs->ctx.plugins)
        sb_plugins_free(gs->ctx.plugins);
    gs->ctx.plugins = NULL;
}

const sb_actor_ops_t sb_gateway_actor = {
    .abi = SB_ACTOR_ABI_V1,
    .name = "gateway",
    .kind = SB_ACTOR_GATEWAY,
    .state_size = sizeof(gw_state_t),
    .init = gw_init,
    .handle = gw_handle,
    .stop = gw_stop,
    .fini = gw_fini,
};
