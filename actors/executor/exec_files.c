/*
 * exec_files.c: FILE_OP and PROC_LIST -- file operations and the process list of a sandbox,
 * performed by its soulbox-init inside the sandbox (so paths resolve in its own mount
 * namespace).
 *
 * Filesystem errors are answers, not failures: FILE_REPLY carries the positive errno (ENOENT,
 * EISDIR, ...) so the caller can map it to a status.  Error replies are kept for protocol
 * problems: an unknown sandbox (SB_ENOTFOUND), a malformed request (SB_EBADMSG), a sandbox that
 * died under the operation (SB_ECLOSED).  Each operation carries a small context naming where
 * the answer goes; the engine calls back exactly once, also when the sandbox dies first.
 */
#include "exec.h"

#include "base/err.h"
#include "base/log.h"
#include "base/alloc.h"
#include "protocols/mpw.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef enum { XF_READ, XF_WRITE, XF_LIST, XF_STAT, XF_MKDIR, XF_REMOVE, XF_RENAME } xf_op_t;

typedef struct {
    sb__xstate_t *x;
    sb_replyto_t to;
    xf_op_t op;
    char path[4097];
} xf_ctx_t;

static const char *
xf_type(int t)
{
    return t == SB_FILE_REGULAR ? "file"
           : t == SB_FILE_DIR   ? "dir"
           : t == SB_FILE_SYMLINK ? "symlink"
                                  : "other";
}

static void
xf_pack_entry(sb_buf_t *b, const char *path, int type, uint64_t size, int mode, uint64_t mtime_s)
{
    sb_mpw_array(b, 5);
    sb_mpw_cstr(b, path);
    sb_mpw_cstr(b, xf_type(type));
    sb_mpw_uint(b, size);
    sb_mpw_uint(b, (uint64_t)(mode < 0 ? 0 : mode));
    sb_mpw_uint(b, mtime_s * 1000);
}

static void
xf_done(const sb_file_result_t *fr, void *ud)
{
    xf_ctx_t *c = ud;
    sb__xstate_t *x = c->x;
    if (fr->err < 0 && fr->err <= -4096) {
        /* not an errno: the sandbox went away, or the engine refused */
        sb_actor_reply_error(x->a, &c->to, fr->err == SB_ECLOSED ? SB_ENOTFOUND : fr->err,
                             "file operation failed: %s", sb_strerror(fr->err));
        free(c);
        return;
    }
    sb_buf_t ents;
    sb_buf_init(&ents, 0);
    sb_file_reply_t rep = {.errno_ = fr->err < 0 ? (uint64_t)-fr->err : 0};
    if (fr->err < 0) {
        rep.message = sb_str(sb_strerror(fr->err));
    } else if (c->op == XF_READ) {
        rep.data = (sb_str_t){(const char *)fr->data, (uint32_t)fr->len};
    } else if (c->op == XF_LIST) {
        sb_mpw_array(&ents, (uint32_t)fr->nents);
        for (size_t i = 0; i < fr->nents; i++)
            xf_pack_entry(&ents, fr->ents[i].path, fr->ents[i].type, fr->ents[i].size,
                          fr->ents[i].mode, fr->ents[i].mtime);
    } else if (c->op == XF_STAT) {
        sb_mpw_array(&ents, 1);
        xf_pack_entry(&ents, c->path, fr->type, fr->size, fr->mode, fr->mtime);
    }
    rep.entries = (sb_str_t){(const char *)ents.data, (uint32_t)ents.len};
    sb_buf_t *b = sb_actor_scratch(x->a);
    int rc = sb_file_reply_encode(&rep, b);
    if (rc == 0)
        sb_actor_reply(x->a, &c->to, SB_MSG_FILE_REPLY, 0, b->data, b->len);
    else
        sb_actor_reply_error(x->a, &c->to, rc, "reply too big");
    sb_buf_fini(&ents);
    free(c);
}

int
sb__x_handle_file(sb__xstate_t *x, const sb_msg_t *m)
{
    sb_file_op_t req;
    static const char *const names[] = {"read", "write", "list", "stat", "mkdir", "remove",
                                        "rename"};
    if (sb_file_op_decode(m, &req) != 0 || req.path.len == 0 ||
        memchr(req.path.ptr, 0, req.path.len) ||
        (req.path2.len && memchr(req.path2.ptr, 0, req.path2.len)))
        return SB_EBADMSG;
    int op = -1;
    for (int i = 0; i < 7 && op < 0; i++)
        if (sb_str_eq(req.op, names[i]))
            op = i;
    if (op < 0 || (op == XF_RENAME && req.path2.len == 0) || req.mode > 07777)
        return SB_EBADMSG;
    sb__xsbx_t *s = sb__x_find(x, req.sandbox);
    if (!s || s->state != SB__XSBX_READY)
        return SB_ENOTFOUND;
    xf_ctx_t *c = sb_xcalloc(1, sizeof *c);
    c->x = x;
    c->to = sb_replyto(m);
    c->op = (xf_op_t)op;
    sb_str_copy(c->path, sizeof c->path, req.path);
    char path2[4097] = "";
    sb_str_copy(path2, sizeof path2, req.path2);
    uint64_t max = req.max && req.max < SB__X_READ_MAX ? req.max : SB__X_READ_MAX;
    int depth = req.depth ? (int)(req.depth < 32 ? req.depth : 32) : 1;
    int rc;
    switch (c->op) {
    case XF_READ: rc = sb_sandbox_file_read(s->sb, c->path, max, xf_done, c); break;
    case XF_WRITE:
        rc = sb_sandbox_file_write(s->sb, c->path, req.data.ptr, req.data.len,
                                   req.mode ? (int)req.mode : 0644, false, xf_done, c);
        break;
    case XF_LIST: rc = sb_sandbox_file_list(s->sb, c->path, depth, xf_done, c); break;
    case XF_STAT: rc = sb_sandbox_file_stat(s->sb, c->path, xf_done, c); break;
    case XF_MKDIR: rc = sb_sandbox_file_mkdir(s->sb, c->path, xf_done, c); break;
    case XF_REMOVE: rc = sb_sandbox_file_remove(s->sb, c->path, xf_done, c); break;
    default: rc = sb_sandbox_file_rename(s->sb, c->path, path2, xf_done, c); break;
    }
    if (rc < 0) {
        free(c);
        return rc == SB_ECLOSED ? SB_ENOTFOUND : rc == SB_EINVAL ? SB_EBADMSG : rc;
    }
    return 0;
}

static void
xf_ps_done(const sb_file_result_t *fr, void *ud)
{
    xf_ctx_t *c = ud;
    sb__xstate_t *x = c->x;
    if (fr->err) {
        sb_actor_reply_error(x->a, &c->to, fr->err == SB_ECLOSED ? SB_ENOTFOUND : SB_EIO,
                             "process list failed: %s", sb_strerror(fr->err));
        free(c);
        return;
    }
    sb_buf_t procs;
    sb_buf_init(&procs, 0);
    sb_mpw_array(&procs, (uint32_t)fr->nents);
    for (size_t i = 0; i < fr->nents; i++) {
        const sb_file_entry_t *e = &fr->ents[i];
        char st[2] = {e->state ? e->state : '?', 0};
        const char *cmd = e->path ? e->path : "";
        sb_mpw_array(&procs, 4);
        sb_mpw_uint(&procs, (uint64_t)(e->pid > 0 ? e->pid : 0));
        sb_mpw_uint(&procs, (uint64_t)(e->ppid > 0 ? e->ppid : 0));
        sb_mpw_str(&procs, st, 1);
        sb_mpw_cstr(&procs, cmd);
    }
    sb_proc_list_reply_t rep = {.procs = {(const char *)procs.data, (uint32_t)procs.len}};
    sb_buf_t *b = sb_actor_scratch(x->a);
    if (sb_proc_list_reply_encode(&rep, b) == 0)
        sb_actor_reply(x->a, &c->to, SB_MSG_PROC_LIST_REPLY, 0, b->data, b->len);
    sb_buf_fini(&procs);
    free(c);
}

int
sb__x_handle_ps(sb__xstate_t *x, const sb_msg_t *m)
{
    sb_proc_list_t req;
    if (sb_proc_list_decode(m, &req) != 0)
        return SB_EBADMSG;
    sb__xsbx_t *s = sb__x_find(x, req.sandbox);
    if (!s || s->state != SB__XSBX_READY)
        return SB_ENOTFOUND;
    xf_ctx_t *c = sb_xcalloc(1, sizeof *c);
    c->x = x;
    c->to = sb_replyto(m);
    int rc = sb_sandbox_ps(s->sb, xf_ps_done, c);
    if (rc < 0) {
        free(c);
        return rc == SB_ECLOSED ? SB_ENOTFOUND : rc;
    }
    return 0;
}
