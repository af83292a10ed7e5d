/*
 * kernel.c: the warm-kernel client (kernel.h) -- starting a kernel, its JSON-lines channel,
 * its request queue and deadline, its contexts -- and the route of a one-shot program
 * through it (sb_kernel_run_program), which maps the cell's events onto what the program's
 * run would have produced.
 *
 * Invariants: only the head request is ever written to the kernel; a request ends exactly
 * once; the kernel is freed only after its engine run has ended (the done callback), every
 * request has ended, the owner has heard on_exit and its timer handle has closed.  While a
 * line is being handled (busy > 0) the done callback defers freeing to the line loop.
 */
#include "kernel.h"

#include "env.h"

#include "base/alloc.h"
#include "base/base64.h"
#include "base/buf.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define K_LINE_MAX (16u << 20)        /* one protocol line from a kernel */
#define K_FILE_MAX (4u << 20)         /* a kernel script copied into a sandbox */
#define K_OP_TIMEOUT_MS 20000         /* context ops, kernel start included */
#define K_FOREVER_MS (365ull * 24 * 3600 * 1000)

typedef struct k_req {
    sb_kernel_t *k;
    uint64_t id;
    json_t *req;
    bool is_exec, sent, capped, errored;
    uint64_t timeout_ms, deadline_us, t0_us, output_max, output_seen;
    sb_kernel_cb_t cb;
    void *ud;
    struct k_req *next;
} k_req_t;

struct sb_kernel {
    sb_sandbox_t *sb;
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
    k_req_t *head, *tail;
    char *ctxs[SB_KERNEL_CTX_MAX];
    size_t nctx;
    uv_timer_t deadline; /* the head's deadline, once it is written */
    void (*on_exit)(sb_kernel_t *k, void *ud);
    void *ud;
};

static const char *const k_ev_names[] = {"stdout", "stderr", "result", "error"};

const char *
sb_kernel_event_name(sb_kernel_ev_t k)
{
    return (unsigned)k < 4 ? k_ev_names[k] : "unknown";
}

static const char *
k_lang(const sb_kernel_t *k)
{
    return k->plugin->name;
}

bool
sb_kernel_live(const sb_kernel_t *k)
{
    return !k->dying && k->h;
}

const sb_plugin_t *
sb_kernel_plugin(const sb_kernel_t *k)
{
    return k->plugin;
}

int
sb_kernel_pid(const sb_kernel_t *k)
{
    return k->pid;
}

/* ---- contexts ------------------------------------------------------------------------------ */

size_t
sb_kernel_contexts(const sb_kernel_t *k)
{
    return k->nctx;
}

const char *
sb_kernel_context(const sb_kernel_t *k, size_t i)
{
    return i < k->nctx ? k->ctxs[i] : NULL;
}

bool
sb_kernel_has_context(const sb_kernel_t *k, const char *ctx)
{
    for (size_t i = 0; i < k->nctx; i++)
        if (!strcmp(k->ctxs[i], ctx))
            return true;
    return false;
}

int
sb_kernel_context_add(sb_kernel_t *k, const char *ctx)
{
    if (k->nctx >= SB_KERNEL_CTX_MAX)
        return SB_ELIMIT;
    k->ctxs[k->nctx++] = sb_xstrdup(ctx);
    return 0;
}

void
sb_kernel_context_remove(sb_kernel_t *k, const char *ctx)
{
    for (size_t i = 0; i < k->nctx; i++)
        if (!strcmp(k->ctxs[i], ctx)) {
            free(k->ctxs[i]);
            k->ctxs[i] = k->ctxs[--k->nctx];
            return;
        }
}

/* ---- the kernel's life ------------------------------------------------------------------- */

void
sb_kernel_kill(sb_kernel_t *k, const char *status, int err, const char *msg)
{
    if (k->dying || !k->h)
        return;
    k->dying = true;
    k->kill_status = status;
    k->kill_err = err;
    snprintf(k->kill_msg, sizeof k->kill_msg, "%s", msg);
    uv_timer_stop(&k->deadline);
    sb_run_kill(k->h);
}

static void
k_closed(uv_handle_t *h)
{
    sb_kernel_t *k = h->data;
    for (size_t i = 0; i < k->nctx; i++)
        free(k->ctxs[i]);
    sb_buf_fini(&k->line);
    free(k);
}

/* k_release: the engine run has ended and no line is in progress: the owner hears, then the
 * memory goes once the timer handle has closed. */
static void
k_release(sb_kernel_t *k)
{
    if (k->on_exit)
        k->on_exit(k, k->ud);
    uv_close((uv_handle_t *)&k->deadline, k_closed);
}

/* k_end ends request q (k's head): it leaves the queue, then its owner hears. */
static void
k_end(k_req_t *q, sb_kernel_end_t *e)
{
    sb_kernel_t *k = q->k;
    SB_ASSERT(k->head == q);
    k->head = q->next;
    if (!k->head)
        k->tail = NULL;
    uv_timer_stop(&k->deadline);
    e->duration_us = sb_now_mono_us() - q->t0_us;
    if (q->cb.on_end)
        q->cb.on_end(q->ud, e);
    json_decref(q->req);
    free(q);
}

static void
k_on_done(sb_sandbox_run_t *h, const sb_run_result_t *res, void *ud)
{
    sb_kernel_t *k = ud;
    (void)h;
    k->h = NULL;
    k->ended = true;
    uv_timer_stop(&k->deadline);
    bool ours = k->kill_status != NULL;
    bool sandbox_going = !sb_sandbox_alive(k->sb);
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
        sb_log_warn("SB-KERNEL-END", "%s kernel of %s ended (%s, exit %d, signal %d)%s",
                    k_lang(k), sb_sandbox_cgroup_name(k->sb), sb_run_status_name(res->status),
                    res->exit_code, res->signal, tail);
    }
    if (ours)
        snprintf(msg, sizeof msg, "%s", k->kill_msg);
    else if (sandbox_going)
        snprintf(msg, sizeof msg, "the sandbox was destroyed");
    else if (res->status == SB_RUN_MEMORY_LIMIT)
        snprintf(msg, sizeof msg, "the %s kernel ran out of memory and was killed; its state and "
                 "contexts are lost; the next execution starts a fresh kernel", k_lang(k));
    else if (res->status == SB_RUN_EXITED)
        snprintf(msg, sizeof msg, "the %s kernel exited (status %d)%s; its state and contexts "
                 "are lost; the next execution starts a fresh kernel", k_lang(k),
                 res->exit_code, tail);
    else
        snprintf(msg, sizeof msg, "the %s kernel died (%s, signal %d)%s; its state and contexts "
                 "are lost; the next execution starts a fresh kernel", k_lang(k),
                 sb_run_status_name(res->status), res->signal, tail);
    bool first = true;
    while (k->head) {
        k_req_t *q = k->head;
        sb_kernel_end_t e = {.kres = res, .msg = msg};
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
        k_end(q, &e);
    }
    if (!k->busy)
        k_release(k); /* else the line loop in progress does */
}

/* A request failed before the kernel saw it (the kernel cannot take it). */
static void
k_fail_write(sb_kernel_t *k, int rc)
{
    char msg[160];
    snprintf(msg, sizeof msg, "cannot write to the %s kernel: %s; it is being restarted",
             k_lang(k), sb_strerror(rc));
    sb_kernel_kill(k, "crashed", SB_EIO, msg);
}

static void
k_on_deadline(uv_timer_t *t)
{
    sb_kernel_t *k = t->data;
    k_req_t *q = k->head;
    if (!q || !q->sent || k->dying)
        return;
    char msg[256];
    if (q->is_exec)
        snprintf(msg, sizeof msg, "the execution did not finish within %llu ms: the %s kernel "
                 "was killed and its state and contexts are lost; the next execution starts a "
                 "fresh kernel", (unsigned long long)q->timeout_ms, k_lang(k));
    else
        snprintf(msg, sizeof msg, "the %s kernel did not answer within %llu ms; it was killed "
                 "and the next use starts a fresh kernel", k_lang(k),
                 (unsigned long long)q->timeout_ms);
    sb_log_info("SB-KERNEL-TIMEOUT", "%s kernel of %s: %s", k_lang(k),
                sb_sandbox_cgroup_name(k->sb), q->is_exec ? "execution timed out" : "no answer");
    sb_kernel_kill(k, "timeout", SB_ETIMEDOUT, msg);
}

static void
k_pump(sb_kernel_t *k)
{
    k_req_t *q = k->head;
    if (!q || q->sent || k->dying || !k->h)
        return;
    q->id = ++k->next_id;
    json_object_set_new(q->req, "id", json_integer((json_int_t)q->id));
    char *text = json_dumps(q->req, JSON_COMPACT | JSON_ENSURE_ASCII);
    q->sent = true;
    q->t0_us = sb_now_mono_us();
    q->deadline_us = q->t0_us + q->timeout_ms * 1000;
    if (!text) {
        k_fail_write(k, SB_ENOMEM);
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
    if (rc < 0) {
        k_fail_write(k, rc);
        return;
    }
    uv_timer_start(&k->deadline, k_on_deadline, q->timeout_ms, 0);
}

static int64_t
k_int(json_t *o, const char *key, int64_t def)
{
    json_t *v = json_object_get(o, key);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : def;
}

/* The protocol's event types a kernel sends. */
static const char K_READY[] = "ready", K_DONE[] = "done";

static int
k_event_kind(const char *type)
{
    for (int i = 0; i < 4; i++)
        if (!strcmp(type, k_ev_names[i]))
            return i;
    return -1;
}

static void
k_line(sb_kernel_t *k, const char *p, size_t n)
{
    json_error_t je;
    json_t *ev = json_loadb(p, n, 0, &je);
    const char *type = ev ? json_string_value(json_object_get(ev, "type")) : NULL;
    if (!type) {
        sb_log_debug("SB-KERNEL-LINE", "%s kernel of %s sent a malformed line", k_lang(k),
                     sb_sandbox_cgroup_name(k->sb));
        json_decref(ev);
        return;
    }
    if (!strcmp(type, K_READY)) {
        k->ready = true;
        if (!k->pid)
            k->pid = (int)k_int(ev, "pid", 0);
        json_decref(ev);
        return;
    }
    k_req_t *q = k->head;
    json_t *idv = json_object_get(ev, "id");
    if (!q || !q->sent || !json_is_integer(idv) || (uint64_t)json_integer_value(idv) != q->id) {
        json_decref(ev); /* late output of an earlier request, or a stray event */
        return;
    }
    if (!q->is_exec) {
        sb_kernel_end_t e = {.reply = ev, .status = "ok"};
        k_end(q, &e);
        k_pump(k);
        json_decref(ev);
        return;
    }
    int kind = k_event_kind(type);
    if (!strcmp(type, K_DONE)) {
        sb_kernel_end_t e = {.reply = ev,
                             .status = q->capped ? "output_limit" : q->errored ? "error" : "ok",
                             .execution_count = (uint64_t)k_int(ev, "execution_count", 0)};
        k_end(q, &e);
        k_pump(k);
    } else if (kind == SB_KEV_STDOUT || kind == SB_KEV_STDERR) {
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
                q->cb.on_event(q->ud, (sb_kernel_ev_t)kind, ev);
        }
    } else if (kind == SB_KEV_RESULT || kind == SB_KEV_ERROR) {
        if (kind == SB_KEV_ERROR)
            q->errored = true;
        if (q->cb.on_event && !(q->capped && kind == SB_KEV_RESULT))
            q->cb.on_event(q->ud, (sb_kernel_ev_t)kind, ev);
    }
    json_decref(ev);
}

static void
k_on_output(sb_sandbox_run_t *h, int fd, const uint8_t *data, size_t len, void *ud)
{
    sb_kernel_t *k = ud;
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
        if (!k->line_drop && k->line.len + n > K_LINE_MAX) {
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
            k_line(k, (const char *)k->line.data, k->line.len);
        k->line_drop = false;
        sb_buf_reset(&k->line);
        data += n + 1;
        len -= n + 1;
    }
    if (--k->busy == 0 && k->ended)
        k_release(k);
}

static void
k_on_started(sb_sandbox_run_t *h, int pid, void *ud)
{
    sb_kernel_t *k = ud;
    (void)h;
    k->pid = pid;
}

/* k_copy_file copies the plugin file rel into the sandbox at inside.  File operations and
 * EXEC travel in order on the control socket, so the file is in place before the kernel
 * starts. */
static int
k_copy_file(sb_sandbox_t *sb, const sb_plugin_t *p, const char *rel, const char *inside)
{
    char host[1024];
    snprintf(host, sizeof host, "%s/%s", p->dir ? p->dir : ".", rel);
    FILE *f = fopen(host, "re");
    if (!f) {
        sb_log_debug("SB-KERNEL-MISSING", "%s: no %s; no kernel", p->name, host);
        return SB_ENOTFOUND;
    }
    sb_buf_t b;
    sb_buf_init(&b, 0);
    char chunk[65536];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0 && b.len + got <= K_FILE_MAX)
        sb_buf_append(&b, chunk, got);
    fclose(f);
    int rc = sb_sandbox_file_write(sb, inside, b.data ? b.data : (const uint8_t *)"", b.len,
                                   0644, false, NULL, NULL);
    sb_buf_fini(&b);
    return rc;
}

int
sb_kernel_start(sb_sandbox_t *sb, const sb_plugin_t *p, const char *const *env,
                void (*on_exit)(sb_kernel_t *k, void *ud), void *ud, sb_kernel_t **out)
{
    if (!p || !p->kernel_cmd)
        return SB_EINVAL;
    if (!sb_sandbox_alive(sb))
        return SB_ECLOSED;
    char dir[160];
    size_t n = 0;
    int rc = 0;
    snprintf(dir, sizeof dir, "/tmp/.soulbox/%s", p->name);
    while (p->kernel_cmd[n])
        n++;
    const char **argv = sb_xcalloc(n + 1, sizeof *argv);
    char **owned = sb_xcalloc(n + 1, sizeof *owned);
    for (size_t i = 0; i < n && rc == 0; i++) {
        const char *a = p->kernel_cmd[i], *ph = strstr(a, "{plugin}");
        if (!ph) {
            argv[i] = a;
            continue;
        }
        size_t len = strlen(a) + sizeof dir;
        owned[i] = sb_xmalloc(len);
        snprintf(owned[i], len, "%.*s%s%s", (int)(ph - a), a, dir, ph + 8);
        argv[i] = owned[i];
        const char *rel = ph + 8;
        while (*rel == '/')
            rel++;
        if (*rel) {
            char inside[512];
            snprintf(inside, sizeof inside, "%s/%s", dir, rel);
            rc = k_copy_file(sb, p, rel, inside);
        }
    }
    sb_kernel_t *k = NULL;
    if (rc == 0) {
        k = sb_xcalloc(1, sizeof *k);
        k->sb = sb;
        k->plugin = p;
        k->on_exit = on_exit;
        k->ud = ud;
        sb_buf_init(&k->line, 0);
        sb_exec_opts_t o = {.argv = argv, .env = env, .keep_stdin = true, .stream_only = true,
                            .timeout_ms = K_FOREVER_MS, .on_started = k_on_started};
        rc = sb_sandbox_exec(sb, &o, k_on_output, k_on_done, k, &k->h);
        if (rc < 0) {
            sb_buf_fini(&k->line);
            free(k);
            k = NULL;
        }
    }
    for (size_t i = 0; i < n; i++)
        free(owned[i]);
    free(owned);
    free(argv);
    if (rc < 0) {
        if (rc != SB_ENOTFOUND)
            sb_log_warn("SB-KERNEL-FAIL", "cannot start the %s kernel in %s: %s", p->name,
                        sb_sandbox_cgroup_name(sb), sb_strerror(rc));
        return rc;
    }
    uv_timer_init(sb_sandbox_loop(sb), &k->deadline);
    k->deadline.data = k;
    sb_log_debug("SB-KERNEL-START", "%s kernel starting in %s", p->name,
                 sb_sandbox_cgroup_name(sb));
    *out = k;
    return 0;
}

void
sb_kernel_submit(sb_kernel_t *k, json_t *req, uint64_t timeout_ms, uint64_t output_max,
                 const sb_kernel_cb_t *cb, void *ud)
{
    k_req_t *q = sb_xcalloc(1, sizeof *q);
    q->k = k;
    q->req = req;
    const char *t = json_string_value(json_object_get(req, "type"));
    q->is_exec = t && !strcmp(t, "execute");
    q->timeout_ms = timeout_ms ? timeout_ms : K_OP_TIMEOUT_MS;
    q->output_max = output_max;
    q->t0_us = sb_now_mono_us();
    q->cb = *cb;
    q->ud = ud;
    if (k->dying || !k->h) {
        /* the kernel is going: the request never runs */
        sb_kernel_end_t e = {.err = SB_ECANCELED, .status = "canceled",
                             .msg = "the kernel ended before this request ran"};
        if (q->cb.on_end)
            q->cb.on_end(ud, &e);
        json_decref(req);
        free(q);
        return;
    }
    if (k->tail)
        k->tail->next = q;
    else
        k->head = q;
    k->tail = q;
    k_pump(k);
}

bool
sb_kernel_interrupt(sb_kernel_t *k)
{
    if (!sb_kernel_live(k) || !k->ready || !k->head || !k->head->sent || !k->head->is_exec)
        return false;
    sb_run_signal(k->h, SIGINT);
    return true;
}

/* ---- one-shot programs through the kernel --------------------------------------------------- */

typedef struct {
    sb_kernel_t *k;
    sb_kernel_prog_cb_t cb;
    void *ud;
    bool errored;
    int exit_code;
    uint64_t cpu0_ns;
} k_prog_t;

bool
sb_kernel_can_run(const sb_kernel_t *k, const sb_plugin_t *p, const void *code, size_t len)
{
    if (!k || !sb_kernel_live(k) || k->plugin != p || p->compile_cmd)
        return false;
    json_t *probe = json_stringn(len ? (const char *)code : "", len);
    json_decref(probe);
    return probe != NULL; /* UTF-8: the protocol is JSON */
}

static void
k_prog_text(k_prog_t *g, int fd, const char *p, size_t n)
{
    if (n && g->cb.on_text)
        g->cb.on_text(g->ud, fd, p, n);
}

static void
k_prog_event(void *ud, sb_kernel_ev_t kind, json_t *ev)
{
    k_prog_t *g = ud;
    if (kind == SB_KEV_STDOUT || kind == SB_KEV_STDERR) {
        json_t *t = json_object_get(ev, "text");
        if (json_is_string(t))
            k_prog_text(g, kind == SB_KEV_STDOUT ? 1 : 2, json_string_value(t),
                        json_string_length(t));
        return;
    }
    if (kind == SB_KEV_RESULT) {
        /* a figure the code showed comes back; a trailing expression's value does not */
        json_t *png = json_object_get(json_object_get(ev, "data"), "image/png");
        if (json_is_string(png) && !json_is_true(json_object_get(ev, "is_main_result")) &&
            g->cb.on_figure) {
            size_t n = json_string_length(png);
            uint8_t *data = sb_xmalloc(n / 4 * 3 + 4);
            int len = sb_base64_decode(json_string_value(png), n, data, n / 4 * 3 + 4);
            if (len >= 0)
                g->cb.on_figure(g->ud, data, (size_t)len);
            free(data);
        }
        return;
    }
    /* error: what an uncaught exception does to a script */
    const char *name = json_string_value(json_object_get(ev, "name"));
    const char *value = json_string_value(json_object_get(ev, "value"));
    g->errored = true;
    g->exit_code = 1;
    if (name && (!strcmp(name, "ExitCode") || !strcmp(name, "SystemExit")) && value) {
        char *end;
        long v = strtol(value, &end, 10);
        if (*value && !*end) {
            g->exit_code = (int)(v & 0xff);
            return;
        }
        if (!strcmp(name, "SystemExit")) { /* sys.exit("message"): on stderr, status 1 */
            k_prog_text(g, 2, value, strlen(value));
            k_prog_text(g, 2, "\n", 1);
            return;
        }
    }
    json_t *tb = json_object_get(ev, "traceback"), *line;
    size_t i;
    if (json_is_array(tb) && json_array_size(tb)) {
        json_array_foreach(tb, i, line)
            if (json_is_string(line)) {
                k_prog_text(g, 2, json_string_value(line), json_string_length(line));
                k_prog_text(g, 2, "\n", 1);
            }
    } else {
        char buf[600];
        int n = snprintf(buf, sizeof buf, "%s: %s\n", name ? name : "Error", value ? value : "");
        k_prog_text(g, 2, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
    }
}

static void
k_prog_end(void *ud, const sb_kernel_end_t *e)
{
    k_prog_t *g = ud;
    sb_run_result_t res = {.exit_code = -1, .execution_time_ms = e->duration_us / 1000};
    sb_cgroup_stats_t st;
    if (sb_sandbox_alive(g->k->sb) && sb_sandbox_stats(g->k->sb, &st) == 0) {
        res.cpu_time_ms = st.cpu_usage_ns > g->cpu0_ns ? (st.cpu_usage_ns - g->cpu0_ns) / 1000000 : 0;
        res.memory_peak_bytes = st.memory_peak;
    }
    if (e->err == 0) {
        json_t *ec = json_object_get(e->reply, "exit_code"); /* bash: the cell's last status */
        res.status = SB_RUN_EXITED;
        res.exit_code = json_is_integer(ec) ? (int)(json_integer_value(ec) & 0xff)
                        : g->errored         ? g->exit_code
                                             : 0;
        if (!strcmp(e->status, "output_limit")) {
            res.status = SB_RUN_OUTPUT_LIMIT;
            res.exit_code = -1;
            res.out_truncated = true;
        }
    } else if (e->err == SB_ETIMEDOUT) {
        res.status = SB_RUN_TIMEOUT;
    } else if (e->kres && e->err == SB_EIO) {
        /* the kernel process itself ended (os._exit, process.exit, a crash, OOM): as if the
         * script's process had */
        res.status = e->kres->status;
        res.exit_code = e->kres->exit_code;
        res.signal = e->kres->signal;
    } else {
        res.status = SB_RUN_KILLED;
    }
    g->cb.on_done(g->ud, &res);
    free(g);
}

int
sb_kernel_run_program(sb_kernel_t *k, const void *code, size_t len, uint64_t timeout_ms,
                      uint64_t output_max, const sb_kernel_prog_cb_t *cb, void *ud)
{
    json_t *c = json_stringn(len ? (const char *)code : "", len);
    if (!c)
        return SB_EINVAL;
    if (!sb_kernel_live(k)) {
        json_decref(c);
        return SB_ECLOSED;
    }
    k_prog_t *g = sb_xcalloc(1, sizeof *g);
    g->k = k;
    g->cb = *cb;
    g->ud = ud;
    sb_cgroup_stats_t st;
    sb_sandbox_reset_peak(k->sb);
    if (sb_sandbox_stats(k->sb, &st) == 0)
        g->cpu0_ns = st.cpu_usage_ns;
    static const sb_kernel_cb_t kcb = {k_prog_event, k_prog_end};
    sb_kernel_submit(k, json_pack("{s:s,s:o}", "type", "execute", "code", c), timeout_ms,
                     output_max, &kcb, g);
    return 0;
}
