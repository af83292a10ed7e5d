/*
 * executor.c: the executor actor -- the sandboxes of this host on the bus (contract:
 * protocols/executor.def).  This file holds the actor's life (init, stop, fini), the
 * message dispatch, the sandbox table (SBX_CREATE, SBX_DESTROY; a warm sandbox starts its
 * runtime's kernel at once, exec_kernel.c) and the 1 s sampler (MON_SANDBOX per sandbox,
 * NODE_CAPACITY); the other files are listed in exec.h.
 *
 * Invariants:
 *  - the table holds at most executor.max_sandboxes entries, one-shot sandboxes included;
 *    an id is "sbx-" + 16 random hex digits, never reused within a process in practice;
 *  - an entry is freed only in the engine's destroy callback (or when the engine failed the
 *    creation), so a sandbox is never forgotten while a process of it may live;
 *  - on stop every sandbox is destroyed and the actor's handles are closed; the runtime's
 *    quiescence check then waits for the engine's handles, i.e. for every destroy to finish;
 *  - every sandbox's end is reported to the monitor (MON_SANDBOX ended) and logged.
 * A sandbox whose soulbox-init died on its own (found by the sampler) is destroyed and
 * reported "lost".
 */
#include "executor.h"

#include "core/bus.h"
#include "base/err.h"
#include "base/log.h"
#include "exec.h"
#include "base/clock.h"
#include "base/alloc.h"
#include "base/id.h"
#include "protocols/mp.h"
#include "protocols/mpw.h"
#include "sandbox/env.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/statfs.h>
#include <unistd.h>

#define X_TICK_MS 1000

/* ---- helpers ----------------------------------------------------------------------------- */

uint64_t
sb__x_clamp(uint64_t v, uint64_t def, uint64_t max)
{
    if (v == 0)
        v = def;
    return max && v > max ? max : v;
}

sb__xsbx_t *
sb__x_find(sb__xstate_t *x, sb_str_t id)
{
    for (sb__xsbx_t *s = x->sbxs; s; s = s->next)
        if (sb_str_eq(id, s->id))
            return s;
    return NULL;
}

sb__xsbx_t *
sb__x_ready_sbx(sb__xstate_t *x, const sb_replyto_t *to, sb_str_t id)
{
    sb__xsbx_t *s = sb__x_find(x, id);
    if (s && s->state == SB__XSBX_READY)
        return s;
    sb_replyto_t t = *to;
    sb_actor_reply_error(x->a, &t, s && s->state == SB__XSBX_CREATING ? SB_EUNAVAILABLE
                                                                      : SB_ENOTFOUND,
                         "no sandbox '%.*s' on this node", (int)(id.len > 64 ? 64 : id.len),
                         id.ptr);
    return NULL;
}

static void
x_mon_send(sb__xstate_t *x, uint16_t type, const sb_msgdef_t *d, const void *body)
{
    sb_buf_t *b = sb_actor_scratch(x->a);
    if (sb_codec_encode(d, body, b) != 0)
        return;
    int rc = sb_actor_send(x->a, sb_addr(SB_ACTOR_MONITOR), type, 0, 0, 0, b->data, b->len);
    if (rc < 0 && rc != SB_ENOROUTE)
        sb_log_debug("SB-EXEC-MON-DROP", "monitor report dropped: %s", sb_strerror(rc));
}

void
sb__x_mon_exec(sb__xstate_t *x, const char *runtime, const char *status, uint64_t duration_us,
               uint64_t memory_peak, uint64_t cpu_us)
{
    sb_mon_exec_t m = {.runtime = sb_str(runtime), .status = sb_str(status),
                       .duration_us = duration_us, .memory_peak = memory_peak, .cpu_us = cpu_us};
    x_mon_send(x, SB_MSG_MON_EXEC, &sb_mon_exec_def, &m);
}

/* Disk in use under /home/user, seen through init's root (the tmpfs lives in the sandbox's
 * mount namespace; root on the host may look through /proc/<pid>/root). */
static uint64_t
x_disk_used(sb__xsbx_t *s)
{
    char p[64];
    struct statfs st;
    snprintf(p, sizeof p, "/proc/%d/root/home/user", (int)sb_sandbox_init_pid(s->sb));
    if (statfs(p, &st) != 0)
        return 0;
    return (uint64_t)(st.f_blocks - st.f_bfree) * (uint64_t)st.f_bsize;
}

static void
x_sample(sb__xsbx_t *s, bool ended)
{
    sb__xstate_t *x = s->x;
    sb_mon_sandbox_t m = {.id = sb_str(s->id), .runtime = sb_str(s->runtime), .ended = ended,
                          .node = sb_str(sb_bus_node_name(sb_actor_bus(x->a)))};
    sb_cgroup_stats_t st;
    if (!ended && s->sb && sb_sandbox_stats(s->sb, &st) == 0) {
        m.cpu_us = st.cpu_usage_ns / 1000;
        m.memory = st.memory_current;
        m.memory_peak = st.memory_peak;
        m.pids = st.pids_current;
        m.disk = x_disk_used(s);
    }
    x_mon_send(x, SB_MSG_MON_SANDBOX, &sb_mon_sandbox_def, &m);
}

static uint64_t
x_mem_available(void)
{
    FILE *f = fopen("/proc/meminfo", "re");
    char line[256];
    uint64_t kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %lu kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb * 1024;
}

void
sb__x_send_capacity(sb__xstate_t *x, bool force)
{
    uint64_t sig = (uint64_t)x->nsbx << 32 | (uint64_t)x->running;
    if (!force && sig == x->last_cap_sig)
        return;
    x->last_cap_sig = sig;
    sb_node_capacity_t c = {
        .node = sb_str(sb_bus_node_name(sb_actor_bus(x->a))),
        .sandboxes = x->nsbx,
        .max_sandboxes = (uint64_t)x->cfg->executor_max_sandboxes,
        .running = x->running,
        .memory_free = x_mem_available(),
        .runtimes = {x->runtimes_raw, (uint32_t)x->runtimes_len},
    };
    sb_buf_t *b = sb_actor_scratch(x->a);
    if (sb_node_capacity_encode(&c, b) != 0)
        return;
    int rc = sb_actor_send(x->a, sb_addr(SB_ACTOR_SCHEDULER), SB_MSG_NODE_CAPACITY, 0, 0, 0,
                           b->data, b->len);
    if (rc < 0 && rc != SB_ENOROUTE)
        sb_log_debug("SB-EXEC-CAP-DROP", "capacity report dropped: %s", sb_strerror(rc));
}

/* A runtime is offered when the program its commands start exists on this host: sandboxes
 * bind the host's /usr, so what the host has, a sandbox has.  Cheaper than running every
 * version_cmd at start (which plugins check does). */
static bool
x_runtime_available(const sb_plugin_t *p)
{
    char *const *cmd = p->compile_cmd ? p->compile_cmd : p->run_cmd;
    if (!cmd || !cmd[0] || strchr(cmd[0], '{'))
        return true;
    if (cmd[0][0] == '/')
        return access(cmd[0], X_OK) == 0;
    static const char *const path[] = {"/usr/local/bin", "/usr/bin", "/bin", NULL};
    for (int i = 0; path[i]; i++) {
        char b[512];
        snprintf(b, sizeof b, "%s/%s", path[i], cmd[0]);
        if (access(b, X_OK) == 0)
            return true;
    }
    return false;
}

static void
x_runtimes_build(sb__xstate_t *x)
{
    sb_buf_t b;
    size_t n = 0, cnt = x->plugins ? sb_plugins_count(x->plugins) : 0;
    bool ok[256] = {0};
    for (size_t i = 0; i < cnt && i < 256; i++)
        if ((ok[i] = x_runtime_available(sb_plugins_at(x->plugins, i))))
            n++;
    sb_buf_init(&b, 65536);
    sb_mpw_array(&b, (uint32_t)n);
    for (size_t i = 0; i < cnt && i < 256; i++)
        if (ok[i])
            sb_mpw_cstr(&b, sb_plugins_at(x->plugins, i)->name);
    x->runtimes_raw = (char *)sb_buf_steal(&b, &x->runtimes_len);
}

/* ---- the sandbox table --------------------------------------------------------------------- */

static void
x_sbx_free(sb__xsbx_t *s)
{
    sb__xstate_t *x = s->x;
    for (sb__xsbx_t **pp = &x->sbxs; *pp; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            x->nsbx--;
            break;
        }
    sb_strv_free(s->env);
    free(s->destroy_to);
    free(s);
    sb__x_send_capacity(x, false);
}

static void
x_sbx_destroyed(void *ud)
{
    sb__xsbx_t *s = ud;
    sb__xstate_t *x = s->x;
    x->engine_live--;
    SB_ASSERT(s->nkernels == 0 && s->waiting == NULL);
    sb_exec_ack_t ack = {.id = sb_str(s->id)};
    for (size_t i = 0; i < s->ndestroy; i++) {
        sb_buf_t *b = sb_actor_scratch(x->a);
        if (sb_exec_ack_encode(&ack, b) == 0)
            (void)sb_actor_reply(x->a, &s->destroy_to[i], SB_MSG_EXEC_ACK, 0, b->data, b->len);
        /* best effort: the sandbox is gone either way; a requester gone has timed out */
    }
    x_sample(s, true);
    x_sbx_free(s);
}

void
sb__x_sbx_destroy(sb__xsbx_t *s, const char *reason)
{
    if (s->state == SB__XSBX_DESTROYING)
        return;
    bool creating = s->state == SB__XSBX_CREATING;
    s->state = SB__XSBX_DESTROYING;
    sb_log_debug("SB-EXEC-SBX-DESTROY", "sandbox %s destroyed: %s", s->id, reason);
    sb__x_kerns_kill(s);
    /* Still being created: x_sbx_created destroys it once the engine hands it over. */
    if (!creating)
        sb_sandbox_destroy(s->sb, x_sbx_destroyed, s);
}

void
sb__x_sbx_wait(sb__xsbx_t *s, sb__xwait_t *w)
{
    w->next = s->waiting;
    s->waiting = w;
}

/* x_sbx_ready tells every waiter that the creation ended (status 0: the sandbox is READY). */
static void
x_sbx_ready(sb__xsbx_t *s, int status)
{
    sb__xwait_t *w = s->waiting;
    s->waiting = NULL;
    while (w) {
        sb__xwait_t *next = w->next;
        w->ready(w->ud, s, status);
        w = next;
    }
}

static void
x_reply_info(sb__xsbx_t *s)
{
    sb__xstate_t *x = s->x;
    sb_bus_t *bus = sb_actor_bus(x->a);
    sb_sbx_info_t info = {.id = sb_str(s->id), .node = sb_str(sb_bus_node_name(bus)),
                          .node_id = sb_bus_node_id(bus), .runtime = sb_str(s->runtime),
                          .state = SB_STR("running"), .created_ms = s->created_ms};
    sb_buf_t *b = sb_actor_scratch(x->a);
    /* If the requester is gone it has timed out; the gateway's later requests find it. */
    if (sb_sbx_info_encode(&info, b) == 0)
        (void)sb_actor_reply(x->a, &s->create_to, SB_MSG_SBX_INFO, 0, b->data, b->len);
}

static void
x_sbx_created(sb_sandbox_t *sb, int status, void *ud)
{
    sb__xsbx_t *s = ud;
    sb__xstate_t *x = s->x;
    if (status < 0) {
        sb_log_error("SB-EXEC-CREATE-FAIL", "sandbox %s could not be created: %s", s->id,
                     sb_strerror(status));
        if (s->reply_create)
            sb_actor_reply_error(x->a, &s->create_to, SB_EUNAVAILABLE,
                                 "sandbox could not be created: %s", sb_strerror(status));
        s->state = SB__XSBX_DESTROYING;
        x_sbx_ready(s, status);
        x_sample(s, true);
        x_sbx_free(s);
        return;
    }
    x->engine_live++;
    s->sb = sb;
    if (s->state == SB__XSBX_DESTROYING) { /* stop or destroy came during creation */
        if (s->reply_create)
            sb_actor_reply_error(x->a, &s->create_to, SB_ECLOSED, "executor stopping");
        x_sbx_ready(s, SB_ECLOSED);
        sb_sandbox_destroy(sb, x_sbx_destroyed, s);
        return;
    }
    s->state = SB__XSBX_READY;
    /* A warm (pool) sandbox starts its runtime's kernel now, so the one-shot that leases it
     * finds the interpreter up (sandbox/kernel.h, the one-shot route). */
    sb_kernel_t *k;
    if (s->warm && s->plugin && s->plugin->kernel_cmd)
        sb__x_kern_get(s, s->plugin, true, &k);
    if (s->reply_create)
        x_reply_info(s);
    x_sbx_ready(s, 0);
}

int
sb__x_sbx_new(sb__xstate_t *x, const char *runtime, const sb_sandbox_limits_t *lim, bool oneshot,
              sb__xsbx_t **out)
{
    if (x->stopping)
        return SB_ECLOSED;
    if (x->nsbx >= (size_t)x->cfg->executor_max_sandboxes)
        return SB_EUNAVAILABLE;
    sb__xsbx_t *s = sb_xcalloc(1, sizeof *s);
    s->x = x;
    do
        sb_random_id("sbx-", s->id, SB__X_ID_LEN);
    while (sb__x_find(x, sb_str(s->id)));
    snprintf(s->runtime, sizeof s->runtime, "%s", runtime ? runtime : "");
    s->plugin = runtime && *runtime && x->plugins ? sb_plugins_find(x->plugins, runtime) : NULL;
    s->oneshot = oneshot;
    s->created_ms = sb_now_real_ms();
    s->lim = *lim;
    uint64_t maxmem = (uint64_t)x->cfg->executor_max_memory_mb << 20;
    s->lim.memory_bytes = sb__x_clamp(s->lim.memory_bytes,
                                      (uint64_t)x->cfg->executor_default_memory_mb << 20, maxmem);
    s->state = SB__XSBX_CREATING;
    int rc = sb_sandbox_create(x->engine, &s->lim, x_sbx_created, s);
    if (rc < 0) {
        sb_log_error("SB-EXEC-CREATE-FAIL", "cannot create a sandbox: %s", sb_strerror(rc));
        free(s);
        return rc == SB_ELIMIT ? SB_EUNAVAILABLE : rc;
    }
    s->next = x->sbxs;
    x->sbxs = s;
    x->nsbx++;
    sb__x_send_capacity(x, false);
    *out = s;
    return 0;
}

/* ---- messages ------------------------------------------------------------------------------ */

static int
x_on_create(sb__xstate_t *x, const sb_msg_t *m)
{
    sb_sbx_create_t req;
    sb_sandbox_limits_t lim = {0};
    char **env = NULL, rt[64];
    size_t nenv;
    int rc;
    if (sb_sbx_create_decode(m, &req) != 0 || sb__x_limits(req.limits, &lim) != 0 ||
        sb_mp_strv(req.env, 1024, &env, &nenv) != 0)
        return SB_EBADMSG;
    sb_str_copy(rt, sizeof rt, req.runtime);
    if (*rt && x->plugins && !sb_plugins_find(x->plugins, rt)) {
        sb_strv_free(env);
        return SB_EINVAL; /* unknown runtime */
    }
    sb__xsbx_t *s;
    if ((rc = sb__x_sbx_new(x, rt, &lim, false, &s)) < 0) {
        sb_strv_free(env);
        return rc;
    }
    /* The sandbox's environment: the default, its runtime's entries, the request's. */
    if ((rc = sb_env_build(&s->env, NULL, false, s->plugin, (const char *const *)env)) < 0) {
        s->env = NULL;
        sb__x_sbx_destroy(s, "bad environment");
        sb_strv_free(env);
        return rc;
    }
    sb_strv_free(env);
    sb_str_copy(s->owner, sizeof s->owner, req.owner);
    s->warm = req.warm;
    s->reply_create = true;
    s->create_to = sb_replyto(m);
    return 0;
}

static int
x_on_destroy(sb__xstate_t *x, const sb_msg_t *m)
{
    sb_sbx_destroy_t req;
    if (sb_sbx_destroy_decode(m, &req) != 0)
        return SB_EBADMSG;
    sb__xsbx_t *s = sb__x_find(x, req.id);
    if (!s)
        return SB_ENOTFOUND;
    s->destroy_to = sb_xrealloc(s->destroy_to, (s->ndestroy + 1) * sizeof *s->destroy_to);
    s->destroy_to[s->ndestroy++] = sb_replyto(m);
    sb_log_info("SB-EXEC-SBX-DESTROY", "destroying %s (%.*s)", s->id, (int)req.reason.len,
                req.reason.ptr);
    sb__x_sbx_destroy(s, "requested");
    return 0;
}

static int
x_handle(sb_actor_t *a, void *state, const sb_msg_t *m)
{
    sb__xstate_t *x = state;
    (void)a;
    if (x->stopping)
        return SB_ECLOSED;
    switch (m->type) {
    case SB_MSG_SBX_CREATE: return x_on_create(x, m);
    case SB_MSG_SBX_DESTROY: return x_on_destroy(x, m);
    case SB_MSG_RUN: return sb__x_handle_run(x, m);
    case SB_MSG_CMD: return sb__x_handle_cmd(x, m);
    case SB_MSG_PROC_INPUT:
    case SB_MSG_PROC_SIGNAL:
    case SB_MSG_PROC_RESIZE: return sb__x_handle_proc(x, m);
    case SB_MSG_PROC_LIST: return sb__x_handle_ps(x, m);
    case SB_MSG_FILE_OP: return sb__x_handle_file(x, m);
    case SB_MSG_KERNEL_EXEC:
    case SB_MSG_KERNEL_INTERRUPT:
    case SB_MSG_KERNEL_CONTEXT: return sb__x_handle_kernel(x, m);
    default: return SB_EUNKNOWN_TYPE;
    }
}

/* ---- life -------------------------------------------------------------------------------- */

static void
x_on_tick(uv_timer_t *t)
{
    sb__xstate_t *x = t->data;
    for (sb__xsbx_t *s = x->sbxs, *next; s; s = next) {
        next = s->next;
        if (s->state != SB__XSBX_READY)
            continue;
        if (!sb_sandbox_alive(s->sb)) {
            /* init died on its own: runs have ended "lost"; nothing is left to keep */
            sb_log_warn("SB-EXEC-SBX-LOST", "sandbox %s lost its init; destroying it", s->id);
            s->lost = true;
            sb__x_sbx_destroy(s, "lost");
            continue;
        }
        x_sample(s, false);
    }
    sb__x_send_capacity(x, true);
}

static int
x_init(sb_actor_t *a, void *state)
{
    sb__xstate_t *x = state;
    char err[512] = "";
    x->a = a;
    x->cfg = sb_actor_arg(a);
    if (!x->cfg)
        return SB_EINVAL;
    sb_engine_config_t ec = {.state_dir = *x->cfg->executor_state_dir ? x->cfg->executor_state_dir
                                                                        : NULL};
    int rc = sb_engine_new(sb_actor_loop(a), &ec, &x->engine);
    if (rc < 0) {
        sb_log_error("SB-EXEC-ENGINE", "sandbox engine unavailable: %s", sb_strerror(rc));
        return rc;
    }
    if ((rc = sb_plugins_load(sb_plugins_default_dir(), false, false, &x->plugins, err,
                              sizeof err)) < 0) {
        sb_log_warn("SB-EXEC-PLUGINS", "no runtime plugins from %s: %s", sb_plugins_default_dir(),
                    err);
        x->plugins = NULL;
    }
    x_runtimes_build(x);
    uv_timer_init(sb_actor_loop(a), &x->tick);
    uv_check_init(sb_actor_loop(a), &x->flush);
    uv_idle_init(sb_actor_loop(a), &x->retry);
    x->tick.data = x->flush.data = x->retry.data = x;
    x->handles_open = true;
    /* The first tick at once: the scheduler (started before us) learns this node's capacity
     * before the gateway accepts its first request, instead of a second later. */
    uv_timer_start(&x->tick, x_on_tick, 0, X_TICK_MS);
    sb_log_info("SB-EXEC-READY", "executor: %zu runtime(s), at most %lld sandboxes",
                x->plugins ? sb_plugins_count(x->plugins) : (size_t)0,
                (long long)x->cfg->executor_max_sandboxes);
    sb__x_send_capacity(x, true);
    return 0;
}

static void
x_stop(sb_actor_t *a, void *state)
{
    sb__xstate_t *x = state;
    (void)a;
    if (x->stopping)
        return;
    x->stopping = true;
    for (sb__xsbx_t *s = x->sbxs, *next; s; s = next) {
        next = s->next;
        sb__x_sbx_destroy(s, "executor stopping");
    }
    if (x->handles_open) {
        x->handles_open = false;
        uv_close((uv_handle_t *)&x->tick, NULL);
        uv_close((uv_handle_t *)&x->flush, NULL);
        uv_close((uv_handle_t *)&x->retry, NULL);
    }
}

static void
x_fini(sb_actor_t *a, void *state)
{
    sb__xstate_t *x = state;
    (void)a;
    sb__x_out_free_all(x);
    if (x->engine_live == 0 && x->nsbx == 0) {
        sb_engine_free(x->engine);
    } else {
        /* Only when the grace period cut the destroys short; the next start reaps them. */
        sb_log_error("SB-EXEC-LEFTOVER", "%zu sandbox(es) not destroyed at stop; the next "
                     "start reaps them", x->nsbx);
    }
    sb_plugins_free(x->plugins);
    free(x->runtimes_raw);
}

const sb_actor_ops_t sb_executor_actor = {
    .abi = SB_ACTOR_ABI_V1,
    .name = "executor",
    .kind = SB_ACTOR_EXECUTOR,
    .state_size = sizeof(sb__xstate_t),
    .init = x_init,
    .handle = x_handle,
    .stop = x_stop,
    .fini = x_fini,
};
