/*
 * sandboxes.c: /api/v1/sandboxes (alias /api/v1/containers) -- long-lived sandboxes: create,
 * list, get, delete, timeout, commands and processes.
 *
 * The gateway keeps the sandboxes it created in memory (id -> node, owner, timeout, last
 * activity) and mirrors each change to storage.  A sandbox is idle-timed: every request on it
 * moves its expiry to now + timeout; a 1 s timer destroys expired ones with end reason
 * "expired".  A user sees and touches only their own sandboxes (others' answer 404, never
 * 403, so ids cannot be probed); an admin sees all.
 *
 * States of a sandbox here: CREATING (placed, SBX_CREATE in flight; not yet listed) ->
 * RUNNING -> DESTROYING (SBX_DESTROY in flight) -> gone (record kept in storage with state
 * "destroyed" or "expired" and its end reason).
 *
 * Creation and destruction are also offered to the rest of the gateway (api.h:
 * sb__gw_sandbox_create / _destroy / _watch / _set_expiry), for WebSocket sessions: their
 * sandboxes live in the same table, so the REST API lists them and the same expiry timer ends
 * them, with the reason the session set ("session_expired").  A watcher learns when a sandbox
 * leaves the table, whatever the cause (delete, expiry, node lost, shutdown).
 */
#include "gateway/api.h"

#include "base/err.h"
#include "base/log.h"
#include "protocols/mp.h"
#include "protocols/msgs.h"
#include "base/clock.h"
#include "base/alloc.h"

#include <msgpack.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

struct gw_sandbox {
    char id[64];
    char owner[129];
    char runtime[64];
    char node_name[128];
    uint64_t node;
    uint64_t lease;
    uint64_t created_ms, last_ms;
    int64_t timeout_s;
    json_t *metadata, *limits;
    int destroying;
    char expiry_reason[32]; /* end reason when the idle timeout ends it ("expired") */
    gw_sandbox_gone_cb gone_cb;
    void *gone_ud;
    gw_sandbox_t *next;
};

/* ---- the table ------------------------------------------------------------------------- */

gw_sandbox_t *
sb__gw_sandbox_find(gw_ctx_t *ctx, const char *id)
{
    for (gw_sandbox_t *s = ctx->sandboxes; s; s = s->next)
        if (!strcmp(s->id, id))
            return s;
    return NULL;
}

gw_sandbox_t *
sb__gw_sandbox_owned(gw_ctx_t *ctx, sb_http_req_t *req, const gw_principal_t *p, const char *id)
{
    gw_sandbox_t *s = sb__gw_sandbox_find(ctx, id);
    if (!s || s->destroying || (p->role != GW_ROLE_ADMIN && strcmp(s->owner, p->id) != 0)) {
        sb_http_respond_error(req, 404, "not_found", "no sandbox '%.64s'", id);
        return NULL;
    }
    return s;
}

gw_sandbox_t *
sb__gw_sandbox_from_req(gw_ctx_t *ctx, sb_http_req_t *req, const gw_principal_t *p)
{
    char sid[64];
    if (sb_str_copy(sid, sizeof sid, sb_http_param(req, "id")) != 0) {
        sb_http_respond_error(req, 404, "not_found", "no such sandbox");
        return NULL;
    }
    return sb__gw_sandbox_owned(ctx, req, p, sid);
}

sb_addr_t
sb__gw_sandbox_addr(const gw_sandbox_t *s)
{
    return (sb_addr_t){s->node, SB_ACTOR_EXECUTOR};
}

const char *
sb__gw_sandbox_id(const gw_sandbox_t *s)
{
    return s->id;
}

void
sb__gw_sandbox_touch(gw_ctx_t *ctx, gw_sandbox_t *s)
{
    (void)ctx;
    s->last_ms = sb_now_real_ms();
}

const char *
sb__gw_sandbox_owner(const gw_sandbox_t *s)
{
    return s->owner;
}

const char *
sb__gw_sandbox_runtime(const gw_sandbox_t *s)
{
    return s->runtime;
}

void
sb__gw_sandbox_set_expiry(gw_sandbox_t *s, int64_t timeout_s, const char *reason)
{
    s->timeout_s = timeout_s;
    snprintf(s->expiry_reason, sizeof s->expiry_reason, "%s", reason ? reason : "expired");
}

void
sb__gw_sandbox_watch(gw_sandbox_t *s, gw_sandbox_gone_cb cb, void *ud)
{
    s->gone_cb = cb;
    s->gone_ud = ud;
}

static void
sbx_unlink(gw_ctx_t *ctx, gw_sandbox_t *s)
{
    gw_sandbox_gone_cb cb = s->gone_cb;
    s->gone_cb = NULL;
    if (cb)
        cb(s->gone_ud, s);
    for (gw_sandbox_t **pp = &ctx->sandboxes; *pp; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    json_decref(s->metadata);
    json_decref(s->limits);
    free(s);
}

static json_t *
sbx_json(const gw_sandbox_t *s, const char *state)
{
    json_t *o = json_object();
    uint64_t expires = s->last_ms + (uint64_t)s->timeout_s * 1000;
    json_object_set_new(o, "id", json_string(s->id));
    json_object_set_new(o, "runtime", json_string(s->runtime));
    json_object_set_new(o, "state", json_string(state));
    json_object_set_new(o, "owner", json_string(s->owner));
    json_object_set_new(o, "node", json_string(s->node_name));
    json_object_set_new(o, "created_at", json_integer((json_int_t)s->created_ms));
    json_object_set_new(o, "expires_at", json_integer((json_int_t)expires));
    json_object_set_new(o, "timeout", json_integer(s->timeout_s));
    json_object_set_new(o, "limits", json_incref(s->limits));
    json_object_set_new(o, "metadata", json_incref(s->metadata));
    return o;
}

/* sbx_record mirrors the sandbox into storage. */
static void
sbx_record(gw_ctx_t *ctx, const gw_sandbox_t *s, const char *state, const char *end_reason)
{
    json_t *rec = json_object();
    json_t *limits = json_deep_copy(s->limits);
    json_object_set_new(limits, "timeout_s", json_integer(s->timeout_s));
    json_object_set_new(rec, "id", json_string(s->id));
    json_object_set_new(rec, "owner", json_string(s->owner));
    json_object_set_new(rec, "runtime", json_string(s->runtime));
    json_object_set_new(rec, "state", json_string(state));
    json_object_set_new(rec, "limits", limits);
    json_object_set_new(rec, "node", json_string(s->node_name));
    json_object_set_new(rec, "created", json_integer((json_int_t)s->created_ms));
    json_object_set_new(rec, "metadata", json_incref(s->metadata));
    if (end_reason) {
        json_object_set_new(rec, "ended", json_integer((json_int_t)sb_now_real_ms()));
        json_object_set_new(rec, "end_reason", json_string(end_reason));
    }
    sb__gw_store(ctx, "sandbox", rec);
}

static void
sbx_release(gw_ctx_t *ctx, const gw_sandbox_t *s)
{
    sb_release_t rel = {.lease = s->lease, .sandbox = sb_str(s->id)};
    sb_buf_t *b = sb_actor_scratch(ctx->actor);
    if (s->lease && sb_release_encode(&rel, b) == 0)
        sb_actor_send(ctx->actor, sb_addr(SB_ACTOR_SCHEDULER), SB_MSG_RELEASE, 0, 0, 0, b->data,
                      b->len);
}

/* ---- destroy (delete, expiry, shutdown) ----------------------------------------------------- */

typedef struct {
    gw_ctx_t *ctx;
    gw_sandbox_t *s;
    char reason[32];
    gw_principal_t p;
    int has_p;
} sbx_kill_t;

/* sbx_expired: reason is the sandbox's idle-timeout reason ("expired", "session_expired"). */
static int
sbx_expired(const gw_sandbox_t *s, const char *reason)
{
    return !strcmp(reason, "expired") || (s->expiry_reason[0] && !strcmp(reason, s->expiry_reason));
}

static void
sbx_destroyed(gw_ctx_t *ctx, gw_sandbox_t *s, const char *reason, const gw_principal_t *p,
              int lost)
{
    int expired = sbx_expired(s, reason);
    const char *state = expired ? "expired" : lost ? "lost" : "destroyed";
    sbx_record(ctx, s, state, reason);
    sbx_release(ctx, s);
    json_t *ev = json_pack("{s:s,s:s,s:s}", "sandbox_id", s->id, "reason", reason, "owner",
                           s->owner);
    sb__gw_audit(ctx, expired ? "sandbox.expired" : "sandbox.killed", p, ev);
    sbx_unlink(ctx, s);
}

static void
sbx_on_destroy_bg(sb_actor_t *a, int status, const sb_msg_t *m, void *ud)
{
    sbx_kill_t *k = ud;
    (void)a;
    (void)m;
    if (status && status != SB_ENOTFOUND)
        sb_log_warn("SB-GW-DESTROY-FAIL", "sandbox %s not destroyed cleanly: %s", k->s->id,
                    sb_strerror(status));
    sbx_destroyed(k->ctx, k->s, k->reason, k->has_p ? &k->p : NULL,
                  status != 0 && status != SB_ENOTFOUND);
    free(k);
}

/* sbx_destroy sends SBX_DESTROY; the sandbox leaves the table when it is answered. */
static int
sbx_destroy(gw_ctx_t *ctx, gw_sandbox_t *s, const char *reason, const gw_principal_t *p)
{
    sb_sbx_destroy_t d = {.id = sb_str(s->id), .reason = sb_str(reason)};
    sb_buf_t *b = sb_actor_scratch(ctx->actor);
    sbx_kill_t *k = sb_xcalloc(1, sizeof *k);
    k->ctx = ctx;
    k->s = s;
    snprintf(k->reason, sizeof k->reason, "%s", reason);
    if (p) {
        k->p = *p;
        k->has_p = 1;
    }
    s->destroying = 1;
    int r = sb_sbx_destroy_encode(&d, b);
    if (r == 0)
        r = sb_actor_request(ctx->actor, sb__gw_sandbox_addr(s), SB_MSG_SBX_DESTROY, b->data,
                             b->len, 30000, sbx_on_destroy_bg, k, NULL);
    if (r) {
        free(k);
        sb_log_warn("SB-GW-DESTROY-FAIL", "sandbox %s: %s; recorded as lost", s->id,
                    sb_strerror(r));
        sbx_destroyed(ctx, s, reason, p, 1);
    }
    return r;
}

void
sb__gw_sandbox_destroy(gw_ctx_t *ctx, gw_sandbox_t *s, const char *reason,
                       const gw_principal_t *p)
{
    if (!s->destroying)
        sbx_destroy(ctx, s, reason, p);
}

static void
sbx_on_expiry(uv_timer_t *t)
{
    gw_ctx_t *ctx = t->data;
    uint64_t now = sb_now_real_ms();
    for (gw_sandbox_t *s = ctx->sandboxes, *next; s; s = next) {
        next = s->next;
        if (!s->destroying && now >= s->last_ms + (uint64_t)s->timeout_s * 1000) {
            sb_log_info("SB-GW-SANDBOX-EXPIRED", "sandbox %s idle for %llds: destroying (%s)",
                        s->id, (long long)s->timeout_s,
                        s->expiry_reason[0] ? s->expiry_reason : "expired");
            sbx_destroy(ctx, s, s->expiry_reason[0] ? s->expiry_reason : "expired", NULL);
        }
    }
}

void
sb__gw_sandboxes_start(gw_ctx_t *ctx)
{
    uv_timer_init(sb_actor_loop(ctx->actor), &ctx->expiry_timer);
    ctx->expiry_timer.data = ctx;
    uv_timer_start(&ctx->expiry_timer, sbx_on_expiry, 1000, 1000);
}

void
sb__gw_sandboxes_stop(gw_ctx_t *ctx)
{
    if (ctx->expiry_timer.data && !uv_is_closing((uv_handle_t *)&ctx->expiry_timer))
        uv_close((uv_handle_t *)&ctx->expiry_timer, NULL);
    /* The executor destroys its sandboxes when it stops (after us); record why. */
    for (gw_sandbox_t *s = ctx->sandboxes, *next; s; s = next) {
        next = s->next;
        /* One being destroyed belongs to its SBX_DESTROY callback, which frees it (with the
         * reply, or with SB_ECANCELED when the runtime gives up on pending requests); freeing
         * it here too was a double free when a destroy was in flight at shutdown. */
        if (s->destroying)
            continue;
        sbx_record(ctx, s, "destroyed", "server_shutdown");
        sbx_release(ctx, s);
        sbx_unlink(ctx, s);
    }
}

/* ---- create ---------------------------------------------------------------------------- */

/* One creation in flight: PLACE (scheduler) -> SBX_CREATE (executor) -> listed.  done runs
 * exactly once; for the REST route it answers the request (req), for sb__gw_sandbox_create it
 * calls the caller's callback. */
typedef struct sbx_new sbx_new_t;
typedef void (*sbx_new_done_t)(sbx_new_t *n, int err, const sb_msg_t *m, const char *what,
                               gw_sandbox_t *s);
struct sbx_new {
    gw_ctx_t *ctx;
    gw_principal_t p;
    json_t *body;
    const char *runtime;
    int64_t timeout_s;
    sb_buf_t env, limits;
    json_t *limits_json;
    uint64_t lease, node;
    sbx_new_done_t done;
    sb_http_req_t *req;
    gw_sandbox_cb cb;
    void *ud;
};

static void
sbx_new_free(sbx_new_t *n)
{
    json_decref(n->body);
    json_decref(n->limits_json);
    sb_buf_fini(&n->env);
    sb_buf_fini(&n->limits);
    free(n);
}

static void
sbx_on_created(sb_actor_t *a, int status, const sb_msg_t *m, void *ud)
{
    sbx_new_t *n = ud;
    gw_ctx_t *ctx = n->ctx;
    sb_sbx_info_t info;
    (void)a;
    if (status != 0 || sb_sbx_info_decode(m, &info) != 0) {
        sb_release_t rel = {.lease = n->lease};
        sb_buf_t *b = sb_actor_scratch(ctx->actor);
        if (sb_release_encode(&rel, b) == 0)
            sb_actor_send(ctx->actor, sb_addr(SB_ACTOR_SCHEDULER), SB_MSG_RELEASE, 0, 0, 0,
                          b->data, b->len);
        n->done(n, status ? status : SB_EBADMSG, m, "executor", NULL);
        sbx_new_free(n);
        return;
    }
    gw_sandbox_t *s = sb_xcalloc(1, sizeof *s);
    sb_str_copy(s->id, sizeof s->id, info.id);
    snprintf(s->owner, sizeof s->owner, "%s", n->p.id);
    snprintf(s->runtime, sizeof s->runtime, "%s", n->runtime);
    sb_str_copy(s->node_name, sizeof s->node_name, info.node);
    s->node = info.node_id ? info.node_id : n->node;
    s->lease = n->lease;
    s->created_ms = info.created_ms ? info.created_ms : sb_now_real_ms();
    s->last_ms = sb_now_real_ms();
    s->timeout_s = n->timeout_s;
    json_t *md = n->body ? json_object_get(n->body, "metadata") : NULL;
    s->metadata = md && json_is_object(md) ? json_incref(md) : json_object();
    s->limits = n->limits_json ? json_incref(n->limits_json) : json_object();
    s->next = ctx->sandboxes;
    ctx->sandboxes = s;
    sbx_record(ctx, s, "running", NULL);
    sb__gw_audit(ctx, "sandbox.created", &n->p,
                 json_pack("{s:s,s:s,s:s}", "sandbox_id", s->id, "runtime", s->runtime, "node",
                           s->node_name));
    n->done(n, 0, NULL, NULL, s);
    sbx_new_free(n);
}

static void
sbx_on_place(sb_actor_t *a, int status, const sb_msg_t *m, void *ud)
{
    sbx_new_t *n = ud;
    gw_ctx_t *ctx = n->ctx;
    sb_lease_t l;
    (void)a;
    if (status != 0 || sb_lease_decode(m, &l) != 0) {
        n->done(n, status ? status : SB_EBADMSG, m, "scheduler", NULL);
        sbx_new_free(n);
        return;
    }
    n->lease = l.lease;
    n->node = l.node;
    sb_sbx_create_t c = {.runtime = sb_str(n->runtime), .owner = sb_str(n->p.id),
                         .limits = {(const char *)n->limits.data, (uint32_t)n->limits.len},
                         .env = {(const char *)n->env.data, (uint32_t)n->env.len}};
    sb_buf_t body;
    sb_buf_init(&body, 0);
    int r = sb_sbx_create_encode(&c, &body);
    if (r == 0)
        r = sb_actor_request(ctx->actor, (sb_addr_t){l.node, SB_ACTOR_EXECUTOR},
                             SB_MSG_SBX_CREATE, body.data, body.len, 30000, sbx_on_created, n,
                             NULL);
    sb_buf_fini(&body);
    if (r) {
        n->done(n, r, NULL, "executor", NULL);
        sbx_new_free(n);
    }
}

/* sbx_place starts a creation; on failure n is still the caller's. */
static int
sbx_place(sbx_new_t *n)
{
    sb_place_t pm = {.runtime = sb_str(n->runtime), .owner = sb_str(n->p.id),
                     .kind = SB_STR("sandbox")};
    sb_buf_t body;
    sb_buf_init(&body, 0);
    int r = sb_place_encode(&pm, &body);
    if (r == 0)
        r = sb_actor_request(n->ctx->actor, sb_addr(SB_ACTOR_SCHEDULER), SB_MSG_PLACE, body.data,
                             body.len, (uint32_t)n->ctx->cfg->api_place_timeout_ms, sbx_on_place,
                             n, NULL);
    sb_buf_fini(&body);
    return r;
}

static void
sbx_rest_done(sbx_new_t *n, int err, const sb_msg_t *m, const char *what, gw_sandbox_t *s)
{
    if (err)
        sb__gw_fail(n->req, err, m, what);
    else
        sb_http_respond_json(n->req, 201, sbx_json(s, "running"));
}

static void
sbx_api_done(sbx_new_t *n, int err, const sb_msg_t *m, const char *what, gw_sandbox_t *s)
{
    char text[600] = "";
    sb_error_t e;
    if (err) {
        if (m && (m->flags & SB_MF_ERROR) && sb_error_decode(m, &e) == 0)
            sb_str_copy(text, sizeof text, e.message);
        else if (err == SB_ENOROUTE)
            snprintf(text, sizeof text, "no %s is running", what);
        else
            snprintf(text, sizeof text, "%s: %s", what, sb_strerror(err));
    }
    n->cb(n->ctx, err, err ? text : NULL, s, n->ud);
}

int
sb__gw_sandbox_create(gw_ctx_t *ctx, const gw_principal_t *p, const char *runtime,
                      int64_t timeout_s, gw_sandbox_cb cb, void *ud)
{
    const sb_plugin_t *pl = ctx->plugins ? sb_plugins_find(ctx->plugins, runtime) : NULL;
    msgpack_packer pk;
    if (!pl || !pl->installed)
        return SB_ENOTFOUND;
    sbx_new_t *n = sb_xcalloc(1, sizeof *n);
    n->ctx = ctx;
    n->p = *p;
    n->runtime = pl->name;
    n->timeout_s = timeout_s;
    n->done = sbx_api_done;
    n->cb = cb;
    n->ud = ud;
    sb_buf_init(&n->env, 0);
    sb_buf_init(&n->limits, 0);
    sb_codec_packer(&pk, &n->env);
    msgpack_pack_array(&pk, 0);
    sb_codec_packer(&pk, &n->limits);
    msgpack_pack_map(&pk, 0);
    int r = sbx_place(n);
    if (r)
        sbx_new_free(n);
    return r;
}

static void
sbx_create(gw_ctx_t *ctx, sb_http_req_t *req, const gw_principal_t *p)
{
    const sb_config_t *cfg = ctx->cfg;
    sbx_new_t *n = sb_xcalloc(1, sizeof *n);
    const char *rt, *tmpl;
    json_t *lim;
    msgpack_packer pk;
    n->ctx = ctx;
    n->p = *p;
    n->req = req;
    n->done = sbx_rest_done;
    n->timeout_s = cfg->api_default_sandbox_timeout_s;
    sb_buf_init(&n->env, 0);
    sb_buf_init(&n->limits, 0);
    if (!(n->body = sb__gw_json_body(req)))
        goto fail;
    if (!sb__gw_str(req, n->body, "runtime", false, 64, &rt, NULL) ||
        !sb__gw_str(req, n->body, "template", false, 64, &tmpl, NULL) ||
        !sb__gw_int(req, n->body, "timeout", 1, cfg->api_max_sandbox_timeout_s,
                    "api.max_sandbox_timeout_s", &n->timeout_s) ||
        !sb__gw_env(req, n->body, "env", &n->env))
        goto fail;
    json_t *md = json_object_get(n->body, "metadata");
    if (md && !json_is_object(md) && !json_is_null(md)) {
        sb_http_respond_error(req, 400, "bad_request", "field 'metadata' must be an object");
        goto fail;
    }
    if (!rt)
        rt = tmpl ? tmpl : "python";
    const sb_plugin_t *pl = ctx->plugins ? sb_plugins_find(ctx->plugins, rt) : NULL;
    if (!pl || !pl->installed) {
        sb_http_respond_error(req, 400, "unknown_runtime", "runtime '%s' is not installed here",
                              rt);
        goto fail;
    }
    n->runtime = pl->name;
    /* limits: {memory_mb, cpu (cores), pids, disk_mb}, each within the server's maxima */
    int64_t mem = 0, pids = 0, disk = 0;
    double cpu = 0;
    lim = json_object_get(n->body, "limits");
    if (lim && !json_is_object(lim) && !json_is_null(lim)) {
        sb_http_respond_error(req, 400, "bad_request", "field 'limits' must be an object");
        goto fail;
    }
    if (lim && json_is_object(lim) &&
        (!sb__gw_int(req, lim, "memory_mb", 16, cfg->api_max_memory_mb, "api.max_memory_mb",
                     &mem) ||
         !sb__gw_num(req, lim, "cpu", 0.01, (double)cfg->api_max_cpu_cores, "api.max_cpu_cores",
                     &cpu) ||
         !sb__gw_int(req, lim, "pids", 8, 4096, NULL, &pids) ||
         !sb__gw_int(req, lim, "disk_mb", 1, cfg->api_max_disk_mb, "api.max_disk_mb", &disk)))
        goto fail;
    n->limits_json = json_object();
    sb_codec_packer(&pk, &n->limits);
    msgpack_pack_map(&pk, 4);
    const char *names[4] = {"memory_mb", "pids", "cpu_pct", "disk_mb"};
    int64_t vals[4] = {mem, pids, (int64_t)(cpu * 100), disk};
    for (int i = 0; i < 4; i++) {
        msgpack_pack_str(&pk, strlen(names[i]));
        msgpack_pack_str_body(&pk, names[i], strlen(names[i]));
        msgpack_pack_uint64(&pk, (uint64_t)vals[i]);
        if (vals[i])
            json_object_set_new(n->limits_json, names[i], json_integer(vals[i]));
    }
    int r = sbx_place(n);
    if (r == 0)
        return;
    sb__gw_fail(req, r, NULL, "scheduler");
fail:
    sbx_new_free(n);
}

/* ---- list, get, delete, timeout ---------------------------------------------------------- */

static void
sbx_list(gw_ctx_t *ctx, sb_http_req_t *req, const gw_principal_t *p)
{
    json_t *arr = json_array();
    for (gw_sandbox_t *s = ctx->sandboxes; s; s = s->next)
        if (!s->destroying && (p->role == GW_ROLE_ADMIN || !strcmp(s->owner, p->id)))
            json_array_append_new(arr, sbx_json(s, "running"));
    sb_http_respond_json(req, 200, json_pack("{s:o}", "sandboxes", arr));
}

static void
sbx_on_stored(gw_ctx_t *ctx, sb_http_req_t *req, int status, const sb_msg_t *m, void *ud)
{
    gw_principal_t *p = ud;
    sb_store_record_t rec;
    json_t *j = NULL;
    (void)ctx;
    if (status == 0 && sb_store_record_decode(m, &rec) == 0)
        j = json_loadb(rec.record.ptr, rec.record.len, 0, NULL);
    const char *owner = j ? json_string_value(json_object_get(j, "owner")) : NULL;
    if (!j || !owner || (p->role != GW_ROLE_ADMIN && strcmp(owner, p->id) != 0)) {
        if (j)
            json_decref(j);
        if (status && status != SB_ENOTFOUND)
            sb__gw_fail(req, status, m, "storage");
        else
            sb_http_respond_error(req, 404, "not_found", "no such sandbox");
        free(p);
        return;
    }
    sb_http_respond_json(req, 200, j);
    free(p);
}

static void
sbx_get(gw_ctx_t *ctx, sb_http_req_t *req, const gw_principal_t *p)
{
    sb_str_t id = sb_http_param(req, "id");
    char sid[64];
    if (sb_str_copy(sid, sizeof sid, id) != 0) {
        sb_http_respond_error(req, 404, "not_found", "no such sandbox");
        return;
    }
    gw_sandbox_t *s = sb__gw_sandbox_find(ctx, sid);
    if (s && !s->destroying && (p->role == GW_ROLE_ADMIN || !strcmp(s->owner, p->id))) {
        sb_http_respond_json(req, 200, sbx_json(s, "running"));
        return;
    }
    /* Not live here: an ended sandbox's record still answers, with its end reason. */
    sb_store_get_t g = {.kind = SB_STR("sandbox"), .key = id};
    sb_buf_t body;
    sb_buf_init(&body, 0);
    gw_principal_t *pc = sb_xmalloc(sizeof *pc);
    *pc = *p;
    int r = sb_store_get_encode(&g, &body);
    if (r == 0)
        r = sb__gw_call(ctx, req, sb_addr(SB_ACTOR_STORAGE), SB_MSG_STORE_GET, &body, 5000,
                        sbx_on_stored, pc);
    sb_buf_fini(&body);
    if (r) {
        free(pc);
        sb__gw_fail(req, r, NULL, "storage");
    }
}

typedef struct {
    gw_ctx_t *ctx;
    gw_sandbox_t *s;
    gw_principal_t p;
} sbx_del_t;

static void
sbx_on_deleted(gw_ctx_t *ctx, sb_http_req_t *req, int status, const sb_msg_t *m, void *ud)
{
    sbx_del_t *d = ud;
    (void)m;
    if (status && status != SB_ENOTFOUND) {
        d->s->destroying = 0;
        sb__gw_fail(req, status, m, "executor");
        free(d);
        return;
    }
    sbx_destroyed(ctx, d->s, "deleted", &d->p, 0);
    sb_http_respond(req, 204, NULL, NULL, 0);
    free(d);
}

static void
sbx_delete(gw_ctx_t *ctx, sb_http_req_t *req, const gw_principal_t *p)
{
    gw_sandbox_t *s = sb__gw_sandbox_from_req(ctx, req, p);
    if (!s)
        return;
    sb_sbx_destroy_t dm = {.id = sb_str(s->id), .reason = SB_STR("deleted")};
    sb_buf_t body;
    sb_buf_init(&body, 0);
    sbx_del_t *d = sb_xmalloc(sizeof *d);
    *d = (sbx_del_t){ctx, s, *p};
    s->destroying = 1;
    int r = sb_sbx_destroy_encode(&dm, &body);
    if (r == 0)
        r = sb__gw_call(ctx, req, sb__gw_sandbox_addr(s), SB_MSG_SBX_DESTROY, &body, 30000,
                        sbx_on_deleted, d);
    sb_buf_fini(&body);
    if (r) {
        free(d);
        /* The node is gone: the sandbox went with it. */
        sbx_destroyed(ctx, s, "deleted", p, 1);
        sb_http_respond(req, 204, NULL, NULL, 0);
    }
}

static void
sbx_timeout(gw_ctx_t *ctx, sb_http_req_t *req, const gw_principal_t *p)
{
    int64_t t = -1;
    gw_sandbox_t *s = sb__gw_sandbox_from_req(ctx, req, p);
    if (!s)
        return;
    json_t *b = sb__gw_json_body(req);
    if (!b)
        return;
    if (!sb__gw_int(req, b, "timeout", 1, ctx->cfg->api_max_sandbox_timeout_s,
                    "api.max_sandbox_timeout_s", &t)) {
        json_decref(b);
        return;
    }
    json_decref(b);
    if (t < 0) {
        sb_http_respond_error(req, 400, "bad_request", "missing field 'timeout'");
        return;
    }
    s->timeout_s = t;
    sb__gw_sandbox_touch(ctx, s);
    sbx_record(ctx, s, "running", NULL);
    sb_http_respond_json(req, 200, sbx_json(s, "running"));
}

/* ---- commands and processes -------------------------------------------------------------- */

static void
sbx_on_cmd(gw_ctx_t *ctx, sb_http_req_t *req, int status, const sb_msg_t *m, void *ud)
{
    (void)ctx;
    (void)ud;
    if (status == 0 && (m->flags & SB_MF_STREAM) && !(m->flags & SB_MF_FINAL))
        return;
    if (status) {
        sb__gw_fail(req, status, m, "executor");
        return;
    }
    if (m->type == SB_MSG_CMD_STARTED) {
        sb_cmd_started_t cs;
        if (sb_cmd_started_decode(m, &cs) != 0) {
            sb_http_respond_error(req, 502, "bad_gateway", "malformed reply");
            return;
        }
        sb_http_respond_json(req, 202, json_pack("{s:I,s:b}", "pid", (json_int_t)cs.pid,
                                                 "background", 1));
        return;
    }
    json_t *j = sb__gw_result_json(m);
    if (!j) {
        sb_http_respond_error(req, 502, "bad_gateway", "malformed reply");
        return;
    }
    sb_http_respond_json(req, 200, j);
}

static void
sbx_commands(gw_ctx_t *ctx, sb_http_req_t *req, const gw_principal_t *p)
{
    const char *cmd, *cwd, *in;
    size_t cmdlen, inlen;
    int64_t timeout = 0;
    bool background = false;
    sb_buf_t argv, env;
    json_t *b = NULL;
    msgpack_packer pk;

    gw_sandbox_t *s = sb__gw_sandbox_from_req(ctx, req, p);
    if (!s)
        return;
    sb_buf_init(&argv, 0);
    sb_buf_init(&env, 0);
    if (!(b = sb__gw_json_body(req)))
        goto done;
    json_t *args = json_object_get(b, "args");
    if (!sb__gw_str(req, b, "cmd", true, 65536, &cmd, &cmdlen) ||
        !sb__gw_str(req, b, "cwd", false, 4096, &cwd, NULL) ||
        !sb__gw_str(req, b, "stdin", false, 4u << 20, &in, &inlen) ||
        !sb__gw_int(req, b, "timeout", 1, ctx->cfg->api_max_timeout_ms, "api.max_timeout_ms",
                    &timeout) ||
        !sb__gw_bool(req, b, "background", &background) || !sb__gw_env(req, b, "env", &env))
        goto done;
    if (args && !json_is_null(args)) {
        /* cmd is the program, args its arguments: no shell involved */
        sb_buf_t rest;
        sb_buf_init(&rest, 0);
        if (!sb__gw_str_array(req, b, "args", 256, 4096, &rest)) {
            sb_buf_fini(&rest);
            goto done;
        }
        sb_codec_packer(&pk, &argv);
        msgpack_pack_array(&pk, (uint32_t)json_array_size(args) + 1);
        msgpack_pack_str(&pk, cmdlen);
        msgpack_pack_str_body(&pk, cmd, cmdlen);
        /* skip the array header of rest and append its elements */
        sb_mp_reader_t r;
        uint32_t n;
        sb_mp_reader_init(&r, rest.data, rest.len);
        sb_mp_read_array(&r, &n);
        sb_buf_append(&argv, r.p, sb_mp_left(&r));
        sb_buf_fini(&rest);
    } else {
        /* a command line, as E2B's commands.run takes it: run by a shell */
        sb_codec_packer(&pk, &argv);
        msgpack_pack_array(&pk, 3);
        msgpack_pack_str(&pk, 7);
        msgpack_pack_str_body(&pk, "/bin/sh", 7);
        msgpack_pack_str(&pk, 2);
        msgpack_pack_str_body(&pk, "-c", 2);
        msgpack_pack_str(&pk, cmdlen);
        msgpack_pack_str_body(&pk, cmd, cmdlen);
    }
    sb__gw_sandbox_touch(ctx, s);
    sb_cmd_t c = {.sandbox = sb_str(s->id),
                  .argv = {(const char *)argv.data, (uint32_t)argv.len},
                  .env = {(const char *)env.data, (uint32_t)env.len},
                  .cwd = sb_str(cwd ? cwd : ""),
                  .stdin = {in, (uint32_t)inlen},
                  .timeout_ms = (uint64_t)timeout,
                  .background = background};
    sb_buf_t body;
    sb_buf_init(&body, 0);
    int r = sb_cmd_encode(&c, &body);
    uint64_t budget = (uint64_t)(timeout ? timeout : ctx->cfg->api_max_timeout_ms) + 15000;
    if (r == 0)
        r = sb__gw_call(ctx, req, sb__gw_sandbox_addr(s), SB_MSG_CMD, &body, (uint32_t)budget,
                        sbx_on_cmd, NULL);
    sb_buf_fini(&body);
    if (r)
        sb__gw_fail(req, r, NULL, "executor");
    sb__gw_audit(ctx, "sandbox.command", p,
                 json_pack("{s:s,s:b}", "sandbox_id", s->id, "background", background));
done:
    if (b)
        json_decref(b);
    sb_buf_fini(&argv);
    sb_buf_fini(&env);
}

static void
sbx_on_ack(gw_ctx_t *ctx, sb_http_req_t *req, int status, const sb_msg_t *m, void *ud)
{
    (void)ctx;
    (void)ud;
    if (status)
        sb__gw_fail(req, status, m, "executor");
    else
        sb_http_respond(req, 204, NULL, NULL, 0);
}

static void
sbx_on_ps(gw_ctx_t *ctx, sb_http_req_t *req, int status, const sb_msg_t *m, void *ud)
{
    sb_proc_list_reply_t pl;
    (void)ctx;
    (void)ud;
    if (status || sb_proc_list_reply_decode(m, &pl) != 0) {
        sb__gw_fail(req, status ? status : SB_EBADMSG, m, "executor");
        return;
    }
    json_t *raw = sb__gw_mp_to_json(pl.procs), *out = json_array(), *row;
    size_t i;
    json_array_foreach(raw, i, row)
    {
        if (!json_is_array(row) || json_array_size(row) < 4)
            continue;
        json_array_append_new(out, json_pack("{s:O,s:O,s:O,s:O}", "pid", json_array_get(row, 0),
                                             "ppid", json_array_get(row, 1), "state",
                                             json_array_get(row, 2), "cmd",
                                             json_array_get(row, 3)));
    }
    json_decref(raw);
    sb_http_respond_json(req, 200, json_pack("{s:o}", "processes", out));
}

static void
sbx_processes(gw_ctx_t *ctx, sb_http_req_t *req, const gw_principal_t *p)
{
    gw_sandbox_t *s = sb__gw_sandbox_from_req(ctx, req, p);
    if (!s)
        return;
    sb__gw_sandbox_touch(ctx, s);
    sb_proc_list_t q = {.sandbox = sb_str(s->id)};
    sb_buf_t body;
    sb_buf_init(&body, 0);
    int r = sb_proc_list_encode(&q, &body);
    if (r == 0)
        r = sb__gw_call(ctx, req, sb__gw_sandbox_addr(s), SB_MSG_PROC_LIST, &body, 10000,
                        sbx_on_ps, NULL);
    sb_buf_fini(&body);
    if (r)
        sb__gw_fail(req, r, NULL, "executor");
}

static const struct {
    const char *name;
    int sig;
} sbx_signals[] = {{"SIGTERM", SIGTERM}, {"SIGKILL", SIGKILL}, {"SIGINT", SIGINT},
                   {"SIGHUP", SIGHUP},   {"SIGQUIT", SIGQUIT}, {"SIGUSR1", SIGUSR1},
                   {"SIGUSR2", SIGUSR2}, {"SIGSTOP", SIGSTOP}, {"SIGCONT", SIGCONT}};

/* sbx_proc handles POST .../processes/{pid}/signal and .../processes/{pid}/stdin. */
static void
sbx_proc(gw_ctx_t *ctx, sb_http_req_t *req, const gw_principal_t *p, int is_signal)
{
    char sid[64], pidtxt[24];
    if (sb_str_copy(sid, sizeof sid, sb_http_param(req, "id")) != 0 ||
        sb_str_copy(pidtxt, sizeof pidtxt, sb_http_param(req, "pid")) != 0) {
        sb_http_respond_error(req, 404, "not_found", "no such sandbox or process");
        return;
    }
    char *end;
    unsigned long pid = strtoul(pidtxt, &end, 10);
    if (*end || pid == 0) {
        sb_http_respond_error(req, 400, "bad_request", "pid must be a positive integer");
        return;
    }
    gw_sandbox_t *s = sb__gw_sandbox_owned(ctx, req, p, sid);
    if (!s)
        return;
    json_t *b = sb__gw_json_body(req);
    if (!b)
        return;
    sb_buf_t body;
    sb_buf_init(&body, 0);
    int r = 0;
    uint16_t type;
    if (is_signal) {
        json_t *sv = json_object_get(b, "signal");
        int sig = 0;
        if (json_is_integer(sv) && json_integer_value(sv) > 0 && json_integer_value(sv) < 65)
            sig = (int)json_integer_value(sv);
        for (size_t i = 0; json_is_string(sv) && i < sizeof sbx_signals / sizeof sbx_signals[0]; i++)
            if (!strcmp(json_string_value(sv), sbx_signals[i].name) ||
                !strcmp(json_string_value(sv), sbx_signals[i].name + 3))
                sig = sbx_signals[i].sig;
        if (!sig) {
            sb_http_respond_error(req, 400, "bad_request",
                                  "field 'signal' must be a signal number or a name like SIGTERM");
            goto done;
        }
        sb_proc_signal_t ps = {.sandbox = sb_str(s->id), .pid = pid, .signal = (uint64_t)sig};
        r = sb_proc_signal_encode(&ps, &body);
        type = SB_MSG_PROC_SIGNAL;
    } else {
        const char *data;
        size_t len;
        bool eof = false;
        if (!sb__gw_str(req, b, "data", false, 1u << 20, &data, &len) ||
            !sb__gw_bool(req, b, "eof", &eof))
            goto done;
        sb_proc_input_t pi = {.sandbox = sb_str(s->id), .pid = pid, .data = {data, (uint32_t)len},
                              .eof = eof};
        r = sb_proc_input_encode(&pi, &body);
        type = SB_MSG_PROC_INPUT;
    }
    sb__gw_sandbox_touch(ctx, s);
    if (r == 0)
        r = sb__gw_call(ctx, req, sb__gw_sandbox_addr(s), type, &body, 10000, sbx_on_ack, NULL);
    if (r)
        sb__gw_fail(req, r, NULL, "executor");
done:
    sb_buf_fini(&body);
    json_decref(b);
}

static void
sbx_signal(gw_ctx_t *ctx, sb_http_req_t *req, const gw_principal_t *p)
{
    sbx_proc(ctx, req, p, 1);
}

static void
sbx_stdin(gw_ctx_t *ctx, sb_http_req_t *req, const gw_principal_t *p)
{
    sbx_proc(ctx, req, p, 0);
}

void
sb__gw_sandbox_routes(gw_ctx_t *ctx, sb_http_server_t *srv)
{
    static const char *const bases[] = {"/api/v1/sandboxes", "/api/v1/containers"};
    size_t max = (size_t)ctx->cfg->api_max_body_bytes;
    for (int i = 0; i < 2; i++) {
        char pat[128];
        const char *b = bases[i];
        sb__gw_route(ctx, srv, "POST", b, GW_ROLE_USER, sbx_create, 1 << 20);
        sb__gw_route(ctx, srv, "GET", b, GW_ROLE_VIEWER, sbx_list, 0);
        snprintf(pat, sizeof pat, "%s/{id}", b);
        sb__gw_route(ctx, srv, "GET", pat, GW_ROLE_VIEWER, sbx_get, 0);
        sb__gw_route(ctx, srv, "DELETE", pat, GW_ROLE_USER, sbx_delete, 0);
        snprintf(pat, sizeof pat, "%s/{id}/timeout", b);
        sb__gw_route(ctx, srv, "POST", pat, GW_ROLE_USER, sbx_timeout, 4096);
        snprintf(pat, sizeof pat, "%s/{id}/commands", b);
        sb__gw_route(ctx, srv, "POST", pat, GW_ROLE_USER, sbx_commands, max);
        snprintf(pat, sizeof pat, "%s/{id}/processes", b);
        sb__gw_route(ctx, srv, "GET", pat, GW_ROLE_VIEWER, sbx_processes, 0);
        snprintf(pat, sizeof pat, "%s/{id}/processes/{pid}/signal", b);
        sb__gw_route(ctx, srv, "POST", pat, GW_ROLE_USER, sbx_signal, 4096);
        snprintf(pat, sizeof pat, "%s/{id}/processes/{pid}/stdin", b);
        sb__gw_route(ctx, srv, "POST", pat, GW_ROLE_USER, sbx_stdin, 2u << 20);
    }
}
