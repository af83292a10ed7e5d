/*
 * exec_kernel.c: the warm kernels of each sandbox and the bus requests that use them:
 * KERNEL_EXEC (a stream of KERNEL_EVENT, then KERNEL_DONE), KERNEL_INTERRUPT and
 * KERNEL_CONTEXT (protocols/executor.def).  The kernel itself -- process, protocol, queue,
 * deadlines, contexts -- is sandbox/kernel.h; this file keeps each sandbox's kernels (one per
 * language, in the table entry, removed when the kernel exits), resolves a request's
 * (sandbox, language, context) and turns a cell's events into a reply stream (exec_out.c):
 * stdout and stderr text coalesced per kind, results and errors as whole events.
 */
#include "exec.h"

#include "base/alloc.h"
#include "base/err.h"
#include "base/id.h"
#include "base/log.h"
#include "protocols/mpw.h"
#include "sandbox/env.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define XK_EVENT_MAX (SB_MSG_MAX_BODY - (64u << 10)) /* one KERNEL_EVENT's data */

/* ---- the kernels of a sandbox -------------------------------------------------------------- */

static void
xk_on_exit(sb_kernel_t *k, void *ud)
{
    sb__xsbx_t *s = ud;
    for (size_t i = 0; i < s->nkernels; i++)
        if (s->kernels[i] == k) {
            s->kernels[i] = s->kernels[--s->nkernels];
            return;
        }
}

int
sb__x_kern_get(sb__xsbx_t *s, const sb_plugin_t *p, bool start, sb_kernel_t **out)
{
    if (!p || !p->kernel_cmd)
        return SB_EINVAL;
    for (size_t i = 0; i < s->nkernels; i++)
        if (sb_kernel_plugin(s->kernels[i]) == p && sb_kernel_live(s->kernels[i])) {
            *out = s->kernels[i];
            return 0;
        }
    if (!start)
        return SB_ENOTFOUND;
    if (s->state != SB__XSBX_READY)
        return SB_ECLOSED;
    if (s->nkernels >= SB__X_KERNELS_MAX)
        return SB_ELIMIT;
    char **env = NULL;
    int rc = sb_env_build(&env, (const char *const *)s->env, false,
                          !s->env || s->plugin != p ? p : NULL, NULL);
    if (rc == 0)
        rc = sb_kernel_start(s->sb, p, (const char *const *)env, xk_on_exit, s, out);
    sb_strv_free(env);
    if (rc == 0)
        s->kernels[s->nkernels++] = *out;
    return rc;
}

void
sb__x_kerns_kill(sb__xsbx_t *s)
{
    for (size_t i = 0; i < s->nkernels; i++)
        sb_kernel_kill(s->kernels[i], "canceled", SB_ECLOSED, "the sandbox was destroyed");
}

/* ---- resolving (sandbox, language, context) ------------------------------------------------ */

static bool
xk_ctx_valid(const char *c)
{
    size_t n = strlen(c);
    if (n == 0 || n > 64 || c[0] == '.')
        return false;
    for (; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              *c == '-' || *c == '_' || *c == '.'))
            return false;
    return true;
}

static sb_kernel_t *
xk_find_ctx(sb__xsbx_t *s, const char *ctx)
{
    for (size_t i = 0; i < s->nkernels; i++)
        if (sb_kernel_live(s->kernels[i]) && sb_kernel_has_context(s->kernels[i], ctx))
            return s->kernels[i];
    return NULL;
}

/* xk_resolve picks the plugin (and the kernel, if it runs) for a request; on failure it has
 * answered the request.  ctx "" or "default": the language's default context. */
static int
xk_resolve(sb__xstate_t *x, sb_replyto_t *to, sb__xsbx_t *s, sb_str_t lang, const char *ctx,
           const sb_plugin_t **pp, sb_kernel_t **kk)
{
    char l[64];
    const sb_plugin_t *p = NULL;
    *kk = NULL;
    if (sb_str_copy(l, sizeof l, lang) != 0) {
        sb_actor_reply_error(x->a, to, SB_EINVAL, "language name too long");
        return SB_EINVAL;
    }
    if (*l) {
        p = x->plugins ? sb_plugins_find(x->plugins, l) : NULL;
        if (!p) {
            sb_actor_reply_error(x->a, to, SB_EINVAL, "unknown language '%s'", l);
            return SB_EINVAL;
        }
        if (!p->kernel_cmd) {
            sb_actor_reply_error(x->a, to, SB_EINVAL,
                                 "runtime '%s' has no warm kernel (python, javascript and bash "
                                 "have one)", p->name);
            return SB_EINVAL;
        }
    }
    if (*ctx && strcmp(ctx, "default") != 0) {
        sb_kernel_t *k = xk_find_ctx(s, ctx);
        if (!k) {
            sb_actor_reply_error(x->a, to, SB_ENOTFOUND,
                                 "no context '%s' in this sandbox (a kernel that crashed or "
                                 "timed out loses its contexts)", ctx);
            return SB_ENOTFOUND;
        }
        if (p && p != sb_kernel_plugin(k)) {
            sb_actor_reply_error(x->a, to, SB_EINVAL, "context '%s' is a %s context, not %s", ctx,
                                 sb_kernel_plugin(k)->name, p->name);
            return SB_EINVAL;
        }
        *pp = sb_kernel_plugin(k);
        *kk = k;
        return 0;
    }
    if (!p) {
        p = s->plugin;
        if (!p || !p->kernel_cmd) {
            sb_actor_reply_error(x->a, to, SB_EINVAL,
                                 "this sandbox's runtime '%s' has no warm kernel: name a language "
                                 "(python, javascript, bash)", s->runtime);
            return SB_EINVAL;
        }
    }
    *pp = p;
    sb__x_kern_get(s, p, false, kk);
    return 0;
}

static int
xk_start_or_fail(sb__xstate_t *x, sb_replyto_t *to, sb__xsbx_t *s, const sb_plugin_t *p,
                 sb_kernel_t **k)
{
    if (*k)
        return 0;
    int rc = sb__x_kern_get(s, p, true, k);
    if (rc < 0)
        sb_actor_reply_error(x->a, to, rc == SB_ENOTFOUND ? SB_EUNAVAILABLE : rc,
                             "cannot start the %s kernel: %s", p->name,
                             rc == SB_ENOTFOUND ? "the plugin does not ship its kernel file"
                                                : sb_strerror(rc));
    return rc;
}

/* ---- KERNEL_EXEC -------------------------------------------------------------------------- */

typedef struct {
    sb__xstate_t *x;
    sb__xout_t *out;
    char lang[64], ctx[129];
} xk_exec_t;

static void
xk_exec_event(void *ud, sb_kernel_ev_t kind, json_t *ev)
{
    xk_exec_t *e = ud;
    if (kind == SB_KEV_STDOUT || kind == SB_KEV_STDERR) {
        json_t *t = json_object_get(ev, "text");
        if (json_is_string(t))
            sb__x_out_text(e->out, kind, json_string_value(t), json_string_length(t));
        return;
    }
    json_t *o = json_object();
    static const char *const rkeys[] = {"is_main_result", "data", NULL};
    static const char *const ekeys[] = {"name", "value", "traceback", NULL};
    for (const char *const *key = kind == SB_KEV_RESULT ? rkeys : ekeys; *key; key++) {
        json_t *v = json_object_get(ev, *key);
        if (v)
            json_object_set(o, *key, v);
    }
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    size_t len = text ? strlen(text) : 0;
    if (text && len <= XK_EVENT_MAX) {
        sb__x_out_item(e->out, kind, text, len);
    } else {
        char note[160];
        int n = snprintf(note, sizeof note, "[a %s of %zu bytes was dropped: over the %u byte "
                         "message limit]\n", sb_kernel_event_name(kind), len,
                         (unsigned)XK_EVENT_MAX);
        sb__x_out_text(e->out, SB_KEV_STDERR, note, (size_t)n);
    }
    free(text);
}

static void
xk_exec_end(void *ud, const sb_kernel_end_t *end)
{
    xk_exec_t *e = ud;
    sb_kernel_done_t d = {.execution_count = end->execution_count,
                          .status = sb_str(end->status ? end->status : "ok"),
                          .error = sb_str(end->err ? end->msg : ""),
                          .execution_time_ms = end->duration_us / 1000,
                          .language = sb_str(e->lang),
                          .context_id = sb_str(e->ctx)};
    if (!end->err && !strcmp(end->status, "output_limit"))
        d.error = SB_STR("the cell's output passed the limit: it was interrupted and the rest of "
                         "its output dropped (the kernel's state is kept)");
    sb_buf_t b;
    sb_buf_init(&b, 0);
    if (sb_kernel_done_encode(&d, &b) == 0)
        sb__x_out_final(e->out, SB_MSG_KERNEL_DONE, b.data, b.len);
    else
        sb__x_out_error(e->out, SB_ETOOBIG, "KERNEL_DONE too big");
    sb_buf_fini(&b);
    sb__x_mon_exec(e->x, e->lang, d.status.ptr, end->duration_us ? end->duration_us : 1, 0, 0);
    free(e);
}

static int
xk_on_exec(sb__xstate_t *x, const sb_msg_t *m)
{
    sb_kernel_exec_t req;
    char ctx[129];
    sb_replyto_t to = sb_replyto(m);
    if (sb_kernel_exec_decode(m, &req) != 0 || sb_str_copy(ctx, sizeof ctx, req.context_id) != 0)
        return SB_EBADMSG;
    if (*ctx && !xk_ctx_valid(ctx)) {
        sb_actor_reply_error(x->a, &to, SB_ENOTFOUND, "no context '%s' in this sandbox", ctx);
        return 0;
    }
    sb__xsbx_t *s = sb__x_ready_sbx(x, &to, req.sandbox);
    const sb_plugin_t *p;
    sb_kernel_t *k;
    if (!s || xk_resolve(x, &to, s, req.language, ctx, &p, &k) < 0 ||
        xk_start_or_fail(x, &to, s, p, &k) < 0)
        return 0;
    json_t *code = json_stringn(req.code.ptr ? req.code.ptr : "", req.code.len);
    if (!code) {
        sb_actor_reply_error(x->a, &to, SB_EINVAL, "the code is not valid UTF-8");
        return 0;
    }
    const sb_config_t *c = x->cfg;
    uint64_t timeout = sb__x_clamp(req.timeout_ms,
                                   p->run_timeout_ms ? p->run_timeout_ms
                                                     : (uint64_t)c->executor_default_timeout_ms,
                                   (uint64_t)c->executor_max_timeout_ms);
    uint64_t omax = sb__x_clamp(req.output_max, (uint64_t)c->executor_output_max,
                                (uint64_t)c->executor_output_max);
    xk_exec_t *e = sb_xcalloc(1, sizeof *e);
    e->x = x;
    e->out = sb__x_out_new(x, &to, SB_MSG_KERNEL_EVENT);
    snprintf(e->lang, sizeof e->lang, "%s", p->name);
    snprintf(e->ctx, sizeof e->ctx, "%s", *ctx ? ctx : "default");
    json_t *r = json_pack("{s:s,s:o,s:s}", "type", "execute", "code", code, "context_id", e->ctx);
    static const sb_kernel_cb_t cb = {xk_exec_event, xk_exec_end};
    sb_kernel_submit(k, r, timeout, omax, &cb, e);
    return 0;
}

static int
xk_on_interrupt(sb__xstate_t *x, const sb_msg_t *m)
{
    sb_kernel_interrupt_t req;
    sb_replyto_t to = sb_replyto(m);
    char l[64];
    if (sb_kernel_interrupt_decode(m, &req) != 0 || sb_str_copy(l, sizeof l, req.language) != 0)
        return SB_EBADMSG;
    sb__xsbx_t *s = sb__x_ready_sbx(x, &to, req.sandbox);
    if (!s)
        return 0;
    const sb_plugin_t *p = *l && x->plugins ? sb_plugins_find(x->plugins, l) : NULL;
    if (*l && !p) {
        sb_actor_reply_error(x->a, &to, SB_EINVAL, "unknown language '%s'", l);
        return 0;
    }
    int found = 0;
    for (size_t i = 0; i < s->nkernels; i++) {
        sb_kernel_t *k = s->kernels[i];
        if ((p && sb_kernel_plugin(k) != p) || !sb_kernel_live(k))
            continue;
        found++;
        sb_kernel_interrupt(k); /* only a running cell is signalled */
    }
    if (!found) {
        sb_actor_reply_error(x->a, &to, SB_ENOTFOUND, "no %s kernel runs in this sandbox",
                             *l ? l : "");
        return 0;
    }
    sb_exec_ack_t ack = {.id = sb_str(s->id)};
    sb_buf_t *b = sb_actor_scratch(x->a);
    /* Best effort: the interrupt has been delivered; a requester gone times out on its own. */
    if (sb_exec_ack_encode(&ack, b) == 0)
        (void)sb_actor_reply(x->a, &to, SB_MSG_EXEC_ACK, 0, b->data, b->len);
    return 0;
}

/* ---- KERNEL_CONTEXT ------------------------------------------------------------------------ */

typedef enum { XK_OP_LIST, XK_OP_CREATE, XK_OP_DELETE, XK_OP_RESTART } xk_op_t;

typedef struct {
    sb__xstate_t *x;
    sb_replyto_t to;
    xk_op_t op;
    char ctx[129];
    sb_kernel_t *k;
} xk_cop_t;

static void
xk_ctx_reply(sb__xstate_t *x, sb_replyto_t *to, const char *ctx, const char *lang)
{
    sb_kernel_context_reply_t r = {.context_id = sb_str(ctx), .language = sb_str(lang)};
    sb_buf_t *b = sb_actor_scratch(x->a);
    /* Best effort, like every plain reply: a requester that is gone has timed out. */
    if (sb_kernel_context_reply_encode(&r, b) == 0)
        (void)sb_actor_reply(x->a, to, SB_MSG_KERNEL_CONTEXT_REPLY, 0, b->data, b->len);
}

static void
xk_cop_on_end(void *ud, const sb_kernel_end_t *e)
{
    xk_cop_t *c = ud;
    sb__xstate_t *x = c->x;
    const char *lang = sb_kernel_plugin(c->k)->name;
    const char *type = e->reply ? json_string_value(json_object_get(e->reply, "type")) : NULL;
    if (e->err) {
        sb_actor_reply_error(x->a, &c->to, e->err == SB_ECANCELED ? SB_EUNAVAILABLE : e->err,
                             "%s", e->msg ? e->msg : sb_strerror(e->err));
    } else if (!type || !strcmp(type, "error")) {
        const char *name = type ? json_string_value(json_object_get(e->reply, "name")) : NULL;
        int code = name && !strcmp(name, "ContextNotFound") ? SB_ENOTFOUND
                   : name && !strcmp(name, "ContextExists") ? SB_EEXIST
                                                            : SB_EINVAL;
        sb_actor_reply_error(x->a, &c->to, code, "%s kernel: %s %s", lang,
                             name ? name : "malformed answer", c->ctx);
    } else {
        if (c->op == XK_OP_CREATE)
            sb_kernel_context_add(c->k, c->ctx); /* room was checked before the request */
        else if (c->op == XK_OP_DELETE)
            sb_kernel_context_remove(c->k, c->ctx);
        xk_ctx_reply(x, &c->to, c->ctx, lang);
    }
    free(c);
}

static void
xk_pair(sb_buf_t *b, const char *id, const char *lang)
{
    sb_mpw_array(b, 2);
    sb_mpw_cstr(b, id);
    sb_mpw_cstr(b, lang);
}

static void
xk_ctx_list(sb__xstate_t *x, sb_replyto_t *to, sb__xsbx_t *s)
{
    sb_buf_t b;
    size_t n = 0;
    bool own = s->plugin && s->plugin->kernel_cmd, own_running = false;
    for (size_t i = 0; i < s->nkernels; i++)
        if (sb_kernel_live(s->kernels[i])) {
            n += 1 + sb_kernel_contexts(s->kernels[i]);
            own_running |= sb_kernel_plugin(s->kernels[i]) == s->plugin;
        }
    if (own && !own_running)
        n++;
    sb_buf_init(&b, 0);
    sb_mpw_array(&b, (uint32_t)n);
    /* every started kernel has a default context; the sandbox's own language always does */
    if (own && !own_running)
        xk_pair(&b, "default", s->plugin->name);
    for (size_t i = 0; i < s->nkernels; i++) {
        sb_kernel_t *k = s->kernels[i];
        if (!sb_kernel_live(k))
            continue;
        xk_pair(&b, "default", sb_kernel_plugin(k)->name);
        for (size_t c = 0; c < sb_kernel_contexts(k); c++)
            xk_pair(&b, sb_kernel_context(k, c), sb_kernel_plugin(k)->name);
    }
    sb_kernel_context_reply_t r = {.contexts = {(const char *)b.data, (uint32_t)b.len}};
    sb_buf_t *out = sb_actor_scratch(x->a);
    if (sb_kernel_context_reply_encode(&r, out) == 0)
        (void)sb_actor_reply(x->a, to, SB_MSG_KERNEL_CONTEXT_REPLY, 0, out->data, out->len);
    sb_buf_fini(&b);
}

static int
xk_op_parse(sb_str_t s, xk_op_t *op)
{
    static const char *const names[] = {"list", "create", "delete", "restart"};
    for (int i = 0; i < 4; i++)
        if (sb_str_eq(s, names[i])) {
            *op = (xk_op_t)i;
            return 0;
        }
    return SB_EINVAL;
}

static int
xk_on_context(sb__xstate_t *x, const sb_msg_t *m)
{
    sb_kernel_context_t req;
    char ctx[129];
    xk_op_t op;
    sb_replyto_t to = sb_replyto(m);
    if (sb_kernel_context_decode(m, &req) != 0 || sb_str_copy(ctx, sizeof ctx, req.context_id) != 0)
        return SB_EBADMSG;
    sb__xsbx_t *s = sb__x_ready_sbx(x, &to, req.sandbox);
    if (!s)
        return 0;
    if (xk_op_parse(req.op, &op) < 0) {
        sb_actor_reply_error(x->a, &to, SB_EINVAL,
                             "unknown context op '%.*s' (create, list, delete, restart)",
                             (int)(req.op.len > 32 ? 32 : req.op.len), req.op.ptr);
        return 0;
    }
    if (op == XK_OP_LIST) {
        xk_ctx_list(x, &to, s);
        return 0;
    }
    bool create = op == XK_OP_CREATE;
    if (*ctx && !xk_ctx_valid(ctx)) {
        sb_actor_reply_error(x->a, &to, create ? SB_EINVAL : SB_ENOTFOUND,
                             create ? "a context id is 1-64 characters of A-Z a-z 0-9 . _ -"
                                    : "no context '%s' in this sandbox", ctx);
        return 0;
    }
    if (!create && !*ctx) {
        sb_actor_reply_error(x->a, &to, SB_EINVAL, "which context? (context_id)");
        return 0;
    }
    if (create) {
        if (!*ctx)
            sb_random_id("ctx-", ctx, sizeof ctx);
        if (!strcmp(ctx, "default") || xk_find_ctx(s, ctx)) {
            sb_actor_reply_error(x->a, &to, SB_EEXIST, "context '%s' exists", ctx);
            return 0;
        }
    }
    const sb_plugin_t *p;
    sb_kernel_t *k;
    /* resolve as an execute would, without the context for create (it does not exist yet) */
    if (xk_resolve(x, &to, s, req.language, create ? "" : ctx, &p, &k) < 0)
        return 0;
    if (!k && !create) {
        /* "default" of a kernel not started: nothing to clear or delete */
        xk_ctx_reply(x, &to, ctx, p->name);
        return 0;
    }
    if (create) {
        if (xk_start_or_fail(x, &to, s, p, &k) < 0)
            return 0;
        if (sb_kernel_contexts(k) >= SB_KERNEL_CTX_MAX) {
            sb_actor_reply_error(x->a, &to, SB_ELIMIT, "at most %d contexts per kernel",
                                 SB_KERNEL_CTX_MAX);
            return 0;
        }
    }
    xk_cop_t *c = sb_xcalloc(1, sizeof *c);
    c->x = x;
    c->to = to;
    c->k = k;
    c->op = op;
    snprintf(c->ctx, sizeof c->ctx, "%s", ctx);
    const char *kop = create ? "create_context"
                      : op == XK_OP_DELETE ? "delete_context"
                                           : "reset_context";
    static const sb_kernel_cb_t cb = {NULL, xk_cop_on_end};
    sb_kernel_submit(k, json_pack("{s:s,s:s}", "type", kop, "context_id", ctx), 0, 0, &cb, c);
    return 0;
}

int
sb__x_handle_kernel(sb__xstate_t *x, const sb_msg_t *m)
{
    switch (m->type) {
    case SB_MSG_KERNEL_EXEC: return xk_on_exec(x, m);
    case SB_MSG_KERNEL_INTERRUPT: return xk_on_interrupt(x, m);
    case SB_MSG_KERNEL_CONTEXT: return xk_on_context(x, m);
    default: return SB_EUNKNOWN_TYPE;
    }
}
