/*
 * acker.c: a small server for the durability test.  It runs the real storage and auditor
 * actors on an inproc bus and a client actor that writes as fast as it can -- execution
 * records (STORE_PUT, create_only) and audit events, up to 32 of each in flight -- and prints
 * one line per acknowledgement the moment it arrives:
 *     S <n>      execution record ex-<n> acknowledged
 *     A <seq>    audit event acknowledged with that seq
 * with one write(2) per line, so what the test reads was acknowledged before it was printed.
 * The test kill -9's it mid-stream.  Usage: acker DATA_DIR sqlite|redis [REDIS_PORT]
 */
#include "actors/auditor/auditor.h"
#include "actors/storage/storage.h"
#include "core/config.h"
#include "base/err.h"
#include "base/log.h"
#include "protocols/msgs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define INFLIGHT 32

typedef struct {
    sb_actor_t *a;
    uint64_t next_rec, next_ev;
    int rec_out, ev_out;
    uv_timer_t tick;
} acker_t;

static acker_t g;
static void acker_pump(void);

static void
acker_say(const char *line, size_t n)
{
    if (write(1, line, n) != (ssize_t)n)
        _exit(3);
}

static void
on_rec(sb_actor_t *a, int status, const sb_msg_t *m, void *ud)
{
    char line[64];
    (void)a;
    (void)m;
    g.rec_out--;
    if (status == 0)
        acker_say(line, (size_t)snprintf(line, sizeof line, "S %lu\n", (unsigned long)(uintptr_t)ud));
    acker_pump();
}

static void
on_ev(sb_actor_t *a, int status, const sb_msg_t *m, void *ud)
{
    char line[64];
    sb_audit_ack_t ack;
    (void)a;
    (void)ud;
    g.ev_out--;
    if (status == 0 && sb_audit_ack_decode(m, &ack) == 0)
        acker_say(line, (size_t)snprintf(line, sizeof line, "A %lu\n", (unsigned long)ack.seq));
    acker_pump();
}

static void
acker_pump(void)
{
    char json[512], fields[128];
    while (g.rec_out < INFLIGHT) {
        uint64_t n = ++g.next_rec;
        snprintf(json, sizeof json, "{\"id\":\"ex-%lu\",\"owner\":\"alice\",\"runtime\":\"python\","
                 "\"code_sha256\":\"%064lu\",\"status\":\"exited\",\"exit_code\":0,"
                 "\"created\":%lu}", (unsigned long)n, (unsigned long)n, (unsigned long)n);
        sb_store_put_t put = {.kind = SB_STR("execution"), .record = sb_str(json),
                              .create_only = true};
        sb_buf_t *b = sb_actor_scratch(g.a);
        sb_store_put_encode(&put, b);
        if (sb_actor_request(g.a, sb_addr(SB_ACTOR_STORAGE), SB_MSG_STORE_PUT, b->data, b->len,
                             30000, on_rec, (void *)(uintptr_t)n, NULL) != 0) {
            g.next_rec--;
            break; /* backpressure: the tick retries */
        }
        g.rec_out++;
    }
    while (g.ev_out < INFLIGHT) {
        uint64_t n = ++g.next_ev;
        snprintf(fields, sizeof fields, "{\"execution_id\":\"ex-%lu\"}", (unsigned long)n);
        sb_audit_event_t e = {.type = SB_STR("execution"), .principal = SB_STR("alice"),
                              .fields = sb_str(fields)};
        sb_buf_t *b = sb_actor_scratch(g.a);
        sb_audit_event_encode(&e, b);
        if (sb_actor_request(g.a, sb_addr(SB_ACTOR_AUDITOR), SB_MSG_AUDIT_EVENT, b->data,
                             b->len, 30000, on_ev, NULL, NULL) != 0) {
            g.next_ev--;
            break;
        }
        g.ev_out++;
    }
}

static void
on_tick(uv_timer_t *t)
{
    (void)t;
    acker_pump();
}

static int
acker_init(sb_actor_t *a, void *state)
{
    (void)state;
    g.a = a;
    uv_timer_init(sb_actor_loop(a), &g.tick);
    uv_timer_start(&g.tick, on_tick, 1, 1);
    acker_say("READY\n", 6);
    return 0;
}

static const sb_actor_ops_t acker_ops = {
    .abi = SB_ACTOR_ABI_V1, .name = "acker", .kind = SB_ACTOR_CLIENT, .state_size = 1,
    .init = acker_init,
};

int
main(int argc, char **argv)
{
    sb_config_t cfg;
    char *rest[16], err[512], *env[] = {NULL};
    int nrest;
    sb_bus_t *bus;
    sb_actor_t *st, *au, *cl;
    sb_bus_opts_t bo = {0};

    if (argc < 3)
        return 2;
    char *flags[] = {"--data-dir", argv[1], "--storage-backend", argv[2],
                     "--storage-redis-port", argc > 3 ? argv[3] : "6379", NULL};
    sb_log_setup(SB_LOG_WARN, 0);
    if (sb_config_load(&cfg, 6, flags, env, &nrest, rest, err, sizeof err) != 0) {
        fprintf(stderr, "acker: %s\n", err);
        return 2;
    }
    if (sb_bus_alloc(&bo, &bus) || sb_actor_spawn(bus, &sb_storage_actor, &cfg, &st) ||
        sb_actor_spawn(bus, &sb_auditor_actor, &cfg, &au))
        return 1;
    /* In redis mode the first writes may fail (SB_EUNAVAILABLE) until the storage actor has
     * connected: failures are simply not printed, so they are not counted as acknowledged. */
    if (sb_actor_spawn(bus, &acker_ops, NULL, &cl))
        return 1;
    for (;;)
        pause(); /* until kill -9 */
}
