/*
 * test_kernels_exec.c: warm kernels through the executor actor, with real sandboxes and the
 * real plugins/{python,javascript,bash}/kernel.*.  A test client actor sends KERNEL_EXEC /
 * KERNEL_INTERRUPT / KERNEL_CONTEXT and one-shot RUNs on an in-process bus; a fake monitor
 * counts MON_EXEC.  Covered: state persists across executes, trailing expression result,
 * streamed stdout/stderr order, exception -> error event, interrupt stops a busy loop and keeps
 * variables, a crashed kernel (os._exit) -> clear error and a fresh kernel next time, a
 * timed-out kernel likewise, contexts isolated / listed / restarted / deleted, matplotlib PNG
 * results, javascript and bash kernels, and one-shot RUNs in a warm sandbox going through its
 * kernel (RESULT kernel=true, exit code 1 + traceback on an exception, figures as artifacts)
 * while a RUN with stdin still goes through run_cmd.
 *
 * Every wait is on a reply with a deadline; nothing sleeps.
 */
#include "actors/executor/executor.h"
#include "core/actor.h"
#include "core/bus.h"
#include "core/config.h"
#include "base/err.h"
#include "protocols/mp.h"
#include "protocols/msgs.h"
#include "test.h"

#include <dirent.h>
#include <msgpack.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "xharness.h"


/* ---- kernel helpers ------------------------------------------------------------------------ */

#include <jansson.h>

static xh_call_t *
kexec_start(const char *sbx, const char *lang, const char *ctx, const char *code,
            uint64_t timeout_ms)
{
    sb_kernel_exec_t req = {.sandbox = sb_str(sbx), .language = sb_str(lang ? lang : ""),
                            .context_id = sb_str(ctx ? ctx : ""), .code = sb_str(code),
                            .timeout_ms = timeout_ms};
    return xh_call_start(SB_MSG_KERNEL_EXEC, xh_enc(&sb_kernel_exec_def, &req), 60000);
}

static xh_call_t *
kexec(const char *sbx, const char *lang, const char *ctx, const char *code)
{
    xh_call_t *c = kexec_start(sbx, lang, ctx, code, 0);
    xh_call_wait_n(c, 0, 60000);
    return c;
}

/* The KERNEL_DONE that ended c. */
static sb_kernel_done_t
kdone(xh_call_t *c)
{
    sb_kernel_done_t d;
    xh_reply_t *r = xh_last(c);
    if (r->status != 0 || r->type != SB_MSG_KERNEL_DONE) {
        sb_msg_t m = xh_as_msg(r);
        sb_error_t e;
        if (r->status && sb_error_decode(&m, &e) == 0)
            fprintf(stderr, "error reply %d: %.*s\n", r->status, (int)e.message.len,
                    e.message.ptr);
    }
    CHECK_EQ(r->status, 0);
    CHECK_EQ(r->type, SB_MSG_KERNEL_DONE);
    CHECK(r->flags & SB_MF_FINAL);
    sb_msg_t m = xh_as_msg(r);
    CHECK(sb_kernel_done_decode(&m, &d) == 0);
    return d;
}

static int
done_is(xh_call_t *c, const char *status)
{
    sb_kernel_done_t d = kdone(c);
    if (!sb_str_eq(d.status, status)) {
        fprintf(stderr, "done status %.*s (want %s): %.*s\n", (int)d.status.len, d.status.ptr,
                status, (int)d.error.len, d.error.ptr);
        return 0;
    }
    return 1;
}

/* Text of all the events of kind ("stdout", "stderr") in order. */
static char *
ktext(xh_call_t *c, const char *kind)
{
    static char buf[4][65536];
    static int slot;
    char *out = buf[slot++ & 3];
    size_t n = 0;
    out[0] = 0;
    for (size_t i = 0; i < c->n; i++) {
        sb_kernel_event_t ev;
        sb_msg_t m = xh_as_msg(&c->r[i]);
        if (c->r[i].type != SB_MSG_KERNEL_EVENT || sb_kernel_event_decode(&m, &ev) != 0 ||
            !sb_str_eq(ev.kind, kind))
            continue;
        size_t k = ev.data.len < sizeof buf[0] - 1 - n ? ev.data.len : sizeof buf[0] - 1 - n;
        memcpy(out + n, ev.data.ptr, k);
        n += k;
        out[n] = 0;
    }
    return out;
}

/* The nth (0-based) event of kind as JSON (result, error), or NULL. */
static json_t *
kjson(xh_call_t *c, const char *kind, int nth)
{
    for (size_t i = 0; i < c->n; i++) {
        sb_kernel_event_t ev;
        sb_msg_t m = xh_as_msg(&c->r[i]);
        if (c->r[i].type != SB_MSG_KERNEL_EVENT || sb_kernel_event_decode(&m, &ev) != 0 ||
            !sb_str_eq(ev.kind, kind) || nth-- > 0)
            continue;
        return json_loadb(ev.data.ptr, ev.data.len, 0, NULL);
    }
    return NULL;
}

/* The text/plain of the main result, or "" */
static const char *
kmain(xh_call_t *c)
{
    static char out[4096];
    out[0] = 0;
    for (int i = 0;; i++) {
        json_t *r = kjson(c, "result", i);
        if (!r)
            break;
        if (json_is_true(json_object_get(r, "is_main_result")))
            snprintf(out, sizeof out, "%s",
                     json_string_value(json_object_get(json_object_get(r, "data"), "text/plain")));
        json_decref(r);
    }
    return out;
}

static const char *
kerr_name(xh_call_t *c)
{
    static char out[128];
    json_t *e = kjson(c, "error", 0);
    snprintf(out, sizeof out, "%s", e ? json_string_value(json_object_get(e, "name")) : "");
    json_decref(e);
    return out;
}

/* A KERNEL_CONTEXT call; returns the status (0 or the error) and the reply's context id. */
static int
kctx(const char *sbx, const char *op, const char *ctx, const char *lang, char *id_out,
     json_t **list)
{
    sb_kernel_context_t req = {.sandbox = sb_str(sbx), .op = sb_str(op),
                               .context_id = sb_str(ctx ? ctx : ""),
                               .language = sb_str(lang ? lang : "")};
    xh_call_t *c = xh_call(SB_MSG_KERNEL_CONTEXT, xh_enc(&sb_kernel_context_def, &req), 30000);
    int st = xh_last(c)->status;
    if (st == 0) {
        CHECK_EQ(xh_last(c)->type, SB_MSG_KERNEL_CONTEXT_REPLY);
        sb_msg_t m = xh_as_msg(xh_last(c));
        sb_kernel_context_reply_t r;
        CHECK(sb_kernel_context_reply_decode(&m, &r) == 0);
        if (id_out)
            sb_str_copy(id_out, 130, r.context_id);
        if (list) {
            *list = json_array();
            sb_mp_reader_t rd;
            uint32_t n, two;
            sb_mp_reader_init(&rd, r.contexts.ptr, r.contexts.len);
            CHECK(sb_mp_read_array(&rd, &n) == 0);
            for (uint32_t i = 0; i < n; i++) {
                sb_str_t id, lang2;
                CHECK(sb_mp_read_array(&rd, &two) == 0 && two == 2);
                CHECK(sb_mp_read_str(&rd, &id) == 0 && sb_mp_read_str(&rd, &lang2) == 0);
                json_array_append_new(*list, json_pack("{s:s%,s:s%}", "id", id.ptr,
                                                       (size_t)id.len, "language", lang2.ptr,
                                                       (size_t)lang2.len));
            }
        }
    }
    xh_call_free(c);
    return st;
}

static int
list_has(json_t *list, const char *id, const char *lang)
{
    size_t i;
    json_t *e;
    json_array_foreach(list, i, e)
        if (!strcmp(json_string_value(json_object_get(e, "id")), id) &&
            !strcmp(json_string_value(json_object_get(e, "language")), lang))
            return 1;
    return 0;
}

static int
mon_exec_at_least(void *arg)
{
    return xh_rec.mon_exec >= *(int *)arg;
}

/* ---- tests -------------------------------------------------------------------------------- */

static void
test_python_state(void)
{
    char *id = xh_create("python");
    xh_call_t *c = kexec(id, NULL, NULL, "x = 41");
    CHECK(done_is(c, "ok"));
    CHECK_EQ(kdone(c).execution_count, 1);
    xh_call_free(c);
    c = kexec(id, NULL, NULL, "x + 1");
    CHECK(done_is(c, "ok"));
    CHECK(!strcmp(kmain(c), "42"));
    CHECK_EQ(kdone(c).execution_count, 2);
    CHECK(sb_str_eq(kdone(c).language, "python"));
    xh_call_free(c);
    sb_test_ok("python: state persists across KERNEL_EXEC; trailing expression is the main result");

    /* streamed order: stdout / stderr / stdout arrive as three events in that order */
    c = kexec(id, "py", NULL,
              "import sys\nprint('a')\nprint('b', file=sys.stderr)\nprint('c')\n"
              "for i in range(200): print(i)");
    CHECK(done_is(c, "ok"));
    int seq = 0;
    for (size_t i = 0; i + 1 < c->n; i++) {
        sb_kernel_event_t ev;
        sb_msg_t m = xh_as_msg(&c->r[i]);
        CHECK_EQ(c->r[i].type, SB_MSG_KERNEL_EVENT);
        CHECK(c->r[i].flags & SB_MF_STREAM);
        CHECK(sb_kernel_event_decode(&m, &ev) == 0);
        if (seq == 0 && sb_str_eq(ev.kind, "stdout") && ev.data.len >= 1 &&
            ev.data.ptr[0] == 'a')
            seq = 1;
        else if (seq == 1 && sb_str_eq(ev.kind, "stderr") && ev.data.ptr[0] == 'b')
            seq = 2;
        else if (seq == 2 && sb_str_eq(ev.kind, "stdout") && ev.data.ptr[0] == 'c')
            seq = 3;
    }
    CHECK_EQ(seq, 3);
    CHECK(!strncmp(ktext(c, "stdout"), "a\nc\n0\n1\n2\n", 10));
    CHECK(strstr(ktext(c, "stdout"), "\n199\n") != NULL);
    CHECK(!strcmp(ktext(c, "stderr"), "b\n"));
    CHECK(c->n <= 410); /* never more than one event per write (coalesced when they queue) */
    xh_call_free(c);
    sb_test_ok("python: stdout/stderr streamed in order and coalesced");

    c = kexec(id, NULL, NULL, "def f():\n    return 1/0\nf()");
    CHECK(done_is(c, "error"));
    json_t *e = kjson(c, "error", 0);
    CHECK(e != NULL);
    CHECK(!strcmp(json_string_value(json_object_get(e, "name")), "ZeroDivisionError"));
    CHECK(!strcmp(json_string_value(json_object_get(e, "value")), "division by zero"));
    CHECK(json_array_size(json_object_get(e, "traceback")) >= 2);
    json_decref(e);
    xh_call_free(c);
    sb_test_ok("python: exception -> error event {name, value, traceback}, done status error");

    /* interrupt: a busy loop stops, the variables stay */
    c = kexec_start(id, NULL, NULL, "print('spinning', flush=True)\nwhile True:\n    pass", 0);
    xh_call_wait_n(c, 1, 30000); /* its first output: the loop runs */
    CHECK_EQ(c->r[0].type, SB_MSG_KERNEL_EVENT);
    sb_kernel_interrupt_t ir = {.sandbox = sb_str(id), .language = SB_STR("python")};
    xh_call_t *ic = xh_call(SB_MSG_KERNEL_INTERRUPT, xh_enc(&sb_kernel_interrupt_def, &ir), 10000);
    CHECK_EQ(xh_last(ic)->status, 0);
    CHECK_EQ(xh_last(ic)->type, SB_MSG_EXEC_ACK);
    xh_call_free(ic);
    xh_call_wait_n(c, 0, 20000);
    CHECK(done_is(c, "error"));
    CHECK(!strcmp(kerr_name(c), "KeyboardInterrupt"));
    xh_call_free(c);
    c = kexec(id, NULL, NULL, "x");
    CHECK(!strcmp(kmain(c), "41"));
    xh_call_free(c);
    sb_test_ok("python: KERNEL_INTERRUPT stops `while True` (KeyboardInterrupt), x survives");

    /* crash: the caller hears it clearly; the next execute gets a fresh kernel */
    c = kexec(id, NULL, NULL, "print('bye', flush=True)\nimport os\nos._exit(1)");
    sb_kernel_done_t d = kdone(c);
    CHECK(sb_str_eq(d.status, "crashed"));
    CHECK(d.error.len > 0 && memmem(d.error.ptr, d.error.len, "exited (status 1)", 17));
    CHECK(memmem(d.error.ptr, d.error.len, "fresh kernel", 12) != NULL);
    CHECK(!strcmp(ktext(c, "stdout"), "bye\n"));
    xh_call_free(c);
    c = kexec(id, NULL, NULL, "x");
    CHECK(done_is(c, "error"));
    CHECK(!strcmp(kerr_name(c), "NameError")); /* state is gone: a fresh kernel */
    CHECK_EQ(kdone(c).execution_count, 1);
    xh_call_free(c);
    c = kexec(id, NULL, NULL, "6 * 7");
    CHECK(!strcmp(kmain(c), "42"));
    xh_call_free(c);
    sb_test_ok("python: os._exit(1) -> done status crashed with a clear error; next exec runs in a "
               "fresh kernel");

    /* timeout: killed, clear error, replaced */
    c = kexec(id, NULL, NULL, "y = 5");
    xh_call_free(c);
    uint64_t t0 = uv_hrtime();
    c = kexec_start(id, NULL, NULL, "while True:\n    pass", 700);
    xh_call_wait_n(c, 0, 20000);
    d = kdone(c);
    CHECK(sb_str_eq(d.status, "timeout"));
    CHECK(memmem(d.error.ptr, d.error.len, "700 ms", 6) != NULL);
    CHECK((uv_hrtime() - t0) / 1000000 < 10000);
    xh_call_free(c);
    c = kexec(id, NULL, NULL, "'y' in globals()");
    CHECK(!strcmp(kmain(c), "False"));
    xh_call_free(c);
    sb_test_ok("python: a cell past its timeout -> done status timeout; the kernel is replaced");

    /* matplotlib: a PNG result */
    c = kexec(id, NULL, NULL,
              "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [1, 4, 9])\nplt.show()");
    CHECK(done_is(c, "ok"));
    json_t *r = kjson(c, "result", 0);
    CHECK(r != NULL);
    const char *png = json_string_value(json_object_get(json_object_get(r, "data"), "image/png"));
    CHECK(png && !strncmp(png, "iVBORw0KGgo", 11));
    CHECK(!json_is_true(json_object_get(r, "is_main_result")));
    json_decref(r);
    xh_call_free(c);
    sb_test_ok("python: matplotlib figure -> image/png result");

    CHECK_EQ(xh_destroy(id), 0);
    free(id);
}

static void
test_contexts(void)
{
    char *id = xh_create("python");
    char ctx[130], ctx2[130];
    json_t *list;
    CHECK_EQ(kctx(id, "list", NULL, NULL, NULL, &list), 0);
    CHECK(list_has(list, "default", "python"));
    json_decref(list);
    CHECK_EQ(kctx(id, "create", NULL, "python", ctx, NULL), 0);
    CHECK(!strncmp(ctx, "ctx-", 4) && strlen(ctx) == 20);
    CHECK_EQ(kctx(id, "create", "mine", NULL, ctx2, NULL), 0);
    CHECK(!strcmp(ctx2, "mine"));
    CHECK_EQ(kctx(id, "create", "mine", NULL, NULL, NULL), SB_EEXIST);
    CHECK_EQ(kctx(id, "create", "../x", NULL, NULL, NULL), SB_EINVAL);
    xh_call_t *c = kexec(id, NULL, ctx, "y = 1");
    CHECK(done_is(c, "ok"));
    xh_call_free(c);
    c = kexec(id, NULL, NULL, "y");
    CHECK(!strcmp(kerr_name(c), "NameError"));
    xh_call_free(c);
    c = kexec(id, NULL, "mine", "y");
    CHECK(!strcmp(kerr_name(c), "NameError"));
    xh_call_free(c);
    c = kexec(id, NULL, ctx, "y + 1");
    CHECK(!strcmp(kmain(c), "2"));
    CHECK(sb_str_eq(kdone(c).context_id, ctx));
    xh_call_free(c);
    sb_test_ok("contexts: created (generated and given ids), isolated namespaces");

    /* a javascript context in the same sandbox: its own kernel */
    char js[130];
    CHECK_EQ(kctx(id, "create", NULL, "javascript", js, NULL), 0);
    c = kexec(id, NULL, js, "var z = 20; z * 2");
    CHECK(!strcmp(kmain(c), "40"));
    CHECK(sb_str_eq(kdone(c).language, "javascript"));
    xh_call_free(c);
    c = kexec(id, "python", js, "1");
    CHECK_EQ(xh_last(c)->status, SB_EINVAL); /* a javascript context named with python */
    xh_call_free(c);
    CHECK_EQ(kctx(id, "list", NULL, NULL, NULL, &list), 0);
    CHECK(list_has(list, ctx, "python") && list_has(list, "mine", "python"));
    CHECK(list_has(list, js, "javascript") && list_has(list, "default", "javascript"));
    CHECK(list_has(list, "default", "python"));
    CHECK_EQ(json_array_size(list), 5);
    json_decref(list);
    sb_test_ok("contexts: per language kernels in one sandbox; list names each with its language");

    CHECK_EQ(kctx(id, "restart", ctx, NULL, NULL, NULL), 0);
    c = kexec(id, NULL, ctx, "y");
    CHECK(!strcmp(kerr_name(c), "NameError"));
    CHECK_EQ(kdone(c).execution_count, 1);
    xh_call_free(c);
    CHECK_EQ(kctx(id, "delete", ctx, NULL, NULL, NULL), 0);
    c = kexec(id, NULL, ctx, "1");
    CHECK_EQ(xh_last(c)->status, SB_ENOTFOUND);
    xh_call_free(c);
    CHECK_EQ(kctx(id, "delete", ctx, NULL, NULL, NULL), SB_ENOTFOUND);
    CHECK_EQ(kctx(id, "restart", "nope", NULL, NULL, NULL), SB_ENOTFOUND);
    CHECK_EQ(kctx(id, "frobnicate", "mine", NULL, NULL, NULL), SB_EINVAL);
    /* restart of the default context clears it too */
    c = kexec(id, NULL, NULL, "w = 3");
    xh_call_free(c);
    CHECK_EQ(kctx(id, "restart", "default", "python", NULL, NULL), 0);
    c = kexec(id, NULL, NULL, "w");
    CHECK(!strcmp(kerr_name(c), "NameError"));
    xh_call_free(c);
    sb_test_ok("contexts: restart clears state (count back to 1), delete -> later use ENOTFOUND");

    /* a crash drops the crashed kernel's contexts */
    c = kexec(id, NULL, "mine", "import os; os._exit(3)");
    CHECK(done_is(c, "crashed"));
    xh_call_free(c);
    c = kexec(id, NULL, "mine", "1");
    CHECK_EQ(xh_last(c)->status, SB_ENOTFOUND);
    xh_call_free(c);
    sb_test_ok("contexts: a crashed kernel's contexts are gone (ENOTFOUND), not silently empty");
    CHECK_EQ(xh_destroy(id), 0);
    free(id);
}

static void
test_js_bash(void)
{
    char *id = xh_create("javascript");
    xh_call_t *c = kexec(id, NULL, NULL, "const a = 41;");
    CHECK(done_is(c, "ok"));
    xh_call_free(c);
    c = kexec(id, NULL, NULL, "console.log('hi'); a + 1");
    CHECK(!strcmp(kmain(c), "42"));
    CHECK(!strcmp(ktext(c, "stdout"), "hi\n"));
    xh_call_free(c);
    c = kexec(id, NULL, NULL, "null.x");
    CHECK(done_is(c, "error"));
    CHECK(!strcmp(kerr_name(c), "TypeError"));
    xh_call_free(c);
    c = kexec_start(id, NULL, NULL, "console.log('go'); while (true) {}", 0);
    xh_call_wait_n(c, 1, 30000);
    sb_kernel_interrupt_t ir = {.sandbox = sb_str(id)};
    xh_call_t *ic = xh_call(SB_MSG_KERNEL_INTERRUPT, xh_enc(&sb_kernel_interrupt_def, &ir), 10000);
    CHECK_EQ(xh_last(ic)->status, 0);
    xh_call_free(ic);
    xh_call_wait_n(c, 0, 20000);
    CHECK(!strcmp(kerr_name(c), "Interrupted"));
    xh_call_free(c);
    c = kexec(id, NULL, NULL, "a");
    CHECK(!strcmp(kmain(c), "41"));
    xh_call_free(c);
    CHECK_EQ(xh_destroy(id), 0);
    free(id);
    sb_test_ok("javascript: state, console streamed, TypeError, interrupt keeps state");

    id = xh_create("bash");
    c = kexec(id, NULL, NULL, "A=5; cd /tmp");
    CHECK(done_is(c, "ok"));
    xh_call_free(c);
    c = kexec(id, NULL, NULL, "echo $A; pwd; echo err >&2");
    CHECK(!strcmp(ktext(c, "stdout"), "5\n/tmp\n"));
    CHECK(!strcmp(ktext(c, "stderr"), "err\n"));
    xh_call_free(c);
    c = kexec(id, NULL, NULL, "false");
    CHECK(done_is(c, "error"));
    CHECK(!strcmp(kerr_name(c), "ExitCode"));
    xh_call_free(c);
    /* a python kernel beside it, in the bash sandbox */
    c = kexec(id, "python", NULL, "import os; os.getcwd()");
    CHECK(!strcmp(kmain(c), "'/home/user'"));
    xh_call_free(c);
    CHECK_EQ(xh_destroy(id), 0);
    free(id);
    sb_test_ok("bash: variables and cwd persist, stderr, non-zero status -> ExitCode; python "
               "kernel beside it");

    /* no kernel for a runtime without one; unknown sandbox */
    id = xh_create("python");
    c = kexec(id, "c", NULL, "int main(){}");
    CHECK_EQ(xh_last(c)->status, SB_EINVAL);
    xh_call_free(c);
    c = kexec("sbx-0000000000000000", NULL, NULL, "1");
    CHECK_EQ(xh_last(c)->status, SB_ENOTFOUND);
    xh_call_free(c);
    sb_kernel_interrupt_t ir2 = {.sandbox = sb_str(id), .language = SB_STR("bash")};
    ic = xh_call(SB_MSG_KERNEL_INTERRUPT, xh_enc(&sb_kernel_interrupt_def, &ir2), 10000);
    CHECK_EQ(xh_last(ic)->status, SB_ENOTFOUND);
    xh_call_free(ic);
    CHECK_EQ(xh_destroy(id), 0);
    free(id);
    sb_test_ok("refusals: a runtime without a kernel (EINVAL), unknown sandbox, interrupt of a "
               "kernel not started (ENOTFOUND)");
}

static void
test_oneshot_via_kernel(void)
{
    int before = xh_rec.mon_exec;
    char *id = xh_create_warm("python", true);
    sb_run_t req = {.sandbox = sb_str(id), .runtime = SB_STR("python"), .destroy = true,
                    .artifacts_max = 1u << 20,
                    .code = SB_STR("import sys\nprint(sys.argv[0])\nprint('hi')\n1 + 1\n")};
    xh_result_t r;
    xh_result_of(xh_run(&req, 30000), &r);
    CHECK(xh_status_is(&r, "exited"));
    CHECK_EQ(r.res.exit_code, 0);
    CHECK(r.res.kernel);
    CHECK(memmem(r.res.stdout.ptr, r.res.stdout.len, "/tmp/.soulbox/python/kernel.py\nhi\n",
                 34) != NULL);
    CHECK(!memmem(r.res.stdout.ptr, r.res.stdout.len, "2", 1)); /* no echo of the value */
    xh_call_free(r.c);
    int st = xh_destroy(id); /* destroyed after the run already (or being destroyed) */
    CHECK(st == 0 || st == SB_ENOTFOUND);
    free(id);
    sb_test_ok("one-shot RUN in a warm sandbox goes through its kernel: RESULT kernel=true, "
               "output, exit 0, sandbox destroyed");

    id = xh_create_warm("python", true);
    req.sandbox = sb_str(id);
    req.code = SB_STR("print('before')\n1/0\n");
    xh_result_of(xh_run(&req, 30000), &r);
    CHECK(xh_status_is(&r, "exited"));
    CHECK_EQ(r.res.exit_code, 1);
    CHECK(r.res.kernel);
    CHECK(sb_str_eq(r.res.stdout, "before\n"));
    CHECK(memmem(r.res.stderr.ptr, r.res.stderr.len, "Traceback", 9) != NULL);
    CHECK(memmem(r.res.stderr.ptr, r.res.stderr.len, "ZeroDivisionError: division by zero", 35));
    xh_call_free(r.c);
    free(id);

    id = xh_create_warm("python", true);
    req.sandbox = sb_str(id);
    req.code = SB_STR("import sys\nsys.exit(3)\n");
    xh_result_of(xh_run(&req, 30000), &r);
    CHECK_EQ(r.res.exit_code, 3);
    xh_call_free(r.c);
    free(id);

    id = xh_create_warm("python", true);
    req.sandbox = sb_str(id);
    req.code = SB_STR("import matplotlib.pyplot as plt\nplt.plot([0, 1], [1, 0])\n"
                      "plt.savefig('sine_wave.png')\nplt.show()\n");
    xh_result_of(xh_run(&req, 30000), &r);
    CHECK(xh_status_is(&r, "exited"));
    CHECK(r.res.kernel);
    {
        sb_mp_reader_t rd;
        uint32_t n, four;
        int saw_fig = 0, saw_file = 0;
        sb_mp_reader_init(&rd, r.res.artifacts.ptr, r.res.artifacts.len);
        CHECK(sb_mp_read_array(&rd, &n) == 0);
        for (uint32_t i = 0; i < n; i++) {
            sb_str_t path, mime, data;
            uint64_t size;
            CHECK(sb_mp_read_array(&rd, &four) == 0 && four == 4);
            CHECK(sb_mp_read_str(&rd, &path) == 0 && sb_mp_read_str(&rd, &mime) == 0 &&
                  sb_mp_read_u64(&rd, &size) == 0 && sb_mp_read_bin(&rd, &data) == 0);
            CHECK(sb_str_eq(mime, "image/png"));
            CHECK(data.len == size && size > 100 && !memcmp(data.ptr, "\x89PNG", 4));
            saw_fig |= sb_str_eq(path, "figure-1.png");
            saw_file |= sb_str_eq(path, "sine_wave.png");
        }
        CHECK(saw_fig && saw_file);
    }
    xh_call_free(r.c);
    free(id);
    sb_test_ok("one-shot via kernel: exception -> exit 1 + traceback on stderr; sys.exit(3) -> 3; "
               "a saved file and a shown figure (figure-1.png) are PNG artifacts");

    /* stdin: run_cmd as before (the kernel model has no stdin) */
    id = xh_create_warm("python", true);
    req.sandbox = sb_str(id);
    req.code = SB_STR("print(input())\n");
    req.stdin = SB_STR("fed\n");
    xh_result_of(xh_run(&req, 30000), &r);
    CHECK(xh_status_is(&r, "exited"));
    CHECK(!r.res.kernel);
    CHECK(sb_str_eq(r.res.stdout, "fed\n"));
    xh_call_free(r.c);
    free(id);
    /* a long-lived sandbox's RUN never touches its kernel */
    id = xh_create("python");
    xh_call_t *c = kexec(id, NULL, NULL, "secret = 1");
    xh_call_free(c);
    sb_run_t plain = {.sandbox = sb_str(id), .runtime = SB_STR("python"),
                      .code = SB_STR("print('secret' in globals())")};
    xh_result_of(xh_run(&plain, 30000), &r);
    CHECK(!r.res.kernel);
    CHECK(sb_str_eq(r.res.stdout, "False\n"));
    xh_call_free(r.c);
    CHECK_EQ(xh_destroy(id), 0);
    free(id);
    int want = before + 5;
    CHECK(xh_rec_wait(mon_exec_at_least, &want, 5000));
    sb_test_ok("run_cmd kept for stdin and for long-lived sandboxes; MON_EXEC for kernel runs");
}

int
main(void)
{
    xh_world_t w;
    xh_start(&w, (const char *const[]){"--executor.max_sandboxes=8", NULL});

    test_python_state();
    test_contexts();
    test_js_bash();
    test_oneshot_via_kernel();

    /* stop with a kernel mid-cell: the caller gets its answer, the executor joins cleanly */
    char *id = xh_create("python");
    xh_call_t *c = kexec_start(id, NULL, NULL, "print('x', flush=True)\nwhile True: pass", 0);
    xh_call_wait_n(c, 1, 30000);
    sb_actor_stop(w.exec, 10000);
    CHECK_EQ(sb_actor_join(w.exec), 0);
    sb_actor_free(w.exec);
    xh_call_wait_n(c, 0, 5000);
    CHECK(xh_last(c)->status != 0 || xh_last(c)->type == SB_MSG_KERNEL_DONE);
    xh_call_free(c);
    free(id);
    sb_test_ok("stop with a kernel mid-cell: join 0, the execution answered");

    xh_stop(&w);
    return sb_test_done();
}
