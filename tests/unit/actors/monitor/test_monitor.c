/*
 * test_monitor.c: the monitor actor on an in-process bus.  A client actor reports executions,
 * HTTP counts, sandbox samples and pool sizes, then asks for the Prometheus text, a sandbox's
 * history and readiness; malformed reports get error replies and change nothing.  The text is
 * also checked by promtool when it is installed.
 */
#include "actors/monitor/monitor.h"
#include "core/actor.h"
#include "base/err.h"
#include "base/log.h"
#include "protocols/mp.h"
#include "protocols/msgs.h"
#include "test.h"

#include <msgpack.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int done, failed;
static char why[256];
static char *metrics_text;
static int ready_seen_true;

typedef struct {
    sb_actor_t *a;
    uv_timer_t t;
    int step;
    int ready_polls;
} cl_t;

static void cl_next(cl_t *c);

static void
finish(int fail, const char *w)
{
    pthread_mutex_lock(&mu);
    done = 1;
    failed = fail;
    snprintf(why, sizeof why, "%s", w);
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);
}

#define EXPECT(e)                                                                                  \
    do {                                                                                           \
        if (!(e)) {                                                                                \
            finish(1, #e);                                                                         \
            return;                                                                                \
        }                                                                                          \
    } while (0)

static void
send1(cl_t *c, uint16_t type, sb_buf_t *b)
{
    sb_actor_send(c->a, sb_addr(SB_ACTOR_MONITOR), type, 0, 0, 0, b->data, b->len);
}

static void
on_refused(sb_actor_t *a, int status, const sb_msg_t *m, void *ud)
{
    cl_t *c = ud;
    (void)a;
    (void)m;
    EXPECT(status == SB_EBADMSG);
    cl_next(c);
}

static void
on_metrics(sb_actor_t *a, int status, const sb_msg_t *m, void *ud)
{
    cl_t *c = ud;
    sb_metrics_text_t t;
    (void)a;
    EXPECT(status == 0 && sb_metrics_text_decode(m, &t) == 0);
    free(metrics_text);
    metrics_text = sb_str_dup((sb_str_t){t.text.ptr, t.text.len});
    cl_next(c);
}

static void
on_stats(sb_actor_t *a, int status, const sb_msg_t *m, void *ud)
{
    cl_t *c = ud;
    sb_sandbox_stats_t st;
    sb_mp_reader_t r;
    uint32_t n, five;
    uint64_t t, cpu, mem;
    (void)a;
    EXPECT(status == 0 && sb_sandbox_stats_decode(m, &st) == 0);
    EXPECT(st.memory_peak == 9000);
    sb_mp_reader_init(&r, st.samples.ptr, st.samples.len);
    EXPECT(sb_mp_read_array(&r, &n) == 0 && n == 2);
    EXPECT(sb_mp_read_array(&r, &five) == 0 && five == 5);
    EXPECT(sb_mp_read_u64(&r, &t) == 0 && sb_mp_read_u64(&r, &cpu) == 0 &&
           sb_mp_read_u64(&r, &mem) == 0);
    EXPECT(cpu == 1000 && mem == 5000);
    cl_next(c);
}

static void
on_missing(sb_actor_t *a, int status, const sb_msg_t *m, void *ud)
{
    cl_t *c = ud;
    (void)a;
    (void)m;
    EXPECT(status == SB_ENOTFOUND);
    cl_next(c);
}

static void cl_tick(uv_timer_t *t);

static void
on_ready(sb_actor_t *a, int status, const sb_msg_t *m, void *ud)
{
    cl_t *c = ud;
    sb_ready_t rd;
    (void)a;
    EXPECT(status == 0 && sb_ready_decode(m, &rd) == 0);
    /* Only the monitor and this client run: storage and executor never answer, so never
     * ready, and the reason says which. */
    EXPECT(!rd.ready && rd.reason.len > 0);
    if (rd.ready)
        ready_seen_true = 1;
    if (++c->ready_polls < 3) {
        uv_timer_start(&c->t, cl_tick, 300, 0); /* across a few liveness rounds */
        return;
    }
    finish(0, "ok");
}

static void
cl_tick(uv_timer_t *t)
{
    cl_t *c = t->data;
    sb_buf_t *b = sb_actor_scratch(c->a);
    sb_ready_get_t q = {0};
    sb_ready_get_encode(&q, b);
    sb_actor_request(c->a, sb_addr(SB_ACTOR_MONITOR), SB_MSG_READY_GET, b->data, b->len, 2000,
                     on_ready, c, NULL);
}

static void
cl_next(cl_t *c)
{
    sb_buf_t *b = sb_actor_scratch(c->a);
    switch (c->step++) {
    case 0: {
        sb_mon_exec_t e = {.runtime = SB_STR("python"), .status = SB_STR("exited"),
                           .duration_us = 3000};
        sb_mon_exec_encode(&e, b);
        send1(c, SB_MSG_MON_EXEC, b);
        b = sb_actor_scratch(c->a);
        e.status = SB_STR("timeout");
        e.duration_us = 2000000;
        sb_mon_exec_encode(&e, b);
        send1(c, SB_MSG_MON_EXEC, b);
        /* http counts: [["/api/v1/execute", 200, 5]] */
        sb_buf_t raw;
        msgpack_packer pk;
        sb_buf_init(&raw, 0);
        sb_codec_packer(&pk, &raw);
        msgpack_pack_array(&pk, 1);
        msgpack_pack_array(&pk, 3);
        msgpack_pack_str(&pk, 15);
        msgpack_pack_str_body(&pk, "/api/v1/execute", 15);
        msgpack_pack_int(&pk, 200);
        msgpack_pack_int(&pk, 5);
        sb_mon_http_t h = {.counts = {(const char *)raw.data, (uint32_t)raw.len}};
        b = sb_actor_scratch(c->a);
        sb_mon_http_encode(&h, b);
        send1(c, SB_MSG_MON_HTTP, b);
        sb_buf_fini(&raw);
        for (int i = 0; i < 2; i++) {
            sb_mon_sandbox_t s = {.id = SB_STR("sbx-1"), .runtime = SB_STR("py\"thon"),
                                  .cpu_us = 1000 * (uint64_t)(i + 1), .memory = 5000,
                                  .memory_peak = 9000, .pids = 3};
            b = sb_actor_scratch(c->a);
            sb_mon_sandbox_encode(&s, b);
            send1(c, SB_MSG_MON_SANDBOX, b);
        }
        sb_mon_pool_t p = {.runtime = SB_STR("python"), .warm = 4, .max = 8, .node = SB_STR("n1")};
        b = sb_actor_scratch(c->a);
        sb_mon_pool_encode(&p, b);
        send1(c, SB_MSG_MON_POOL, b);
        /* a malformed HTTP report is refused (asked as a request to see the error) */
        uint8_t bad[] = {0x81, 0x01, 0x91, 0x01}; /* counts = [1] */
        EXPECT(sb_actor_request(c->a, sb_addr(SB_ACTOR_MONITOR), SB_MSG_MON_HTTP, bad,
                                sizeof bad, 2000, on_refused, c, NULL) == 0);
        break;
    }
    case 1: {
        sb_metrics_get_t g = {0};
        sb_metrics_get_encode(&g, b);
        EXPECT(sb_actor_request(c->a, sb_addr(SB_ACTOR_MONITOR), SB_MSG_METRICS_GET, b->data,
                                b->len, 2000, on_metrics, c, NULL) == 0);
        break;
    }
    case 2: {
        sb_sandbox_stats_get_t q = {.id = SB_STR("sbx-1")};
        sb_sandbox_stats_get_encode(&q, b);
        EXPECT(sb_actor_request(c->a, sb_addr(SB_ACTOR_MONITOR), SB_MSG_SANDBOX_STATS_GET,
                                b->data, b->len, 2000, on_stats, c, NULL) == 0);
        break;
    }
    case 3: { /* the sandbox ends: its series go away */
        sb_mon_sandbox_t s = {.id = SB_STR("sbx-1"), .ended = true};
        sb_mon_sandbox_encode(&s, b);
        send1(c, SB_MSG_MON_SANDBOX, b);
        b = sb_actor_scratch(c->a);
        sb_sandbox_stats_get_t q = {.id = SB_STR("sbx-1")};
        sb_sandbox_stats_get_encode(&q, b);
        EXPECT(sb_actor_request(c->a, sb_addr(SB_ACTOR_MONITOR), SB_MSG_SANDBOX_STATS_GET,
                                b->data, b->len, 2000, on_missing, c, NULL) == 0);
        break;
    }
    case 4:
        cl_tick(&c->t);
        break;
    }
}

static void
cl_start(uv_timer_t *t)
{
    cl_next(t->data);
}

static int
cl_init(sb_actor_t *a, void *state)
{
    cl_t *c = state;
    c->a = a;
    uv_timer_init(sb_actor_loop(a), &c->t);
    c->t.data = c;
    uv_timer_start(&c->t, cl_start, 0, 0);
    return 0;
}

static void
cl_stop(sb_actor_t *a, void *state)
{
    cl_t *c = state;
    (void)a;
    uv_close((uv_handle_t *)&c->t, NULL);
}

static sb_actor_ops_t cl_ops = {.abi = SB_ACTOR_ABI_V1, .name = "client", .kind = SB_ACTOR_CLIENT,
                                .state_size = sizeof(cl_t), .init = cl_init, .stop = cl_stop};

int
main(void)
{
    sb_bus_opts_t o = {0};
    sb_bus_t *bus;
    sb_actor_t *mon, *cl;
    struct timespec ts;

    sb_log_setup(SB_LOG_ERROR, 0);
    CHECK_EQ(sb_bus_alloc(&o, &bus), 0);
    CHECK_EQ(sb_actor_spawn(bus, &sb_monitor_actor, NULL, &mon), 0);
    CHECK_EQ(sb_actor_spawn(bus, &cl_ops, NULL, &cl), 0);
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 20;
    pthread_mutex_lock(&mu);
    while (!done && pthread_cond_timedwait(&cv, &mu, &ts) == 0)
        ;
    pthread_mutex_unlock(&mu);
    if (!done || failed)
        fprintf(stderr, "client: %s\n", done ? why : "timed out");
    CHECK(done && !failed);
    CHECK(metrics_text != NULL);
    const char *want[] = {
        "soulbox_executions_total{runtime=\"python\",status=\"exited\"} 1",
        "soulbox_executions_total{runtime=\"python\",status=\"timeout\"} 1",
        "soulbox_execution_duration_seconds_bucket{runtime=\"python\",le=\"0.005\"} 1",
        "soulbox_execution_duration_seconds_bucket{runtime=\"python\",le=\"+Inf\"} 2",
        "soulbox_execution_duration_seconds_count{runtime=\"python\"} 2",
        "soulbox_http_requests_total{route=\"/api/v1/execute\",code=\"200\"} 5",
        "soulbox_sandboxes_active 1",
        "soulbox_pool_warm{runtime=\"python\",node=\"n1\"} 4",
        "soulbox_sandbox_memory_bytes{sandbox=\"sbx-1\",runtime=\"py\\\"thon\"} 5000",
        "soulbox_actor_up{actor=\"monitor\"}",
        "process_resident_memory_bytes ",
        "process_open_fds ",
        "soulbox_bus_messages_total{type=\"mon_exec\"} 2",
        "# TYPE soulbox_execution_duration_seconds histogram",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        if (!strstr(metrics_text, want[i]))
            fprintf(stderr, "missing: %s\n%s\n", want[i], metrics_text);
        CHECK(strstr(metrics_text, want[i]) != NULL);
    }
    if (access("/usr/bin/promtool", X_OK) == 0) {
        FILE *p = popen("promtool check metrics >/dev/null 2>&1", "w");
        CHECK(p != NULL);
        fputs(metrics_text, p);
        CHECK_EQ(pclose(p), 0);
        sb_test_ok("promtool accepts the text");
    }
    sb_test_ok("reports in, Prometheus text, history, readiness, refusals");
    sb_actor_stop(cl, 1000);
    CHECK_EQ(sb_actor_join(cl), 0);
    sb_actor_free(cl);
    sb_actor_stop(mon, 2000);
    CHECK_EQ(sb_actor_join(mon), 0);
    sb_actor_free(mon);
    sb_bus_free(bus);
    free(metrics_text);
    return sb_test_done();
}
