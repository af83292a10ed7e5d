/*
 * fake.h: in-process fake actors for the scheduler and pool tests.  A fake is an actor of any
 * kind (executor, gateway-as-client, pool, scheduler, monitor) whose handler the test
 * supplies; it runs on its own loop like a real actor, so the actor under test sees real bus
 * traffic.  The test's main thread drives a fake with fake_call (runs a function on the fake's
 * thread and waits for it) and waits for what fakes record with fake_wait (a predicate over
 * shared state, re-checked whenever a fake handles something, with a deadline: no sleeps).
 *
 * One recursive lock guards all fakes' recorded state: handlers and fake_call functions run
 * with it held, and a test reads recorded state only under it (fake_lock/fake_unlock).
 */
#ifndef SB_TEST_FAKE_H
#define SB_TEST_FAKE_H

#include "core/actor.h"
#include "core/bus.h"
#include "core/config.h"

typedef struct fake fake_t;
/* On the fake's thread, lock held.  Return 0 or an SB_E* for the runtime to answer with. */
typedef int (*fake_on_msg)(fake_t *f, const sb_msg_t *m);
typedef void (*fake_fn)(fake_t *f, void *arg);

struct fake {
    sb_actor_ops_t ops;
    sb_actor_t *actor;
    uv_async_t async;
    uv_timer_t timer;
    fake_on_msg on_msg;
    void *user;
    fake_fn call_fn, timer_fn;
    void *call_arg;
    int call_done;
};

void fake_lock(void);
void fake_unlock(void);
/* fake_wait returns 1 once pred(arg) holds (checked under the lock), 0 after timeout_ms. */
int fake_wait(int (*pred)(void *arg), void *arg, int timeout_ms);
/* fake_wake re-checks waiters; fakes call it (under the lock) after recording something. */
void fake_wake(void);

void fake_start(fake_t *f, sb_bus_t *bus, int kind, const char *name, fake_on_msg fn, void *user);
/* fake_call runs fn(f, arg) on f's thread with the lock held and waits for it. */
void fake_call(fake_t *f, fake_fn fn, void *arg);
/* fake_every runs fn on f's thread every ms (0: stop). */
void fake_every(fake_t *f, uint64_t ms, fake_fn fn);
/* fake_stop stops and joins f; returns sb_actor_join's result (0: loop closed cleanly). */
int fake_stop(fake_t *f);

/* Spawn an actor under test and stop it (CHECKs the loop closed cleanly). */
sb_actor_t *fake_spawn(sb_bus_t *bus, const sb_actor_ops_t *ops, void *arg);
void fake_stop_actor(sb_actor_t *a, uint32_t grace_ms);

/* n buses (nodes "node-a", "node-b", ...) on tcp loopback with a shared secret, joining
 * buses[0].  Spawn their actors, then fake_buses_start, which returns once every bus sees
 * every other alive. */
void fake_buses(sb_bus_t **buses, size_t n);
void fake_buses_start(sb_bus_t **buses, size_t n);

#endif
