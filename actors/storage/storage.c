/*
 * storage.c: the storage actor -- the only actor that touches persistent state (users, API
 * keys, sandboxes, executions, sessions), behind the STORE_* messages of protocols/storage.def.
 *
 * Flow of a request: decode -> check it (kind, key, record validated by records.c, sizes:
 * nothing invalid reaches a backend) -> an sb__op_t handed to the backend -> the backend
 * hands it back through sb__store_done -> one reply -> freed.  Bad input gets an error reply
 * (SB_EBADMSG, SB_ETOOBIG, SB_EINVAL) and changes nothing.
 *
 * Backends (storage.backend): "sqlite" (sqlite.c: soulbox.db in data_dir; SQLite's blocking
 * calls run in batches on the uv threadpool, never on this loop) or "redis" (redis.c: hiredis
 * async on this loop).  Either way a write is acknowledged only once it is durable.
 *
 * Invariants: every op handed to a backend comes back exactly once (outstanding counts them);
 * the linger handle stays open while any op is outstanding, so the runtime does not finish
 * the loop (and drop their replies) during a graceful stop.
 *
 * Expects sb_actor_arg to be the process's const sb_config_t *.
 */
#include "storage.h"

#include "store.h"

#include "core/config.h"
#include "base/err.h"
#include "base/log.h"
#include "protocols/msgs.h"
#include "base/alloc.h"

#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { STORE_SQLITE, STORE_REDIS };

struct sb__store {
    sb_actor_t *a;
    const sb_config_t *cfg;
    int backend;
    size_t max_record;
    sb__sqlite_t sql;
    sb__redis_t red;
    uv_timer_t linger;
    int linger_open;
    int stopping;
    uint64_t outstanding;
};

void
sb__op_fail(sb__op_t *op, int status, const char *fmt, ...)
{
    va_list ap;
    op->status = status;
    va_start(ap, fmt);
    vsnprintf(op->err, sizeof op->err, fmt, ap);
    va_end(ap);
}

void
sb__op_free(sb__op_t *op)
{
    free(op->key);
    free(op->record);
    free(op->owner);
    free(op->state);
    free(op->result);
    if (op->doc)
        json_decref(op->doc);
    free(op);
}

static void
store_maybe_close(sb__store_t *st)
{
    if (st->stopping && st->outstanding == 0 && st->linger_open) {
        uv_close((uv_handle_t *)&st->linger, NULL);
        st->linger_open = 0;
    }
}

void
sb__store_done(sb__store_t *st, sb__op_t *op)
{
    sb_actor_t *a = st->a;
    sb_buf_t *b = sb_actor_scratch(a);
    int r = 0;

    st->outstanding--;
    if (op->to.corr == 0) {
        /* A one-way message: nobody to tell, but a failure must still be seen. */
        if (op->status)
            sb_log_warn("SB-STORE-ONEWAY-FAIL", "%s", op->err);
    } else if (op->status) {
        if (op->status != SB_ENOTFOUND)
            sb_log_debug("SB-STORE-REFUSED", "%s", op->err);
        r = sb_actor_reply_error(a, &op->to, op->status, "%s", op->err);
    } else if (op->type == SB__OP_PUT || op->type == SB__OP_DEL) {
        sb_store_ack_t ack = {.kind = sb_str(op->kind->kind), .key = sb_str(op->key),
                              .changed = op->changed};
        if ((r = sb_store_ack_encode(&ack, b)) == 0)
            r = sb_actor_reply(a, &op->to, SB_MSG_STORE_ACK, 0, b->data, b->len);
    } else if (op->type == SB__OP_GET) {
        sb_store_record_t rec = {.kind = sb_str(op->kind->kind), .record = sb_str(op->result)};
        if ((r = sb_store_record_encode(&rec, b)) == 0)
            r = sb_actor_reply(a, &op->to, SB_MSG_STORE_RECORD, 0, b->data, b->len);
    } else {
        sb_store_records_t recs = {.kind = sb_str(op->kind->kind), .records = sb_str(op->result),
                                   .count = op->count, .more = op->more};
        if ((r = sb_store_records_encode(&recs, b)) == 0)
            r = sb_actor_reply(a, &op->to, SB_MSG_STORE_RECORDS, 0, b->data, b->len);
    }
    if (r)
        sb_log_warn("SB-STORE-REPLY-FAIL", "reply to a %s request not sent: %s", op->kind->kind,
                    sb_strerror(r));
    sb__op_free(op);
    store_maybe_close(st);
}

static void
store_submit(sb__store_t *st, sb__op_t *op)
{
    st->outstanding++;
    if (st->backend == STORE_SQLITE)
        sb__sqlite_submit(&st->sql, sb_actor_loop(st->a), op);
    else
        sb__redis_submit(&st->red, op);
}

/* store_refuse answers a request that never became an op; returns 0 (handled). */
static int
store_refuse(sb__store_t *st, const sb_msg_t *m, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int
store_refuse(sb__store_t *st, const sb_msg_t *m, int code, const char *fmt, ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    sb_log_debug("SB-STORE-REFUSED", "%s", text);
    if (m->flags & SB_MF_REQ) {
        sb_replyto_t to = sb_replyto(m);
        sb_actor_reply_error(st->a, &to, code, "%s", text);
    }
    return 0;
}

static sb__op_t *
store_op(const sb_msg_t *m, int type, const sb__kind_t *k)
{
    sb__op_t *op = sb_xcalloc(1, sizeof *op);
    op->type = type;
    op->kind = k;
    if (m->flags & SB_MF_REQ)
        op->to = sb_replyto(m);
    return op;
}

/* store_decode decodes m with d, answering a malformed body; 0 if it decoded. */
static int
store_decode(sb__store_t *st, const sb_msg_t *m, const sb_msgdef_t *d, void *s)
{
    const char *bad = NULL;
    int r = sb_codec_decode(d, m->body, m->body_len, s, &bad);
    if (r) {
        store_refuse(st, m, r, "malformed %s: field '%s' %s", d->name, bad ? bad : "?",
                     r == SB_ETOOBIG ? "is too big" : "is invalid");
        return r;
    }
    return 0;
}

static int
store_handle(sb_actor_t *a, void *state, const sb_msg_t *m)
{
    sb__store_t *st = state;
    const sb__kind_t *k;
    char err[300];
    (void)a;

    if (st->stopping || !st->linger_open)
        return store_refuse(st, m, SB_ECLOSED, "storage is shutting down");

    switch (m->type) {
    case SB_MSG_STORE_PUT: {
        sb_store_put_t req;
        json_t *doc;
        int r;
        if (store_decode(st, m, &sb_store_put_def, &req))
            return 0;
        if (!(k = sb__kind_find(req.kind)))
            return store_refuse(st, m, SB_EINVAL, "unknown record kind '%.32s'", req.kind.ptr);
        if ((r = sb__record_check(k, req.record, st->max_record, &doc, err, sizeof err)) != 0)
            return store_refuse(st, m, r, "%s", err);
        sb__op_t *op = store_op(m, SB__OP_PUT, k);
        op->doc = doc;
        op->key = sb_xstrdup(json_string_value(json_object_get(doc, k->f[k->pk].name)));
        op->record = json_dumps(doc, SB__JSON_FLAGS);
        op->create_only = req.create_only;
        store_submit(st, op);
        return 0;
    }
    case SB_MSG_STORE_GET: {
        sb_store_get_t req;
        int by;
        if (store_decode(st, m, &sb_store_get_def, &req))
            return 0;
        if (!(k = sb__kind_find(req.kind)))
            return store_refuse(st, m, SB_EINVAL, "unknown record kind '%.32s'", req.kind.ptr);
        by = req.by.len ? sb__kind_field(k, req.by) : k->pk;
        if (by < 0 || (by != k->pk && !(k->f[by].flags & SB__F_UNIQUE)))
            return store_refuse(st, m, SB_EINVAL, "%s records cannot be looked up by '%.32s'",
                                k->kind, req.by.ptr);
        if (!sb__id_ok(req.key, k->f[by].max))
            return store_refuse(st, m, SB_EINVAL, "bad %s key", k->kind);
        sb__op_t *op = store_op(m, SB__OP_GET, k);
        op->by = by;
        op->key = sb_str_dup(req.key);
        store_submit(st, op);
        return 0;
    }
    case SB_MSG_STORE_LIST: {
        sb_store_list_t req;
        if (store_decode(st, m, &sb_store_list_def, &req))
            return 0;
        if (!(k = sb__kind_find(req.kind)))
            return store_refuse(st, m, SB_EINVAL, "unknown record kind '%.32s'", req.kind.ptr);
        if (req.owner.len && (k->owner < 0 || !sb__id_ok(req.owner, 128)))
            return store_refuse(st, m, SB_EINVAL, "%s records cannot be listed by that owner",
                                k->kind);
        if (req.state.len && (k->state < 0 || !sb__id_ok(req.state, 32)))
            return store_refuse(st, m, SB_EINVAL, "%s records cannot be listed by that state",
                                k->kind);
        if (req.limit > SB__LIST_MAX)
            return store_refuse(st, m, SB_EINVAL, "limit over %d", SB__LIST_MAX);
        sb__op_t *op = store_op(m, SB__OP_LIST, k);
        op->owner = req.owner.len ? sb_str_dup(req.owner) : NULL;
        op->state = req.state.len ? sb_str_dup(req.state) : NULL;
        op->limit = req.limit ? (uint32_t)req.limit : SB__LIST_DEFAULT;
        store_submit(st, op);
        return 0;
    }
    case SB_MSG_STORE_DEL: {
        sb_store_del_t req;
        if (store_decode(st, m, &sb_store_del_def, &req))
            return 0;
        if (!(k = sb__kind_find(req.kind)))
            return store_refuse(st, m, SB_EINVAL, "unknown record kind '%.32s'", req.kind.ptr);
        if (!sb__id_ok(req.key, k->f[k->pk].max))
            return store_refuse(st, m, SB_EINVAL, "bad %s key", k->kind);
        sb__op_t *op = store_op(m, SB__OP_DEL, k);
        op->key = sb_str_dup(req.key);
        store_submit(st, op);
        return 0;
    }
    default:
        return SB_EUNKNOWN_TYPE;
    }
}

static int
store_init(sb_actor_t *a, void *state)
{
    sb__store_t *st = state;
    const sb_config_t *cfg = sb_actor_arg(a);
    char err[512];

    st->a = a;
    st->cfg = cfg;
    if (!cfg) {
        sb_log_error("SB-STORE-NO-CONFIG", "storage needs the configuration as its argument");
        return SB_ECONFIG;
    }
    st->max_record = (size_t)cfg->storage_max_record_bytes;
    if (strcmp(cfg->storage_backend, "sqlite") == 0) {
        sqlite3 *db;
        int from, to, r;
        if ((r = sb__sqlite_open(cfg->data_dir, &db, &from, &to, err, sizeof err)) != 0) {
            sb_log_error("SB-STORE-OPEN-FAIL", "%s", err);
            return r;
        }
        st->backend = STORE_SQLITE;
        sb__sqlite_start(&st->sql, st, db);
        sb_log_info("SB-STORE-READY", "sqlite %s/soulbox.db, schema version %d", cfg->data_dir,
                    to);
    } else if (strcmp(cfg->storage_backend, "redis") == 0) {
        st->backend = STORE_REDIS;
        sb__redis_start(&st->red, st, sb_actor_loop(a), cfg->storage_redis_host,
                        (int)cfg->storage_redis_port, (int)cfg->storage_redis_db,
                        cfg->storage_redis_password, cfg->storage_redis_prefix);
        sb_log_info("SB-STORE-READY", "redis %s:%lld db %lld prefix '%s'",
                    cfg->storage_redis_host, (long long)cfg->storage_redis_port,
                    (long long)cfg->storage_redis_db, cfg->storage_redis_prefix);
    } else {
        sb_log_error("SB-STORE-BACKEND", "storage.backend '%s' is not sqlite or redis",
                     cfg->storage_backend);
        return SB_ECONFIG;
    }
    uv_timer_init(sb_actor_loop(a), &st->linger);
    st->linger_open = 1;
    return 0;
}

static void
store_stop(sb_actor_t *a, void *state)
{
    sb__store_t *st = state;
    (void)a;
    if (st->stopping)
        return;
    st->stopping = 1;
    if (st->backend == STORE_REDIS)
        sb__redis_stop(&st->red);
    store_maybe_close(st);
}

static void
store_fini(sb_actor_t *a, void *state)
{
    sb__store_t *st = state;
    (void)a;
    if (st->backend == STORE_SQLITE)
        sb__sqlite_fini(&st->sql);
    else
        sb__redis_fini(&st->red);
}

const sb_actor_ops_t sb_storage_actor = {
    .abi = SB_ACTOR_ABI_V1,
    .name = "storage",
    .kind = SB_ACTOR_STORAGE,
    .state_size = sizeof(sb__store_t),
    .init = store_init,
    .handle = store_handle,
    .stop = store_stop,
    .fini = store_fini,
};
