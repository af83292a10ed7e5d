/* fake.c: the fake actors of fake.h. */
#include "fake.h"

#include "base/err.h"
#include "test.h"

#include <pthread.h>
#include <string.h>
#include <time.h>

static pthread_mutex_t fake_mu;
static pthread_cond_t fake_cv;
static pthread_once_t fake_once = PTHREAD_ONCE_INIT;

static void
fake_setup(void)
{
    pthread_mutexattr_t ma;
    pthread_condattr_t ca;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&fake_mu, &ma);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&fake_cv, &ca);
}

void
fake_lock(void)
{
    pthread_once(&fake_once, fake_setup);
    pthread_mutex_lock(&fake_mu);
}

void
fake_unlock(void)
{
    pthread_mutex_unlock(&fake_mu);
}

void
fake_wake(void)
{
    pthread_cond_broadcast(&fake_cv);
}

int
fake_wait(int (*pred)(void *arg), void *arg, int timeout_ms)
{
    struct timespec end;
    clock_gettime(CLOCK_MONOTONIC, &end);
    end.tv_sec += timeout_ms / 1000;
    end.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (end.tv_nsec >= 1000000000L) {
        end.tv_sec++;
        end.tv_nsec -= 1000000000L;
    }
    fake_lock();
    int ok;
    while (!(ok = pred(arg))) {
        /* Waking at least every 20 ms also catches state that changes without a fake (the bus
         * node table); the deadline bounds it all. */
        struct timespec now, t;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec > end.tv_sec || (now.tv_sec == end.tv_sec && now.tv_nsec >= end.tv_nsec))
            break;
        t = now;
        t.tv_nsec += 20000000L;
        if (t.tv_nsec >= 1000000000L) {
            t.tv_sec++;
            t.tv_nsec -= 1000000000L;
        }
        if (t.tv_sec > end.tv_sec || (t.tv_sec == end.tv_sec && t.tv_nsec > end.tv_nsec))
            t = end;
        pthread_cond_timedwait(&fake_cv, &fake_mu, &t);
    }
    fake_unlock();
    return ok;
}

static void
fake_on_async(uv_async_t *h)
{
    fake_t *f = h->data;
    fake_lock();
    if (f->call_fn && !f->call_done) {
        f->call_fn(f, f->call_arg);
        f->call_done = 1;
        fake_wake();
    }
    fake_unlock();
}

static void
fake_on_timer(uv_timer_t *t)
{
    fake_t *f = t->data;
    fake_lock();
    if (f->timer_fn)
        f->timer_fn(f, NULL);
    fake_unlock();
}

static int
fake_init(sb_actor_t *a, void *state)
{
    fake_t *f = sb_actor_arg(a);
    (void)state;
    f->actor = a;
    uv_async_init(sb_actor_loop(a), &f->async, fake_on_async);
    f->async.data = f;
    uv_timer_init(sb_actor_loop(a), &f->timer);
    f->timer.data = f;
    return 0;
}

static int
fake_handle(sb_actor_t *a, void *state, const sb_msg_t *m)
{
    fake_t *f = sb_actor_arg(a);
    (void)state;
    if (!f->on_msg)
        return SB_EUNKNOWN_TYPE;
    fake_lock();
    int r = f->on_msg(f, m);
    fake_wake();
    fake_unlock();
    return r;
}

static void
fake_stop_op(sb_actor_t *a, void *state)
{
    fake_t *f = sb_actor_arg(a);
    (void)state;
    if (!uv_is_closing((uv_handle_t *)&f->async))
        uv_close((uv_handle_t *)&f->async, NULL);
    if (!uv_is_closing((uv_handle_t *)&f->timer))
        uv_close((uv_handle_t *)&f->timer, NULL);
}

void
fake_start(fake_t *f, sb_bus_t *bus, int kind, const char *name, fake_on_msg fn, void *user)
{
    pthread_once(&fake_once, fake_setup);
    memset(f, 0, sizeof *f);
    f->ops = (sb_actor_ops_t){.abi = SB_ACTOR_ABI_V1,
                              .name = name,
                              .kind = kind,
                              .state_size = 1,
                              .init = fake_init,
                              .handle = fake_handle,
                              .stop = fake_stop_op};
    f->on_msg = fn;
    f->user = user;
    CHECK_EQ(sb_actor_spawn(bus, &f->ops, f, &f->actor), 0);
}

void
fake_call(fake_t *f, fake_fn fn, void *arg)
{
    fake_lock();
    f->call_fn = fn;
    f->call_arg = arg;
    f->call_done = 0;
    fake_unlock();
    uv_async_send(&f->async);
    struct timespec end;
    clock_gettime(CLOCK_MONOTONIC, &end);
    end.tv_sec += 10;
    fake_lock();
    while (!f->call_done)
        if (pthread_cond_timedwait(&fake_cv, &fake_mu, &end) != 0)
            break;
    int done = f->call_done;
    f->call_fn = NULL;
    fake_unlock();
    if (!done) {
        fprintf(stderr, "FAIL: fake %s did not run a call within 10 s\n", f->ops.name);
        exit(1);
    }
}

static void
fake_every_fn(fake_t *f, void *arg)
{
    uint64_t ms = *(uint64_t *)arg;
    if (ms)
        uv_timer_start(&f->timer, fake_on_timer, ms, ms);
    else
        uv_timer_stop(&f->timer);
}

void
fake_every(fake_t *f, uint64_t ms, fake_fn fn)
{
    fake_lock();
    f->timer_fn = fn;
    fake_unlock();
    fake_call(f, fake_every_fn, &ms);
}

int
fake_stop(fake_t *f)
{
    sb_actor_stop(f->actor, 1000);
    int r = sb_actor_join(f->actor);
    sb_actor_free(f->actor);
    f->actor = NULL;
    return r;
}


sb_actor_t *
fake_spawn(sb_bus_t *bus, const sb_actor_ops_t *ops, void *arg)
{
    sb_actor_t *a;
    CHECK_EQ(sb_actor_spawn(bus, ops, arg, &a), 0);
    return a;
}

void
fake_stop_actor(sb_actor_t *a, uint32_t grace_ms)
{
    sb_actor_stop(a, grace_ms);
    CHECK_EQ(sb_actor_join(a), 0); /* the loop closed cleanly */
    sb_actor_free(a);
}

typedef struct {
    sb_bus_t **buses;
    size_t n;
} buses_arg_t;

static int
buses_joined(void *arg)
{
    buses_arg_t *b = arg;
    sb_node_info_t nodes[16];
    for (size_t i = 0; i < b->n; i++) {
        size_t alive = 0, n = sb_bus_nodes(b->buses[i], nodes, 16);
        for (size_t k = 0; k < n; k++)
            alive += nodes[k].alive != 0;
        if (alive < b->n)
            return 0;
    }
    return 1;
}

void
fake_buses(sb_bus_t **buses, size_t n)
{
    static const char secret[] = "a-test-secret-of-decent-length";
    char urls[8][64], names[8][16];
    char *join[1];
    CHECK(n <= 8);
    for (size_t i = 0; i < n; i++) {
        snprintf(urls[i], sizeof urls[i], "tcp://127.0.0.1:%d", sb_test_free_port());
        snprintf(names[i], sizeof names[i], "node-%c", (char)('a' + i));
        join[0] = urls[0];
        sb_bus_opts_t o = {.node_name = names[i],
                           .listen = urls[i],
                           .join = i ? (const char *const *)join : NULL,
                           .njoin = i ? 1 : 0,
                           .secret = (const uint8_t *)secret,
                           .secret_len = strlen(secret),
                           .hello_ms = 100};
        CHECK_EQ(sb_bus_alloc(&o, &buses[i]), 0);
    }
}

void
fake_buses_start(sb_bus_t **buses, size_t n)
{
    for (size_t i = 0; i < n; i++)
        CHECK_EQ(sb_bus_start(buses[i]), 0);
    buses_arg_t b = {buses, n};
    CHECK(fake_wait(buses_joined, &b, 20000));
}
