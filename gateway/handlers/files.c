/*
 * files.c: /api/v1/sandboxes/{id}/files -- read (a directory gives a listing), write (raw
 * body, parents created), delete, mkdir, move.  Every path is resolved by soulbox-init inside
 * the sandbox's own mount namespace, so "../../etc/shadow" or a planted symlink reaches only
 * the sandbox's files: the kernel confines it, not string checks here.  Filesystem errors
 * come back as errno values and map to statuses (ENOENT 404, EEXIST 409, EACCES/EROFS 403,
 * ENOSPC 507, ...).
 */
#include "gateway/api.h"

#include "base/err.h"
#include "protocols/msgs.h"
#include "base/alloc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define FILES_READ_MAX (16u << 20)

typedef struct {
    gw_ctx_t *ctx;
    gw_sandbox_t *s;
    char path[4096];
    char op[16];
    gw_principal_t p;
    int depth;
    size_t wrote;
} fop_t;

static int
files_errno_status(uint64_t e, const char **code)
{
    switch (e) {
    case ENOENT: *code = "not_found"; return 404;
    case EEXIST:
    case ENOTEMPTY: *code = "conflict"; return 409;
    case EACCES:
    case EPERM:
    case EROFS: *code = "forbidden"; return 403;
    case ENOSPC:
    case EDQUOT: *code = "insufficient_storage"; return 507;
    case EFBIG: *code = "payload_too_large"; return 413;
    default: *code = "bad_request"; return 400;
    }
}

static const char *
files_mime(const char *path)
{
    static const struct {
        const char *ext, *mime;
    } m[] = {{".txt", "text/plain; charset=utf-8"}, {".py", "text/x-python"},
             {".js", "text/javascript"},            {".json", "application/json"},
             {".html", "text/html"},                {".csv", "text/csv"},
             {".png", "image/png"},                 {".jpg", "image/jpeg"},
             {".jpeg", "image/jpeg"},               {".gif", "image/gif"},
             {".svg", "image/svg+xml"},             {".pdf", "application/pdf"},
             {".md", "text/markdown"},              {".sh", "text/x-shellscript"}};
    const char *dot = strrchr(path, '.');
    for (size_t i = 0; dot && i < sizeof m / sizeof m[0]; i++)
        if (!strcasecmp(dot, m[i].ext))
            return m[i].mime;
    return "application/octet-stream";
}

static json_t *
files_entries(sb_str_t raw)
{
    json_t *rows = sb__gw_mp_to_json(raw), *out = json_array(), *row;
    size_t i;
    json_array_foreach(rows, i, row)
    {
        if (!json_is_array(row) || json_array_size(row) < 5)
            continue;
        json_array_append_new(out, json_pack("{s:O,s:O,s:O,s:O,s:O}", "path",
                                             json_array_get(row, 0), "type", json_array_get(row, 1),
                                             "size", json_array_get(row, 2), "mode",
                                             json_array_get(row, 3), "mtime",
                                             json_array_get(row, 4)));
    }
    json_decref(rows);
    return out;
}

static int files_send(fop_t *f, sb_http_req_t *req, const char *op, const char *path2,
                      sb_str_t data);

static void
files_on_reply(gw_ctx_t *ctx, sb_http_req_t *req, int status, const sb_msg_t *m, void *ud)
{
    fop_t *f = ud;
    sb_file_reply_t fr;
    const char *code;
    (void)ctx;
    if (status || sb_file_reply_decode(m, &fr) != 0) {
        sb__gw_fail(req, status ? status : SB_EBADMSG, m, "executor");
        free(f);
        return;
    }
    if (fr.errno_ == EISDIR && !strcmp(f->op, "read")) {
        /* a directory: answer with its listing instead */
        if (files_send(f, req, "list", NULL, (sb_str_t){0}) != 0) {
            sb__gw_fail(req, SB_EUNAVAILABLE, NULL, "executor");
            free(f);
        }
        return;
    }
    if (fr.errno_) {
        int st = files_errno_status(fr.errno_, &code);
        sb_http_respond_error(req, st, code, "%s %s: %s", f->op, f->path, strerror((int)fr.errno_));
        free(f);
        return;
    }
    if (!strcmp(f->op, "read")) {
        sb_http_respond(req, 200, files_mime(f->path), fr.data.ptr, fr.data.len);
    } else if (!strcmp(f->op, "list")) {
        sb_http_respond_json(req, 200, json_pack("{s:s,s:s,s:o}", "path", f->path, "type", "dir",
                                                 "entries", files_entries(fr.entries)));
    } else if (!strcmp(f->op, "write")) {
        sb__gw_audit(ctx, "file.write", &f->p,
                     json_pack("{s:s,s:s,s:I}", "sandbox_id", sb__gw_sandbox_id(f->s), "path",
                               f->path, "size", (json_int_t)f->wrote));
        sb_http_respond_json(req, 201, json_pack("{s:s,s:I}", "path", f->path, "size",
                                                 (json_int_t)f->wrote));
    } else if (!strcmp(f->op, "remove")) {
        sb__gw_audit(ctx, "file.delete", &f->p,
                     json_pack("{s:s,s:s}", "sandbox_id", sb__gw_sandbox_id(f->s), "path", f->path));
        sb_http_respond(req, 204, NULL, NULL, 0);
    } else if (!strcmp(f->op, "mkdir")) {
        sb_http_respond_json(req, 201, json_pack("{s:s,s:s}", "path", f->path, "type", "dir"));
    } else {
        sb_http_respond_json(req, 200, json_pack("{s:s}", "path", f->path));
    }
    free(f);
}

static int
files_send(fop_t *f, sb_http_req_t *req, const char *op, const char *path2, sb_str_t data)
{
    snprintf(f->op, sizeof f->op, "%s", op);
    sb_file_op_t fo = {.sandbox = sb_str(sb__gw_sandbox_id(f->s)), .op = sb_str(op),
                       .path = sb_str(f->path), .path2 = sb_str(path2 ? path2 : ""),
                       .data = data, .depth = (uint64_t)f->depth, .max = FILES_READ_MAX};
    sb_buf_t body;
    sb_buf_init(&body, 0);
    int r = sb_file_op_encode(&fo, &body);
    if (r == 0)
        r = sb__gw_call(f->ctx, req, sb__gw_sandbox_addr(f->s), SB_MSG_FILE_OP, &body, 30000,
                        files_on_reply, f);
    sb_buf_fini(&body);
    return r;
}

/* files_begin: the sandbox (owned by p) and ?path= (required). */
static fop_t *
files_begin(gw_ctx_t *ctx, sb_http_req_t *req, const gw_principal_t *p, int need_path)
{
    char depth[8];
    gw_sandbox_t *s = sb__gw_sandbox_from_req(ctx, req, p);
    if (!s)
        return NULL;
    fop_t *f = sb_xcalloc(1, sizeof *f);
    f->ctx = ctx;
    f->s = s;
    f->p = *p;
    f->depth = 1;
    if (need_path) {
        int n = sb_http_query(req, "path", f->path, sizeof f->path);
        if (n == SB_ETOOBIG) {
            sb_http_respond_error(req, 400, "bad_request", "query 'path' is too long");
            free(f);
            return NULL;
        }
        if (n <= 0) {
            sb_http_respond_error(req, 400, "bad_request", "query parameter 'path' is required");
            free(f);
            return NULL;
        }
    }
    if (sb_http_query(req, "depth", depth, sizeof depth) > 0) {
        f->depth = atoi(depth);
        if (f->depth < 1 || f->depth > 16) {
            sb_http_respond_error(req, 400, "bad_request", "query 'depth' must be 1..16");
            free(f);
            return NULL;
        }
    }
    sb__gw_sandbox_touch(ctx, s);
    return f;
}

static void
files_get(gw_ctx_t *ctx, sb_http_req_t *req, const gw_principal_t *p)
{
    fop_t *f = files_begin(ctx, req, p, 1);
    if (f && files_send(f, req, "read", NULL, (sb_str_t){0}) != 0) {
        sb__gw_fail(req, SB_EUNAVAILABLE, NULL, "executor");
        free(f);
    }
}

static void
files_put(gw_ctx_t *ctx, sb_http_req_t *req, const gw_principal_t *p)
{
    fop_t *f = files_begin(ctx, req, p, 1);
    if (!f)
        return;
    sb_str_t body = sb_http_body(req);
    f->wrote = body.len;
    if (files_send(f, req, "write", NULL, body) != 0) {
        sb__gw_fail(req, SB_EUNAVAILABLE, NULL, "executor");
        free(f);
    }
}

static void
files_delete(gw_ctx_t *ctx, sb_http_req_t *req, const gw_principal_t *p)
{
    fop_t *f = files_begin(ctx, req, p, 1);
    if (f && files_send(f, req, "remove", NULL, (sb_str_t){0}) != 0) {
        sb__gw_fail(req, SB_EUNAVAILABLE, NULL, "executor");
        free(f);
    }
}

static void
files_mkdir(gw_ctx_t *ctx, sb_http_req_t *req, const gw_principal_t *p)
{
    const char *path;
    fop_t *f = files_begin(ctx, req, p, 0);
    if (!f)
        return;
    json_t *b = sb__gw_json_body(req);
    if (!b || !sb__gw_str(req, b, "path", true, sizeof f->path - 1, &path, NULL)) {
        json_decref(b);
        free(f);
        return;
    }
    snprintf(f->path, sizeof f->path, "%s", path);
    json_decref(b);
    if (files_send(f, req, "mkdir", NULL, (sb_str_t){0}) != 0) {
        sb__gw_fail(req, SB_EUNAVAILABLE, NULL, "executor");
        free(f);
    }
}

static void
files_move(gw_ctx_t *ctx, sb_http_req_t *req, const gw_principal_t *p)
{
    const char *from, *to;
    fop_t *f = files_begin(ctx, req, p, 0);
    if (!f)
        return;
    json_t *b = sb__gw_json_body(req);
    if (!b || !sb__gw_str(req, b, "from", true, sizeof f->path - 1, &from, NULL) ||
        !sb__gw_str(req, b, "to", true, 4095, &to, NULL)) {
        json_decref(b);
        free(f);
        return;
    }
    snprintf(f->path, sizeof f->path, "%s", from);
    if (files_send(f, req, "rename", to, (sb_str_t){0}) != 0) {
        sb__gw_fail(req, SB_EUNAVAILABLE, NULL, "executor");
        free(f);
    }
    json_decref(b);
}

void
sb__gw_file_routes(gw_ctx_t *ctx, sb_http_server_t *srv)
{
    static const char *const bases[] = {"/api/v1/sandboxes", "/api/v1/containers"};
    for (int i = 0; i < 2; i++) {
        char pat[128];
        snprintf(pat, sizeof pat, "%s/{id}/files", bases[i]);
        sb__gw_route(ctx, srv, "GET", pat, GW_ROLE_VIEWER, files_get, 0);
        sb__gw_route(ctx, srv, "PUT", pat, GW_ROLE_USER, files_put, FILES_READ_MAX);
        sb__gw_route(ctx, srv, "DELETE", pat, GW_ROLE_USER, files_delete, 0);
        snprintf(pat, sizeof pat, "%s/{id}/files/mkdir", bases[i]);
        sb__gw_route(ctx, srv, "POST", pat, GW_ROLE_USER, files_mkdir, 8192);
        snprintf(pat, sizeof pat, "%s/{id}/files/move", bases[i]);
        sb__gw_route(ctx, srv, "POST", pat, GW_ROLE_USER, files_move, 16384);
    }
}
