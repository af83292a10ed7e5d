/*
 * api.h: what the REST handlers (gateway/handlers/) share -- the gateway context, request
 * validation that answers 400 naming the field, the SB_E* -> HTTP status mapping, bus calls
 * tied to an HTTP request, and the fire-and-forget records (storage) and events (auditor)
 * every request type emits.  Internal to the gateway (sb__gw_ / gw_ names); loop thread only.
 */
#ifndef SB_GW_API_H
#define SB_GW_API_H

#include "core/actor.h"
#include "core/config.h"
#include "core/plugin.h"
#include "gateway/http/http.h"

#include <jansson.h>
#include <stdbool.h>

/* Roles, ordered: a route requiring a role admits it and every higher one. */
typedef enum { GW_ROLE_NONE = 0, GW_ROLE_VIEWER, GW_ROLE_USER, GW_ROLE_ADMIN } gw_role_t;

typedef struct {
    char id[129];   /* the key id or username work is charged to and records are owned by */
    char name[129];
    gw_role_t role;
} gw_principal_t;

typedef struct gw_sandbox gw_sandbox_t;

typedef struct gw_ctx {
    sb_actor_t *actor;
    const sb_config_t *cfg;
    sb_plugins_t *plugins;
    void *auth; /* the auth module (gateway/auth.h), NULL until wired */
    gw_sandbox_t *sandboxes; /* live sandboxes this gateway manages (expiry, node) */
    uv_timer_t expiry_timer;
    /* audit events waiting for a slow auditor (api_common.c), bounded */
    void *audit_head, *audit_tail;
    size_t audit_queued;
    uint64_t audit_dropped;
} gw_ctx_t;

/* A handler that runs once the caller is authenticated with at least the route's role. */
typedef void (*gw_handler_t)(gw_ctx_t *ctx, sb_http_req_t *req, const gw_principal_t *p);

/* sb__gw_route registers method+pattern; the request is authenticated (role >= min_role, else
 * 401/403) before fn runs. */
void sb__gw_route(gw_ctx_t *ctx, sb_http_server_t *srv, const char *method, const char *pattern,
                  gw_role_t min_role, gw_handler_t fn, size_t max_body);

/* ---- errors ---------------------------------------------------------------------------- */

/* sb__gw_status maps an SB_E* (or libuv) error to its HTTP status. */
int sb__gw_status(int err);
/* sb__gw_fail answers with the status for err and a JSON error; for a bus error reply (m set)
 * the remote message is used, and "retry_after_ms=N" in it becomes Retry-After. */
void sb__gw_fail(sb_http_req_t *req, int err, const sb_msg_t *m, const char *what);

/* ---- validation: each getter answers 400 naming the field and returns false ------------- */

json_t *sb__gw_json_body(sb_http_req_t *req); /* NULL: already answered 400 */
bool sb__gw_str(sb_http_req_t *req, json_t *o, const char *field, bool required, size_t max,
                const char **out, size_t *len);
bool sb__gw_int(sb_http_req_t *req, json_t *o, const char *field, int64_t min, int64_t max,
                const char *max_key, int64_t *out);
bool sb__gw_num(sb_http_req_t *req, json_t *o, const char *field, double min, double max,
                const char *max_key, double *out);
bool sb__gw_bool(sb_http_req_t *req, json_t *o, const char *field, bool *out);
/* argv-style: an array of strings (each at most max bytes, at most n items) -> msgpack array */
bool sb__gw_str_array(sb_http_req_t *req, json_t *o, const char *field, size_t n, size_t max,
                      sb_buf_t *out);
/* env: an object of string values -> msgpack array of "K=V" */
bool sb__gw_env(sb_http_req_t *req, json_t *o, const char *field, sb_buf_t *out);

/* ---- bus --------------------------------------------------------------------------------- */

/* sb__gw_call sends a request for an HTTP request; cb gets the reply (or error) with req. */
typedef void (*gw_reply_t)(gw_ctx_t *ctx, sb_http_req_t *req, int status, const sb_msg_t *m,
                           void *ud);
int sb__gw_call(gw_ctx_t *ctx, sb_http_req_t *req, sb_addr_t dst, uint16_t type, const sb_buf_t *body,
                uint32_t timeout_ms, gw_reply_t cb, void *ud);

/* Records and events that never hold up a response: sent as requests whose failures are
 * logged (SB-GW-STORE-FAIL / SB-GW-AUDIT-FAIL). */
void sb__gw_store(gw_ctx_t *ctx, const char *kind, json_t *record /* stolen */);
void sb__gw_audit(gw_ctx_t *ctx, const char *type, const gw_principal_t *p,
                  json_t *fields /* stolen */);
/* sb__gw_audit_flush re-sends audit events a slow auditor could not take yet (a timer calls
 * it); sb__gw_audit_fini logs and frees what still waits at shutdown. */
void sb__gw_audit_flush(gw_ctx_t *ctx);
void sb__gw_audit_fini(gw_ctx_t *ctx);

/* ---- small helpers ---------------------------------------------------------------------- */
json_t *sb__gw_mp_to_json(sb_str_t raw);                         /* msgpack -> JSON (new ref) */
const char *sb__gw_role_name(gw_role_t r);

/* Route families, one file each under handlers/. */
void sb__gw_execute_routes(gw_ctx_t *ctx, sb_http_server_t *srv);
void sb__gw_sandbox_routes(gw_ctx_t *ctx, sb_http_server_t *srv);
void sb__gw_file_routes(gw_ctx_t *ctx, sb_http_server_t *srv);
void sb__gw_runtime_routes(gw_ctx_t *ctx, sb_http_server_t *srv);

/* Sandboxes this gateway manages (handlers/sandboxes.c). */
gw_sandbox_t *sb__gw_sandbox_find(gw_ctx_t *ctx, const char *id);
/* sb__gw_sandbox_owned finds id and checks p may act on it: NULL after answering 404. */
gw_sandbox_t *sb__gw_sandbox_owned(gw_ctx_t *ctx, sb_http_req_t *req, const gw_principal_t *p,
                                   const char *id);
/* sb__gw_sandbox_from_req: the same for the route's {id} parameter. */
gw_sandbox_t *sb__gw_sandbox_from_req(gw_ctx_t *ctx, sb_http_req_t *req, const gw_principal_t *p);
sb_addr_t sb__gw_sandbox_addr(const gw_sandbox_t *s);
const char *sb__gw_sandbox_id(const gw_sandbox_t *s);
void sb__gw_sandbox_touch(gw_ctx_t *ctx, gw_sandbox_t *s);
void sb__gw_sandboxes_start(gw_ctx_t *ctx);
void sb__gw_sandboxes_stop(gw_ctx_t *ctx);
const char *sb__gw_sandbox_owner(const gw_sandbox_t *s);
const char *sb__gw_sandbox_runtime(const gw_sandbox_t *s);
/* sb__gw_sandbox_create places and creates a sandbox of `runtime` (an installed plugin name)
 * owned by p, outside any HTTP request (WebSocket sessions), with idle timeout timeout_s.  cb
 * runs exactly once, later, on the loop: err 0 and s (listed, recorded, audited as the REST
 * route does), or err and a message for the client.  SB_ENOTFOUND (runtime not installed) or
 * a bus error is returned at once, and then cb never runs. */
typedef void (*gw_sandbox_cb)(gw_ctx_t *ctx, int err, const char *message, gw_sandbox_t *s,
                              void *ud);
int sb__gw_sandbox_create(gw_ctx_t *ctx, const gw_principal_t *p, const char *runtime,
                          int64_t timeout_s, gw_sandbox_cb cb, void *ud);
/* sb__gw_sandbox_destroy ends s (SBX_DESTROY; record and audit with reason); s leaves the
 * table when the executor answers.  No-op if it is already being destroyed. */
void sb__gw_sandbox_destroy(gw_ctx_t *ctx, gw_sandbox_t *s, const char *reason,
                            const gw_principal_t *p);
/* sb__gw_sandbox_set_expiry: idle timeout and the end reason the expiry timer records. */
void sb__gw_sandbox_set_expiry(gw_sandbox_t *s, int64_t timeout_s, const char *reason);
/* sb__gw_sandbox_watch: cb runs once when s leaves the table (any cause, shutdown included),
 * while s is still readable; cb NULL stops watching.  One watcher per sandbox. */
typedef void (*gw_sandbox_gone_cb)(void *ud, gw_sandbox_t *s);
void sb__gw_sandbox_watch(gw_sandbox_t *s, gw_sandbox_gone_cb cb, void *ud);

/* ---- warm kernels (handlers/kernels.c) ---------------------------------------------------
 * sb__gw_kernel_execute runs code in sandbox s's warm kernel for `language` (the sandbox's
 * runtime when NULL), in context context_id (NULL: the default context), starting the kernel
 * on first use.  Events reach cb as they happen, in order: type "stdout" / "stderr" (data: a
 * JSON string), "result" (data: {"text": ..., "png": base64, "svg", "html", "json", ...,
 * "is_main_result": bool}), "error" (data: {"name", "value", "traceback"}); then exactly one
 * last call: type "done" (data: {"execution_count": N}) or err != 0 (data NULL; the kernel
 * crashed, timed out, or the node is gone -- the caller gets a clear error, the kernel is
 * replaced on next use).  data is borrowed for the call.  *handle identifies the execution for
 * sb__gw_kernel_interrupt, which stops the running code and keeps the kernel's state. */
typedef void (*gw_kernel_cb)(void *ud, int err, const char *type, json_t *data);
int sb__gw_kernel_execute(gw_ctx_t *ctx, gw_sandbox_t *s, const char *code, size_t len,
                          const char *language, const char *context_id, gw_kernel_cb cb, void *ud,
                          uint64_t *handle);
int sb__gw_kernel_interrupt(gw_ctx_t *ctx, uint64_t handle);
/* sb__gw_kernel_cancel forgets an execution whose requester went away (no more callbacks). */
void sb__gw_kernel_cancel(gw_ctx_t *ctx, uint64_t handle);

/* The RESULT message (executor.def) as the API's JSON result object. */
json_t *sb__gw_result_json(const sb_msg_t *m);

/* The playground's static files (handlers/static.c): GET /playground and /playground/...,
 * unauthenticated, from playground.dir and playground.vendor_dir (/playground/vendor/...). */
void sb__gw_static_routes(gw_ctx_t *ctx, sb_http_server_t *srv);

/* Warm kernels, continued (handlers/kernels.c).  sb__gw_kernel_execute_timeout is
 * sb__gw_kernel_execute with a time limit for the cell (0: the runtime's run timeout); past
 * it the kernel is killed and the last callback has err SB_ETIMEDOUT.  The last callback's
 * type says why when err != 0: "timeout", "crashed" (SB_EIO: the kernel died; its state and
 * contexts are lost, the next execute starts a fresh kernel), "canceled", or "failed" (the
 * executor refused: unknown context or language, sandbox gone, ...).  sb__gw_kernel_error
 * gives that reason in words; valid during such a callback (loop thread only). */
int sb__gw_kernel_execute_timeout(gw_ctx_t *ctx, gw_sandbox_t *s, const char *code, size_t len,
                                  const char *language, const char *context_id,
                                  uint64_t timeout_ms, gw_kernel_cb cb, void *ud,
                                  uint64_t *handle);
const char *sb__gw_kernel_error(void);
/* POST .../{id}/execute and the .../{id}/contexts routes, under /api/v1/sandboxes and
 * /api/v1/containers. */
void sb__gw_kernel_routes(gw_ctx_t *ctx, sb_http_server_t *srv);

#endif
