/*
 * exec_kernel.c: warm kernels -- a long-lived interpreter per (sandbox, language) speaking the
 * JSON-lines protocol of docs/plugins.md ("Warm kernels") -- and the bus requests that use
 * them: KERNEL_EXEC (stream of KERNEL_EVENT, then KERNEL_DONE), KERNEL_INTERRUPT and
 * KERNEL_CONTEXT (protocols/executor.def).  exec_run.c also sends one-shot RUNs through a warm
 * sandbox's kernel (see xr_route there).
 *
 * A kernel (sb__xkern_t) is a run of the sandbox engine started with stdin kept open and
 * stream_only output: its stdout is the event channel (split into lines, each a JSON object),
 * its stderr is kept as a short tail for crash messages.  The files kernel_cmd names under
 * {plugin} are copied into the sandbox's /tmp/.soulbox/<runtime>/ first (sandboxes do not see
 * the plugin folder), and {plugin} becomes that folder.
 *
 * Requests (sb__xkreq_t) queue on their kernel; only the head is written to the kernel, the
 * next one when the head has ended, because the kernel answers one request at a time and the
 * head's deadline must only count its own time.  Events whose id is not the head's are
 * dropped (e.g. a timer of an earlier JavaScript cell printing late).  Each request ends
 * exactly once, through its on_end callback:
 *   - the kernel answered (done for an execute, the reply event for a context op);
 *   - its deadline passed: the kernel is killed (SIGKILL), the request ends "timeout";
 *   - the kernel died (crash, os._exit, OOM): the head ends "crashed", the queued ones
 *     "canceled"; the kernel and the contexts created in it are forgotten, so the next use
 *     starts a fresh kernel and a stale context id answers "not found".
 * A kernel's memory is freed in the engine's done callback, which always comes (the engine
 * ends every run before a sandbox is destroyed); requests still queued then are canceled.
 *
 * KERNEL_EXEC replies are coalesced like RUN output: the events of one loop iteration leave
 * in the flush check (exec_run.c calls sb__x_kern_flush), stdout/stderr text appended to the
 * previous event of the same stream while it is unsent, up to 64 KiB, so order is kept and a
 * chatty cell costs few messages.  Past output_max the cell is interrupted (SIGINT, state
 * kept) and its further output dropped.
 */
#include "exec.h"

#include "base/err.h"
#include "base/log.h"
#include "protocols/mp.h"
#include "base/clock.h"
#include "base/alloc.h"
#include "base/id.h"

#include <msgpack.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#define XK_LINE_MAX (16u << 20)                 /* one protocol line from a kernel */
#define XK_FILE_MAX (4u << 20)                  /* a kernel script copied into a sandbox */
#define XK_CTX_MAX 64                           /* contexts created per kernel */
#define XK_OP_TIMEOUT_MS 20000                  /* context ops, kernel start included */
#define XK_EVENT_MAX (SB_MSG_MAX_BODY - (64u << 10)) /* one KERNEL_EVENT's data */
#define XK_FOREVER_MS (365ull * 24 * 3600 * 1000)

struct sb__xkreq {
    sb__xkern_t *k;
    uint64_t id;
    json_t *req;
    bool is_exec, sent, capped, errored;
    uint64_t timeout_ms, deadline_us, t0_us, output_max, output_seen;
    sb__xkcb_t cb;
    void *ud;
    sb__xkreq_t *next;
};

struct sb__xkern {
    sb__xsbx_t *s;
    const sb_plugin_t *plugin;
    sb_sandbox_run_t *h; /* NULL once the engine said it ended */
    int pid;
    bool ready, dying, ended;
    int busy;            /* > 0 while a line is processed: the done callback must not free */
    const char *kill_status;
    int kill_err;
    char kill_msg[256];
    sb_buf_t line;
    bool line_drop;
    char errtail[512];
    size_t errlen;
    uint64_t next_id;
    sb__xkreq_t *head, *tail;
    char *ctxs[XK_CTX_MAX];
    size_t nctx;
    sb__xkern_t *next;
};

static void xk_arm(sb__xstate_t *x);
static void xk_pump(sb__xkern_t *k);

/* ---- kernels ----------------------------------------------------------------------------- */

int
sb__x_kern_pid(const sb__xkern_t *k)
{
    return k->pid;
}

static void
xk_kill(sb__xkern_t *k, const char *status, int err, const char *msg)
{
    if (k->dying || !k->h)
        return;
    k->dying = true;
    k->kill_status = status;
    k->kill_err = err;
    snprintf(k->kill_msg, sizeof k->kill_msg, "%s", msg);
    sb_run_kill(k->h);
}

static void
xk_free(sb__xkern_t *k)
{
    for (sb__xkern_t **pp = &k->s->kernels; *pp; pp = &(*pp)->next)
        if (*pp == k) {
            *pp = k->next;
            break;
        }
    for (size_t i = 0; i < k->nctx; i++)
        free(k->ctxs[i]);
    sb_buf_fini(&k->line);
    free(k);
}

/* xk_end ends request q (which must be k's head): it leaves the queue, then its owner hears. */
static void
xk_end(sb__xkreq_t *q, sb__xkend_t *e)
{
    sb__xkern_t *k = q->k;
    SB_ASSERT(k->head == q);
    k->head = q->next;
    if (!k->head)
        k->tail = NULL;
    e->duration_us = sb_now_mono_us() - q->t0_us;
    if (q->cb.on_end)
        q->cb.on_end(q->ud, e);
    json_decref(q->req);
    free(q);
}

static const char *
xk_lang(const sb__xkern_t *k)
{
    return k->plugin->name;
}

static void
xk_on_done(sb_sandbox_run_t *h, const sb_run_result_t *res, void *ud)
{
    sb__xkern_t *k = ud;
    sb__xstate_t *x = k->s->x;
    (void)h;
    k->h = NULL;
    k->ended = true;
    bool ours = k->kill_status != NULL;
    bool sandbox_going = k->s->state != SB__XSBX_READY;
    char msg[768], tail[200] = "";
    if (!ours && !sandbox_going) {
        /* the last line the kernel wrote on its own stderr says why, usually */
        size_t n = k->errlen;
        while (n && (k->errtail[n - 1] == '\n' || k->errtail[n - 1] == '\r'))
            n--;
        size_t st = n;
        while (st && k->errtail[st - 1] != '\n')
            st--;
        if (n > st)
            snprintf(tail, sizeof tail, ": %.*s", (int)(n - st > 160 ? 160 : n - st),
                     k->errtail + st);
        sb_log_warn("SB-EXEC-KERNEL-END", "%s kernel of %s ended (%s, exit %d, signal %d)%s",
                    xk_lang(k), k->s->id, sb_run_status_name(res->status), res->exit_code,
                    res->signal, tail);
    }
    if (ours)
        snprintf(msg, sizeof msg, "%s", k->kill_msg);
    else if (sandbox_going)
        snprintf(msg, sizeof msg, "the sandbox was destroyed");
    else if (res->status == SB_RUN_MEMORY_LIMIT)
        snprintf(msg, sizeof msg, "the %s kernel ran out of memory and was killed; its state and "
                 "contexts are lost; the next execution starts a fresh kernel", xk_lang(k));
    else if (res->status == SB_RUN_EXITED)
        snprintf(msg, sizeof msg, "the %s kernel exited (status %d)%s; its state and contexts "
                 "are lost; the next execution starts a fresh kernel", xk_lang(k),
                 res->exit_code, tail);
    else
        snprintf(msg, sizeof msg, "the %s kernel died (%s, signal %d)%s; its state and contexts "
                 "are lost; the next execution starts a fresh kernel", xk_lang(k),
                 sb_run_status_name(res->status), res->signal, tail);
    bool first = true;
    while (k->head) {
        sb__xkreq_t *q = k->head;
        sb__xkend_t e = {.kres = res, .msg = msg};
        if (first && q->sent) {
            e.err = ours ? k->kill_err : sandbox_going ? SB_ECLOSED : SB_EIO;
            e.status = ours ? k->kill_status : sandbox_going ? "canceled" : "crashed";
        } else {
            e.err = sandbox_going ? SB_ECLOSED : SB_ECANCELED;
            e.status = "canceled";
            e.kres = NULL;
            e.msg = sandbox_going ? "the sandbox was destroyed"
                                  : "the kernel ended before this request ran";
        }
        first = false;
        xk_end(q, &e);
    }
    if (k->busy)
        return; /* the line loop in progress frees it */
    xk_free(k);
    xk_arm(x);
}

/* A request failed before the kernel saw it (the kernel cannot take it). */
static void
xk_fail_write(sb__xkern_t *k, int rc)
{
    char msg[160];
    snprintf(msg, sizeof msg, "cannot write to the %s kernel: %s; it is being restarted",
             xk_lang(k), sb_strerror(rc));
    xk_kill(k, "crashed", SB_EIO, msg);
}

static void
xk_pump(sb__xkern_t *k)
{
    sb__xkreq_t *q = k->head;
    if (!q || q->sent || k->dying || !k->h)
        return;
    q->id = ++k->next_id;
    json_object_set_new(q->req, "id", json_integer((json_int_t)q->id));
    char *text = json_dumps(q->req, JSON_COMPACT | JSON_ENSURE_ASCII);
    q->sent = true;
    q->t0_us = sb_now_mono_us();
    q->deadline_us = q->t0_us + q->timeout_ms * 1000;
    if (!text) {
        xk_fail_write(k, SB_ENOMEM);
        return;
    }
    size_t len = strlen(text);
    text[len++] = '\n'; /* json_dumps left room: the NUL becomes the line end */
    int rc = 0;
    for (size_t off = 0; off < len && rc == 0;) {
        size_t n = len - off < (1u << 20) ? len - off : (1u << 20);
        rc = sb_run_write_stdin(k->h, text + off, n);
        off += n;
    }
    free(text);
    if (rc < 0)
        xk_fail_write(k, rc);
    xk_arm(k->s->x);
}

static int64_t
xk_int(json_t *o, const char *key, int64_t def)
{
    json_t *v = json_object_get(o, key);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : def;
}

static void
xk_line(sb__xkern_t *k, const char *p, size_t n)
{
    json_error_t je;
    json_t *ev = json_loadb(p, n, 0, &je);
    const char *type = ev ? json_string_value(json_object_get(ev, "type")) : NULL;
    if (!type) {
        sb_log_debug("SB-EXEC-KERNEL-LINE", "%s kernel of %s sent a malformed line", xk_lang(k),
                     k->s->id);
        json_decref(ev);
        return;
    }
    if (!strcmp(type, "ready")) {
        k->ready = true;
        if (!k->pid)
            k->pid = (int)xk_int(ev, "pid", 0);
        json_decref(ev);
        return;
    }
    sb__xkreq_t *q = k->head;
    json_t *idv = json_object_get(ev, "id");
    if (!q || !q->sent || !json_is_integer(idv) || (uint64_t)json_integer_value(idv) != q->id) {
        json_decref(ev); /* late output of an earlier request, or a stray event */
        return;
    }
    if (!q->is_exec) {
        sb__xkend_t e = {.reply = ev, .status = "ok"};
        xk_end(q, &e);
        xk_pump(k);
        json_decref(ev);
        return;
    }
    if (!strcmp(type, "done")) {
        sb__xkend_t e = {.reply = ev,
                         .status = q->capped ? "output_limit" : q->errored ? "error" : "ok",
                         .execution_count = (uint64_t)xk_int(ev, "execution_count", 0)};
        xk_end(q, &e);
        xk_pump(k);
    } else if (!strcmp(type, "stdout") || !strcmp(type, "stderr")) {
        json_t *t = json_object_get(ev, "text");
        size_t len = json_is_string(t) ? json_string_length(t) : 0;
        if (q->capped) {
            /* dropped: the cell was interrupted for its output */
        } else if (q->output_max && q->output_seen + len > q->output_max) {
            q->capped = true;
            if (k->h)
                sb_run_signal(k->h, SIGINT);
        } else {
            q->output_seen += len;
            if (q->cb.on_event)
                q->cb.on_event(q->ud, type, ev);
        }
    } else if (!strcmp(type, "result") || !strcmp(type, "error")) {
        if (type[0] == 'e')
            q->errored = true;
        if (q->cb.on_event && !(q->capped && type[0] == 'r'))
            q->cb.on_event(q->ud, type, ev);
    }
    json_decref(ev);
}

static void
xk_on_output(sb_sandbox_run_t *h, int fd, const uint8_t *data, size_t len, void *ud)
{
    sb__xkern_t *k = ud;
    (void)h;
    if (fd == 2) {
        /* the kernel's own stderr: keep the tail for the crash message */
        if (len >= sizeof k->errtail) {
            memcpy(k->errtail, data + len - sizeof k->errtail, sizeof k->errtail);
            k->errlen = sizeof k->errtail;
        } else {
            size_t keep = k->errlen + len > sizeof k->errtail ? sizeof k->errtail - len : k->errlen;
            memmove(k->errtail, k->errtail + k->errlen - keep, keep);
            memcpy(k->errtail + keep, data, len);
            k->errlen = keep + len;
        }
        return;
    }
    k->busy++;
    while (len && !k->ended) {
        const uint8_t *nl = memchr(data, '\n', len);
        size_t n = nl ? (size_t)(nl - data) : len;
        if (!k->line_drop && k->line.len + n > XK_LINE_MAX) {
            /* An oversized line (a huge print): dropped; the cell counts it as output. */
            k->line_drop = true;
            sb_buf_reset(&k->line);
            if (k->head && k->head->sent && k->head->is_exec && !k->head->capped) {
                k->head->capped = true;
                if (k->h)
                    sb_run_signal(k->h, SIGINT);
            }
        }
        if (!k->line_drop && n)
            sb_buf_append(&k->line, data, n);
        if (!nl)
            break;
        if (!k->line_drop && k->line.len)
            xk_line(k, (const char *)k->line.data, k->line.len);
        k->line_drop = false;
        sb_buf_reset(&k->line);
        data += n + 1;
        len -= n + 1;
    }
    if (--k->busy == 0 && k->ended) {
        sb__xstate_t *x = k->s->x;
        xk_free(k);
        xk_arm(x);
    }
}

static void
xk_on_started(sb_sandbox_run_t *h, int pid, void *ud)
{
    sb__xkern_t *k = ud;
    (void)h;
    k->pid = pid;
}

/* xk_start starts p's kernel in s.  SB_ENOTFOUND: the plugin does not ship the file its
 * kernel_cmd names. */
static int
xk_start(sb__xsbx_t *s, const sb_plugin_t *p, sb__xkern_t **out)
{
    char dir[160];
    size_t n = 0;
    int rc = 0;
    snprintf(dir, sizeof dir, "/tmp/.soulbox/%s", p->name);
    while (p->kernel_cmd[n])
        n++;
    const char **argv = sb_xcalloc(n + 1, sizeof *argv);
    char **owned = sb_xcalloc(n + 1, sizeof *owned);
    for (size_t i = 0; i < n; i++) {
        const char *a = p->kernel_cmd[i], *ph = strstr(a, "{plugin}");
        if (!ph) {
            argv[i] = a;
            continue;
        }
        size_t len = strlen(a) + sizeof dir;
        owned[i] = sb_xmalloc(len);
        snprintf(owned[i], len, "%.*s%s%s", (int)(ph - a), a, dir, ph + 8);
        argv[i] = owned[i];
        /* copy the file it names into the sandbox (a few small scripts) */
        const char *rel = ph + 8;
        while (*rel == '/')
            rel++;
        char host[1024], inside[512];
        snprintf(host, sizeof host, "%s/%s", p->dir ? p->dir : ".", rel);
        snprintf(inside, sizeof inside, "%s/%s", dir, rel);
        FILE *f = *rel ? fopen(host, "re") : NULL;
        if (!f) {
            if (*rel) {
                sb_log_debug("SB-EXEC-KERNEL-MISSING", "%s: no %s; no kernel", p->name, host);
                rc = SB_ENOTFOUND;
                break;
            }
            continue;
        }
        sb_buf_t b;
        sb_buf_init(&b, 0);
        char chunk[65536];
        size_t got;
        while ((got = fread(chunk, 1, sizeof chunk, f)) > 0 && b.len + got <= XK_FILE_MAX)
            sb_buf_append(&b, chunk, got);
        fclose(f);
        /* File operations and EXEC travel in order on the sandbox's control socket, so the
         * file is in place before the kernel starts. */
        rc = sb_sandbox_file_write(s->sb, inside, b.data ? b.data : (const uint8_t *)"", b.len,
                                   0644, false, NULL, NULL);
        sb_buf_fini(&b);
        if (rc < 0)
            break;
    }
    char **env = NULL;
    if (rc == 0)
        rc = sb__x_env_merge(&env, s->env ? (const char *const *)s->env : sb__x_default_env,
                             (const char *const *)p->env, NULL, NULL);
    sb__xkern_t *k = NULL;
    if (rc == 0) {
        k = sb_xcalloc(1, sizeof *k);
        k->s = s;
        k->plugin = p;
        sb_buf_init(&k->line, 0);
        sb_exec_opts_t o = {.argv = argv, .env = (const char *const *)env, .keep_stdin = true,
                            .stream_only = true, .timeout_ms = XK_FOREVER_MS,
                            .on_started = xk_on_started};
        rc = sb_sandbox_exec(s->sb, &o, xk_on_output, xk_on_done, k, &k->h);
        if (rc < 0) {
            sb_buf_fini(&k->line);
            free(k);
            k = NULL;
        }
    }
    sb__x_strv_free(env);
    for (size_t i = 0; i < n; i++)
        free(owned[i]);
    free(owned);
    free(argv);
    if (rc < 0) {
        if (rc != SB_ENOTFOUND)
            sb_log_warn("SB-EXEC-KERNEL-FAIL", "cannot start the %s kernel in %s: %s", p->name,
                        s->id, sb_strerror(rc));
        return rc;
    }
    k->next = s->kernels;
    s->kernels = k;
    sb_log_debug("SB-EXEC-KERNEL-START", "%s kernel starting in %s", p->name, s->id);
    *out = k;
    return 0;
}

int
sb__x_kern_get(sb__xsbx_t *s, const sb_plugin_t *p, bool start, sb__xkern_t **out)
{
    if (!p || !p->kernel_cmd)
        return SB_EINVAL;
    for (sb__xkern_t *k = s->kernels; k; k = k->next)
        if (k->plugin == p && !k->dying && k->h) {
            *out = k;
            return 0;
        }
    if (!start)
        return SB_ENOTFOUND;
    if (s->state != SB__XSBX_READY)
        return SB_ECLOSED;
    return xk_start(s, p, out);
}

sb__xkreq_t *
sb__x_kern_submit(sb__xkern_t *k, json_t *req, uint64_t timeout_ms, uint64_t output_max,
                  const sb__xkcb_t *cb, void *ud)
{
    sb__xkreq_t *q = sb_xcalloc(1, sizeof *q);
    q->k = k;
    q->req = req;
    const char *t = json_string_value(json_object_get(req, "type"));
    q->is_exec = t && !strcmp(t, "execute");
    q->timeout_ms = timeout_ms ? timeout_ms : XK_OP_TIMEOUT_MS;
    q->output_max = output_max;
    q->t0_us = sb_now_mono_us();
    q->cb = *cb;
    q->ud = ud;
    if (k->tail)
        k->tail->next = q;
    else
        k->head = q;
    k->tail = q;
    xk_pump(k);
    return q;
}

void
sb__x_kerns_kill(sb__xsbx_t *s)
{
    for (sb__xkern_t *k = s->kernels; k; k = k->next)
        xk_kill(k, "canceled", SB_ECLOSED, "the sandbox was destroyed");
}

/* ---- deadlines ------------------------------------------------------------------------------ */

static void
xk_on_timer(uv_timer_t *t)
{
    sb__xstate_t *x = t->data;
    uint64_t now = sb_now_mono_us();
    for (sb__xsbx_t *s = x->sbxs; s; s = s->next)
        for (sb__xkern_t *k = s->kernels; k; k = k->next) {
            sb__xkreq_t *q = k->head;
            if (!q || !q->sent || k->dying || now < q->deadline_us)
                continue;
            char msg[256];
            if (q->is_exec)
                snprintf(msg, sizeof msg, "the execution did not finish within %llu ms: the %s "
                         "kernel was killed and its state and contexts are lost; the next "
                         "execution starts a fresh kernel",
                         (unsigned long long)q->timeout_ms, xk_lang(k));
            else
                snprintf(msg, sizeof msg, "the %s kernel did not answer within %llu ms; it was "
                         "killed and the next use starts a fresh kernel",
                         xk_lang(k), (unsigned long long)q->timeout_ms);
            sb_log_info("SB-EXEC-KERNEL-TIMEOUT", "%s kernel of %s: %s", xk_lang(k), s->id,
                        q->is_exec ? "execution timed out" : "no answer");
            xk_kill(k, "timeout", SB_ETIMEDOUT, msg);
        }
    xk_arm(x);
}

static void
xk_arm(sb__xstate_t *x)
{
    if (!x->handles_open)
        return;
    uint64_t next = 0;
    for (sb__xsbx_t *s = x->sbxs; s; s = s->next)
        for (sb__xkern_t *k = s->kernels; k; k = k->next)
            if (k->head && k->head->sent && !k->dying &&
                (!next || k->head->deadline_us < next))
                next = k->head->deadline_us;
    if (!next) {
        uv_timer_stop(&x->ktimer);
        return;
    }
    uint64_t now = sb_now_mono_us();
    uint64_t ms = next > now ? (next - now + 999) / 1000 : 0;
    x->ktimer.data = x;
    uv_timer_start(&x->ktimer, xk_on_timer, ms, 0);
}

/* ---- KERNEL_EXEC ------------------------------------------------------------------------------ */

enum { XK_EV_STDOUT, XK_EV_STDERR, XK_EV_RESULT, XK_EV_ERROR };
static const char *const xk_ev_names[] = {"stdout", "stderr", "result", "error"};

typedef struct {
    int kind;
    sb_buf_t data;
} xk_ev_t;

struct sb__xkx {
    sb__xstate_t *x;
    sb_replyto_t to;
    xk_ev_t *evs;
    size_t nev, cap, sent;
    bool ended;
    sb_buf_t done;
    char lang[64], ctx[129];
    sb__xkx_t *next;
};

static void
xk_kx_free(sb__xkx_t *kx)
{
    for (sb__xkx_t **pp = &kx->x->kxs; *pp; pp = &(*pp)->next)
        if (*pp == kx) {
            *pp = kx->next;
            break;
        }
    for (size_t i = 0; i < kx->nev; i++)
        sb_buf_fini(&kx->evs[i].data);
    free(kx->evs);
    sb_buf_fini(&kx->done);
    free(kx);
}

static sb_buf_t *
xk_kx_push(sb__xkx_t *kx, int kind)
{
    if (kx->nev == kx->cap) {
        kx->cap = kx->cap ? kx->cap * 2 : 8;
        kx->evs = sb_xrealloc(kx->evs, kx->cap * sizeof *kx->evs);
    }
    xk_ev_t *e = &kx->evs[kx->nev++];
    e->kind = kind;
    sb_buf_init(&e->data, 0);
    return &e->data;
}

static void
xk_kx_text(sb__xkx_t *kx, int kind, const char *p, size_t n)
{
    while (n) {
        xk_ev_t *tail = kx->nev > kx->sent ? &kx->evs[kx->nev - 1] : NULL;
        sb_buf_t *b = tail && tail->kind == kind && tail->data.len < SB__X_CHUNK_MAX
                          ? &tail->data
                          : xk_kx_push(kx, kind);
        size_t room = SB__X_CHUNK_MAX - b->len, take = n < room ? n : room;
        sb_buf_append(b, p, take);
        p += take;
        n -= take;
    }
}

static void
xk_kx_on_event(void *ud, const char *type, json_t *ev)
{
    sb__xkx_t *kx = ud;
    if (type[0] == 's') {
        json_t *t = json_object_get(ev, "text");
        if (json_is_string(t) && json_string_length(t))
            xk_kx_text(kx, type[3] == 'o' ? XK_EV_STDOUT : XK_EV_STDERR, json_string_value(t),
                       json_string_length(t));
    } else {
        json_t *o = json_object();
        int kind = type[0] == 'r' ? XK_EV_RESULT : XK_EV_ERROR;
        static const char *const rkeys[] = {"is_main_result", "data", NULL};
        static const char *const ekeys[] = {"name", "value", "traceback", NULL};
        for (const char *const *key = kind == XK_EV_RESULT ? rkeys : ekeys; *key; key++) {
            json_t *v = json_object_get(ev, *key);
            if (v)
                json_object_set(o, *key, v);
        }
        char *text = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        size_t len = text ? strlen(text) : 0;
        if (text && len <= XK_EVENT_MAX) {
            sb_buf_append(xk_kx_push(kx, kind), text, len);
        } else {
            char note[160];
            int nn = snprintf(note, sizeof note, "[a %s of %zu bytes was dropped: over the %u "
                              "byte message limit]\n", type, len, (unsigned)XK_EVENT_MAX);
            xk_kx_text(kx, XK_EV_STDERR, note, (size_t)nn);
        }
        free(text);
    }
    sb__x_flush_schedule(kx->x);
}

static void
xk_mon(sb__xstate_t *x, const char *runtime, const char *status, uint64_t duration_us)
{
    sb_mon_exec_t m = {.runtime = sb_str(runtime), .status = sb_str(status),
                       .duration_us = duration_us ? duration_us : 1};
    sb_buf_t *b = sb_actor_scratch(x->a);
    if (sb_mon_exec_encode(&m, b) != 0)
        return;
    int rc = sb_actor_send(x->a, sb_addr(SB_ACTOR_MONITOR), SB_MSG_MON_EXEC, 0, 0, 0, b->data,
                           b->len);
    if (rc < 0 && rc != SB_ENOROUTE)
        sb_log_debug("SB-EXEC-MON-DROP", "MON_EXEC dropped: %s", sb_strerror(rc));
}

static void
xk_kx_on_end(void *ud, const sb__xkend_t *e)
{
    sb__xkx_t *kx = ud;
    sb_kernel_done_t d = {.execution_count = e->execution_count,
                          .status = sb_str(e->status ? e->status : "ok"),
                          .error = sb_str(e->err ? e->msg : ""),
                          .execution_time_ms = e->duration_us / 1000,
                          .language = sb_str(kx->lang),
                          .context_id = sb_str(kx->ctx)};
    if (!e->err && !strcmp(e->status, "output_limit"))
        d.error = SB_STR("the cell's output passed the limit: it was interrupted and the rest of "
                         "its output dropped (the kernel's state is kept)");
    sb_buf_init(&kx->done, 0);
    if (sb_kernel_done_encode(&d, &kx->done) != 0)
        sb_buf_reset(&kx->done);
    kx->ended = true;
    xk_mon(kx->x, kx->lang, d.status.ptr, e->duration_us);
    if (kx->x->handles_open)
        sb__x_flush_schedule(kx->x);
    else
        sb__x_kern_flush(kx->x); /* stopping: no flush check turns any more */
}

bool
sb__x_kern_flush(sb__xstate_t *x)
{
    bool blocked = false;
    for (sb__xkx_t *kx = x->kxs, *next; kx; kx = next) {
        next = kx->next;
        bool stuck = false;
        while (kx->sent < kx->nev) {
            xk_ev_t *ev = &kx->evs[kx->sent];
            sb_kernel_event_t m = {.kind = sb_str(xk_ev_names[ev->kind]),
                                   .data = {(const char *)ev->data.data, (uint32_t)ev->data.len}};
            sb_buf_t *b = sb_actor_scratch(x->a);
            int rc = sb_kernel_event_encode(&m, b);
            if (rc == 0)
                rc = sb_actor_reply(x->a, &kx->to, SB_MSG_KERNEL_EVENT, SB_MF_STREAM, b->data,
                                    b->len);
            if (rc == SB_EAGAIN && !x->stopping) {
                stuck = true;
                break;
            }
            sb_buf_fini(&ev->data);
            kx->sent++;
        }
        if (!stuck && kx->sent == kx->nev) {
            kx->sent = kx->nev = 0;
            if (kx->ended) {
                int rc = sb_actor_reply(x->a, &kx->to, SB_MSG_KERNEL_DONE, SB_MF_FINAL,
                                        kx->done.data, kx->done.len);
                if (rc == SB_EAGAIN && !x->stopping) {
                    stuck = true;
                } else {
                    if (rc < 0 && rc != SB_ENOROUTE)
                        sb_log_warn("SB-EXEC-REPLY-DROP", "KERNEL_DONE dropped: %s",
                                    sb_strerror(rc));
                    xk_kx_free(kx);
                    continue;
                }
            }
        }
        blocked |= stuck;
    }
    return blocked;
}

void
sb__x_kern_stop(sb__xstate_t *x)
{
    while (x->kxs)
        xk_kx_free(x->kxs);
}

/* ---- resolving (sandbox, language, context) -------------------------------------------------- */

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

static sb__xkern_t *
xk_find_ctx(sb__xsbx_t *s, const char *ctx, size_t *idx)
{
    for (sb__xkern_t *k = s->kernels; k; k = k->next)
        if (!k->dying && k->h)
            for (size_t i = 0; i < k->nctx; i++)
                if (!strcmp(k->ctxs[i], ctx)) {
                    if (idx)
                        *idx = i;
                    return k;
                }
    return NULL;
}

/* xk_resolve picks the plugin (and the kernel, if it runs) for a request; on failure it has
 * answered the request.  ctx "" or "default": the language's default context. */
static int
xk_resolve(sb__xstate_t *x, sb_replyto_t *to, sb__xsbx_t *s, sb_str_t lang, const char *ctx,
           const sb_plugin_t **pp, sb__xkern_t **kk)
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
        sb__xkern_t *k = xk_find_ctx(s, ctx, NULL);
        if (!k) {
            sb_actor_reply_error(x->a, to, SB_ENOTFOUND,
                                 "no context '%s' in this sandbox (a kernel that crashed or "
                                 "timed out loses its contexts)", ctx);
            return SB_ENOTFOUND;
        }
        if (p && p != k->plugin) {
            sb_actor_reply_error(x->a, to, SB_EINVAL, "context '%s' is a %s context, not %s", ctx,
                                 k->plugin->name, p->name);
            return SB_EINVAL;
        }
        *pp = k->plugin;
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

static sb__xsbx_t *
xk_sandbox(sb__xstate_t *x, sb_replyto_t *to, sb_str_t id)
{
    sb__xsbx_t *s = sb__x_find(x, id);
    if (!s || s->state != SB__XSBX_READY) {
        sb_actor_reply_error(x->a, to, s && s->state == SB__XSBX_CREATING ? SB_EUNAVAILABLE
                                                                           : SB_ENOTFOUND,
                             "no sandbox '%.*s' on this node", (int)(id.len > 64 ? 64 : id.len),
                             id.ptr);
        return NULL;
    }
    return s;
}

static int
xk_start_or_fail(sb__xstate_t *x, sb_replyto_t *to, sb__xsbx_t *s, const sb_plugin_t *p,
                 sb__xkern_t **k)
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
    sb__xsbx_t *s = xk_sandbox(x, &to, req.sandbox);
    const sb_plugin_t *p;
    sb__xkern_t *k;
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
    sb__xkx_t *kx = sb_xcalloc(1, sizeof *kx);
    kx->x = x;
    kx->to = to;
    snprintf(kx->lang, sizeof kx->lang, "%s", p->name);
    snprintf(kx->ctx, sizeof kx->ctx, "%s", *ctx ? ctx : "default");
    kx->next = x->kxs;
    x->kxs = kx;
    json_t *r = json_pack("{s:s,s:o,s:s}", "type", "execute", "code", code, "context_id",
                          kx->ctx);
    static const sb__xkcb_t cb = {xk_kx_on_event, xk_kx_on_end};
    sb__x_kern_submit(k, r, timeout, omax, &cb, kx);
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
    sb__xsbx_t *s = xk_sandbox(x, &to, req.sandbox);
    if (!s)
        return 0;
    const sb_plugin_t *p = *l && x->plugins ? sb_plugins_find(x->plugins, l) : NULL;
    if (*l && !p) {
        sb_actor_reply_error(x->a, &to, SB_EINVAL, "unknown language '%s'", l);
        return 0;
    }
    int found = 0;
    for (sb__xkern_t *k = s->kernels; k; k = k->next) {
        if ((p && k->plugin != p) || k->dying || !k->h)
            continue;
        found++;
        /* Only a running cell is interrupted: SIGINT during the kernel's start-up could kill
         * it before its handler is installed, and an idle kernel has nothing to stop. */
        if (k->ready && k->head && k->head->sent && k->head->is_exec)
            sb_run_signal(k->h, SIGINT);
    }
    if (!found) {
        sb_actor_reply_error(x->a, &to, SB_ENOTFOUND, "no %s kernel runs in this sandbox",
                             *l ? l : "");
        return 0;
    }
    sb_exec_ack_t ack = {.id = sb_str(s->id)};
    sb_buf_t *b = sb_actor_scratch(x->a);
    if (sb_exec_ack_encode(&ack, b) == 0)
        sb_actor_reply(x->a, &to, SB_MSG_EXEC_ACK, 0, b->data, b->len);
    return 0;
}

/* ---- KERNEL_CONTEXT ------------------------------------------------------------------------ */

typedef struct {
    sb__xstate_t *x;
    sb_replyto_t to;
    char op[16], ctx[129];
    sb__xkern_t *k;
} xk_cop_t;

static void
xk_ctx_reply(sb__xstate_t *x, sb_replyto_t *to, const char *ctx, const char *lang)
{
    sb_kernel_context_reply_t r = {.context_id = sb_str(ctx), .language = sb_str(lang)};
    sb_buf_t *b = sb_actor_scratch(x->a);
    if (sb_kernel_context_reply_encode(&r, b) == 0)
        sb_actor_reply(x->a, to, SB_MSG_KERNEL_CONTEXT_REPLY, 0, b->data, b->len);
}

static void
xk_cop_on_end(void *ud, const sb__xkend_t *e)
{
    xk_cop_t *c = ud;
    sb__xstate_t *x = c->x;
    sb__xkern_t *k = c->k;
    const char *type = e->reply ? json_string_value(json_object_get(e->reply, "type")) : NULL;
    if (e->err) {
        sb_actor_reply_error(x->a, &c->to, e->err == SB_ECANCELED ? SB_EUNAVAILABLE : e->err,
                             "%s", e->msg ? e->msg : sb_strerror(e->err));
    } else if (!type || !strcmp(type, "error")) {
        const char *name = type ? json_string_value(json_object_get(e->reply, "name")) : NULL;
        int code = name && !strcmp(name, "ContextNotFound") ? SB_ENOTFOUND
                   : name && !strcmp(name, "ContextExists") ? SB_EEXIST
                                                            : SB_EINVAL;
        sb_actor_reply_error(x->a, &c->to, code, "%s kernel: %s %s", k->plugin->name,
                             name ? name : "malformed answer", c->ctx);
    } else {
        if (!strcmp(c->op, "create")) {
            if (k->nctx < XK_CTX_MAX)
                k->ctxs[k->nctx++] = sb_xstrdup(c->ctx);
        } else if (!strcmp(c->op, "delete")) {
            size_t i;
            if (xk_find_ctx(k->s, c->ctx, &i) == k) {
                free(k->ctxs[i]);
                k->ctxs[i] = k->ctxs[--k->nctx];
            }
        }
        xk_ctx_reply(x, &c->to, c->ctx, k->plugin->name);
    }
    free(c);
}

static void
xk_ctx_list(sb__xstate_t *x, sb_replyto_t *to, sb__xsbx_t *s)
{
    sb_buf_t b;
    msgpack_packer pk;
    size_t n = 0;
    bool own = s->plugin && s->plugin->kernel_cmd, own_running = false;
    for (sb__xkern_t *k = s->kernels; k; k = k->next)
        if (!k->dying && k->h) {
            n += 1 + k->nctx;
            own_running |= k->plugin == s->plugin;
        }
    if (own && !own_running)
        n++;
    sb_buf_init(&b, 0);
    sb_codec_packer(&pk, &b);
    msgpack_pack_array(&pk, n);
#define XK_PAIR(id, lang)                                                                          \
    do {                                                                                           \
        msgpack_pack_array(&pk, 2);                                                                \
        msgpack_pack_str(&pk, strlen(id));                                                         \
        msgpack_pack_str_body(&pk, id, strlen(id));                                                \
        msgpack_pack_str(&pk, strlen(lang));                                                       \
        msgpack_pack_str_body(&pk, lang, strlen(lang));                                            \
    } while (0)
    /* every started kernel has a default context; the sandbox's own language always does */
    if (own && !own_running)
        XK_PAIR("default", s->plugin->name);
    for (sb__xkern_t *k = s->kernels; k; k = k->next)
        if (!k->dying && k->h) {
            XK_PAIR("default", k->plugin->name);
            for (size_t i = 0; i < k->nctx; i++)
                XK_PAIR(k->ctxs[i], k->plugin->name);
        }
#undef XK_PAIR
    sb_kernel_context_reply_t r = {.contexts = {(const char *)b.data, (uint32_t)b.len}};
    sb_buf_t *out = sb_actor_scratch(x->a);
    if (sb_kernel_context_reply_encode(&r, out) == 0)
        sb_actor_reply(x->a, to, SB_MSG_KERNEL_CONTEXT_REPLY, 0, out->data, out->len);
    sb_buf_fini(&b);
}

static int
xk_on_context(sb__xstate_t *x, const sb_msg_t *m)
{
    sb_kernel_context_t req;
    char op[16], ctx[129];
    sb_replyto_t to = sb_replyto(m);
    if (sb_kernel_context_decode(m, &req) != 0 || sb_str_copy(op, sizeof op, req.op) != 0 ||
        sb_str_copy(ctx, sizeof ctx, req.context_id) != 0)
        return SB_EBADMSG;
    sb__xsbx_t *s = xk_sandbox(x, &to, req.sandbox);
    if (!s)
        return 0;
    if (!strcmp(op, "list")) {
        xk_ctx_list(x, &to, s);
        return 0;
    }
    bool create = !strcmp(op, "create");
    if (!create && strcmp(op, "delete") != 0 && strcmp(op, "restart") != 0) {
        sb_actor_reply_error(x->a, &to, SB_EINVAL,
                             "unknown context op '%s' (create, list, delete, restart)", op);
        return 0;
    }
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
        if (!*ctx) {
            sb_random_id("ctx-", ctx, sizeof ctx);
        }
        if (!strcmp(ctx, "default") || xk_find_ctx(s, ctx, NULL)) {
            sb_actor_reply_error(x->a, &to, SB_EEXIST, "context '%s' exists", ctx);
            return 0;
        }
    }
    const sb_plugin_t *p;
    sb__xkern_t *k;
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
        if (k->nctx >= XK_CTX_MAX) {
            sb_actor_reply_error(x->a, &to, SB_ELIMIT, "at most %d contexts per kernel",
                                 XK_CTX_MAX);
            return 0;
        }
    }
    xk_cop_t *c = sb_xcalloc(1, sizeof *c);
    c->x = x;
    c->to = to;
    c->k = k;
    snprintf(c->op, sizeof c->op, "%s", op);
    snprintf(c->ctx, sizeof c->ctx, "%s", ctx);
    const char *kop = create ? "create_context" : *op == 'd' ? "delete_context" : "reset_context";
    static const sb__xkcb_t cb = {NULL, xk_cop_on_end};
    sb__x_kern_submit(k, json_pack("{s:s,s:s}", "type", kop, "context_id", ctx), 0, 0, &cb, c);
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
