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
 */
#include "gateway.h"

#include "core/err.h"
#include "core/log.h"
#include "gateway/http.h"
#include "protocols/msgs.h"

#include <jansson.h>
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

static void
gw_round_done(gw_state_t *gs)
{
    gw_waiter_t *w = gs->waiters;
    int ok;
    gs->probing = 0;
    gs->waiters = NULL;
    gs->waiters_tail = &gs->waiters;
    while (w) {
        gw_waiter_t *next = w->next;
        json_t *j = gw_health_json(gs, &ok);
        sb_http_respond_json(w->req, ok ? 200 : 503, j);
        free(w);
        w = next;
    }
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

static int
gw_init(sb_actor_t *a, void *state)
{
    gw_state_t *gs = state;
    sb_gateway_arg_t *arg = sb_actor_arg(a);
    const sb_config_t *cfg = arg->cfg;
    sb_http_opts_t ho = {0};
    int r;

    gs->actor = a;
    gs->arg = arg;
    gs->waiters_tail = &gs->waiters;
    ho.max_connections = (uint32_t)cfg->http_max_connections;
    ho.access_log = 0;
    gs->http = sb_http_server_alloc(sb_actor_loop(a), &ho);
    sb_http_route(gs->http, "GET", "/health", gw_on_health, gs, 0);
    if ((r = sb_http_listen(gs->http, cfg->http_host, (int)cfg->http_port)) != 0) {
        sb_log_error("SB-GW-LISTEN-FAIL", "cannot listen on %s:%lld: %s", cfg->http_host,
                     (long long)cfg->http_port, sb_strerror(r));
        sb_http_server_close(gs->http, NULL, NULL);
        gs->http = NULL;
        return r;
    }
    atomic_store(&arg->port, sb_http_port(gs->http));
    sb_log_info("SB-GW-LISTEN", "HTTP API listening on %s:%d", cfg->http_host,
                sb_http_port(gs->http));
    return 0;
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
    if (gs->http) {
        sb_http_server_close(gs->http, NULL, NULL);
        gs->http = NULL;
    }
}

const sb_actor_ops_t sb_gateway_actor = {
    .abi = SB_ACTOR_ABI_V1,
    .name = "gateway",
    .kind = SB_ACTOR_GATEWAY,
    .state_size = sizeof(gw_state_t),
    .init = gw_init,
    .handle = gw_handle,
    .stop = gw_stop,
};
