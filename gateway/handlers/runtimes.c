/*
 * runtimes.c: GET /api/v1/runtimes (only runtimes actually installed on this host, probed
 * at start) and GET /api/v1/audit (admin: the auditor's records, filtered).
 */
#include "gateway/api.h"

#include "base/err.h"
#include "protocols/msgs.h"

#include <stdlib.h>
#include <string.h>

static void
rt_list(gw_ctx_t *ctx, sb_http_req_t *req, const gw_principal_t *p)
{
    json_t *arr = json_array();
    (void)p;
    for (size_t i = 0; ctx->plugins && i < sb_plugins_count(ctx->plugins); i++) {
        const sb_plugin_t *pl = sb_plugins_at(ctx->plugins, i);
        if (!pl->installed)
            continue;
        json_t *aliases = json_array();
        for (char **a = pl->aliases; a && *a; a++)
            json_array_append_new(aliases, json_string(*a));
        json_array_append_new(arr, json_pack("{s:s,s:s,s:o,s:b,s:b}", "name", pl->name, "version",
                                             pl->version ? pl->version : "", "aliases", aliases,
                                             "compiled", pl->compile_cmd != NULL, "kernel",
                                             pl->kernel_cmd != NULL));
    }
    sb_http_respond_json(req, 200, json_pack("{s:o}", "runtimes", arr));
}

static void
rt_on_audit(gw_ctx_t *ctx, sb_http_req_t *req, int status, const sb_msg_t *m, void *ud)
{
    sb_audit_records_t ar;
    (void)ctx;
    (void)ud;
    if (status || sb_audit_records_decode(m, &ar) != 0) {
        sb__gw_fail(req, status ? status : SB_EBADMSG, m, "auditor");
        return;
    }
    json_t *recs = json_loadb(ar.records.ptr, ar.records.len, 0, NULL);
    if (!recs)
        recs = json_array();
    sb_http_respond_json(req, 200, json_pack("{s:o,s:I,s:b,s:I}", "records", recs, "count",
                                             (json_int_t)ar.count, "more", ar.more, "last_seq",
                                             (json_int_t)ar.last_seq));
}

/* rt_u64 reads an optional numeric query parameter. */
static int
rt_u64(sb_http_req_t *req, const char *name, uint64_t *out)
{
    char v[32];
    int n = sb_http_query(req, name, v, sizeof v);
    if (n < 0 && n != SB_ETOOBIG)
        return 0;
    char *end;
    unsigned long long x = n > 0 ? strtoull(v, &end, 10) : 0;
    if (n <= 0 || *end) {
        sb_http_respond_error(req, 400, "bad_request", "query '%s' must be a non-negative integer",
                              name);
        return -1;
    }
    *out = x;
    return 0;
}

static void
rt_audit(gw_ctx_t *ctx, sb_http_req_t *req, const gw_principal_t *p)
{
    sb_audit_query_t q = {0};
    char actor[64], type[64];
    (void)p;
    if (rt_u64(req, "since", &q.since_ms) || rt_u64(req, "until", &q.until_ms) ||
        rt_u64(req, "limit", &q.limit) || rt_u64(req, "after", &q.after_seq))
        return;
    if (q.limit > 1000) {
        sb_http_respond_error(req, 400, "limit_exceeded", "query 'limit' is at most 1000");
        return;
    }
    if (sb_http_query(req, "actor", actor, sizeof actor) > 0)
        q.principal = sb_str(actor);
    if (sb_http_query(req, "type", type, sizeof type) > 0)
        q.type = sb_str(type);
    sb_buf_t body;
    sb_buf_init(&body, 0);
    int r = sb_audit_query_encode(&q, &body);
    if (r == 0)
        r = sb__gw_call(ctx, req, sb_addr(SB_ACTOR_AUDITOR), SB_MSG_AUDIT_QUERY, &body, 10000,
                        rt_on_audit, NULL);
    sb_buf_fini(&body);
    if (r)
        sb__gw_fail(req, r, NULL, "auditor");
}

void
sb__gw_runtime_routes(gw_ctx_t *ctx, sb_http_server_t *srv)
{
    sb__gw_route(ctx, srv, "GET", "/api/v1/runtimes", GW_ROLE_VIEWER, rt_list, 0);
    sb__gw_route(ctx, srv, "GET", "/api/v1/audit", GW_ROLE_ADMIN, rt_audit, 0);
}
