/*
 * bus_bench.c: what a message costs on this machine, measured side by side in one run.
 *
 *   pipe ping-pong between two threads        (the floor for any cross-thread hop)
 *   raw NNG req/rep round trip, inproc and tcp (what the bus is built on)
 *   actor round trip through the runtime, inproc and tcp (request -> echo actor -> reply)
 *   one-way actor throughput, inproc and tcp   (messages/s with batching)
 *
 * usage: bus_bench [--n ROUNDTRIPS] [--msgs ONEWAY] [--json FILE]
 * Prints p50/p90/p99/max per case and writes them as JSON.
 */
#include "core/actor.h"
#include "core/bus.h"
#include "base/err.h"
#include "base/log.h"
#include "protocols/msgs.h"
#include "base/clock.h"

#include <arpa/inet.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int n_rt = 20000;
static long n_oneway = 500000;

typedef struct {
    const char *name;
    double p50, p90, p99, max, mean; /* microseconds */
    double rate;                     /* ops or messages per second */
} result_t;

static result_t results[32];
static int nresults;

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void
report(const char *name, uint64_t *lat, int n, uint64_t total_us)
{
    result_t *r = &results[nresults++];
    double sum = 0;
    qsort(lat, (size_t)n, sizeof *lat, cmp_u64);
    for (int i = 0; i < n; i++)
        sum += (double)lat[i];
    r->name = name;
    r->p50 = (double)lat[n / 2];
    r->p90 = (double)lat[(int)(n * 0.90)];
    r->p99 = (double)lat[(int)(n * 0.99)];
    r->max = (double)lat[n - 1];
    r->mean = sum / n;
    r->rate = total_us ? n * 1e6 / (double)total_us : 0;
    printf("%-34s p50 %7.1f us  p90 %7.1f  p99 %7.1f  max %8.1f  (%.0f round trips/s)\n", name,
           r->p50, r->p90, r->p99, r->max, r->rate);
    fflush(stdout);
}

static void
report_rate(const char *name, long n, uint64_t us)
{
    result_t *r = &results[nresults++];
    r->name = name;
    r->rate = n * 1e6 / (double)us;
    printf("%-34s %ld messages in %.3f s = %.0f messages/s\n", name, n, us / 1e6, r->rate);
    fflush(stdout);
}

/* ---- pipe ping-pong ------------------------------------------------------------------- */
static int pp_a[2], pp_b[2];

static void *
pipe_echo(void *arg)
{
    char c;
    (void)arg;
    for (int i = 0; i < n_rt; i++) {
        if (read(pp_a[0], &c, 1) != 1 || write(pp_b[1], &c, 1) != 1)
            break;
    }
    return NULL;
}

static void
bench_pipe(void)
{
    pthread_t t;
    uint64_t *lat = malloc(sizeof *lat * (size_t)n_rt);
    char c = 'x';
    if (pipe(pp_a) || pipe(pp_b))
        abort();
    pthread_create(&t, NULL, pipe_echo, NULL);
    uint64_t t0 = sb_now_mono_us();
    for (int i = 0; i < n_rt; i++) {
        uint64_t s = sb_now_mono_us();
        if (write(pp_a[1], &c, 1) != 1 || read(pp_b[0], &c, 1) != 1)
            abort();
        lat[i] = sb_now_mono_us() - s;
    }
    report("pipe ping-pong (2 threads)", lat, n_rt, sb_now_mono_us() - t0);
    pthread_join(t, NULL);
    close(pp_a[0]), close(pp_a[1]), close(pp_b[0]), close(pp_b[1]);
    free(lat);
}

/* ---- raw NNG req/rep -------------------------------------------------------------------- */
static void *
nng_echo(void *arg)
{
    nng_socket *s = arg;
    for (int i = 0; i < n_rt; i++) {
        nng_msg *m;
        if (nng_recvmsg(*s, &m, 0) != 0 || nng_sendmsg(*s, m, 0) != 0)
            break;
    }
    return NULL;
}

static void
bench_nng(const char *name, const char *url)
{
    nng_socket rep, req;
    pthread_t t;
    uint64_t *lat = malloc(sizeof *lat * (size_t)n_rt);
    nng_rep0_open(&rep);
    nng_req0_open(&req);
    if (nng_listen(rep, url, NULL, 0) || nng_dial(req, url, NULL, 0))
        abort();
    pthread_create(&t, NULL, nng_echo, &rep);
    uint64_t t0 = sb_now_mono_us();
    for (int i = 0; i < n_rt; i++) {
        nng_msg *m;
        uint64_t s = sb_now_mono_us();
        nng_msg_alloc(&m, 64);
        if (nng_sendmsg(req, m, 0) || nng_recvmsg(req, &m, 0))
            abort();
        nng_msg_free(m);
        lat[i] = sb_now_mono_us() - s;
    }
    report(name, lat, n_rt, sb_now_mono_us() - t0);
    pthread_join(t, NULL);
    nng_close(req);
    nng_close(rep);
    free(lat);
}

/* ---- actors --------------------------------------------------------------------------- */
static atomic_long sink_count;
static long sink_target;
static pthread_mutex_t done_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t done_cv = PTHREAD_COND_INITIALIZER;
static int done_flag;

static void
signal_done(void)
{
    pthread_mutex_lock(&done_mu);
    done_flag = 1;
    pthread_cond_signal(&done_cv);
    pthread_mutex_unlock(&done_mu);
}

static void
wait_done(void)
{
    pthread_mutex_lock(&done_mu);
    while (!done_flag)
        pthread_cond_wait(&done_cv, &done_mu);
    done_flag = 0;
    pthread_mutex_unlock(&done_mu);
}

/* The echo/sink actor: replies to requests, counts one-way messages. */
static int
echo_handle(sb_actor_t *a, void *state, const sb_msg_t *m)
{
    (void)state;
    if (m->flags & SB_MF_REQ) {
        sb_replyto_t to = sb_replyto(m);
        return sb_actor_reply(a, &to, m->type, 0, m->body, m->body_len);
    }
    if (atomic_fetch_add(&sink_count, 1) + 1 == sink_target)
        signal_done();
    return 0;
}

static sb_actor_ops_t echo_ops = {.abi = SB_ACTOR_ABI_V1, .name = "echo",
                                  .kind = SB_ACTOR_SCHEDULER, .handle = echo_handle};

typedef struct {
    sb_actor_t *a;
    uv_idle_t idle;
    int mode; /* 0 round trips, 1 one-way */
    int i;
    long sent;
    uint64_t t_send, t0;
    uint64_t *lat;
    uint8_t body[64];
    size_t blen;
} drv_t;

static drv_t *drv_cfg_mode;
static int drv_mode;

static void drv_send_one(drv_t *d);

static void
drv_on_reply(sb_actor_t *a, int status, const sb_msg_t *m, void *ud)
{
    drv_t *d = ud;
    (void)a;
    (void)m;
    if (status != 0) {
        fprintf(stderr, "round trip failed: %s\n", sb_strerror(status));
        exit(1);
    }
    d->lat[d->i++] = sb_now_mono_us() - d->t_send;
    if (d->i == n_rt) {
        report(drv_mode == 0 ? "actor round trip, inproc" : "actor round trip, tcp", d->lat, n_rt,
               sb_now_mono_us() - d->t0);
        signal_done();
        return;
    }
    drv_send_one(d);
}

static void
drv_send_one(drv_t *d)
{
    d->t_send = sb_now_mono_us();
    int r = sb_actor_request(d->a, sb_addr(SB_ACTOR_SCHEDULER), SB_MSG_BENCH, d->body, d->blen,
                             5000, drv_on_reply, d, NULL);
    if (r) {
        fprintf(stderr, "request: %s\n", sb_strerror(r));
        exit(1);
    }
}

/* One-way: send as many as the outbox takes each loop turn; a full peer (SB_EAGAIN) just
 * means wait for the next turn. */
static void
drv_on_idle(uv_idle_t *h)
{
    drv_t *d = h->data;
    int burst = d->mode == 2 ? 1 : 512; /* mode 2: one message per loop turn, no batching */
    for (int k = 0; k < burst && d->sent < n_oneway; k++) {
        int r = sb_actor_send(d->a, sb_addr(SB_ACTOR_SCHEDULER), SB_MSG_BENCH, 0, 0, 0, d->body,
                              d->blen);
        if (r == SB_EAGAIN)
            break;
        if (r) {
            fprintf(stderr, "send: %s\n", sb_strerror(r));
            exit(1);
        }
        d->sent++;
    }
    if (d->sent == n_oneway)
        uv_close((uv_handle_t *)h, NULL);
}

static int
drv_init(sb_actor_t *a, void *state)
{
    drv_t *d = state;
    sb_bench_t b = {.seq = 1, .payload = {"0123456789abcdef0123456789abcdef", 32}};
    sb_buf_t buf;
    d->a = a;
    sb_buf_init(&buf, 0);
    sb_bench_encode(&b, &buf);
    memcpy(d->body, buf.data, buf.len);
    d->blen = buf.len;
    sb_buf_fini(&buf);
    d->t0 = sb_now_mono_us();
    d->mode = *(int *)sb_actor_arg(a);
    if (d->mode == 0) {
        d->lat = malloc(sizeof *d->lat * (size_t)n_rt);
        drv_send_one(d);
    } else {
        uv_idle_init(sb_actor_loop(a), &d->idle);
        d->idle.data = d;
        uv_idle_start(&d->idle, drv_on_idle);
    }
    return 0;
}

static void
drv_fini(sb_actor_t *a, void *state)
{
    drv_t *d = state;
    (void)a;
    free(d->lat);
}

static sb_actor_ops_t drv_ops = {.abi = SB_ACTOR_ABI_V1, .name = "driver", .kind = SB_ACTOR_CLIENT,
                                 .state_size = sizeof(drv_t), .init = drv_init, .fini = drv_fini};

static int
free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    bind(fd, (struct sockaddr *)&sa, sizeof sa);
    getsockname(fd, (struct sockaddr *)&sa, &len);
    close(fd);
    return ntohs(sa.sin_port);
}

/* bench_actors runs one round-trip and one one-way pass over inproc (tcp=0) or tcp (tcp=1). */
static void
bench_actors(int tcp)
{
    static const char secret[] = "benchmark-secret-0123456789";
    char url_a[64], url_b[64], *joins[1] = {url_a};
    sb_bus_t *bus_a, *bus_b;
    sb_actor_t *echo, *drv;
    sb_bus_opts_t oa = {0}, ob = {0};
    int mode;

    if (tcp) {
        snprintf(url_a, sizeof url_a, "tcp://127.0.0.1:%d", free_port());
        snprintf(url_b, sizeof url_b, "tcp://127.0.0.1:%d", free_port());
        oa = (sb_bus_opts_t){.listen = url_a, .secret = (const uint8_t *)secret,
                             .secret_len = sizeof secret - 1, .hello_ms = 200};
        ob = (sb_bus_opts_t){.listen = url_b, .join = (const char *const *)joins, .njoin = 1,
                             .secret = (const uint8_t *)secret, .secret_len = sizeof secret - 1,
                             .hello_ms = 200};
    }
    if (sb_bus_alloc(&oa, &bus_a))
        abort();
    if (sb_actor_spawn(bus_a, &echo_ops, NULL, &echo))
        abort();
    sb_bus_start(bus_a);
    if (tcp) {
        if (sb_bus_alloc(&ob, &bus_b))
            abort();
        sb_bus_start(bus_b);
        if (sb_bus_wait_kind(bus_b, SB_ACTOR_SCHEDULER, 10000))
            abort();
    } else {
        bus_b = bus_a;
    }
    drv_mode = tcp;
    mode = 0;
    if (sb_actor_spawn(bus_b, &drv_ops, &mode, &drv))
        abort();
    wait_done();
    sb_actor_stop(drv, 1000);
    sb_actor_join(drv);
    sb_actor_free(drv);

    atomic_store(&sink_count, 0);
    sink_target = n_oneway;
    mode = 1;
    uint64_t t0 = sb_now_mono_us();
    if (sb_actor_spawn(bus_b, &drv_ops, &mode, &drv))
        abort();
    wait_done();
    report_rate(tcp ? "actor one-way throughput, tcp" : "actor one-way throughput, inproc",
                n_oneway, sb_now_mono_us() - t0);
    sb_actor_stop(drv, 1000);
    sb_actor_join(drv);
    sb_actor_free(drv);

    /* the same without batching: one message, one NNG message, one wake-up */
    long saved = n_oneway;
    n_oneway = saved / 20 > 1000 ? saved / 20 : saved;
    atomic_store(&sink_count, 0);
    sink_target = n_oneway;
    mode = 2;
    t0 = sb_now_mono_us();
    if (sb_actor_spawn(bus_b, &drv_ops, &mode, &drv))
        abort();
    wait_done();
    report_rate(tcp ? "actor one-way, unbatched, tcp" : "actor one-way, unbatched, inproc",
                n_oneway, sb_now_mono_us() - t0);
    n_oneway = saved;
    sb_actor_stop(drv, 1000);
    sb_actor_join(drv);
    sb_actor_free(drv);
    sb_actor_stop(echo, 1000);
    sb_actor_join(echo);
    sb_actor_free(echo);
    if (tcp)
        sb_bus_free(bus_b);
    sb_bus_free(bus_a);
    (void)drv_cfg_mode;
}

int
main(int argc, char **argv)
{
    const char *json = NULL;
    char url[64];
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--n") && i + 1 < argc)
            n_rt = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--msgs") && i + 1 < argc)
            n_oneway = atol(argv[++i]);
        else if (!strcmp(argv[i], "--json") && i + 1 < argc)
            json = argv[++i];
        else {
            fprintf(stderr, "usage: bus_bench [--n ROUNDTRIPS] [--msgs ONEWAY] [--json FILE]\n");
            return 2;
        }
    }
    sb_log_setup(SB_LOG_WARN, 0);
    printf("bus_bench: %d round trips per latency case, %ld one-way messages, %ld CPUs\n", n_rt,
           n_oneway, sysconf(_SC_NPROCESSORS_ONLN));
    bench_pipe();
    bench_nng("raw NNG req/rep, inproc", "inproc://bench-raw");
    snprintf(url, sizeof url, "tcp://127.0.0.1:%d", free_port());
    bench_nng("raw NNG req/rep, tcp loopback", url);
    bench_actors(0);
    bench_actors(1);
    if (json) {
        FILE *f = fopen(json, "w");
        if (!f)
            return 1;
        fprintf(f, "{\"round_trips\":%d,\"one_way\":%ld,\"results\":[", n_rt, n_oneway);
        for (int i = 0; i < nresults; i++)
            fprintf(f, "%s{\"name\":\"%s\",\"p50_us\":%.1f,\"p90_us\":%.1f,\"p99_us\":%.1f,"
                       "\"max_us\":%.1f,\"per_second\":%.0f}",
                    i ? "," : "", results[i].name, results[i].p50, results[i].p90, results[i].p99,
                    results[i].max, results[i].rate);
        fprintf(f, "]}\n");
        fclose(f);
    }
    return 0;
}
