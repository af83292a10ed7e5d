/*
 * execute.c: POST /api/v1/execute (alias POST /api/execute) -- one-shot execution in a fresh
 * sandbox.
 *
 * The hot path crosses the bus three times: PLACE to the scheduler (which may hand out a warm
 * sandbox from the pool), RUN straight to the executor on the leased node (which destroys the
 * sandbox after the run: a one-shot never shares a sandbox), RELEASE to the scheduler.  The
 * execution record (storage) and the audit event (auditor) are sent after the response is
 * on its way and never delay it.
 *
 * States of one request: VALIDATED -> PLACED (lease held) -> RAN (result in hand) -> answered.
 * Every exit path after PLACED sends RELEASE.
 */
#include "gateway/api.h"

#include "base/err.h"
#include "base/log.h"
#include "protocols/msgs.h"
#include "base/clock.h"
#include "base/alloc.h"
#include "base/sha256.h"
#include "base/id.h"
#include "base/base64.h"

#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    gw_ctx_t *ctx;
    sb_http_req_t *req;
    gw_principal_t p;
    json_t *body; /* holds the strings below alive */
    const char *runtime_name;
    const char *version, *code, *stdin_data;
    size_t code_len, stdin_len;
    sb_buf_t args, env, files;
    int64_t timeout_ms, memory_mb, compile_timeout_ms;
    double cpu_cores;
    char code_sha[65];
    char exec_id[32];
    uint64_t lease, node;
    char sandbox[64];
    uint64_t started_ms;
} exe_t;

static void
exe_free(exe_t *x)
{
    json_decref(x->body);
    sb_buf_fini(&x->args);
    sb_buf_fini(&x->env);
    sb_buf_fini(&x->files);
    free(x);
}

static void
exe_release(exe_t *x)
{
    sb_release_t rel = {.lease = x->lease, .sandbox = sb_str(x->sandbox)};
    sb_buf_t *b = sb_actor_scratch(x->ctx->actor);
    if (x->lease && sb_release_encode(&rel, b) == 0)
        sb_actor_send(x->ctx->actor, sb_addr(SB_ACTOR_SCHEDULER), SB_MSG_RELEASE, 0, 0, 0,
                      b->data, b->len);
}

/* exe_record stores the execution and audits it (never the code: its sha256). */
static void
exe_record(exe_t *x, const char *status, int64_t exit_code, const sb_result_t *r)
{
    json_t *rec = json_object();
    json_object_set_new(rec, "id", json_string(x->exec_id));
    json_object_set_new(rec, "owner", json_string(x->p.id));
    json_object_set_new(rec, "runtime", json_string(x->runtime_name));
    json_object_set_new(rec, "code_sha256", json_string(x->code_sha));
    json_object_set_new(rec, "status", json_string(status));
    json_object_set_new(rec, "exit_code", json_integer(exit_code));
    json_object_set_new(rec, "created", json_integer((json_int_t)x->started_ms));
    json_object_set_new(rec, "ended", json_integer((json_int_t)sb_now_real_ms()));
    if (r) {
        json_object_set_new(rec, "wall_ms", json_integer((json_int_t)r->execution_time_ms));
        json_object_set_new(rec, "cpu_ms", json_integer((json_int_t)r->cpu_time_ms));
        json_object_set_new(rec, "memory_peak", json_integer((json_int_t)r->memory_peak));
    }
    sb__gw_store(x->ctx, "execution", rec);
    json_t *ev = json_object();
    json_object_set_new(ev, "execution_id", json_string(x->exec_id));
    json_object_set_new(ev, "runtime", json_string(x->runtime_name));
    json_object_set_new(ev, "code_sha256", json_string(x->code_sha));
    json_object_set_new(ev, "status", json_string(status));
    sb__gw_audit(x->ctx, "execution", &x->p, ev);
}

static void
exe_on_result(gw_ctx_t *ctx, sb_http_req_t *req, int status, const sb_msg_t *m, void *ud)
{
    exe_t *x = ud;
    (void)ctx;
    if (status == 0 && (m->flags & SB_MF_STREAM) && !(m->flags & SB_MF_FINAL))
        return; /* output chunks: not asked for, ignored */
    exe_release(x);
    if (status != 0) {
        sb__gw_fail(req, status, m, "executor");
        exe_record(x, "lost", -1, NULL);
        exe_free(x);
        return;
    }
    sb_result_t r;
    json_t *j = m->type == SB_MSG_RESULT ? sb__gw_result_json(m) : NULL;
    if (!j || sb_result_decode(m, &r) != 0) {
        if (j)
            json_decref(j);
        sb_http_respond_error(req, 502, "bad_gateway", "the executor sent a malformed result");
        exe_record(x, "lost", -1, NULL);
        exe_free(x);
        return;
    }
    json_object_set_new(j, "id", json_string(x->exec_id));
    json_object_set_new(j, "runtime", json_string(x->runtime_name));
    char st[33];
    sb_str_copy(st, sizeof st, r.status);
    exe_record(x, st, r.exit_code, &r);
    sb_http_respond_json(req, 200, j);
    exe_free(x);
}

static void
exe_on_lease(gw_ctx_t *ctx, sb_http_req_t *req, int status, const sb_msg_t *m, void *ud)
{
    exe_t *x = ud;
    sb_lease_t l;
    if (status != 0 || sb_lease_decode(m, &l) != 0) {
        sb__gw_fail(req, status ? status : SB_EBADMSG, m, "scheduler");
        if (status == SB_ELIMIT)
            sb__gw_audit(ctx, "rate_limit.hit", &x->p, json_pack("{s:s}", "what", "execute"));
        exe_free(x);
        return;
    }
    x->lease = l.lease;
    x->node = l.node;
    sb_str_copy(x->sandbox, sizeof x->sandbox, l.sandbox);

    const sb_config_t *cfg = ctx->cfg;
    sb_run_t run = {
        .sandbox = sb_str(x->sandbox),
        .runtime = sb_str(x->runtime_name),
        .version = sb_str(x->version ? x->version : ""),
        .code = {x->code, (uint32_t)x->code_len},
        .stdin = {x->stdin_data, (uint32_t)x->stdin_len},
        .args = {(const char *)x->args.data, (uint32_t)x->args.len},
        .env = {(const char *)x->env.data, (uint32_t)x->env.len},
        .files = {(const char *)x->files.data, (uint32_t)x->files.len},
        .timeout_ms = (uint64_t)x->timeout_ms,
        .memory_mb = (uint64_t)x->memory_mb,
        .compile_timeout_ms = (uint64_t)x->compile_timeout_ms,
        .cpu_pct = (uint64_t)(x->cpu_cores * 100.0),
        .destroy = x->sandbox[0] != 0,
        .artifacts_max = (uint64_t)cfg->api_artifacts_max_bytes,
        .owner = sb_str(x->p.id),
    };
    sb_buf_t body;
    sb_buf_init(&body, 0);
    int r = sb_run_encode(&run, &body);
    /* The executor enforces the run's own limits; this deadline only catches a lost node. */
    uint64_t budget = (uint64_t)(x->timeout_ms ? x->timeout_ms : cfg->api_max_timeout_ms) +
                      (uint64_t)(x->compile_timeout_ms ? x->compile_timeout_ms : 60000) + 15000;
    if (r == 0)
        r = sb__gw_call(ctx, req, (sb_addr_t){l.node, SB_ACTOR_EXECUTOR}, SB_MSG_RUN, &body,
                        (uint32_t)budget, exe_on_result, x);
    sb_buf_fini(&body);
    if (r) {
        exe_release(x);
        sb__gw_fail(req, r, NULL, "executor");
        exe_free(x);
    }
}

/* exe_files turns [{path, content, encoding}] into msgpack [[path, bytes, mode]]. */
static bool
exe_files(sb_http_req_t *req, json_t *body, sb_buf_t *out)
{
    json_t *v = json_object_get(body, "files"), *f;
    size_t i;
    msgpack_packer pk;
    sb_codec_packer(&pk, out);
    if (!v || json_is_null(v)) {
        msgpack_pack_array(&pk, 0);
        return true;
    }
    if (!json_is_array(v) || json_array_size(v) > 64) {
        sb_http_respond_error(req, 400, "bad_request",
                              "field 'files' must be an array of at most 64 objects");
        return false;
    }
    msgpack_pack_array(&pk, (uint32_t)json_array_size(v));
    json_array_foreach(v, i, f)
    {
        const char *path, *content, *enc;
        size_t plen, clen;
        char field[32];
        snprintf(field, sizeof field, "files[%zu]", i);
        if (!json_is_object(f)) {
            sb_http_respond_error(req, 400, "bad_request", "field '%s' must be an object", field);
            return false;
        }
        if (!sb__gw_str(req, f, "path", true, 1024, &path, &plen) ||
            !sb__gw_str(req, f, "content", true, 8u << 20, &content, &clen) ||
            !sb__gw_str(req, f, "encoding", false, 16, &enc, NULL))
            return false;
        if (plen == 0 || strstr(path, "..") || path[0] == 0) {
            sb_http_respond_error(req, 400, "bad_request",
                                  "field '%s.path' must be a relative path inside the workspace",
                                  field);
            return false;
        }
        msgpack_pack_array(&pk, 3);
        msgpack_pack_str(&pk, plen);
        msgpack_pack_str_body(&pk, path, plen);
        if (!enc || !strcmp(enc, "utf8") || !strcmp(enc, "utf-8")) {
            msgpack_pack_bin(&pk, clen);
            msgpack_pack_bin_body(&pk, content, clen);
        } else if (!strcmp(enc, "base64")) {
            sb_buf_t raw;
            sb_buf_init(&raw, 0);
            int got = sb_buf_reserve(&raw, clen / 4 * 3 + 3) == 0
                          ? sb_base64_decode(content, clen, raw.data, raw.cap)
                          : SB_ENOMEM;
            if (got < 0) {
                sb_buf_fini(&raw);
                sb_http_respond_error(req, 400, "bad_request",
                                      "field '%s.content' is not valid base64", field);
                return false;
            }
            msgpack_pack_bin(&pk, (size_t)got);
            msgpack_pack_bin_body(&pk, raw.data, (size_t)got);
            sb_buf_fini(&raw);
        } else {
            sb_http_respond_error(req, 400, "bad_request",
                                  "field '%s.encoding' must be \"utf8\" or \"base64\"", field);
            return false;
        }
        msgpack_pack_uint32(&pk, 0644);
    }
    return true;
}

static void
exe_handle(gw_ctx_t *ctx, sb_http_req_t *req, const gw_principal_t *p)
{
    const sb_config_t *cfg = ctx->cfg;
    exe_t *x = sb_xcalloc(1, sizeof *x);
    const char *rt_name, *lang;
    x->ctx = ctx;
    x->req = req;
    x->p = *p;
    sb_buf_init(&x->args, 0);
    sb_buf_init(&x->env, 0);
    sb_buf_init(&x->files, 0);
    if (!(x->body = sb__gw_json_body(req)))
        goto done;
    json_t *b = x->body;
    if (!sb__gw_str(req, b, "runtime", false, 64, &rt_name, NULL) ||
        !sb__gw_str(req, b, "language", false, 64, &lang, NULL) ||
        !sb__gw_str(req, b, "version", false, 64, &x->version, NULL) ||
        !sb__gw_str(req, b, "code", true, (size_t)cfg->api_max_code_bytes, &x->code,
                    &x->code_len) ||
        !sb__gw_str(req, b, "stdin", false, 4u << 20, &x->stdin_data, &x->stdin_len) ||
        !sb__gw_int(req, b, "timeout", 1, cfg->api_max_timeout_ms, "api.max_timeout_ms",
                    &x->timeout_ms) ||
        !sb__gw_int(req, b, "memory_limit", 1, cfg->api_max_memory_mb, "api.max_memory_mb",
                    &x->memory_mb) ||
        !sb__gw_num(req, b, "cpu_limit", 0.01, (double)cfg->api_max_cpu_cores,
                    "api.max_cpu_cores", &x->cpu_cores) ||
        !sb__gw_int(req, b, "compile_timeout", 1, cfg->api_max_timeout_ms, "api.max_timeout_ms",
                    &x->compile_timeout_ms) ||
        !sb__gw_str_array(req, b, "args", 256, 4096, &x->args) ||
        !sb__gw_env(req, b, "env", &x->env) || !exe_files(req, b, &x->files))
        goto done;
    if (!rt_name)
        rt_name = lang;
    if (!rt_name) {
        sb_http_respond_error(req, 400, "bad_request", "missing field 'runtime' (or 'language')");
        goto done;
    }
    const sb_plugin_t *pl = ctx->plugins ? sb_plugins_find(ctx->plugins, rt_name) : NULL;
    if (!pl || !pl->installed) {
        sb_http_respond_error(req, 400, "unknown_runtime",
                              "runtime '%s' is not installed here (GET /api/v1/runtimes lists "
                              "them)",
                              rt_name);
        goto done;
    }
    x->runtime_name = pl->name;
    sb_sha256_hex(x->code, x->code_len, x->code_sha);
    sb_random_id("exe-", x->exec_id, sizeof x->exec_id);
    x->started_ms = sb_now_real_ms();

    sb_place_t pl_msg = {.runtime = sb_str(pl->name), .owner = sb_str(p->id),
                         .kind = SB_STR("oneshot")};
    sb_buf_t body;
    sb_buf_init(&body, 0);
    int r = sb_place_encode(&pl_msg, &body);
    if (r == 0)
        r = sb__gw_call(ctx, req, sb_addr(SB_ACTOR_SCHEDULER), SB_MSG_PLACE, &body,
                        (uint32_t)cfg->api_place_timeout_ms, exe_on_lease, x);
    sb_buf_fini(&body);
    if (r == 0)
        return;
    sb__gw_fail(req, r, NULL, "scheduler");
done:
    exe_free(x);
}

void
sb__gw_execute_routes(gw_ctx_t *ctx, sb_http_server_t *srv)
{
    size_t max = (size_t)ctx->cfg->api_max_body_bytes;
    sb__gw_route(ctx, srv, "POST", "/api/v1/execute", GW_ROLE_USER, exe_handle, max);
    sb__gw_route(ctx, srv, "POST", "/api/execute", GW_ROLE_USER, exe_handle, max);
}
