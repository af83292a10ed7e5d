/*
 * monitor.c: the monitor actor -- metrics and health.
 *
 * Every second it pings each actor kind (liveness: soulbox_actor_up), reads this process's
 * RSS and open fds and the node's CPU and memory from /proc.  Producers report to it one way:
 * the gateway its HTTP counters (MON_HTTP, and riding on METRICS_GET), the executor each
 * finished execution (MON_EXEC) and a per-sandbox sample every second read from the
 * sandbox's cgroup and tmpfs (MON_SANDBOX), the pool its warm sizes (MON_POOL).  It keeps a
 * bounded history per sandbox (the last MON_HISTORY samples, 10 minutes at 1 Hz) and forgets
 * a sandbox MON_SANDBOX_TTL_MS after its last sample.  METRICS_GET returns everything in the
 * Prometheus text format; READY_GET answers whether this deployment can take work.
 *
 * Every table is bounded (MON_MAX_*); a report that would grow one past its bound is counted
 * in soulbox_monitor_dropped_total instead of being stored.
 */
#include "monitor.h"

#include "base/err.h"
#include "base/log.h"
#include "protocols/mp.h"
#include "protocols/msgs.h"
#include "base/alloc.h"
#include "base/clock.h"

#include <dirent.h>
#include <msgpack.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MON_MAX_SERIES 512
#define MON_MAX_SANDBOXES 4096
#define MON_HISTORY 600
#define MON_SANDBOX_TTL_MS 10000
#define MON_TICK_MS 1000

static const double mon_buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                     0.25,  0.5,    1,     2.5,  5,     10,   30, 60};
#define MON_NBUCKETS (sizeof mon_buckets / sizeof mon_buckets[0])

typedef struct {
    char runtime[64], status[32];
    uint64_t count;
} mon_exec_count_t;

typedef struct {
    char runtime[64];
    uint64_t bucket[MON_NBUCKETS];
    uint64_t count;
    double sum;
} mon_hist_t;

typedef struct {
    char route[128];
    int code;
    uint64_t count;
} mon_http_t;

typedef struct {
    char runtime[64], node[128];
    uint64_t warm, max;
} mon_pool_t;

typedef struct {
    uint64_t t_ms, cpu_us, memory, pids, disk;
} mon_sample_t;

typedef struct {
    char id[64], runtime[64], node[128];
    uint64_t last_ms, memory_peak;
    uint32_t head, n;
    mon_sample_t ring[MON_HISTORY];
} mon_sandbox_t;

typedef struct {
    sb_actor_t *actor;
    uv_timer_t tick;
    mon_exec_count_t execs[MON_MAX_SERIES];
    size_t nexecs;
    mon_hist_t hists[MON_MAX_SERIES];
    size_t nhists;
    mon_http_t http[MON_MAX_SERIES];
    size_t nhttp;
    mon_pool_t pools[MON_MAX_SERIES];
    size_t npools;
    mon_sandbox_t *sbx[MON_MAX_SANDBOXES];
    size_t nsbx;
    uint64_t dropped;
    /* liveness: answered in the last round, and the round in flight */
    int up[SB_ACTOR_KINDS];
    int round_ok[SB_ACTOR_KINDS];
    int outstanding;
    uint64_t rounds;
    /* process and node */
    uint64_t rss, fds, mem_total, mem_avail;
    uint64_t cpu_busy_prev, cpu_total_prev;
    double cpu_ratio;
} mon_state_t;

static void
mon_copy(char *dst, size_t cap, sb_str_t s)
{
    if (sb_str_copy(dst, cap, s) != 0) {
        memcpy(dst, s.ptr, cap - 1);
        dst[cap - 1] = 0;
    }
}

/* ---- ingesting reports -------------------------------------------------------------- */

static void
mon_count_exec(mon_state_t *ms, const sb_mon_exec_t *e)
{
    char rt[64], st[32];
    mon_copy(rt, sizeof rt, e->runtime);
    mon_copy(st, sizeof st, e->status);
    mon_exec_count_t *c = NULL;
    for (size_t i = 0; i < ms->nexecs && !c; i++)
        if (!strcmp(ms->execs[i].runtime, rt) && !strcmp(ms->execs[i].status, st))
            c = &ms->execs[i];
    if (!c && ms->nexecs < MON_MAX_SERIES) {
        c = &ms->execs[ms->nexecs++];
        snprintf(c->runtime, sizeof c->runtime, "%s", rt);
        snprintf(c->status, sizeof c->status, "%s", st);
    }
    mon_hist_t *h = NULL;
    for (size_t i = 0; i < ms->nhists && !h; i++)
        if (!strcmp(ms->hists[i].runtime, rt))
            h = &ms->hists[i];
    if (!h && ms->nhists < MON_MAX_SERIES) {
        h = &ms->hists[ms->nhists++];
        snprintf(h->runtime, sizeof h->runtime, "%s", rt);
    }
    if (!c || !h) {
        ms->dropped++;
        return;
    }
    c->count++;
    double secs = (double)e->duration_us / 1e6;
    for (size_t b = 0; b < MON_NBUCKETS; b++)
        if (secs <= mon_buckets[b])
            h->bucket[b]++;
    h->count++;
    h->sum += secs;
}

/* mon_add_http merges a msgpack array of [route, code, count]. */
static int
mon_add_http(mon_state_t *ms, sb_str_t raw)
{
    sb_mp_reader_t r;
    uint32_t n;
    if (raw.len == 0)
        return 0;
    sb_mp_reader_init(&r, raw.ptr, raw.len);
    if (sb_mp_read_array(&r, &n))
        return SB_EBADMSG;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t three;
        sb_str_t route;
        uint64_t code, count;
        char rt[128];
        if (sb_mp_read_array(&r, &three) || three != 3 || sb_mp_read_str(&r, &route) ||
            sb_mp_read_u64(&r, &code) || sb_mp_read_u64(&r, &count) || code > 999)
            return SB_EBADMSG;
        mon_copy(rt, sizeof rt, route);
        mon_http_t *h = NULL;
        for (size_t k = 0; k < ms->nhttp && !h; k++)
            if (ms->http[k].code == (int)code && !strcmp(ms->http[k].route, rt))
                h = &ms->http[k];
        if (!h && ms->nhttp < MON_MAX_SERIES) {
            h = &ms->http[ms->nhttp++];
            snprintf(h->route, sizeof h->route, "%s", rt);
            h->code = (int)code;
        }
        if (!h) {
            ms->dropped++;
            continue;
        }
        h->count += count;
    }
    return 0;
}

static mon_sandbox_t *
mon_find_sandbox(mon_state_t *ms, const char *id, size_t *idx)
{
    for (size_t i = 0; i < ms->nsbx; i++)
        if (!strcmp(ms->sbx[i]->id, id)) {
            if (idx)
                *idx = i;
            return ms->sbx[i];
        }
    return NULL;
}

static void
mon_drop_sandbox(mon_state_t *ms, size_t i)
{
    free(ms->sbx[i]);
    ms->sbx[i] = ms->sbx[--ms->nsbx];
}

static void
mon_add_sample(mon_state_t *ms, const sb_mon_sandbox_t *s)
{
    char id[64];
    size_t idx;
    mon_copy(id, sizeof id, s->id);
    mon_sandbox_t *sb = mon_find_sandbox(ms, id, &idx);
    if (s->ended) {
        if (sb)
            mon_drop_sandbox(ms, idx);
        return;
    }
    if (!sb) {
        if (ms->nsbx >= MON_MAX_SANDBOXES) {
            ms->dropped++;
            return;
        }
        sb = sb_xcalloc(1, sizeof *sb);
        snprintf(sb->id, sizeof sb->id, "%s", id);
        mon_copy(sb->runtime, sizeof sb->runtime, s->runtime);
        mon_copy(sb->node, sizeof sb->node, s->node);
        ms->sbx[ms->nsbx++] = sb;
    }
    uint64_t now = sb_now_real_ms();
    mon_sample_t *smp = &sb->ring[sb->head];
    *smp = (mon_sample_t){now, s->cpu_us, s->memory, s->pids, s->disk};
    sb->head = (sb->head + 1) % MON_HISTORY;
    if (sb->n < MON_HISTORY)
        sb->n++;
    sb->last_ms = now;
    if (s->memory_peak > sb->memory_peak)
        sb->memory_peak = s->memory_peak;
    if (s->memory > sb->memory_peak)
        sb->memory_peak = s->memory;
}

static void
mon_add_pool(mon_state_t *ms, const sb_mon_pool_t *p)
{
    char rt[64], node[128];
    mon_copy(rt, sizeof rt, p->runtime);
    mon_copy(node, sizeof node, p->node);
    mon_pool_t *e = NULL;
    for (size_t i = 0; i < ms->npools && !e; i++)
        if (!strcmp(ms->pools[i].runtime, rt) && !strcmp(ms->pools[i].node, node))
            e = &ms->pools[i];
    if (!e && ms->npools < MON_MAX_SERIES) {
        e = &ms->pools[ms->npools++];
        snprintf(e->runtime, sizeof e->runtime, "%s", rt);
        snprintf(e->node, sizeof e->node, "%s", node);
    }
    if (!e) {
        ms->dropped++;
        return;
    }
    e->warm = p->warm;
    e->max = p->max;
}

/* ---- sampling ------------------------------------------------------------------------- */

static void
mon_read_proc(mon_state_t *ms)
{
    FILE *f;
    unsigned long long size, resident;
    char line[256];

    if ((f = fopen("/proc/self/statm", "r"))) {
        if (fscanf(f, "%llu %llu", &size, &resident) == 2)
            ms->rss = resident * (uint64_t)sysconf(_SC_PAGESIZE);
        fclose(f);
    }
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        uint64_t n = 0;
        struct dirent *e;
        while ((e = readdir(d)))
            n += e->d_name[0] != '.';
        closedir(d);
        ms->fds = n > 0 ? n - 1 : 0; /* minus the directory's own fd */
    }
    if ((f = fopen("/proc/meminfo", "r"))) {
        unsigned long long v;
        while (fgets(line, sizeof line, f)) {
            if (sscanf(line, "MemTotal: %llu kB", &v) == 1)
                ms->mem_total = v * 1024;
            else if (sscanf(line, "MemAvailable: %llu kB", &v) == 1)
                ms->mem_avail = v * 1024;
        }
        fclose(f);
    }
    if ((f = fopen("/proc/stat", "r"))) {
        unsigned long long u, n, s, idle, io, irq, sirq, steal;
        if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &u, &n, &s, &idle, &io,
                   &irq, &sirq, &steal) == 8) {
            uint64_t busy = u + n + s + irq + sirq + steal, total = busy + idle + io;
            if (ms->cpu_total_prev && total > ms->cpu_total_prev)
                ms->cpu_ratio = (double)(busy - ms->cpu_busy_prev) /
                                (double)(total - ms->cpu_total_prev);
            ms->cpu_busy_prev = busy;
            ms->cpu_total_prev = total;
        }
        fclose(f);
    }
}

static void
mon_on_pong(sb_actor_t *a, int status, const sb_msg_t *m, void *ud)
{
    mon_state_t *ms = sb_actor_state(a);
    (void)m;
    ms->round_ok[(intptr_t)ud] = status == 0;
    if (--ms->outstanding == 0) {
        memcpy(ms->up, ms->round_ok, sizeof ms->up);
        ms->rounds++;
    }
}

static void
mon_on_tick(uv_timer_t *t)
{
    mon_state_t *ms = t->data;
    uint64_t now = sb_now_real_ms();

    mon_read_proc(ms);
    for (size_t i = 0; i < ms->nsbx;)
        if (now - ms->sbx[i]->last_ms > MON_SANDBOX_TTL_MS)
            mon_drop_sandbox(ms, i);
        else
            i++;
    if (ms->outstanding > 0)
        return; /* the last round is still waiting on someone */
    sb_ping_t ping = {.sent_us = sb_now_mono_us()};
    sb_buf_t *b = sb_actor_scratch(ms->actor);
    sb_ping_encode(&ping, b);
    memset(ms->round_ok, 0, sizeof ms->round_ok);
    ms->outstanding = 1;
    for (int k = SB_ACTOR_GATEWAY; k <= SB_ACTOR_STORAGE; k++)
        if (sb_actor_request(ms->actor, sb_addr((uint8_t)k), SB_MSG_PING, b->data, b->len,
                             MON_TICK_MS, mon_on_pong, (void *)(intptr_t)k, NULL) == 0)
            ms->outstanding++;
    if (--ms->outstanding == 0) {
        memcpy(ms->up, ms->round_ok, sizeof ms->up);
        ms->rounds++;
    }
}

/* ---- rendering ------------------------------------------------------------------------ */

/* mon_label appends a Prometheus label value with \\, \" and \n escaped. */
static void
mon_label(sb_buf_t *o, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            sb_buf_appendf(o, "\\%c", *v);
        else if (*v == '\n')
            sb_buf_append(o, "\\n", 2);
        else
            sb_buf_append(o, v, 1);
    }
}

static void
mon_head(sb_buf_t *o, const char *name, const char *type, const char *help)
{
    sb_buf_appendf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void
mon_render(mon_state_t *ms, sb_buf_t *o)
{
    sb_bus_t *bus = sb_actor_bus(ms->actor);

    mon_head(o, "soulbox_executions_total", "counter", "Finished executions by runtime and status.");
    for (size_t i = 0; i < ms->nexecs; i++) {
        sb_buf_appendf(o, "soulbox_executions_total{runtime=\"");
        mon_label(o, ms->execs[i].runtime);
        sb_buf_appendf(o, "\",status=\"");
        mon_label(o, ms->execs[i].status);
        sb_buf_appendf(o, "\"} %llu\n", (unsigned long long)ms->execs[i].count);
    }
    mon_head(o, "soulbox_execution_duration_seconds", "histogram",
             "Wall time of finished executions by runtime.");
    for (size_t i = 0; i < ms->nhists; i++) {
        mon_hist_t *h = &ms->hists[i];
        for (size_t b = 0; b <= MON_NBUCKETS; b++) {
            sb_buf_appendf(o, "soulbox_execution_duration_seconds_bucket{runtime=\"");
            mon_label(o, h->runtime);
            if (b < MON_NBUCKETS)
                sb_buf_appendf(o, "\",le=\"%g\"} %llu\n", mon_buckets[b],
                               (unsigned long long)h->bucket[b]);
            else
                sb_buf_appendf(o, "\",le=\"+Inf\"} %llu\n", (unsigned long long)h->count);
        }
        sb_buf_appendf(o, "soulbox_execution_duration_seconds_sum{runtime=\"");
        mon_label(o, h->runtime);
        sb_buf_appendf(o, "\"} %.6f\n", h->sum);
        sb_buf_appendf(o, "soulbox_execution_duration_seconds_count{runtime=\"");
        mon_label(o, h->runtime);
        sb_buf_appendf(o, "\"} %llu\n", (unsigned long long)h->count);
    }
    mon_head(o, "soulbox_sandboxes_active", "gauge", "Sandboxes reporting samples.");
    sb_buf_appendf(o, "soulbox_sandboxes_active %zu\n", ms->nsbx);
    mon_head(o, "soulbox_pool_warm", "gauge", "Warm sandboxes ready per runtime and node.");
    for (size_t i = 0; i < ms->npools; i++) {
        sb_buf_appendf(o, "soulbox_pool_warm{runtime=\"");
        mon_label(o, ms->pools[i].runtime);
        sb_buf_appendf(o, "\",node=\"");
        mon_label(o, ms->pools[i].node);
        sb_buf_appendf(o, "\"} %llu\n", (unsigned long long)ms->pools[i].warm);
    }
    mon_head(o, "soulbox_http_requests_total", "counter", "HTTP responses by route and status.");
    for (size_t i = 0; i < ms->nhttp; i++) {
        sb_buf_appendf(o, "soulbox_http_requests_total{route=\"");
        mon_label(o, ms->http[i].route);
        sb_buf_appendf(o, "\",code=\"%d\"} %llu\n", ms->http[i].code,
                       (unsigned long long)ms->http[i].count);
    }
    mon_head(o, "soulbox_bus_messages_total", "counter",
             "Bus messages handled in this process by type.");
    for (uint16_t t = 1; t < SB_BUS_TYPE_SLOTS; t++) {
        uint64_t n = sb_bus_count(bus, t);
        if (n)
            sb_buf_appendf(o, "soulbox_bus_messages_total{type=\"%s\"} %llu\n",
                           sb_msg_type_name(t), (unsigned long long)n);
    }
    mon_head(o, "soulbox_bus_refused_total", "counter",
             "Bus batches refused for failing authentication or framing.");
    sb_buf_appendf(o, "soulbox_bus_refused_total %llu\n",
                   (unsigned long long)sb_bus_auth_refused(bus));
    mon_head(o, "soulbox_actor_up", "gauge", "1 if the actor answered the last liveness ping.");
    for (int k = SB_ACTOR_GATEWAY; k <= SB_ACTOR_STORAGE; k++)
        sb_buf_appendf(o, "soulbox_actor_up{actor=\"%s\"} %d\n", sb_actor_kind_name(k),
                       ms->rounds ? ms->up[k] : 0);
    mon_head(o, "soulbox_sandbox_memory_bytes", "gauge", "Memory in use per sandbox (cgroup).");
    for (size_t i = 0; i < ms->nsbx; i++) {
        mon_sandbox_t *s = ms->sbx[i];
        mon_sample_t *last = &s->ring[(s->head + MON_HISTORY - 1) % MON_HISTORY];
        sb_buf_appendf(o, "soulbox_sandbox_memory_bytes{sandbox=\"");
        mon_label(o, s->id);
        sb_buf_appendf(o, "\",runtime=\"");
        mon_label(o, s->runtime);
        sb_buf_appendf(o, "\"} %llu\n", (unsigned long long)last->memory);
    }
    mon_head(o, "soulbox_sandbox_cpu_seconds_total", "counter", "CPU time used per sandbox.");
    for (size_t i = 0; i < ms->nsbx; i++) {
        mon_sandbox_t *s = ms->sbx[i];
        mon_sample_t *last = &s->ring[(s->head + MON_HISTORY - 1) % MON_HISTORY];
        sb_buf_appendf(o, "soulbox_sandbox_cpu_seconds_total{sandbox=\"");
        mon_label(o, s->id);
        sb_buf_appendf(o, "\"} %.6f\n", (double)last->cpu_us / 1e6);
    }
    mon_head(o, "soulbox_monitor_dropped_total", "counter",
             "Reports not stored because a metrics table was full.");
    sb_buf_appendf(o, "soulbox_monitor_dropped_total %llu\n", (unsigned long long)ms->dropped);
    mon_head(o, "process_resident_memory_bytes", "gauge", "Resident memory of this process.");
    sb_buf_appendf(o, "process_resident_memory_bytes %llu\n", (unsigned long long)ms->rss);
    mon_head(o, "process_open_fds", "gauge", "Open file descriptors of this process.");
    sb_buf_appendf(o, "process_open_fds %llu\n", (unsigned long long)ms->fds);
    mon_head(o, "soulbox_node_cpu_usage_ratio", "gauge", "Busy fraction of the node's CPUs.");
    sb_buf_appendf(o, "soulbox_node_cpu_usage_ratio %.4f\n", ms->cpu_ratio);
    mon_head(o, "soulbox_node_memory_available_bytes", "gauge", "MemAvailable of the node.");
    sb_buf_appendf(o, "soulbox_node_memory_available_bytes %llu\n",
                   (unsigned long long)ms->mem_avail);
    mon_head(o, "soulbox_node_memory_total_bytes", "gauge", "MemTotal of the node.");
    sb_buf_appendf(o, "soulbox_node_memory_total_bytes %llu\n", (unsigned long long)ms->mem_total);
}

/* ---- messages ------------------------------------------------------------------------- */

static int
mon_stats_reply(sb_actor_t *a, mon_state_t *ms, const sb_msg_t *m)
{
    sb_sandbox_stats_get_t q;
    sb_replyto_t to = sb_replyto(m);
    char id[64];
    if (sb_sandbox_stats_get_decode(m, &q) != 0)
        return SB_EBADMSG;
    mon_copy(id, sizeof id, q.id);
    mon_sandbox_t *s = mon_find_sandbox(ms, id, NULL);
    if (!s)
        return SB_ENOTFOUND;
    sb_buf_t rows;
    msgpack_packer pk;
    sb_buf_init(&rows, 0);
    sb_codec_packer(&pk, &rows);
    msgpack_pack_array(&pk, s->n);
    for (uint32_t i = 0; i < s->n; i++) {
        mon_sample_t *x = &s->ring[(s->head + MON_HISTORY - s->n + i) % MON_HISTORY];
        msgpack_pack_array(&pk, 5);
        msgpack_pack_uint64(&pk, x->t_ms);
        msgpack_pack_uint64(&pk, x->cpu_us);
        msgpack_pack_uint64(&pk, x->memory);
        msgpack_pack_uint64(&pk, x->pids);
        msgpack_pack_uint64(&pk, x->disk);
    }
    sb_sandbox_stats_t out = {.id = q.id, .samples = {(const char *)rows.data, (uint32_t)rows.len},
                              .memory_peak = s->memory_peak};
    sb_buf_t *b = sb_actor_scratch(a);
    int r = sb_sandbox_stats_encode(&out, b);
    sb_buf_fini(&rows);
    if (r)
        return r;
    return sb_actor_reply(a, &to, SB_MSG_SANDBOX_STATS, 0, b->data, b->len);
}

static int
mon_handle(sb_actor_t *a, void *state, const sb_msg_t *m)
{
    mon_state_t *ms = state;
    sb_replyto_t to = sb_replyto(m);

    switch (m->type) {
    case SB_MSG_MON_HTTP: {
        sb_mon_http_t h;
        if (sb_mon_http_decode(m, &h) != 0)
            return SB_EBADMSG;
        return mon_add_http(ms, h.counts);
    }
    case SB_MSG_MON_EXEC: {
        sb_mon_exec_t e;
        if (sb_mon_exec_decode(m, &e) != 0)
            return SB_EBADMSG;
        mon_count_exec(ms, &e);
        return 0;
    }
    case SB_MSG_MON_SANDBOX: {
        sb_mon_sandbox_t s;
        if (sb_mon_sandbox_decode(m, &s) != 0 || s.id.len == 0)
            return SB_EBADMSG;
        mon_add_sample(ms, &s);
        return 0;
    }
    case SB_MSG_MON_POOL: {
        sb_mon_pool_t p;
        if (sb_mon_pool_decode(m, &p) != 0)
            return SB_EBADMSG;
        mon_add_pool(ms, &p);
        return 0;
    }
    case SB_MSG_METRICS_GET: {
        sb_metrics_get_t g;
        sb_buf_t text;
        if (sb_metrics_get_decode(m, &g) != 0 || mon_add_http(ms, g.http_counts) != 0)
            return SB_EBADMSG;
        mon_read_proc(ms);
        sb_buf_init(&text, 4u << 20);
        mon_render(ms, &text);
        sb_metrics_text_t t = {.text = {(const char *)text.data, (uint32_t)text.len}};
        sb_buf_t *b = sb_actor_scratch(a);
        int r = sb_metrics_text_encode(&t, b);
        sb_buf_fini(&text);
        if (r)
            return r;
        return sb_actor_reply(a, &to, SB_MSG_METRICS_TEXT, 0, b->data, b->len);
    }
    case SB_MSG_READY_GET: {
        char reason[512] = "";
        int ready = ms->rounds > 0;
        if (!ms->rounds)
            snprintf(reason, sizeof reason, "no liveness round completed yet");
        else if (!ms->up[SB_ACTOR_STORAGE])
            snprintf(reason, sizeof reason, "storage does not answer"), ready = 0;
        else if (!ms->up[SB_ACTOR_EXECUTOR])
            snprintf(reason, sizeof reason, "no executor answers"), ready = 0;
        else if (!ms->up[SB_ACTOR_SCHEDULER])
            snprintf(reason, sizeof reason, "scheduler does not answer"), ready = 0;
        sb_ready_t rd = {.ready = ready, .reason = sb_str(reason)};
        sb_buf_t *b = sb_actor_scratch(a);
        sb_ready_encode(&rd, b);
        return sb_actor_reply(a, &to, SB_MSG_READY, 0, b->data, b->len);
    }
    case SB_MSG_SANDBOX_STATS_GET:
        return mon_stats_reply(a, ms, m);
    default:
        return SB_EUNKNOWN_TYPE;
    }
}

static int
mon_init(sb_actor_t *a, void *state)
{
    mon_state_t *ms = state;
    ms->actor = a;
    uv_timer_init(sb_actor_loop(a), &ms->tick);
    ms->tick.data = ms;
    uv_timer_start(&ms->tick, mon_on_tick, 0, MON_TICK_MS);
    return 0;
}

static void
mon_stop(sb_actor_t *a, void *state)
{
    mon_state_t *ms = state;
    (void)a;
    if (!uv_is_closing((uv_handle_t *)&ms->tick))
        uv_close((uv_handle_t *)&ms->tick, NULL);
}

static void
mon_fini(sb_actor_t *a, void *state)
{
    mon_state_t *ms = state;
    (void)a;
    for (size_t i = 0; i < ms->nsbx; i++)
        free(ms->sbx[i]);
    ms->nsbx = 0;
}

const sb_actor_ops_t sb_monitor_actor = {
    .abi = SB_ACTOR_ABI_V1,
    .name = "monitor",
    .kind = SB_ACTOR_MONITOR,
    .state_size = sizeof(mon_state_t),
    .init = mon_init,
    .handle = mon_handle,
    .stop = mon_stop,
    .fini = mon_fini,
};
