/*
 * store.h: internal to actors/storage -- the record kinds, one queued storage operation, and
 * the two backends behind the actor (SQLite in sqlite.c, Redis in redis.c).
 *
 * An operation (sb__op_t) is created by storage.c from a validated request, handed to the
 * backend, and handed back exactly once through sb__store_done(), which replies and frees it.
 * Between those two calls the backend owns it (for SQLite, possibly on a uv work thread).
 */
#ifndef SB_STORAGE_STORE_H
#define SB_STORAGE_STORE_H

#include "core/actor.h"
#include "base/str.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* ---- record kinds (records.c) ---------------------------------------------------------- */

enum { SB__F_STR, SB__F_INT, SB__F_JSON };
enum {
    SB__F_REQ = 0x01,     /* must be present */
    SB__F_PK = 0x02,      /* the primary key (a SB__F_ID string) */
    SB__F_UNIQUE = 0x04,  /* unique across the kind; usable as STORE_GET `by` */
    SB__F_OWNER = 0x08,   /* the owner column (STORE_LIST owner filter, Redis owner index) */
    SB__F_STATE = 0x10,   /* the state column (STORE_LIST state filter) */
    SB__F_CREATED = 0x20, /* ms timestamp that orders lists (newest first) */
    SB__F_SHA256 = 0x40,  /* 64 lowercase hex digits */
    SB__F_ROLE = 0x80,    /* admin, user or viewer */
    SB__F_SIGNED = 0x100, /* INT may be negative (others must be >= 0) */
    SB__F_ID = 0x200,     /* 1..max printable ASCII, no spaces */
};

typedef struct {
    const char *name;
    uint8_t type;
    uint32_t max; /* STR: bytes; JSON: serialised bytes */
    uint16_t flags;
} sb__field_t;

typedef struct {
    const char *kind;  /* "api_key" */
    const char *table; /* "api_keys": the SQLite table */
    const sb__field_t *f;
    size_t nf;
    int pk, owner, state, created; /* field indexes; -1 if none */
} sb__kind_t;

/* sb__kind_find returns the kind named name, or NULL. */
const sb__kind_t *sb__kind_find(sb_str_t name);
/* sb__kind_field returns the index of field name in k, or -1. */
int sb__kind_field(const sb__kind_t *k, sb_str_t name);
/* sb__record_check validates text as a record of kind k: at most max_bytes (SB_ETOOBIG), a
 * JSON object (SB_EBADMSG), known fields of the right types, sizes and formats, required ones
 * present (SB_EINVAL).  On success *out is the parsed object (caller json_decref's it). */
int sb__record_check(const sb__kind_t *k, sb_str_t text, size_t max_bytes, json_t **out,
                     char *err, size_t errcap);
/* sb__id_ok: 1 if s is a valid key (printable ASCII, no space, 1..max bytes). */
int sb__id_ok(sb_str_t s, size_t max);
/* The canonical text of a record: compact, keys sorted (both backends return exactly this). */
#define SB__JSON_FLAGS (JSON_COMPACT | JSON_SORT_KEYS)

/* ---- operations ------------------------------------------------------------------------ */

enum { SB__OP_PUT, SB__OP_GET, SB__OP_LIST, SB__OP_DEL };

#define SB__LIST_DEFAULT 100
#define SB__LIST_MAX 1000
#define SB__REPLY_CAP (3u << 20) /* a STORE_RECORDS body stays under SB_MSG_MAX_BODY */

typedef struct sb__op {
    struct sb__op *next;
    int type;
    const sb__kind_t *kind;
    sb_replyto_t to;
    /* request (owned copies) */
    char *key;     /* PUT: the record's primary key; GET/DEL: the key asked for */
    int by;        /* GET: field index looked up (the pk or a unique field) */
    json_t *doc;   /* PUT: the validated record */
    char *record;  /* PUT: its canonical text */
    int create_only;
    char *owner, *state; /* LIST filters, NULL = any */
    uint32_t limit;
    /* result */
    int status;
    char err[256];
    char *result; /* GET: the record; LIST: a JSON array */
    uint64_t count, changed;
    int more;
} sb__op_t;

typedef struct sb__store sb__store_t;
/* sb__store_done: the backend hands op back (status and result filled); on the loop thread. */
void sb__store_done(sb__store_t *st, sb__op_t *op);
void sb__op_free(sb__op_t *op);
/* sb__op_fail sets op's status and error text. */
void sb__op_fail(sb__op_t *op, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---- SQLite backend (sqlite.c) ---------------------------------------------------------- */

#define SB__SCHEMA_VERSION 2

typedef struct sqlite3 sqlite3;

typedef struct {
    sb__store_t *st;
    sqlite3 *db;
    sb__op_t *head, *tail; /* waiting */
    size_t nqueued;
    sb__op_t *batch;       /* on the work thread */
    uv_work_t work;
    int busy;
} sb__sqlite_t;

/* sb__data_dir_make creates dir (and missing parents) with mode 0700; 0 or SB_EIO. */
int sb__data_dir_make(const char *dir, char *err, size_t errcap);
/* sb__sqlite_open opens (creating) dir/soulbox.db in WAL mode with synchronous=FULL and runs
 * pending migrations; *from and *to are the schema versions before and after.  Blocks. */
int sb__sqlite_open(const char *dir, sqlite3 **out, int *from, int *to, char *err, size_t errcap);
void sb__sqlite_start(sb__sqlite_t *s, sb__store_t *st, sqlite3 *db);
/* sb__sqlite_submit queues op; batches run one at a time on the uv threadpool. */
void sb__sqlite_submit(sb__sqlite_t *s, uv_loop_t *loop, sb__op_t *op);
void sb__sqlite_fini(sb__sqlite_t *s);

/* ---- Redis backend (redis.c) ------------------------------------------------------------ */

typedef struct redisAsyncContext redisAsyncContext;

typedef struct {
    sb__store_t *st;
    uv_loop_t *loop;
    char *host, *password, *prefix;
    int port, db;
    redisAsyncContext *ac;
    int connected;  /* the connect callback said yes and no disconnect since */
    int stopping;
    uv_timer_t retry;
    uint32_t backoff_ms;
    uint64_t inflight;
    uint64_t failures; /* connection attempts failed in a row (logging only) */
} sb__redis_t;

int sb__redis_start(sb__redis_t *r, sb__store_t *st, uv_loop_t *loop, const char *host, int port,
                    int db, const char *password, const char *prefix);
void sb__redis_submit(sb__redis_t *r, sb__op_t *op);
/* sb__redis_stop disconnects (in-flight replies still arrive) and closes the retry timer. */
void sb__redis_stop(sb__redis_t *r);
int sb__redis_idle(const sb__redis_t *r);
void sb__redis_fini(sb__redis_t *r);

#endif
