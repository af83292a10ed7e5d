/*
 * xharness.h: what the executor-actor tests share (test_executor_actor, test_kernels_exec):
 * a client actor whose calls record every reply of a stream, fake monitor and scheduler actors
 * that record what the executor reports, and request builders.  The main thread drives; every
 * bus operation happens on an actor loop; each wait is on an event with a deadline.
 */
#ifndef SB_TEST_XHARNESS_H
#define SB_TEST_XHARNESS_H

#include "core/actor.h"
#include "core/config.h"
#include "base/buf.h"
#include "base/str.h"
#include "protocols/codec.h"
#include "protocols/msgs.h"

#include <stdbool.h>

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct {
    uint16_t type;
    uint8_t flags;
    int status;
    uint8_t *body;
    size_t len;
} reply_t;

typedef struct call {
    uint8_t dst;
    uint16_t type;
    uint8_t *body;
    size_t len;
    uint32_t timeout_ms;
    reply_t r[4096];
    size_t n;
    int done;
    struct call *next;
} call_t;

typedef struct {
    sb_actor_t *actor;
    uv_mutex_t mu;
    uv_cond_t cv;
    uv_async_t async;
    call_t *queue;
} xh_client_t;

typedef struct {
    uv_mutex_t mu;
    uv_cond_t cv;
    int mon_exec, mon_sbx_samples, cap_reports;
    char ended[64][24];
    int nended;
    char sampled[24];
    uint64_t sampled_mem, sampled_pids;
    uint64_t cap_sandboxes, cap_max;
    int cap_has_python;
} xh_rec_t;

/* The client (spawn it with cl_ops; the fake monitor and scheduler with mon_ops/sched_ops). */
extern xh_client_t cl;
extern xh_rec_t rec;
extern const sb_actor_ops_t cl_ops, mon_ops, sched_ops;
extern sb_buf_t B;            /* enc's buffer */
extern sb_buf_t strv_bufs[4]; /* strv's slots (init/fini them in main) */

/* call_start queues a request of type to the executor; call_wait_n waits (ms) until it has n
 * replies or is done; call sends and waits for the final reply; last is its last reply. */
call_t *call_start(uint16_t type, const sb_buf_t *b, uint32_t timeout_ms);
void call_wait_n(call_t *c, size_t n, uint32_t ms);
void call_free(call_t *c);
call_t *call(uint16_t type, const sb_buf_t *b, uint32_t timeout_ms);
reply_t *last(call_t *c);
sb_msg_t as_msg(const reply_t *r);
/* rec_wait waits (deadline ms) until pred(arg) holds; the recorder signals each report. */
int rec_wait(int (*pred)(void *), void *arg, int ms);
/* enc encodes s (described by d) into a shared buffer; strv builds a msgpack array of strings
 * in one of four static slots. */
sb_buf_t *enc(const sb_msgdef_t *d, const void *s);
sb_str_t strv(int slot, const char *const *v);

/* Sandboxes and runs through the executor (each CHECKs the reply's shape). */
typedef struct {
    call_t *c;
    sb_result_t res;
    sb_msg_t m;
} result_t;
char *create_warm(const char *runtime, bool warm); /* the new id, malloc'd */
char *create(const char *runtime);
int destroy(const char *id);                       /* the reply's status */
void result_of(call_t *c, result_t *out);          /* the RESULT a RUN/CMD call ended with */
call_t *run(sb_run_t *req, uint32_t timeout_ms);
int status_is(const result_t *r, const char *s);   /* 1, or 0 after printing why not */

/* The world every executor test runs in: a private bus, the real executor (configured by the
 * given flags), the fake monitor and scheduler, and the client.  xh_stop stops all but the
 * executor (each test stops that itself, checking how it goes) and frees everything. */
typedef struct {
    sb_bus_t *bus;
    sb_actor_t *exec, *mon, *sched;
    sb_config_t cfg;
} xh_world_t;
void xh_start(xh_world_t *w, const char *const *flags);
void xh_stop(xh_world_t *w);

#endif
