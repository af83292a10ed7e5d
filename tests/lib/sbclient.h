/*
 * sbclient.h: a synchronous bus client for tests.  A small actor of kind SB_ACTOR_CLIENT runs
 * on its own loop; the test's main thread hands it one request at a time (through a
 * uv_async) and waits, with a deadline, for the reply.  This lets a behavioural test read as
 * a sequence of calls while every bus operation still happens on an actor loop.
 *
 * Also: typed wrappers for the STORE_* messages, a redis-server runner, and a temp dir helper.
 */
#ifndef SB_TEST_SBCLIENT_H
#define SB_TEST_SBCLIENT_H

#include "core/actor.h"
#include "core/bus.h"
#include "core/client.h"
#include "core/config.h"

#include <sys/types.h>

typedef struct {
    sb_client_t *cl;
    sb_reply_t reply;
    /* the last call's outcome (views into reply, valid until the next call) */
    int status;
    uint16_t rtype;
    uint8_t *rbody;
    size_t rlen;
    char errmsg[1024];
} sbc_t;

/* sbc_start spawns the client actor on bus; aborts the test on failure. */
void sbc_start(sbc_t *c, sb_bus_t *bus);
/* sbc_call sends one request and waits for its reply (timeout_ms + 2 s at most).  Returns the
 * status (0 or the SB_E* of an error reply); the reply body is in c->rbody/c->rlen and an
 * error's message in c->errmsg until the next call. */
int sbc_call(sbc_t *c, uint8_t dst, uint16_t type, const void *body, size_t len,
             uint32_t timeout_ms);
/* sbc_stop stops and joins the client; returns sb_actor_join's result. */
int sbc_stop(sbc_t *c);

/* STORE_* wrappers (timeout 5 s).  *out strings are malloc'd (free them). */
int st_put(sbc_t *c, const char *kind, const char *json, int create_only);
int st_get(sbc_t *c, const char *kind, const char *key, const char *by, char **out);
int st_list(sbc_t *c, const char *kind, const char *owner, const char *state, uint64_t limit,
            char **out, uint64_t *count, int *more);
int st_del(sbc_t *c, const char *kind, const char *key, uint64_t *changed);

/* sbc_tmpdir makes a fresh directory under $TMPDIR; returns a malloc'd path. */
char *sbc_tmpdir(const char *tag);
void sbc_rmrf(const char *dir);

/* redis-server on 127.0.0.1:port with its files in dir (never the system instance); returns
 * once it accepts connections.  sbc_redis_stop sends SIGTERM and waits. */
pid_t sbc_redis_start(int port, const char *dir);
void sbc_redis_stop(pid_t pid);

#endif
