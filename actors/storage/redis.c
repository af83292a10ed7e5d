/*
 * redis.c: the Redis backend -- hiredis's async API on the storage actor's own libuv loop.
 *
 * Key layout (P = storage.redis_prefix + kind + ":", e.g. "soulbox:sandbox:"):
 *   P r:<key>              the record's canonical JSON text
 *   P u:FIELD:VALUE        unique index: value -> key (api_key.key_hash)
 *   P all                  sorted set of every key, score = created (ms)
 *   P i:FIELD:VALUE        sorted set per owner / per state, score = created
 *   <prefix>schema         the schema version (SET NX at connect; `soulbox migrate` sets it)
 * Every operation is one Lua script (EVAL), so a record and its indexes change atomically and
 * a refused write (EEXIST) changes nothing.
 *
 * Durability: a reply is sent only after Redis answered; with appendonly yes and appendfsync
 * always (docs/operations.md) Redis fsyncs its AOF before it answers, so acknowledged writes
 * survive a crash of either process.
 *
 * Connection states: DOWN (ac == NULL, retry timer armed with exponential backoff 50 ms ..
 * 2 s) -> CONNECTING (ac set, connected = 0) -> UP (connected = 1) -> DOWN on any error.
 * Requests outside UP fail at once with SB_EUNAVAILABLE; requests in flight when the
 * connection drops fail with SB_EUNAVAILABLE too (hiredis calls their callbacks with no
 * reply): they were never acknowledged, so nothing acknowledged is lost.
 */
#include "store.h"

#include "base/err.h"
#include "base/log.h"
#include "base/alloc.h"

#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REDIS_BACKOFF_MIN 50
#define REDIS_BACKOFF_MAX 2000
#define REDIS_ARGS_MAX 32

/* PUT.  ARGV: P key json create score nuniq nidx {field value}*nuniq {field value}*nidx */
static const char redis_lua_put[] =
    "local p, id = ARGV[1], ARGV[2]\n"
    "local rk = p .. 'r:' .. id\n"
    "local old = redis.call('GET', rk)\n"
    "if old and ARGV[4] == '1' then return redis.error_reply('EEXIST the key exists') end\n"
    "local nu, ni = tonumber(ARGV[6]), tonumber(ARGV[7])\n"
    "for i = 0, nu - 1 do\n"
    "  local f, v = ARGV[8 + 2*i], ARGV[9 + 2*i]\n"
    "  if v ~= '' then\n"
    "    local h = redis.call('GET', p .. 'u:' .. f .. ':' .. v)\n"
    "    if h and h ~= id then return redis.error_reply('EEXIST ' .. f .. ' is taken') end\n"
    "  end\n"
    "end\n"
    "local o = old and cjson.decode(old) or {}\n"
    "for i = 0, nu - 1 do\n"
    "  local f = ARGV[8 + 2*i]\n"
    "  if type(o[f]) == 'string' and o[f] ~= ARGV[9 + 2*i] then\n"
    "    local uk = p .. 'u:' .. f .. ':' .. o[f]\n"
    "    if redis.call('GET', uk) == id then redis.call('DEL', uk) end\n"
    "  end\n"
    "  if ARGV[9 + 2*i] ~= '' then redis.call('SET', p .. 'u:' .. f .. ':' .. ARGV[9 + 2*i], id) end\n"
    "end\n"
    "local b = 8 + 2*nu\n"
    "for i = 0, ni - 1 do\n"
    "  local f, v = ARGV[b + 2*i], ARGV[b + 1 + 2*i]\n"
    "  if type(o[f]) == 'string' and o[f] ~= v then\n"
    "    redis.call('ZREM', p .. 'i:' .. f .. ':' .. o[f], id)\n"
    "  end\n"
    "  if v ~= '' then redis.call('ZADD', p .. 'i:' .. f .. ':' .. v, ARGV[5], id) end\n"
    "end\n"
    "redis.call('ZADD', p .. 'all', ARGV[5], id)\n"
    "redis.call('SET', rk, ARGV[3])\n"
    "return 1\n";

/* GET.  ARGV: P by key  (by '' = primary key) */
static const char redis_lua_get[] =
    "local id = ARGV[3]\n"
    "if ARGV[2] ~= '' then\n"
    "  id = redis.call('GET', ARGV[1] .. 'u:' .. ARGV[2] .. ':' .. ARGV[3])\n"
    "  if not id then return false end\n"
    "end\n"
    "return redis.call('GET', ARGV[1] .. 'r:' .. id)\n";

/* LIST.  ARGV: P zset filter_field filter_value want -> records, newest first */
static const char redis_lua_list[] =
    "local p, z, ff, fv, want = ARGV[1], ARGV[1] .. ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])\n"
    "local out, start = {}, 0\n"
    "while #out < want do\n"
    "  local ids = redis.call('ZREVRANGE', z, start, start + 199)\n"
    "  if #ids == 0 then break end\n"
    "  for _, id in ipairs(ids) do\n"
    "    local r = redis.call('GET', p .. 'r:' .. id)\n"
    "    if r and (ff == '' or cjson.decode(r)[ff] == fv) then\n"
    "      out[#out + 1] = r\n"
    "      if #out >= want then break end\n"
    "    end\n"
    "  end\n"
    "  start = start + 200\n"
    "end\n"
    "return out\n";

/* DEL.  ARGV: P key nuniq nidx {field}*nuniq {field}*nidx */
static const char redis_lua_del[] =
    "local p, id = ARGV[1], ARGV[2]\n"
    "local rk = p .. 'r:' .. id\n"
    "local old = redis.call('GET', rk)\n"
    "if not old then return 0 end\n"
    "local o = cjson.decode(old)\n"
    "local nu, ni = tonumber(ARGV[3]), tonumber(ARGV[4])\n"
    "for i = 0, nu - 1 do\n"
    "  local f = ARGV[5 + i]\n"
    "  if type(o[f]) == 'string' then\n"
    "    local uk = p .. 'u:' .. f .. ':' .. o[f]\n"
    "    if redis.call('GET', uk) == id then redis.call('DEL', uk) end\n"
    "  end\n"
    "end\n"
    "for i = 0, ni - 1 do\n"
    "  local f = ARGV[5 + nu + i]\n"
    "  if type(o[f]) == 'string' then redis.call('ZREM', p .. 'i:' .. f .. ':' .. o[f], id) end\n"
    "end\n"
    "redis.call('ZREM', p .. 'all', id)\n"
    "redis.call('DEL', rk)\n"
    "return 1\n";

static void redis_connect(sb__redis_t *r);

/* ---- building a command ------------------------------------------------------------------ */

typedef struct {
    int n;
    const char *v[REDIS_ARGS_MAX];
    size_t len[REDIS_ARGS_MAX];
    char owned[REDIS_ARGS_MAX][32];
} redis_args_t;

static void
redis_arg(redis_args_t *a, const char *s, size_t n)
{
    SB_ASSERT(a->n < REDIS_ARGS_MAX);
    a->v[a->n] = s;
    a->len[a->n++] = n;
}

static void
redis_arg_s(redis_args_t *a, const char *s)
{
    redis_arg(a, s, strlen(s));
}

static void
redis_arg_i(redis_args_t *a, long long v)
{
    SB_ASSERT(a->n < REDIS_ARGS_MAX);
    int n = snprintf(a->owned[a->n], sizeof a->owned[a->n], "%lld", v);
    redis_arg(a, a->owned[a->n], (size_t)n);
}

static const char *
redis_str_field(json_t *doc, const char *name)
{
    json_t *v = json_object_get(doc, name);
    return json_is_string(v) ? json_string_value(v) : "";
}

/* ---- replies ----------------------------------------------------------------------------- */

static void
redis_on_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    sb__redis_t *r = ac->data;
    sb__op_t *op = priv;
    redisReply *rep = reply;

    r->inflight--;
    if (!rep) {
        sb__op_fail(op, SB_EUNAVAILABLE, "redis connection lost before the reply; retry");
    } else if (rep->type == REDIS_REPLY_ERROR) {
        if (strncmp(rep->str, "EEXIST", 6) == 0)
            sb__op_fail(op, SB_EEXIST, "%s: %s", op->kind->kind, rep->str + 7);
        else if (strncmp(rep->str, "LOADING", 7) == 0 || strncmp(rep->str, "BUSY", 4) == 0 ||
                 strncmp(rep->str, "MASTERDOWN", 10) == 0 || strncmp(rep->str, "TRYAGAIN", 8) == 0)
            sb__op_fail(op, SB_EUNAVAILABLE, "redis is not ready (%s); retry later", rep->str);
        else
            sb__op_fail(op, SB_EIO, "redis: %s", rep->str);
    } else if (op->type == SB__OP_PUT || op->type == SB__OP_DEL) {
        op->changed = rep->type == REDIS_REPLY_INTEGER ? (uint64_t)rep->integer : 0;
    } else if (op->type == SB__OP_GET) {
        if (rep->type == REDIS_REPLY_STRING) {
            op->result = strndup(rep->str, (size_t)rep->len);
            op->count = 1;
        } else {
            sb__op_fail(op, SB_ENOTFOUND, "no %s with %s '%s'", op->kind->kind,
                        op->kind->f[op->by].name, op->key);
        }
    } else if (rep->type == REDIS_REPLY_ARRAY) {
        sb_buf_t out;
        sb_buf_init(&out, 0);
        sb_buf_append(&out, "[", 1);
        size_t i = 0;
        for (; i < rep->elements && i < op->limit; i++) {
            redisReply *e = rep->element[i];
            if (e->type != REDIS_REPLY_STRING)
                continue;
            if (out.len + (size_t)e->len + 2 > SB__REPLY_CAP)
                break;
            if (op->count++)
                sb_buf_append(&out, ",", 1);
            sb_buf_append(&out, e->str, (size_t)e->len);
        }
        op->more = i < rep->elements;
        sb_buf_append(&out, "]", 2);
        size_t rlen;
        op->result = (char *)sb_buf_steal(&out, &rlen);
    } else {
        sb__op_fail(op, SB_EIO, "redis: unexpected reply type %d", rep->type);
    }
    sb__store_done(r->st, op);
}

void
sb__redis_submit(sb__redis_t *r, sb__op_t *op)
{
    const sb__kind_t *k = op->kind;
    redis_args_t a = {0};
    char p[256], z[400]; /* z: referenced by a until the command is formatted */

    if (!r->connected || !r->ac) {
        sb__op_fail(op, SB_EUNAVAILABLE, "redis at %s:%d is unreachable; retry later", r->host,
                    r->port);
        sb__store_done(r->st, op);
        return;
    }
    snprintf(p, sizeof p, "%s%s:", r->prefix, k->kind);
    redis_arg_s(&a, "EVAL");
    switch (op->type) {
    case SB__OP_PUT: {
        json_t *c = k->created >= 0 ? json_object_get(op->doc, k->f[k->created].name) : NULL;
        int nu = 0, ni = 0;
        for (size_t i = 0; i < k->nf; i++) {
            nu += !!(k->f[i].flags & SB__F_UNIQUE);
            ni += (int)i == k->owner || (int)i == k->state;
        }
        redis_arg_s(&a, redis_lua_put);
        redis_arg_s(&a, "0");
        redis_arg_s(&a, p);
        redis_arg_s(&a, op->key);
        redis_arg_s(&a, op->record);
        redis_arg_s(&a, op->create_only ? "1" : "0");
        redis_arg_i(&a, c ? json_integer_value(c) : 0);
        redis_arg_i(&a, nu);
        redis_arg_i(&a, ni);
        for (size_t i = 0; i < k->nf; i++) {
            if (k->f[i].flags & SB__F_UNIQUE) {
                redis_arg_s(&a, k->f[i].name);
                redis_arg_s(&a, redis_str_field(op->doc, k->f[i].name));
            }
        }
        for (size_t i = 0; i < k->nf; i++) {
            if ((int)i == k->owner || (int)i == k->state) {
                redis_arg_s(&a, k->f[i].name);
                redis_arg_s(&a, redis_str_field(op->doc, k->f[i].name));
            }
        }
        break;
    }
    case SB__OP_GET:
        redis_arg_s(&a, redis_lua_get);
        redis_arg_s(&a, "0");
        redis_arg_s(&a, p);
        redis_arg_s(&a, op->by == k->pk ? "" : k->f[op->by].name);
        redis_arg_s(&a, op->key);
        break;
    case SB__OP_LIST: {
        const char *ff = "", *fv = "";
        /* Walk the narrowest index we have; filter the other condition in the script. */
        if (op->owner) {
            snprintf(z, sizeof z, "i:%s:%s", k->f[k->owner].name, op->owner);
            if (op->state) {
                ff = k->f[k->state].name;
                fv = op->state;
            }
        } else if (op->state) {
            snprintf(z, sizeof z, "i:%s:%s", k->f[k->state].name, op->state);
        } else {
            snprintf(z, sizeof z, "all");
        }
        redis_arg_s(&a, redis_lua_list);
        redis_arg_s(&a, "0");
        redis_arg_s(&a, p);
        redis_arg_s(&a, z);
        redis_arg_s(&a, ff);
        redis_arg_s(&a, fv);
        redis_arg_i(&a, (long long)op->limit + 1);
        break;
    }
    default: {
        int nu = 0, ni = 0;
        for (size_t i = 0; i < k->nf; i++) {
            nu += !!(k->f[i].flags & SB__F_UNIQUE);
            ni += (int)i == k->owner || (int)i == k->state;
        }
        redis_arg_s(&a, redis_lua_del);
        redis_arg_s(&a, "0");
        redis_arg_s(&a, p);
        redis_arg_s(&a, op->key);
        redis_arg_i(&a, nu);
        redis_arg_i(&a, ni);
        for (size_t i = 0; i < k->nf; i++)
            if (k->f[i].flags & SB__F_UNIQUE)
                redis_arg_s(&a, k->f[i].name);
        for (size_t i = 0; i < k->nf; i++)
            if ((int)i == k->owner || (int)i == k->state)
                redis_arg_s(&a, k->f[i].name);
        break;
    }
    }
    if (redisAsyncCommandArgv(r->ac, redis_on_reply, op, a.n, a.v, a.len) != REDIS_OK) {
        sb__op_fail(op, SB_EUNAVAILABLE, "redis: cannot send the command; retry later");
        sb__store_done(r->st, op);
        return;
    }
    r->inflight++;
}

/* ---- connection -------------------------------------------------------------------------- */

static void
redis_on_retry(uv_timer_t *t)
{
    redis_connect(t->data);
}

static void
redis_schedule(sb__redis_t *r)
{
    if (r->stopping || uv_is_active((uv_handle_t *)&r->retry))
        return;
    uv_timer_start(&r->retry, redis_on_retry, r->backoff_ms, 0);
    r->backoff_ms = r->backoff_ms * 2 > REDIS_BACKOFF_MAX ? REDIS_BACKOFF_MAX : r->backoff_ms * 2;
}

static void
redis_on_connect(const redisAsyncContext *ac, int status)
{
    sb__redis_t *r = ac->data;
    if (r->ac != ac)
        return;
    if (status != REDIS_OK) {
        /* hiredis frees the context after this callback. */
        if (r->failures++ % 20 == 0)
            sb_log_warn("SB-STORE-REDIS-DOWN", "cannot connect to redis at %s:%d: %s; retrying",
                        r->host, r->port, ac->errstr);
        r->ac = NULL;
        r->connected = 0;
        redis_schedule(r);
        return;
    }
    r->connected = 1;
    r->failures = 0;
    r->backoff_ms = REDIS_BACKOFF_MIN;
    sb_log_info("SB-STORE-REDIS-UP", "connected to redis at %s:%d", r->host, r->port);
}

static void
redis_on_disconnect(const redisAsyncContext *ac, int status)
{
    sb__redis_t *r = ac->data;
    if (r->ac != ac)
        return;
    r->ac = NULL;
    r->connected = 0;
    if (r->stopping)
        return;
    sb_log_warn("SB-STORE-REDIS-LOST", "lost the connection to redis at %s:%d (%s); reconnecting",
                r->host, r->port, status == REDIS_OK ? "closed" : ac->errstr);
    redis_schedule(r);
}

/* Fire-and-forget setup commands; hiredis sends them first, in order, once connected. */
static void
redis_setup(sb__redis_t *r)
{
    char key[300], ver[16];
    if (*r->password)
        redisAsyncCommand(r->ac, NULL, NULL, "AUTH %s", r->password);
    if (r->db)
        redisAsyncCommand(r->ac, NULL, NULL, "SELECT %d", r->db);
    snprintf(key, sizeof key, "%sschema", r->prefix);
    snprintf(ver, sizeof ver, "%d", SB__SCHEMA_VERSION);
    redisAsyncCommand(r->ac, NULL, NULL, "SET %s %s NX", key, ver);
}

static void
redis_connect(sb__redis_t *r)
{
    if (r->stopping || r->ac)
        return;
    redisAsyncContext *ac = redisAsyncConnect(r->host, r->port);
    if (!ac || ac->err) {
        if (r->failures++ % 20 == 0)
            sb_log_warn("SB-STORE-REDIS-DOWN", "cannot connect to redis at %s:%d: %s; retrying",
                        r->host, r->port, ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        redis_schedule(r);
        return;
    }
    ac->data = r;
    if (redisLibuvAttach(ac, r->loop) != REDIS_OK) {
        redisAsyncFree(ac);
        redis_schedule(r);
        return;
    }
    r->ac = ac;
    redisAsyncSetConnectCallback(ac, redis_on_connect);
    redisAsyncSetDisconnectCallback(ac, redis_on_disconnect);
    redis_setup(r);
}

int
sb__redis_start(sb__redis_t *r, sb__store_t *st, uv_loop_t *loop, const char *host, int port,
                int db, const char *password, const char *prefix)
{
    memset(r, 0, sizeof *r);
    r->st = st;
    r->loop = loop;
    r->host = sb_xstrdup(host);
    r->port = port;
    r->db = db;
    r->password = sb_xstrdup(password ? password : "");
    r->prefix = sb_xstrdup(prefix ? prefix : "");
    r->backoff_ms = REDIS_BACKOFF_MIN;
    uv_timer_init(loop, &r->retry);
    r->retry.data = r;
    redis_connect(r);
    return 0;
}

void
sb__redis_stop(sb__redis_t *r)
{
    if (r->stopping)
        return;
    r->stopping = 1;
    uv_timer_stop(&r->retry);
    uv_close((uv_handle_t *)&r->retry, NULL);
    if (r->ac) {
        /* Graceful: hiredis waits for the replies still due, then closes; their callbacks
         * run (and reply to the requesters) before the disconnect callback. */
        r->connected = 0;
        redisAsyncDisconnect(r->ac);
    }
}

int
sb__redis_idle(const sb__redis_t *r)
{
    return r->inflight == 0;
}

void
sb__redis_fini(sb__redis_t *r)
{
    free(r->host);
    free(r->password);
    free(r->prefix);
}
