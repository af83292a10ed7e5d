/*
 * sqlite.c: the SQLite backend -- soulbox.db in the data directory, WAL, synchronous=FULL.
 *
 * Durability: in WAL mode with synchronous=FULL every COMMIT fsyncs the WAL before it
 * returns, and storage replies only after COMMIT returned, so an acknowledged write survives
 * kill -9 (and power loss, as far as the disk honours fsync).
 *
 * Threads: SQLite calls block (an fsync per commit costs milliseconds here), so they never run
 * on the actor's loop.  Operations queue on the loop; one batch at a time -- everything
 * queued when the previous batch finished -- runs on the uv threadpool inside ONE transaction
 * (group commit: one fsync for the whole batch), each operation under its own SAVEPOINT so a
 * refused one changes nothing and does not affect its neighbours.  Only that one work item
 * touches the connection while it runs, so the connection is never used by two threads at
 * once; replies go out from the after-work callback on the loop.  The rejected alternative,
 * a synchronous call per request on the loop, would stall PING answers and every queued
 * request behind each fsync.
 *
 * Migrations: PRAGMA user_version is the schema version; each step in sqlite_migrations runs
 * in its own transaction together with the version bump, so a crash mid-migration leaves the
 * database at the previous version, and a second run picks up where it stopped.  Steps are
 * frozen text: never edit one that shipped, append a new one.
 */
#include "store.h"

#include "base/err.h"
#include "base/log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SQLITE_QUEUE_MAX 4096 /* waiting operations; more are refused with SB_EAGAIN */
#define SQLITE_BATCH_MAX 256  /* operations per transaction */

/* Migration N (1-based) takes the schema from version N-1 to N. */
static const char *const sqlite_migrations[] = {
    /* v1: users, API keys, sandboxes, executions. */
    "CREATE TABLE users (username TEXT PRIMARY KEY, password_hash TEXT NOT NULL,"
    "  role TEXT NOT NULL, created INTEGER, updated INTEGER, disabled INTEGER);"
    "CREATE TABLE api_keys (id TEXT PRIMARY KEY, key_hash TEXT NOT NULL UNIQUE,"
    "  owner TEXT NOT NULL, role TEXT NOT NULL, name TEXT, created INTEGER, revoked INTEGER,"
    "  expires INTEGER, last_used INTEGER);"
    "CREATE TABLE sandboxes (id TEXT PRIMARY KEY, owner TEXT NOT NULL, runtime TEXT NOT NULL,"
    "  state TEXT NOT NULL, limits TEXT, node TEXT, created INTEGER, ended INTEGER,"
    "  end_reason TEXT);"
    "CREATE TABLE executions (id TEXT PRIMARY KEY, owner TEXT NOT NULL, runtime TEXT NOT NULL,"
    "  code_sha256 TEXT NOT NULL, status TEXT NOT NULL, exit_code INTEGER, sandbox_id TEXT,"
    "  created INTEGER, started INTEGER, ended INTEGER, wall_ms INTEGER, cpu_ms INTEGER,"
    "  memory_peak INTEGER);",
    /* v2: sandbox metadata, sessions, and indexes for the list queries. */
    "ALTER TABLE sandboxes ADD COLUMN metadata TEXT;"
    "CREATE TABLE sessions (id TEXT PRIMARY KEY, owner TEXT NOT NULL, sandbox_id TEXT,"
    "  created INTEGER, last_seen INTEGER, expires INTEGER);"
    "CREATE INDEX api_keys_owner ON api_keys(owner, created);"
    "CREATE INDEX sandboxes_owner ON sandboxes(owner, created);"
    "CREATE INDEX sandboxes_state ON sandboxes(state, created);"
    "CREATE INDEX executions_owner ON executions(owner, created);"
    "CREATE INDEX sessions_owner ON sessions(owner, created);",
};
_Static_assert(sizeof sqlite_migrations / sizeof sqlite_migrations[0] == SB__SCHEMA_VERSION,
               "one migration per schema version");

int
sb__data_dir_make(const char *dir, char *err, size_t errcap)
{
    char path[PATH_MAX];
    struct stat st;

    if (!dir || !*dir || strlen(dir) >= sizeof path) {
        snprintf(err, errcap, "data_dir is empty or too long");
        return SB_ECONFIG;
    }
    strcpy(path, dir);
    /* Create missing parents too, each 0700: nothing here is for other users. */
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(path, 0700) != 0 && errno != EEXIST) {
            snprintf(err, errcap, "cannot create %s: %s", path, strerror(errno));
            return SB_EIO;
        }
        *p = '/';
    }
    if (mkdir(path, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errcap, "cannot create data_dir %s: %s", path, strerror(errno));
        return SB_EIO;
    }
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, errcap, "data_dir %s is not a directory", path);
        return SB_EIO;
    }
    if (st.st_mode & 022)
        sb_log_warn("SB-STORE-DIR-PERMS", "data_dir %s is writable by others (mode %o); "
                    "chmod 700 it", path, (unsigned)(st.st_mode & 0777));
    return 0;
}

static int
sqlite_exec(sqlite3 *db, const char *sql, char *err, size_t errcap)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, errcap, "%s", msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        return SB_EIO;
    }
    return 0;
}

static int
sqlite_version(sqlite3 *db)
{
    sqlite3_stmt *s;
    int v = -1;
    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL) != SQLITE_OK)
        return -1;
    if (sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    return v;
}

int
sb__sqlite_open(const char *dir, sqlite3 **out, int *from, int *to, char *err, size_t errcap)
{
    char path[PATH_MAX], sql[64];
    sqlite3 *db = NULL;
    int r, v;

    if ((r = sb__data_dir_make(dir, err, errcap)) != 0)
        return r;
    if (snprintf(path, sizeof path, "%s/soulbox.db", dir) >= (int)sizeof path) {
        snprintf(err, errcap, "data_dir path too long");
        return SB_ECONFIG;
    }
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                        SQLITE_OPEN_FULLMUTEX, NULL) != SQLITE_OK) {
        snprintf(err, errcap, "cannot open %s: %s", path, db ? sqlite3_errmsg(db) : "no memory");
        goto fail;
    }
    chmod(path, 0600);
    sqlite3_busy_timeout(db, 5000);
    /* WAL: readers never block the writer; FULL: each commit fsyncs the WAL (see top). */
    if (sqlite_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                        "PRAGMA foreign_keys=ON;", err, errcap))
        goto fail;
    if ((v = sqlite_version(db)) < 0) {
        snprintf(err, errcap, "cannot read the schema version of %s: %s", path,
                 sqlite3_errmsg(db));
        goto fail;
    }
    if (v > SB__SCHEMA_VERSION) {
        snprintf(err, errcap, "%s has schema version %d, newer than this soulbox knows (%d): "
                 "run a newer soulbox", path, v, SB__SCHEMA_VERSION);
        sqlite3_close(db);
        return SB_EUNSUPPORTED;
    }
    *from = v;
    for (; v < SB__SCHEMA_VERSION; v++) {
        char why[512];
        if (sqlite_exec(db, "BEGIN IMMEDIATE", why, sizeof why) ||
            sqlite_exec(db, sqlite_migrations[v], why, sizeof why)) {
            snprintf(err, errcap, "migration to schema version %d failed: %s", v + 1, why);
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            goto fail;
        }
        snprintf(sql, sizeof sql, "PRAGMA user_version=%d", v + 1);
        if (sqlite_exec(db, sql, why, sizeof why) || sqlite_exec(db, "COMMIT", why, sizeof why)) {
            snprintf(err, errcap, "migration to schema version %d failed: %s", v + 1, why);
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            goto fail;
        }
        sb_log_info("SB-STORE-MIGRATED", "%s: schema version %d -> %d", path, v, v + 1);
    }
    *to = v;
    *out = db;
    return 0;

fail:
    if (db)
        sqlite3_close(db);
    return SB_EIO;
}

/* ---- operations, on the work thread ---------------------------------------------------- */

static void
sqlite_cols(const sb__kind_t *k, sb_buf_t *b)
{
    for (size_t i = 0; i < k->nf; i++)
        sb_buf_appendf(b, "%s%s", i ? "," : "", k->f[i].name);
}

/* sqlite_row turns the current row (columns in kind order) into canonical record text. */
static char *
sqlite_row(const sb__kind_t *k, sqlite3_stmt *s)
{
    json_t *o = json_object();
    for (size_t i = 0; i < k->nf; i++) {
        int ct = sqlite3_column_type(s, (int)i);
        if (ct == SQLITE_NULL)
            continue;
        const sb__field_t *f = &k->f[i];
        json_t *v = NULL;
        if (f->type == SB__F_INT) {
            v = json_integer(sqlite3_column_int64(s, (int)i));
        } else {
            const char *t = (const char *)sqlite3_column_text(s, (int)i);
            int n = sqlite3_column_bytes(s, (int)i);
            v = f->type == SB__F_JSON ? json_loadb(t, (size_t)n, 0, NULL)
                                      : json_stringn(t, (size_t)n);
        }
        if (v)
            json_object_set_new(o, f->name, v);
    }
    char *text = json_dumps(o, SB__JSON_FLAGS);
    json_decref(o);
    return text;
}

static int
sqlite_fail(sb__op_t *op, sqlite3 *db, int rc)
{
    int ext = sqlite3_extended_errcode(db);
    if ((rc & 0xff) == SQLITE_CONSTRAINT && (ext == SQLITE_CONSTRAINT_PRIMARYKEY ||
                                            ext == SQLITE_CONSTRAINT_UNIQUE)) {
        sb__op_fail(op, SB_EEXIST, "%s: %s", op->kind->kind, sqlite3_errmsg(db));
        return op->status;
    }
    sb__op_fail(op, SB_EIO, "sqlite: %s", sqlite3_errmsg(db));
    return op->status;
}

static int
sqlite_put(sqlite3 *db, sb__op_t *op)
{
    const sb__kind_t *k = op->kind;
    sb_buf_t sql;
    sqlite3_stmt *s = NULL;
    int rc;

    sb_buf_init(&sql, 0);
    sb_buf_appendf(&sql, "INSERT INTO %s(", k->table);
    sqlite_cols(k, &sql);
    sb_buf_appendf(&sql, ") VALUES(");
    for (size_t i = 0; i < k->nf; i++)
        sb_buf_appendf(&sql, "%s?%zu", i ? "," : "", i + 1);
    sb_buf_appendf(&sql, ")");
    if (!op->create_only) {
        /* An upsert on the primary key only: INSERT OR REPLACE would also silently delete a
         * different row that holds the same unique value (another key's key_hash). */
        sb_buf_appendf(&sql, " ON CONFLICT(%s) DO UPDATE SET ", k->f[k->pk].name);
        int first = 1;
        for (size_t i = 0; i < k->nf; i++) {
            if ((int)i == k->pk)
                continue;
            sb_buf_appendf(&sql, "%s%s=excluded.%s", first ? "" : ",", k->f[i].name,
                           k->f[i].name);
            first = 0;
        }
    }
    sb_buf_append(&sql, "", 1);
    rc = sqlite3_prepare_v2(db, (const char *)sql.data, -1, &s, NULL);
    sb_buf_fini(&sql);
    if (rc != SQLITE_OK)
        return sqlite_fail(op, db, rc);
    for (size_t i = 0; i < k->nf; i++) {
        json_t *v = json_object_get(op->doc, k->f[i].name);
        int c = (int)i + 1;
        if (!v) {
            sqlite3_bind_null(s, c);
        } else if (k->f[i].type == SB__F_INT) {
            sqlite3_bind_int64(s, c, json_integer_value(v));
        } else if (k->f[i].type == SB__F_STR) {
            sqlite3_bind_text(s, c, json_string_value(v), (int)json_string_length(v),
                              SQLITE_TRANSIENT);
        } else {
            char *t = json_dumps(v, SB__JSON_FLAGS);
            sqlite3_bind_text(s, c, t, -1, free);
        }
    }
    rc = sqlite3_step(s);
    if (rc != SQLITE_DONE) {
        sqlite_fail(op, db, rc);
        sqlite3_finalize(s);
        return op->status;
    }
    sqlite3_finalize(s);
    op->changed = 1;
    return 0;
}

static int
sqlite_get(sqlite3 *db, sb__op_t *op)
{
    const sb__kind_t *k = op->kind;
    sb_buf_t sql;
    sqlite3_stmt *s = NULL;
    int rc;

    sb_buf_init(&sql, 0);
    sb_buf_appendf(&sql, "SELECT ");
    sqlite_cols(k, &sql);
    sb_buf_appendf(&sql, " FROM %s WHERE %s = ?1", k->table, k->f[op->by].name);
    sb_buf_append(&sql, "", 1);
    rc = sqlite3_prepare_v2(db, (const char *)sql.data, -1, &s, NULL);
    sb_buf_fini(&sql);
    if (rc != SQLITE_OK)
        return sqlite_fail(op, db, rc);
    sqlite3_bind_text(s, 1, op->key, -1, SQLITE_STATIC);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        op->result = sqlite_row(k, s);
        op->count = 1;
    } else if (rc == SQLITE_DONE) {
        sb__op_fail(op, SB_ENOTFOUND, "no %s with %s '%s'", k->kind, k->f[op->by].name, op->key);
    } else {
        sqlite_fail(op, db, rc);
    }
    sqlite3_finalize(s);
    return op->status;
}

static int
sqlite_list(sqlite3 *db, sb__op_t *op)
{
    const sb__kind_t *k = op->kind;
    sb_buf_t sql, out;
    sqlite3_stmt *s = NULL;
    int rc, n = 0;

    sb_buf_init(&sql, 0);
    sb_buf_appendf(&sql, "SELECT ");
    sqlite_cols(k, &sql);
    sb_buf_appendf(&sql, " FROM %s WHERE 1", k->table);
    if (op->owner)
        sb_buf_appendf(&sql, " AND %s = ?1", k->f[k->owner].name);
    if (op->state)
        sb_buf_appendf(&sql, " AND %s = ?2", k->f[k->state].name);
    /* Newest first; ties broken by key, descending -- the order Redis's ZREVRANGE gives. */
    sb_buf_appendf(&sql, " ORDER BY COALESCE(%s,0) DESC, %s DESC LIMIT ?3", k->f[k->created].name,
                   k->f[k->pk].name);
    sb_buf_append(&sql, "", 1);
    rc = sqlite3_prepare_v2(db, (const char *)sql.data, -1, &s, NULL);
    sb_buf_fini(&sql);
    if (rc != SQLITE_OK)
        return sqlite_fail(op, db, rc);
    if (op->owner)
        sqlite3_bind_text(s, 1, op->owner, -1, SQLITE_STATIC);
    if (op->state)
        sqlite3_bind_text(s, 2, op->state, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, (sqlite3_int64)op->limit + 1);
    sb_buf_init(&out, 0);
    sb_buf_append(&out, "[", 1);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        char *t = sqlite_row(k, s);
        size_t tl = strlen(t);
        if ((uint32_t)n == op->limit || out.len + tl + 2 > SB__REPLY_CAP) {
            free(t);
            op->more = 1;
            break;
        }
        if (n++)
            sb_buf_append(&out, ",", 1);
        sb_buf_append(&out, t, tl);
        free(t);
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        sqlite_fail(op, db, rc);
        sb_buf_fini(&out);
        sqlite3_finalize(s);
        return op->status;
    }
    sqlite3_finalize(s);
    sb_buf_append(&out, "]", 2);
    size_t rlen;
    op->result = (char *)sb_buf_steal(&out, &rlen);
    op->count = (uint64_t)n;
    return 0;
}

static int
sqlite_del(sqlite3 *db, sb__op_t *op)
{
    const sb__kind_t *k = op->kind;
    char sql[256];
    sqlite3_stmt *s = NULL;
    int rc;

    snprintf(sql, sizeof sql, "DELETE FROM %s WHERE %s = ?1", k->table, k->f[k->pk].name);
    if ((rc = sqlite3_prepare_v2(db, sql, -1, &s, NULL)) != SQLITE_OK)
        return sqlite_fail(op, db, rc);
    sqlite3_bind_text(s, 1, op->key, -1, SQLITE_STATIC);
    rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE)
        return sqlite_fail(op, db, rc);
    op->changed = (uint64_t)sqlite3_changes(db);
    return 0;
}

static int
sqlite_one(sqlite3 *db, sb__op_t *op)
{
    switch (op->type) {
    case SB__OP_PUT: return sqlite_put(db, op);
    case SB__OP_GET: return sqlite_get(db, op);
    case SB__OP_LIST: return sqlite_list(db, op);
    default: return sqlite_del(db, op);
    }
}

/* sqlite_work runs one batch in one transaction (see the file header). */
static void
sqlite_work(uv_work_t *w)
{
    sb__sqlite_t *s = w->data;
    char why[256];
    sb__op_t *op;

    if (sqlite_exec(s->db, "BEGIN IMMEDIATE", why, sizeof why)) {
        for (op = s->batch; op; op = op->next)
            sb__op_fail(op, SB_EIO, "sqlite: cannot begin: %s", why);
        return;
    }
    for (op = s->batch; op; op = op->next) {
        sqlite3_exec(s->db, "SAVEPOINT op", NULL, NULL, NULL);
        if (sqlite_one(s->db, op) != 0)
            sqlite3_exec(s->db, "ROLLBACK TO op", NULL, NULL, NULL);
        sqlite3_exec(s->db, "RELEASE op", NULL, NULL, NULL);
    }
    if (sqlite_exec(s->db, "COMMIT", why, sizeof why)) {
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        for (op = s->batch; op; op = op->next) {
            if (op->status == 0 && (op->type == SB__OP_PUT || op->type == SB__OP_DEL)) {
                free(op->result);
                op->result = NULL;
                sb__op_fail(op, SB_EIO, "sqlite: commit failed: %s", why);
            }
        }
    }
}

static void sqlite_kick(sb__sqlite_t *s, uv_loop_t *loop);

static void
sqlite_after(uv_work_t *w, int status)
{
    sb__sqlite_t *s = w->data;
    sb__op_t *op = s->batch, *next;
    (void)status; /* never canceled: we do not call uv_cancel */
    s->batch = NULL;
    s->busy = 0;
    for (; op; op = next) {
        next = op->next;
        sb__store_done(s->st, op);
    }
    sqlite_kick(s, w->loop);
}

static void
sqlite_kick(sb__sqlite_t *s, uv_loop_t *loop)
{
    if (s->busy || !s->head)
        return;
    sb__op_t **tail = &s->batch;
    for (int n = 0; n < SQLITE_BATCH_MAX && s->head; n++) {
        sb__op_t *op = s->head;
        s->head = op->next;
        op->next = NULL;
        *tail = op;
        tail = &op->next;
        s->nqueued--;
    }
    if (!s->head)
        s->tail = NULL;
    s->work.data = s;
    s->busy = 1;
    int r = uv_queue_work(loop, &s->work, sqlite_work, sqlite_after);
    SB_ASSERT(r == 0); /* only fails for a NULL work_cb */
}

void
sb__sqlite_start(sb__sqlite_t *s, sb__store_t *st, sqlite3 *db)
{
    memset(s, 0, sizeof *s);
    s->st = st;
    s->db = db;
}

void
sb__sqlite_submit(sb__sqlite_t *s, uv_loop_t *loop, sb__op_t *op)
{
    if (s->nqueued >= SQLITE_QUEUE_MAX) {
        sb__op_fail(op, SB_EAGAIN, "storage queue full (%d waiting)", SQLITE_QUEUE_MAX);
        sb__store_done(s->st, op);
        return;
    }
    op->next = NULL;
    if (s->tail)
        s->tail->next = op;
    else
        s->head = op;
    s->tail = op;
    s->nqueued++;
    sqlite_kick(s, loop);
}

void
sb__sqlite_fini(sb__sqlite_t *s)
{
    SB_ASSERT(!s->busy);
    if (s->db) {
        /* A clean close checkpoints the WAL into the database file. */
        if (sqlite3_close(s->db) != SQLITE_OK)
            sb_log_warn("SB-STORE-CLOSE", "sqlite close: %s", sqlite3_errmsg(s->db));
        s->db = NULL;
    }
}
