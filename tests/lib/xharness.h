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
} xh_reply_t;

typedef struct xh_call {
    uint8_t dst;
    uint16_t type;
    uint8_t *body;
    size_t len;
    uint32_t timeout_ms;
    xh_reply_t r[4096];
    size_t n;
    int done;
    struct xh_call *next;
} xh_call_t;

typedef struct {
    sb_actor_t *actor;
    uv_mutex_t mu;
    uv_cond_t cv;
    uv_async_t async;
    xh_call_t *queue;
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

/* The client (spawn it with xh_cl_ops; the fake monitor and scheduler with xh_mon_ops/xh_sched_ops). */
extern xh_client_t xh_cl;
extern xh_rec_t xh_rec;
extern const sb_actor_ops_t xh_cl_ops, xh_mon_ops, xh_sched_ops;
extern sb_buf_t xh_B;            /* enc's buffer */
extern sb_buf_t xh_strv_bufs[4]; /* strv's slots (init/fini them in main) */

/* call_start queues a request of type to the executor; call_wait_n waits (ms) until it has n
 * replies or is done; call sends and waits for the final reply; last is its last reply. */
xh_call_t *xh_call_start(uint16_t type, const sb_buf_t *b, uint32_t timeout_ms);
void xh_call_wait_n(xh_call_t *c, size_t n, uint32_t ms);
void xh_call_free(xh_call_t *c);
xh_call_t *xh_call(uint16_t type, const sb_buf_t *b, uint32_t timeout_ms);
xh_reply_t *xh_last(xh_call_t *c);
sb_msg_t xh_as_msg(const xh_reply_t *r);
/* rec_wait waits (deadline ms) until pred(arg) holds; the recorder signals each report. */
int xh_rec_wait(int (*pred)(void *), void *arg, int ms);
/* enc encodes s (described by d) into a shared buffer; strv builds a msgpack array of strings
 * in one of four static slots. */
sb_buf_t *xh_enc(const sb_msgdef_t *d, const void *s);
sb_str_t xh_strv(int slot, const char *const *v);

/* Sandboxes and runs through the executor (each CHECKs the reply's shape). */
typedef struct {
    xh_call_t *c;
    sb_result_t res;
    sb_msg_t m;
} xh_result_t;
char *xh_create_warm(const char *runtime, bool warm); /* the new id, malloc'd */
char *xh_create(const char *runtime);
int xh_destroy(const char *id);                       /* the reply's status */
void xh_result_of(xh_call_t *c, xh_result_t *out);          /* the RESULT a RUN/CMD call ended with */
xh_call_t *xh_run(sb_run_t *req, uint32_t timeout_ms);
int xh_status_is(const xh_result_t *r, const char *s);   /* 1, or 0 after printing why not */

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
